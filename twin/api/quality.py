"""The quality routes: cell record (JSON, JSON-LD), dataset export (CSV, Parquet, JSON), lab results (import,
list) and root cause. docs/quality.md documents every route and document shape.

Each computation runs in a worker thread under a deadline (``service.quality.timeout_s`` /
``dataset_timeout_s``: 504 past it) and holds one of ``service.quality.max_concurrent`` places until its thread has
really finished (429 with Retry-After when all are taken), so a crowd of exports cannot starve the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response

from ontology.limits import Busy, QueryGate
from twin.api.deps import clean_json as _clean
from twin.api.deps import ctx_of, operator, viewer
from twin.auth import Principal
from twin.context import TwinContext
from twin.quality.dataset import table, to_csv, to_parquet
from twin.quality.influx import InfluxError, RowCapExceeded
from twin.quality.service import Deadline, QualityService
from twin.quality.settings import QualitySettings

router = APIRouter(prefix="/api", tags=["quality"])
Ctx = Annotated[TwinContext, Depends(ctx_of)]
Viewer = Annotated[Principal, Depends(viewer)]
Operator = Annotated[Principal, Depends(operator)]
T = TypeVar("T")


def quality_settings(ctx: TwinContext) -> QualitySettings:
    s = getattr(ctx.settings, "quality", None)
    return s if isinstance(s, QualitySettings) else QualitySettings()


def quality_of(request: Request) -> tuple[QualityService, QueryGate]:
    """The app's QualityService (made on first use from the twin's configuration) and its gate."""
    state = request.app.state
    if getattr(state, "quality", None) is None:
        ctx: TwinContext = state.ctx
        if ctx.genealogy is None:
            raise HTTPException(503, "genealogy is off (service.genealogy.enabled): the quality views start from it")
        settings = quality_settings(ctx)
        state.quality = QualityService.from_config(ctx.config_dump(), ctx.genealogy, ctx.settings.live.specs,
                                                   ctx.line, settings)
        state.quality_gate = QueryGate(settings.max_concurrent, settings.max_concurrent)
    return state.quality, state.quality_gate


async def _run(request: Request, who: Principal, fn: Callable[[], T], timeout_s: float) -> T:
    """Run `fn` in a worker thread; its place in the gate is given back when the thread ends, not when we stop
    waiting. Errors become HTTP answers that say what to do."""
    _, gate = quality_of(request)
    try:
        ticket = gate.enter(str(who.name), timeout_s)
    except Busy as exc:
        raise HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from None

    def work() -> T:
        try:
            return fn()
        finally:
            ticket.leave()

    try:
        return await asyncio.wait_for(asyncio.to_thread(work), timeout_s)
    except TimeoutError:
        raise HTTPException(504, f"not done within {timeout_s:g} s (service.quality); narrow the question") from None
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    except RowCapExceeded as exc:
        raise HTTPException(422, str(exc)) from None
    except InfluxError as exc:
        raise HTTPException(503 if exc.unavailable else 422, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    except RuntimeError as exc:
        raise HTTPException(503, str(exc)) from None


def _cells_param(cells: str | None) -> list[str] | None:
    if not cells:
        return None
    out = [c.strip() for c in cells.split(",") if c.strip()]
    return out or None


# -- dataset (before /cells/{id}/...: a fixed path) --------------------------------------------------------------------
@router.get("/cells/dataset")
async def dataset(request: Request, ctx: Ctx, who: Viewer,
                  cells: str | None = Query(None, max_length=200_000, description="comma-separated cell IDs"),
                  formation_failed: bool = Query(False, description="the formed cells whose formation failed"),
                  capacity_below: float | None = Query(None, description="formed cells below this capacity (Ah)"),
                  max_cells: int | None = Query(None, ge=1, description="at most this many (newest IDs first)"),
                  format: str = Query("csv", pattern="^(csv|parquet|json)$")) -> Response:
    """One row per cell, one column per feature of the cell record (``<station>/<signal>:<stat>``,
    ``assembly:...``, ``formation:...``, ``lab:...``)."""
    q, _ = quality_of(request)
    given = _cells_param(cells)
    if not given and not formation_failed and capacity_below is None:
        raise HTTPException(422, "choose cells: cells=ID,ID,..., formation_failed=true or capacity_below=<Ah>")
    s = quality_of(request)[0].settings
    deadline = Deadline(s.dataset_timeout_s)

    def build() -> tuple[list[str], list[list[Any]]]:
        ids = q.selection(cells=given, formation_failed=formation_failed, capacity_below=capacity_below,
                          max_cells=max_cells)
        return table(q.dataset(ids, deadline))

    columns, rows = await _run(request, who, build, s.dataset_timeout_s)
    if format == "json":
        return JSONResponse(_clean({"columns": columns, "rows": rows, "count": len(rows)}))
    if format == "parquet":
        return Response(to_parquet(columns, rows), media_type="application/vnd.apache.parquet",
                        headers={"Content-Disposition": 'attachment; filename="cells.parquet"'})
    return Response(to_csv(columns, rows), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="cells.csv"'})


@router.get("/cells/{cell_id}/record")
async def cell_record(cell_id: str, request: Request, ctx: Ctx, who: Viewer,
                      line: str | None = Query(None, max_length=64),
                      format: str | None = Query(None, pattern="^(json|jsonld)$",
                                                 description="json (default) or jsonld; or Accept: application/ld+json")
                      ) -> Response:
    """The cell record: genealogy, per-material process statistics over the cell's stretch / windows, assembly
    conditions, formation, predicted vs measured, lab results, setpoint changes; ``format=jsonld``: BattINFO JSON-LD."""
    q, _ = quality_of(request)
    want_ld = format == "jsonld" or (format is None and "application/ld+json" in request.headers.get("accept", ""))
    timeout = q.settings.timeout_s
    if want_ld:
        from twin.quality.jsonld import record_jsonld

        text = await _run(request, who, lambda: record_jsonld(q.store, q.record(cell_id, line)), timeout)
        return Response(text, media_type="application/ld+json")
    rec = await _run(request, who, lambda: q.record(cell_id, line), timeout)
    return JSONResponse(_clean(rec))


# -- lab ---------------------------------------------------------------------------------------------------------------
@router.post("/lab")
async def lab_import(request: Request, ctx: Ctx, who: Operator) -> dict[str, Any]:
    """Lab results: a JSON list of rows (or ``{"rows": [...]}``), or CSV with a header (Content-Type text/csv).
    Good rows are stored, bad ones quarantined with their reason (also in GET /api/quarantine, reason lab_*)."""
    from twin.quality.lab import parse_text

    q, _ = quality_of(request)
    body = (await request.body()).decode("utf-8-sig", errors="replace")
    fmt = "csv" if "csv" in request.headers.get("content-type", "") else "json"
    try:
        rows = parse_text(body, fmt)
    except ValueError as exc:
        raise HTTPException(422, f"unreadable {fmt}: {exc}") from None
    source = f"api:{who.name}"
    result = await _run(request, who, lambda: q.lab_import(rows, source), q.settings.timeout_s)
    if ctx.quarantine is not None and result.quarantined:
        await asyncio.to_thread(ctx.quarantine.add_many, result.rejected(source))
    return _clean(result.to_dict(rows=False))


@router.get("/lab")
async def lab_results(request: Request, ctx: Ctx, who: Viewer,
                      trace_id: str = Query(..., max_length=64, description="a batch, roll, sheet or cell ID")
                      ) -> dict[str, Any]:
    """The stored lab results of one trace ID."""
    q, _ = quality_of(request)
    if q.influx is None:
        raise HTTPException(503, "no InfluxDB configured")
    influx = q.influx

    def read() -> list[dict[str, Any]]:
        rows = influx.query(['SELECT * FROM "lab" WHERE "line" = $line AND "trace_id" = $id ORDER BY time ASC '
                             "LIMIT 10000"], {"line": q.line, "id": trace_id}, max_rows=10_000)[0]
        for r in rows:
            r.pop("_measurement", None)
        return rows

    return _clean({"trace_id": trace_id, "results": await _run(request, who, read, q.settings.timeout_s)})


# -- root cause --------------------------------------------------------------------------------------------------------
@router.get("/rootcause")
async def rootcause(request: Request, ctx: Ctx, who: Viewer,
                    cells: str | None = Query(None, max_length=200_000, description="comma-separated cell IDs"),
                    formation_failed: bool = Query(False),
                    capacity_below: float | None = Query(None, description="Ah"),
                    max_cells: int | None = Query(None, ge=10, description="newest formed cells compared"),
                    top: int = Query(10, ge=1, le=50, description="features with plot data")) -> dict[str, Any]:
    """Upstream features ranked by how strongly they separate the chosen cells from the other formed cells."""
    q, _ = quality_of(request)
    given = _cells_param(cells)
    if not given and not formation_failed and capacity_below is None:
        raise HTTPException(422, "choose cells: cells=ID,ID,..., formation_failed=true or capacity_below=<Ah>")
    deadline = Deadline(q.settings.dataset_timeout_s)
    out = await _run(request, who, lambda: q.rootcause(cells=given, formation_failed=formation_failed,
                                                       capacity_below=capacity_below, max_cells=max_cells, top=top,
                                                       deadline=deadline), q.settings.dataset_timeout_s)
    return _clean(out)
