"""The FastAPI application: health, readiness, /metrics, the /api routes, genealogy, and the dashboard's static files.

CORS is closed unless ``service.http.cors_origins`` lists origins (the dashboard is served from the same origin).
Every 4xx answer carries ``{"detail": "<what to do>"}`` and is counted in ``twin_http_client_errors``.
What an outsider can push is bounded: request bodies (``http.max_body_bytes``, 413), server-sent-event clients
(``http.sse_max_clients``, 503), user SPARQL and export pages at once in total and per token
(``genealogy.sparql_max_concurrent`` / ``sparql_max_per_user``, 429) and per export page (``genealogy.export_*``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twin.api.calibration import router as calibration_router
from twin.api.deps import ANONYMOUS, viewer
from twin.api.quality import router as quality_router
from twin.api.routes import router
from twin.auth import Principal
from twin.context import TwinContext
from twin.control import ControlError

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboard"


class BodyLimit:
    """Refuse a request body longer than `max_bytes` with 413: at once when Content-Length says so; a body without
    Content-Length (chunked) is read here, no further than the cap, then handed on. No route ever holds more."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _refusal(self) -> JSONResponse:
        return JSONResponse({"detail": f"request body longer than {self.max_bytes} bytes (http.max_body_bytes)"},
                            status_code=413)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit():
            if int(length) > self.max_bytes:
                await self._refusal()(scope, receive, send)
                return
            await self.app(scope, receive, send)  # the server reads no more than Content-Length
            return
        read: list[Message] = []
        size = 0
        while True:
            message = await receive()
            read.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refusal()(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return read.pop(0) if read else await receive()

        await self.app(scope, replay, send)


async def query_user(request: Request, principal: Annotated[Principal, Depends(viewer)]) -> str:
    """Whom a SPARQL query or export page counts against: the token's name; anonymous viewers by client address."""
    if principal is ANONYMOUS:
        return f"anonymous@{request.client.host if request.client is not None else '?'}"
    return str(principal.name)


def create_app(ctx: TwinContext) -> FastAPI:
    app = FastAPI(
        title="Pilot-line digital twin", version="0.1.0",
        description="Live state, history, SPC, predictions, setpoint recommendations and genealogy of a lithium-ion "
                    "pilot line. Authenticate with `Authorization: Bearer <token>` (create one with "
                    "`python -m twin token create --role viewer|operator|engineer --name N`).",
    )
    app.state.ctx = ctx
    if ctx.settings.http.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=ctx.settings.http.cors_origins,
                           allow_methods=["GET", "POST", "PUT"], allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(BodyLimit, max_bytes=ctx.settings.http.max_body_bytes)

    @app.exception_handler(ControlError)
    async def _control_error(request: Request, exc: ControlError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"detail": "invalid request: " + "; ".join(problems)}, status_code=422)

    @app.middleware("http")
    async def _count_errors(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        if 400 <= response.status_code < 500:
            ctx.metrics.http_errors.labels(str(response.status_code)).inc()
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"])
    async def ready() -> JSONResponse:
        """Readiness: every dependency the service was configured with is connected."""
        parts = ctx.ready() if ctx.ready is not None else {}
        ok = all(parts.values())
        return JSONResponse({"ready": ok, "parts": parts}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"], include_in_schema=True)
    async def metrics() -> Response:
        """Prometheus text format."""
        return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    if ctx.genealogy is not None:
        # The ontology's own routes (cell genealogy with content negotiation, downstream track of a roll stretch,
        # read-only SPARQL, export, status, quarantine) under the twin's auth. Mounted before the twin's routes so
        # that fixed paths such as /api/genealogy/export win over /api/genealogy/{entity_id}.
        from ontology.api import make_router

        g = ctx.settings.genealogy
        app.include_router(make_router(ctx.genealogy, dependencies=[Depends(viewer)], user_of=query_user,
                                       sparql_timeout_s=g.sparql_timeout_s, sparql_max_results=g.sparql_max_results,
                                       sparql_max_concurrent=g.sparql_max_concurrent,
                                       sparql_max_per_user=g.sparql_max_per_user,
                                       export_max_triples=g.export_max_triples,
                                       export_cursor_ttl_s=g.export_cursor_ttl_s, export_max_open=g.export_max_open,
                                       sparql_snapshot_max_age_s=g.sparql_snapshot_max_age_s,
                                       sparql_max_memory_mb=g.sparql_max_memory_mb),
                           tags=["genealogy"])
    app.include_router(router)
    app.include_router(calibration_router)
    app.include_router(quality_router)  # cell record, dataset, lab, root cause (docs/quality.md)
    if ctx.settings.dashboard.enabled and DASHBOARD_DIR.is_dir():
        app.mount("/", StaticFiles(directory=DASHBOARD_DIR, html=True), name="dashboard")
    return app
