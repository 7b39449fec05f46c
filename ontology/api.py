"""HTTP routes for genealogy: a FastAPI APIRouter factory the twin mounts with its own auth dependencies.

Routes (prefix `/api` by default):
  GET  /cells/{id}/genealogy            JSON (default), Turtle (text/turtle) or JSON-LD (application/ld+json)
  GET  /trace/downstream?id=&from_m=&to_m=&line=
  GET  /trace/dew-point?limit_C=&check_samples=
  GET|POST /sparql                      SPARQL 1.1 protocol, read-only, time and result limits
  GET  /genealogy/export?format=        the whole graph (turtle, nt, json-ld, xml)
  GET  /genealogy/status, /genealogy/quarantine
Unknown IDs answer 404 saying what was not found; malformed input 400 saying why; updates 403.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.params import Depends
from fastapi.responses import JSONResponse, Response

from ontology.sandbox import QuerySyntaxError, QueryTimeout, ReadOnlyError
from ontology.store import GenealogyStore, QueryInputError, UnknownIdError

SPARQL_JSON = "application/sparql-results+json"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _float(value: str | None, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        raise QueryInputError(f"{name} must be a number in metres, got {value!r}") from None
    if not math.isfinite(number):
        raise QueryInputError(f"{name} must be finite, got {value!r}")
    return number


def _wants(request: Request, *types: str) -> str | None:
    accept = request.headers.get("accept", "")
    for t in types:
        if t in accept:
            return t
    return None


def make_router(
    store: GenealogyStore,
    *,
    dependencies: Sequence[Depends] = (),
    prefix: str = "/api",
    sparql_timeout_s: float = 10.0,
    sparql_max_results: int = 10_000,
    max_query_bytes: int = 100_000,
) -> APIRouter:
    """Routes over `store`; `dependencies` (e.g. the twin's auth) apply to every route."""
    router = APIRouter(prefix=prefix, dependencies=list(dependencies), tags=["genealogy"])

    @router.get("/cells/{cell_id}/genealogy")
    def genealogy(cell_id: str, request: Request, line: str | None = None) -> Response:
        """Where did this cell come from: the whole upstream tree with the conditions it saw."""
        try:
            _, _, entity_type = store.find(cell_id, line)
            if entity_type != "Cell":
                return _error(404, f"{cell_id} is a {entity_type}, not a cell; use /api/trace/downstream for it")
            kind = _wants(request, "text/turtle", "application/ld+json")
            if kind is not None:
                graph = store.genealogy_graph(cell_id, line)
                if kind == "text/turtle":
                    return Response(graph.serialize(format="turtle"), media_type="text/turtle")
                return Response(graph.serialize(format="json-ld"), media_type="application/ld+json")
            return JSONResponse(store.genealogy(cell_id, line))
        except UnknownIdError as exc:
            return _error(404, str(exc))
        except QueryInputError as exc:
            return _error(400, str(exc))

    @router.get("/trace/downstream")
    def downstream(id: str | None = None, from_m: str | None = None, to_m: str | None = None,  # noqa: A002
                   line: str | None = None) -> Response:
        """Which cells are affected: everything made from a batch, a roll, or a stretch of a roll."""
        try:
            if not id:
                raise QueryInputError("query parameter id is required (a trace ID such as CR-C-000001)")
            return JSONResponse(store.downstream(id, _float(from_m, "from_m"), _float(to_m, "to_m"), line))
        except UnknownIdError as exc:
            return _error(404, str(exc))
        except QueryInputError as exc:
            return _error(400, str(exc))

    @router.get("/trace/dew-point")
    def dew_point(limit_C: str | None = None, check_samples: bool = False) -> Response:  # noqa: N803
        """Cells assembled while the dry-room dew point was above a limit (degC)."""
        try:
            limit = _float(limit_C, "limit_C")
            if limit is None:
                raise QueryInputError("query parameter limit_C (degC) is required")
            return JSONResponse(store.cells_dew_point_above(limit, check_samples=check_samples))
        except QueryInputError as exc:
            return _error(400, str(exc))

    async def _sparql(request: Request, query: str | None) -> Response:
        if query is None:
            return _error(400, "no query: send it as the body (application/sparql-query), as form field 'query', "
                               "or as ?query=")
        if len(query.encode("utf-8")) > max_query_bytes:
            return _error(413, f"query longer than {max_query_bytes} bytes")
        try:
            answer = store.sparql(query, max_results=sparql_max_results, timeout_s=sparql_timeout_s)
        except ReadOnlyError as exc:
            return _error(403, str(exc))
        except QuerySyntaxError as exc:
            return _error(400, str(exc))
        except QueryTimeout as exc:
            return _error(503, str(exc))
        headers = {"X-Results-Truncated": "true" if answer.truncated else "false",
                   "X-Result-Limit": str(sparql_max_results)}
        if answer.ntriples is not None:
            return Response(answer.ntriples, media_type="application/n-triples", headers=headers)
        return Response(json.dumps(answer.json), media_type=SPARQL_JSON, headers=headers)

    @router.get("/sparql")
    async def sparql_get(request: Request, query: str | None = None, update: str | None = None) -> Response:
        if update is not None:
            return _error(403, "SPARQL updates are refused: this endpoint is read-only")
        return await _sparql(request, query)

    @router.post("/sparql")
    async def sparql_post(request: Request) -> Response:
        """SPARQL 1.1 protocol: query via POST body (application/sparql-query) or URL-encoded form; updates: 403."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await request.body()
        if len(body) > max_query_bytes * 3:
            return _error(413, f"request body longer than {max_query_bytes * 3} bytes")
        if ctype == "application/sparql-update":
            return _error(403, "SPARQL updates are refused: this endpoint is read-only")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return _error(400, "the body is not UTF-8")
        if ctype == "application/sparql-query":
            return await _sparql(request, text)
        if ctype in ("application/x-www-form-urlencoded", ""):
            form = parse_qs(text, keep_blank_values=True)
            if "update" in form:
                return _error(403, "SPARQL updates are refused: this endpoint is read-only")
            query = form.get("query", [request.query_params.get("query")])[0]
            return await _sparql(request, query)
        return _error(415, f"unsupported content type {ctype!r}: use application/sparql-query or a form")

    @router.get("/genealogy/export")
    def export(format: str = "turtle") -> Response:  # noqa: A002
        media = {"turtle": "text/turtle", "nt": "application/n-triples", "ntriples": "application/n-triples",
                 "json-ld": "application/ld+json", "xml": "application/rdf+xml"}
        try:
            data = store.export(format)
        except QueryInputError as exc:
            return _error(400, str(exc))
        return Response(data, media_type=media[format],
                        headers={"Content-Disposition": f'attachment; filename="genealogy.{format.split("-")[-1]}"'})

    @router.get("/genealogy/status")
    def status() -> dict[str, Any]:
        return store.status()

    @router.get("/genealogy/quarantine")
    def quarantine(limit: int = 100) -> dict[str, Any]:
        entries = [e.public() for e in store.quarantine]
        return {"count": len(entries), "entries": entries[: max(0, min(limit, 10_000))]}

    return router
