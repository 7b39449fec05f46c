"""/api/calibration: the online calibration's estimates, their versions, and the engineer's accept / rollback.

Reading needs the viewer role; accepting a proposal or rolling back to an earlier version changes what every
prediction and recommendation is computed with, so it needs the engineer role and is audited (action
``calibration``, who, why, version before and after).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from twin.api.deps import clean_json as _clean
from twin.api.deps import ctx_of, engineer, viewer
from twin.auth import Principal
from twin.context import TwinContext

router = APIRouter(prefix="/api/calibration", tags=["calibration"])
Ctx = Annotated[TwinContext, Depends(ctx_of)]
Viewer = Annotated[Principal, Depends(viewer)]
Engineer = Annotated[Principal, Depends(engineer)]


class AcceptBody(BaseModel):
    note: str = Field("", max_length=500, description="why (goes into the audit trail)")
    product: str | None = Field(None, description="the product's calibration (default: the running product)")


class RollbackBody(AcceptBody):
    version: int = Field(ge=0, description="the version whose values become the accepted ones (0 = literature)")


def _cal(ctx: TwinContext) -> Any:
    if ctx.calibration is None or not ctx.calibration.settings.enabled:
        raise HTTPException(503, "online calibration is off: set service.calibration.enabled: true")
    return ctx.calibration


@router.get("")
async def get_calibration(ctx: Ctx, _: Viewer) -> dict[str, Any]:
    """Per line, product and electrode: the accepted version, the filter's candidate with its correlations, the
    residual test's state and the last roll's residuals."""
    return _clean(_cal(ctx).view())


@router.get("/history")
async def get_history(ctx: Ctx, _: Viewer, electrode: str | None = Query(None, pattern="^(cathode|anode)$"),
                      product: str | None = None) -> dict[str, Any]:
    """Every version (accepted or rolled back to), oldest first."""
    return {"versions": _clean(_cal(ctx).history(electrode, product))}


@router.post("/{electrode}/accept")
async def accept(electrode: str, body: AcceptBody, ctx: Ctx, who: Engineer) -> dict[str, Any]:
    try:
        v = _cal(ctx).accept(electrode, who.name, body.note, body.product)
    except KeyError as exc:
        raise HTTPException(404, str(exc.args[0])) from exc
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from exc
    return _clean(v.public())


@router.post("/{electrode}/rollback")
async def rollback(electrode: str, body: RollbackBody, ctx: Ctx, who: Engineer) -> dict[str, Any]:
    try:
        v = _cal(ctx).rollback(electrode, body.version, who.name, body.note, body.product)
    except KeyError as exc:
        raise HTTPException(404, str(exc.args[0])) from exc
    return _clean(v.public())
