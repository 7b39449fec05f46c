"""Authentication dependencies: a bearer token names a principal; each route states the least role it needs."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from connectors.records import iso_to_ns
from twin.auth import Principal, Role
from twin.context import TwinContext

bearer = HTTPBearer(auto_error=False, description="a token from `python -m twin token create --role R --name N`")
ANONYMOUS = Principal("anonymous", Role.viewer)


def ctx_of(request: Request) -> TwinContext:
    return request.app.state.ctx


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    async def dep(request: Request, cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
        ctx = ctx_of(request)
        if cred is None:
            if role == Role.viewer and not ctx.settings.auth.read_requires_token:
                return ANONYMOUS
            raise HTTPException(401, "missing bearer token: send 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})
        principal = ctx.tokens.verify(cred.credentials)
        if principal is None:
            raise HTTPException(401, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
        if not principal.allows(role):
            raise HTTPException(403, f"this needs the {role.name} role; {principal.name} is {principal.role.name}")
        return principal

    dep.__name__ = f"require_{role.name}"
    return dep


viewer = require(Role.viewer)
operator = require(Role.operator)
engineer = require(Role.engineer)


def clean_json(obj: Any) -> Any:
    """JSON has no NaN / inf: they become null (and the API never emits invalid JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    return obj


def time_ns_param(text: str | None, default_ns: int, name: str) -> int:
    """A query parameter's time: integer ns, or RFC 3339; empty = ``default_ns``; anything else is a 422."""
    if text is None or text == "":
        return default_ns
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        return iso_to_ns(text)
    except ValueError as exc:
        raise HTTPException(422, f"{name}: {exc}") from None
