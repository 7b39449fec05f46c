"""The FastAPI application: health, readiness, /metrics, the /api routes, genealogy, and the dashboard's static files.

CORS is closed unless ``service.http.cors_origins`` lists origins (the dashboard is served from the same origin).
Every 4xx answer carries ``{"detail": "<what to do>"}`` and is counted in ``twin_http_client_errors``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from twin.api.deps import viewer
from twin.api.routes import router
from twin.context import TwinContext
from twin.control import ControlError

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboard"


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
        app.include_router(make_router(ctx.genealogy, dependencies=[Depends(viewer)],
                                       sparql_timeout_s=g.sparql_timeout_s, sparql_max_results=g.sparql_max_results),
                           tags=["genealogy"])
    app.include_router(router)
    if ctx.settings.dashboard.enabled and DASHBOARD_DIR.is_dir():
        app.mount("/", StaticFiles(directory=DASHBOARD_DIR, html=True), name="dashboard")
    return app
