"""The REST API under /api: state, history, SPC, predictions, recommendations, alarms, mode, audit, config, stream."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field
from sse_starlette.sse import EventSourceResponse
from starlette.background import BackgroundTask

from connectors.records import ns_to_iso
from twin.api.deps import clean_json as _clean
from twin.api.deps import ctx_of, operator, viewer
from twin.api.deps import time_ns_param as _time_ns
from twin.auth import Principal
from twin.context import TwinContext

router = APIRouter(prefix="/api")
Ctx = Annotated[TwinContext, Depends(ctx_of)]
Viewer = Annotated[Principal, Depends(viewer)]
Operator = Annotated[Principal, Depends(operator)]


class Decision(BaseModel):
    note: str = Field("", max_length=500, description="why (goes into the audit trail)")


class ModeChange(BaseModel):
    mode: Literal["off", "advisory", "closed_loop"]
    why: str = Field("", max_length=500)


def _split_key(key: str) -> tuple[str, str]:
    if "/" not in key:
        raise HTTPException(422, f"signal {key!r} must be '<station>/<signal>', e.g. Drying/Cathode/MassLoading")
    station, signal = key.rsplit("/", 1)
    return station, signal


# -- who am I ---------------------------------------------------------------------------------------------------------
@router.get("/whoami", tags=["auth"])
async def whoami(p: Viewer) -> dict[str, str]:
    return {"name": p.name, "role": p.role.name}


# -- state ------------------------------------------------------------------------------------------------------------
@router.get("/state", tags=["state"])
async def state(ctx: Ctx, _: Viewer, prefix: str = Query("", max_length=200)) -> dict[str, Any]:
    snap = ctx.live.snapshot()
    if prefix:
        snap["signals"] = {k: v for k, v in snap["signals"].items() if k.startswith(prefix)}
    return _clean({"line": ctx.line, "mode": ctx.controller.mode, **snap})


@router.get("/state/{key:path}", tags=["state"])
async def signal_state(key: str, ctx: Ctx, _: Viewer) -> dict[str, Any]:
    last = ctx.live.value(key)
    if last is None:
        raise HTTPException(404, f"no sample of {key!r} yet; GET /api/state lists the known signals")
    return _clean({"signal": key, **last.to_dict(), "window": ctx.live.stats(key),
                   "spec": (s.model_dump() if (s := ctx.settings.live.specs.get(key)) else None)})


@router.get("/history", tags=["state"])
async def history(ctx: Ctx, _: Viewer,
                  signal: str = Query(..., max_length=200, description="<station>/<signal>"),
                  start: str | None = Query(None, description="RFC 3339 or ns; default: end - 1 h"),
                  end: str | None = Query(None, description="RFC 3339 or ns; default: now"),
                  limit: int = Query(1000, ge=1)) -> dict[str, Any]:
    hs = ctx.settings.http
    if limit > hs.max_history_points:
        raise HTTPException(422, f"limit {limit} exceeds the maximum of {hs.max_history_points} points")
    end_ns = _time_ns(end, time.time_ns(), "end")
    start_ns = _time_ns(start, end_ns - 3600 * 10**9, "start")
    if start_ns >= end_ns:
        raise HTTPException(422, "start must be before end")
    if (end_ns - start_ns) / 1e9 > hs.max_history_window_s:
        raise HTTPException(422, f"the window exceeds the maximum of {hs.max_history_window_s:.0f} s; narrow it")
    station, name = _split_key(signal)
    if ctx.history is None:
        raise HTTPException(503, "no store configured: history needs InfluxDB (influx: in the config)")
    try:
        rows = await ctx.history(station, name, start_ns, end_ns, limit)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    except OSError as exc:
        raise HTTPException(503, f"the store does not answer: {exc}") from None
    return _clean({"signal": signal, "start": ns_to_iso(start_ns), "end": ns_to_iso(end_ns), "points": rows})


# -- SPC and roll map -------------------------------------------------------------------------------------------------
@router.get("/spc", tags=["quality"])
async def spc(ctx: Ctx, _: Viewer, signal: str | None = None, roll: str | None = None,
              points: bool = False) -> list[dict[str, Any]]:
    return _clean(ctx.live.spc(signal, roll, with_points=points))


@router.get("/rollmap", tags=["quality"])
async def rollmap(ctx: Ctx, _: Viewer, signal: str = "Drying/Cathode/MassLoading",
                  roll: str | None = None) -> dict[str, Any]:
    spec = ctx.settings.live.specs.get(signal)
    if spec is None:
        raise HTTPException(404, f"{signal!r} has no spec limits; configured: {sorted(ctx.settings.live.specs)}")
    charts = ctx.live.spc(signal, roll, with_points=True)
    if roll is None and charts:
        charts = charts[-1:]
    if not charts:
        return {"signal": signal, "roll": roll, "spec": spec.model_dump(), "points": []}
    c = charts[0]
    return _clean({"signal": signal, "roll": c["roll"], "spec": spec.model_dump(), "cpk": c["cpk"],
                   "points": [[p[0], p[1]] for p in c["points"]]})


# -- predictions ------------------------------------------------------------------------------------------------------
@router.get("/predictions", tags=["predictions"])
async def predictions(ctx: Ctx, _: Viewer, subject: str | None = Query(None, max_length=64),
                      limit: int = Query(50, ge=1, le=500)) -> list[dict[str, Any]]:
    items = [p for p in reversed(ctx.predictions) if subject is None or p.get("subject") == subject]
    return _clean(items[:limit])


# -- recommendations --------------------------------------------------------------------------------------------------
@router.get("/recommendations", tags=["control"])
async def recommendations(ctx: Ctx, _: Viewer, state: str | None = None,
                          limit: int = Query(50, ge=1, le=500)) -> dict[str, Any]:
    states = ("proposed", "approved", "applied", "rejected", "expired", "failed")
    if state is not None and state not in states:
        raise HTTPException(422, f"unknown state {state!r}; one of {states}")
    ctx.controller.expire()
    refusals = {k: {"kind": r.kind, "reason": r.reason} for k, r in ctx.controller.last_refusal.items()}
    live = {name: r.to_dict() for name, r in ctx.controller.live.items()}
    return _clean({"mode": ctx.controller.mode, "items": [r.to_dict() for r in ctx.controller.list(state, limit)],
                   "last_refusals": refusals, "live": live})


@router.post("/recommendations/{rec_id}/approve", tags=["control"])
async def approve(rec_id: int, ctx: Ctx, who: Operator, body: Decision | None = None) -> dict[str, Any]:
    rec = await ctx.controller.approve(rec_id, who, (body or Decision()).note)
    return _clean(rec.to_dict())


@router.post("/recommendations/{rec_id}/reject", tags=["control"])
async def reject(rec_id: int, ctx: Ctx, who: Operator, body: Decision | None = None) -> dict[str, Any]:
    rec = ctx.controller.reject(rec_id, who, (body or Decision()).note)
    return _clean(rec.to_dict())


@router.get("/mode", tags=["control"])
async def get_mode(ctx: Ctx, _: Viewer) -> dict[str, Any]:
    return {"mode": ctx.controller.mode, "set_by": ctx.controller.mode_by}


@router.put("/mode", tags=["control"])
async def put_mode(body: ModeChange, ctx: Ctx, who: Operator) -> dict[str, Any]:
    mode = await ctx.controller.set_mode(body.mode, who, body.why)
    return {"mode": mode, "set_by": who.name}


class ProductChange(BaseModel):
    product: str = Field(min_length=1, max_length=128)
    why: str = Field("", max_length=500)


@router.get("/product", tags=["control"])
async def get_product(ctx: Ctx, _: Viewer) -> dict[str, Any]:
    c = ctx.settings.control
    return {"product": c.product or None, "products": sorted(c.products)}


@router.put("/product", tags=["control"])
async def put_product(body: ProductChange, ctx: Ctx, who: Operator) -> dict[str, Any]:
    """Switch the running product (recipe): engineer role, audited; a closed loop drops to advisory first and open
    proposals of the old product are rejected."""
    from twin.product import switch_product

    before = await switch_product(ctx.controller, body.product, who, body.why)
    return {"product": body.product, "before": before or None, "set_by": who.name}


@router.get("/audit", tags=["control"])
async def audit(ctx: Ctx, _: Viewer, limit: int = Query(200, ge=1, le=5000),
                recommendation_id: int | None = None) -> list[dict[str, Any]]:
    return _clean([e.to_dict() for e in ctx.audit.list(limit, recommendation_id)])


# -- alarms -----------------------------------------------------------------------------------------------------------
@router.get("/alarms", tags=["alarms"])
async def alarms(ctx: Ctx, _: Viewer, history: bool = False) -> list[dict[str, Any]]:
    return _clean([a.to_dict() for a in ctx.alarms.list(include_history=history)])


@router.post("/alarms/{alarm_id}/ack", tags=["alarms"])
async def ack(alarm_id: int, ctx: Ctx, who: Operator) -> dict[str, Any]:
    try:
        return _clean(ctx.alarms.ack(alarm_id, who.name).to_dict())
    except KeyError as exc:
        raise HTTPException(404, str(exc.args[0])) from None


# -- ingest quarantine -----------------------------------------------------------------------------------------------
def _quarantine(ctx: TwinContext) -> Any:
    if ctx.quarantine is None:
        raise HTTPException(503, "ingest is not running in this process, so there is no quarantine to show")
    return ctx.quarantine


@router.get("/quarantine", tags=["ingest"])
async def quarantine(ctx: Ctx, _: Viewer, reason: str | None = Query(None, max_length=64),
                     limit: int = Query(100, ge=1, le=10_000)) -> dict[str, Any]:
    """What ingest refused (bad payloads, NaN, out of range, unknown units, malformed IDs): counts per reason since
    the quarantine began, and the newest entries with their raw payload, so nothing refused is invisible; ``usage``
    says how much of ``quarantine.max_bytes`` is taken and what rotation dropped to stay within it."""
    q = _quarantine(ctx)
    counts, entries = await asyncio.to_thread(q.summary, reason, limit)
    return _clean({"counts": counts, "entries": entries, "usage": q.usage()})


# -- genealogy --------------------------------------------------------------------------------------------------------
def _genealogy_store(ctx: TwinContext) -> Any:
    if ctx.genealogy is None:
        raise HTTPException(503, "genealogy is off (service.genealogy.enabled) or its store could not be opened")
    return ctx.genealogy


def _genealogy_call(fn: Any, *args: Any, **kw: Any) -> Any:
    """The store's errors as HTTP answers: unknown ID -> 404, malformed argument -> 422."""
    try:
        return fn(*args, **kw)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("/genealogy/{entity_id}", tags=["genealogy"])
async def genealogy(entity_id: str, ctx: Ctx, _: Viewer, line: str | None = Query(None, max_length=64)) -> Any:
    """Upstream trace of an entity (a cell: sheets, coils, rolls, batches, lots), with predictions and audits."""
    store = _genealogy_store(ctx)
    return _clean(await asyncio.to_thread(_genealogy_call, store.genealogy, entity_id, line))


@router.get("/genealogy/{entity_id}/downstream", tags=["genealogy"])
async def downstream(entity_id: str, ctx: Ctx, _: Viewer, from_m: float | None = None, to_m: float | None = None,
                     line: str | None = Query(None, max_length=64)) -> Any:
    """Cells (and everything) made from an entity; with from_m / to_m only from that stretch of a roll."""
    store = _genealogy_store(ctx)
    return _clean(await asyncio.to_thread(_genealogy_call, store.downstream, entity_id, from_m, to_m, line))


# -- configuration (read-only, secrets redacted) ----------------------------------------------------------------------
SECRET_WORDS = ("password", "token", "secret", "private_key", "key_file")


def redact(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: ("***" if any(w in k.lower() for w in SECRET_WORDS) and v else redact(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


@router.get("/config", tags=["config"])
async def config(ctx: Ctx, _: Viewer) -> dict[str, Any]:
    return redact(json.loads(json.dumps(ctx.config_dump(), default=str)))


# -- live stream (server-sent events) ---------------------------------------------------------------------------------
def stream_payload(ctx: TwinContext) -> dict[str, Any]:
    live = ctx.live
    recs = ctx.controller.list(limit=20)
    return _clean({
        "time_ns": time.time_ns(), "line": ctx.line, "mode": ctx.controller.mode, "version": live.version,
        "signals": (snap := live.snapshot())["signals"],
        # the dashboard's line overview: every station's state (running / idle / fault / no_data) and text values
        # (states, steps, the IDs a machine shows), and the line's clock (the newest sample's time: a simulator or a
        # replay runs behind the wall clock, and the pages' time ranges end there)
        "texts": snap["texts"],
        "station_states": live.station_states(),
        "line_time_ns": max((v["time_ns"] for v in snap["signals"].values() if v.get("time_ns")), default=None),
        "alarms": [a.to_dict() for a in ctx.alarms.list()][:50],
        "recommendations": [r.to_dict() for r in recs],
        "refusals": {k: {"kind": r.kind, "reason": r.reason} for k, r in ctx.controller.last_refusal.items()},
        "live_recommendations": {k: _live_summary(r) for k, r in ctx.controller.live.items()},
        "predictions": list(ctx.predictions)[-10:],
        "spc": live.spc()[-20:],
    })


def _live_summary(live: Any) -> dict[str, Any]:
    """What the dashboard shows of a loop's live recommendation: its outcome, age and, for a proposal, the moves."""
    out: dict[str, Any] = {"kind": live.kind, "computed_ns": live.computed_ns}
    result = live.result
    if out["kind"] == "proposal":
        out["setpoints"] = [[c.input, c.before, c.after] for c in result.setpoints]
        out["expected"] = [[e.signal, e.current, e.expected, e.target] for e in result.expected]
    else:
        out["reason"] = result.reason
    return out


class _StreamSlot:
    """One of the ``http.sse_max_clients`` places of /api/stream; given back once, by whichever end comes first."""

    def __init__(self, clients: set[_StreamSlot]) -> None:
        self.clients = clients
        clients.add(self)

    async def release(self) -> None:
        self.clients.discard(self)


@router.get("/stream", tags=["state"])
async def stream(request: Request, ctx: Ctx, _: Viewer) -> EventSourceResponse:
    """Server-sent events: a ``state`` event every ``http.sse_interval_s`` while anything changed (and every 2 s).
    At most ``http.sse_max_clients`` streams at once (each costs a payload build per interval); one more gets 503."""
    interval = ctx.settings.http.sse_interval_s
    clients: set[_StreamSlot] = request.app.state.__dict__.setdefault("sse_clients", set())
    if len(clients) >= ctx.settings.http.sse_max_clients:
        raise HTTPException(503, f"{len(clients)} live streams are open (at most {ctx.settings.http.sse_max_clients}, "
                                 "http.sse_max_clients); retry later or poll GET /api/state",
                            headers={"Retry-After": "5"})
    slot = _StreamSlot(clients)

    async def events() -> AsyncIterator[dict[str, str]]:
        try:
            last_version, last_sent = -1, 0.0
            while not await request.is_disconnected():
                now = time.monotonic()
                if ctx.live.version != last_version or now - last_sent > 2.0:
                    last_version, last_sent = ctx.live.version, now
                    yield {"event": "state", "data": json.dumps(stream_payload(ctx))}
                await asyncio.sleep(interval)
        finally:
            await slot.release()

    return EventSourceResponse(events(), ping=15, background=BackgroundTask(slot.release))


# -- the dashboard's aggregated reads (twin/api/dashboard_routes.py) --------------------------------------------------
from twin.api.dashboard_routes import router as _dashboard_router  # noqa: E402 - after this module's routes

router.include_router(_dashboard_router)
