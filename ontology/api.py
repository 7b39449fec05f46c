"""HTTP routes for genealogy: a FastAPI APIRouter factory the twin mounts with its own auth dependencies.

Routes (prefix `/api` by default):
  GET  /cells/{id}/genealogy            JSON (default), Turtle (text/turtle) or JSON-LD (application/ld+json)
  GET  /trace/downstream?id=&from_m=&to_m=&line=
  GET  /trace/dew-point?limit_C=&check_samples=
  GET|POST /sparql                      SPARQL 1.1 protocol, read-only, time and result limits
  GET  /genealogy/export?format=&limit=&cursor=   the whole graph: N-Triples in pages (cursor in X-Next-Cursor);
                                        turtle, json-ld, xml while it fits in one page
  GET  /genealogy/status, /genealogy/quarantine
Unknown IDs answer 404 saying what was not found; malformed input 400 saying why; updates 403.

User SPARQL and export pages never run on the event loop: each waits in a thread of its own pool for a query process
(see ontology.sandbox), and admission is bounded per user and in total (ontology.limits): over a cap the answer is
429 with Retry-After, at once, so /health, the rest of the API, ingest and the control loop keep going.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Request
from fastapi.params import Depends
from fastapi.responses import JSONResponse, Response

from ontology.limits import Busy, QueryGate
from ontology.sandbox import (
    CursorError,
    ExportPage,
    ExportsBusy,
    QueryFailed,
    QuerySyntaxError,
    QueryTimeout,
    ReadOnlyError,
)
from ontology.store import GenealogyStore, QueryInputError, UnknownIdError

SPARQL_JSON = "application/sparql-results+json"
EXPORT_MEDIA = {"turtle": "text/turtle", "nt": "application/n-triples", "ntriples": "application/n-triples",
                "json-ld": "application/ld+json", "xml": "application/rdf+xml"}
PAGED_FORMATS = ("nt", "ntriples")


def _client_of(request: Request) -> str:
    """Who a query counts against when the app has no user identity: the client's address."""
    return f"client {request.client.host}" if request.client is not None else "client ?"


def _user_key(user: Any) -> str:
    return user if isinstance(user, str) else str(getattr(user, "name", None) or user)


def _busy(exc: Busy | ExportsBusy) -> JSONResponse:
    retry = exc.retry_after_s if isinstance(exc, Busy) else max(1, math.ceil(exc.retry_after_s))
    return JSONResponse({"error": str(exc)}, status_code=429, headers={"Retry-After": str(retry)})


def _convert(page: ExportPage, fmt: str) -> bytes:
    """A whole (one-page) export in another RDF format; pyoxigraph's serialisers, run off the event loop."""
    import pyoxigraph as ox

    target = {"turtle": ox.RdfFormat.TURTLE, "json-ld": ox.RdfFormat.JSON_LD, "xml": ox.RdfFormat.RDF_XML}[fmt]
    quads = ox.parse(page.ntriples.encode("utf-8"), format=ox.RdfFormat.N_TRIPLES)
    data = ox.serialize((q.triple for q in quads), format=target)
    return data if isinstance(data, bytes) else b""


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
    user_of: Callable[..., Any] | None = None,
    sparql_max_concurrent: int = 4,
    sparql_max_per_user: int = 2,
    export_max_triples: int = 100_000,
    export_cursor_ttl_s: float = 600.0,
    export_max_open: int = 4,
    sparql_snapshot_max_age_s: float | None = None,
    sparql_max_memory_mb: int | None = None,
) -> APIRouter:
    """Routes over `store`; `dependencies` (e.g. the twin's auth) apply to every route.

    `user_of` is a FastAPI dependency naming who sends a request (a string, or an object with a `name`); the client's
    address when None. At most `sparql_max_concurrent` SPARQL queries and export pages run at once, at most
    `sparql_max_per_user` for one user. An export page holds at most `export_max_triples` triples; its cursor stays
    valid `export_cursor_ttl_s` seconds after each page, and at most `export_max_open` cursors are open at once.
    `sparql_snapshot_max_age_s` (None: the store's default, 10 s): how far behind a writing line queries may read.
    `sparql_max_memory_mb` (None: the store's default, 1024): the heap one query process may take."""
    router = APIRouter(prefix=prefix, dependencies=list(dependencies), tags=["genealogy"])
    gate = QueryGate(sparql_max_concurrent, sparql_max_per_user)
    pool = ThreadPoolExecutor(max_workers=sparql_max_concurrent, thread_name_prefix="sparql-wait")
    user_dep = user_of or _client_of
    if sparql_snapshot_max_age_s is not None:
        store.queries.snapshot_max_age_s = sparql_snapshot_max_age_s
    if sparql_max_memory_mb is not None:
        store.queries.max_memory_mb = sparql_max_memory_mb

    async def _off_loop(user: Any, job: Callable[[Callable[[], None]], Any]) -> Any:
        """`job(on_done)` in the pool once admitted (Busy if not); the place is given back by on_done, called by
        the store when the query's work really ended (a thread it could not stop may outlive the answer)."""
        ticket = gate.enter(_user_key(user), sparql_timeout_s)
        try:
            future = asyncio.get_running_loop().run_in_executor(pool, job, ticket.leave)
        except BaseException:
            ticket.leave()
            raise
        return await future

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

    async def _sparql(user: Any, query: str | None) -> Response:
        if query is None:
            return _error(400, "no query: send it as the body (application/sparql-query), as form field 'query', "
                               "or as ?query=")
        if len(query.encode("utf-8")) > max_query_bytes:
            return _error(413, f"query longer than {max_query_bytes} bytes")

        def job(on_done: Callable[[], None]) -> tuple[bytes, str, bool]:
            answer = store.sparql(query, max_results=sparql_max_results, timeout_s=sparql_timeout_s, on_done=on_done)
            if answer.ntriples is not None:
                return answer.ntriples.encode("utf-8"), "application/n-triples", answer.truncated
            return json.dumps(answer.json).encode("utf-8"), SPARQL_JSON, answer.truncated

        try:
            body, media, truncated = await _off_loop(user, job)
        except Busy as exc:
            return _busy(exc)
        except ReadOnlyError as exc:
            return _error(403, str(exc))
        except QuerySyntaxError as exc:
            return _error(400, str(exc))
        except QueryTimeout as exc:
            return _error(503, str(exc))
        except QueryFailed as exc:
            return _error(500, f"the query could not be answered: {exc}")
        headers = {"X-Results-Truncated": "true" if truncated else "false", "X-Result-Limit": str(sparql_max_results)}
        return Response(body, media_type=media, headers=headers)

    @router.get("/sparql")
    # `user` takes its dependency as a default: under `from __future__ import annotations` an Annotated[...] naming
    # the local user_dep could not be resolved by FastAPI
    async def sparql_get(query: str | None = None, update: str | None = None,
                         user: Any = Depends(user_dep)) -> Response:  # noqa: B008
        if update is not None:
            return _error(403, "SPARQL updates are refused: this endpoint is read-only")
        return await _sparql(user, query)

    @router.post("/sparql")
    async def sparql_post(request: Request, user: Any = Depends(user_dep)) -> Response:  # noqa: B008
        """SPARQL 1.1 protocol: query via POST body (application/sparql-query) or URL-encoded form; updates: 403."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        cap = max_query_bytes * 3  # a form-encoded query may triple in size
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            return _error(413, f"request body longer than {cap} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():  # read no further than the cap, whatever Content-Length said
            size += len(chunk)
            if size > cap:
                return _error(413, f"request body longer than {cap} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        if ctype == "application/sparql-update":
            return _error(403, "SPARQL updates are refused: this endpoint is read-only")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return _error(400, "the body is not UTF-8")
        if ctype == "application/sparql-query":
            return await _sparql(user, text)
        if ctype in ("application/x-www-form-urlencoded", ""):
            form = parse_qs(text, keep_blank_values=True)
            if "update" in form:
                return _error(403, "SPARQL updates are refused: this endpoint is read-only")
            query = form.get("query", [request.query_params.get("query")])[0]
            return await _sparql(user, query)
        return _error(415, f"unsupported content type {ctype!r}: use application/sparql-query or a form")

    @router.get("/genealogy/export")
    async def export(request: Request, format: str = "turtle", limit: str | None = None,  # noqa: A002
                     cursor: str | None = None, user: Any = Depends(user_dep)) -> Response:  # noqa: B008
        """The whole graph. N-Triples comes in pages of at most `limit` triples: the next page is the same request
        with `cursor=` the X-Next-Cursor header of the previous one (absent on the last page); pages of one export
        read one snapshot, so together they hold every triple exactly once. Other formats: while the graph fits in
        one page."""
        if format not in EXPORT_MEDIA:
            return _error(400, f"export format must be one of {', '.join(EXPORT_MEDIA)}, got {format!r}")
        size = export_max_triples
        if limit is not None:
            if not limit.isdigit() or int(limit) < 1:
                return _error(400, f"limit must be a whole number of triples >= 1, got {limit!r}")
            size = int(limit)
            if size > export_max_triples:
                return _error(400, f"limit {size} exceeds the most triples per page ({export_max_triples}); page "
                                   "through the graph with cursor= (the X-Next-Cursor header of each page)")
        paged = format in PAGED_FORMATS
        if cursor is not None and not paged:
            return _error(400, "only format=nt comes in pages: cursor= applies to it alone")

        def job(on_done: Callable[[], None]) -> tuple[ExportPage, bytes]:
            page = store.queries.page(cursor, limit=size, timeout_s=sparql_timeout_s, keep_s=export_cursor_ttl_s,
                                      max_open=export_max_open, pin=paged, on_done=on_done)
            if paged:
                return page, page.ntriples.encode("utf-8")
            return page, b"" if page.more else _convert(page, format)

        try:
            page, data = await _off_loop(user, job)
        except (Busy, ExportsBusy) as exc:
            return _busy(exc)
        except CursorError as exc:
            return _error(410 if exc.expired else 400, str(exc))
        except QueryTimeout as exc:
            return _error(503, f"the export page was stopped: {exc}; ask for a smaller limit")
        except (QueryFailed, QuerySyntaxError) as exc:
            return _error(500, f"the export could not be read: {exc}")
        if page.more and not paged:
            return _error(413, f"the graph holds more than {size} triples: export it as format=nt, in pages "
                               "(limit=, then cursor= from each page's X-Next-Cursor header)")
        headers = {"Content-Disposition": f'attachment; filename="genealogy.{format.split("-")[-1]}"',
                   "X-Triples": str(page.count), "X-Export-Limit": str(size)}
        if page.next_cursor is not None:
            headers["X-Next-Cursor"] = page.next_cursor
            nxt = urlencode({"format": format, "limit": size, "cursor": page.next_cursor})
            headers["Link"] = f'<{request.url.path}?{nxt}>; rel="next"'
        return Response(data, media_type=EXPORT_MEDIA[format], headers=headers)

    @router.get("/genealogy/status")
    def status() -> dict[str, Any]:
        return store.status()

    @router.get("/genealogy/quarantine")
    def quarantine(limit: int = 100) -> dict[str, Any]:
        entries = [e.public() for e in store.quarantine]
        return {"count": len(entries), "entries": entries[: max(0, min(limit, 10_000))]}

    return router
