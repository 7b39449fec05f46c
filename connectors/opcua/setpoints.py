"""Write one setpoint over OPC UA: check EURange and the line's grant first, write once, report the server's answer.

Never retried: a write whose answer is lost may or may not have been applied, and a second write of a setpoint is
a second action on a running line. Such a case is reported as ``status="Unknown"`` with the advice to read the node
back; the caller decides. Refusals made here before anything is sent (``written=False``) say why.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from connectors.opcua.browse import resolve_node_id


@dataclass(frozen=True)
class SetpointResult:
    ok: bool
    status: str  # OPC UA status name ("Good", "BadOutOfRange", ...), "NotSent" or "Unknown"
    message: str
    node: str
    value: float
    written: bool  # whether a WriteRequest went to the server
    code: int | None = None


async def resolve(client: Client, ns: int, node: str) -> Node:
    """A NodeId (``ns=2;i=5``, ``nsu=urn:x;i=5``) or a browse path below Objects (``Machines/Coater/Control/X``, a
    name may carry its namespace index ``3:Machines``), resolved on the server (never guessed)."""
    return client.get_node(await resolve_node_id(client, node, ns))


async def read_grant(client: Client, ns: int, grant_path: str, timeout_s: float = 5.0) -> bool:
    grant = await asyncio.wait_for(resolve(client, ns, grant_path), timeout_s)
    return bool(await asyncio.wait_for(grant.read_value(), timeout_s))


async def write_setpoint(client: Client, ns: int, node: str, value: float, *, grant_path: str | None,
                         timeout_s: float = 5.0) -> SetpointResult:
    """``grant_path`` None: the server has no grant node (the twin's control mode gates writes alone)."""
    def refused(status: str, message: str) -> SetpointResult:
        return SetpointResult(False, status, message, node, value, written=False)

    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return refused("NotSent", f"value {value!r} is not a finite number")
    try:
        target = await asyncio.wait_for(resolve(client, ns, node), timeout_s)
        props: dict[str, Node] = {(await p.read_browse_name()).Name: p
                                  for p in await asyncio.wait_for(target.get_properties(), timeout_s)}
        if "EURange" not in props:
            return refused("NotSent", f"{node} has no EURange: not a setpoint this writer will touch")
        rng = await asyncio.wait_for(props["EURange"].read_value(), timeout_s)
        lo, hi = float(rng.Low), float(rng.High)
        if not lo <= value <= hi:
            return refused("NotSent", f"{value} is outside the node's EURange [{lo}, {hi}]; nothing was written")
        access = await asyncio.wait_for(target.read_attribute(AttributeIds.UserAccessLevel), timeout_s)
        level = int(access.Value.Value or 0)  # type: ignore[union-attr]  # good status (checked): a Variant
        if not level & ua.AccessLevel.CurrentWrite.mask:
            return refused("NotSent", f"{node} is not writable for this session (UserAccessLevel {level}); "
                                      "log in as an operator (opcua.auth_method: username)")
        if grant_path and not await read_grant(client, ns, grant_path, timeout_s):
            return refused("NotSent", f"the line has not granted remote setpoints ({grant_path} is false)")
    except UaStatusCodeError as exc:
        return refused("NotSent", f"cannot check {node} before writing: {exc}")
    except (TimeoutError, OSError, ConnectionError, UaError) as exc:
        return refused("NotSent", f"cannot check {node} before writing ({type(exc).__name__}: {exc})")
    dv = ua.DataValue(ua.Variant(float(value), ua.VariantType.Double))
    try:
        results = await asyncio.wait_for(client.uaclient.write_attributes([target.nodeid], [dv]), timeout_s)
    except (TimeoutError, OSError, ConnectionError, UaError) as exc:
        return SetpointResult(False, "Unknown", f"no answer to the write ({type(exc).__name__}: {exc}); it may or may "
                              "not have been applied and was NOT retried: read the setpoint back", node, value,
                              written=True)
    sc = results[0]
    name = sc.name if hasattr(sc, "name") else str(sc)
    if sc.is_good():
        return SetpointResult(True, "Good", f"{node} = {value}", node, value, written=True, code=int(sc.value))
    return SetpointResult(False, name, f"the server refused the write: {name} ({sc.doc if hasattr(sc, 'doc') else ''})",
                          node, value, written=True, code=int(sc.value))
