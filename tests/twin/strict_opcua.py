"""An OPC UA server that enforces the operation limits it states, as industrial servers do (asyncua's own states
10 000 nodes per request, enforces nothing and has no BrowseNext): ``python -m tests.twin.strict_opcua --port N``.

- MaxNodesPerBrowse 5, MaxNodesPerRead 8, MaxNodesPerTranslateBrowsePathsToNodeIds 6 are stated in
  Server/ServerCapabilities/OperationLimits; a request with more is answered ``BadTooManyOperations``;
- at most ``REFERENCES_PER_NODE`` (10) references per node and Browse / BrowseNext answer, the rest behind a
  continuation point (BrowseNext, Part 4 5.8.3);
- at most ``CONTINUATION_POINTS`` (2) continuation points per session, *not* stated (MaxBrowseContinuationPoints 0,
  as many servers leave it): one more node to continue is answered ``BadNoContinuationPoints``.

Every request's size and every refusal are appended to ``DATA_DIR/requests.jsonl`` (what the tests check). The
address space: ``Plant/Machines/<machine>/Monitoring/...`` in ``urn:strict:line`` with numeric NodeIds, numeric
variables with EngineeringUnits and EURange (more of them per folder than one answer carries), a roll ID, a grant.
Prints ``{"ready": true}`` once it listens; runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any, cast

from asyncua import Server, ua
from asyncua.common.node import Node
from asyncua.server.internal_session import InternalSession
from asyncua.server.uaprocessor import UaProcessor
from asyncua.ua.ua_binary import struct_from_binary

from connectors.opcua.asyncua_adapter import node_id

NAMESPACE = "urn:strict:line"
LIMITS = {"MaxNodesPerBrowse": 5, "MaxNodesPerRead": 8, "MaxNodesPerTranslateBrowsePathsToNodeIds": 6}
REFERENCES_PER_NODE = 10
CONTINUATION_POINTS = 2
MACHINES = {"SlotDieCoater_01": 24, "Dryer_01": 14, "Calender_02": 12, "Slitter_03": 11}  # numeric variables each

_log_path: Path | None = None


def _record(**entry: Any) -> None:
    assert _log_path is not None
    with _log_path.open("a") as fh:
        fh.write(json.dumps(entry) + "\n")


def _limit(service: str, n: int, limit: int) -> None:
    _record(service=service, nodes=n, refused=n > limit)
    if n > limit:
        raise ua.uaerrors.BadTooManyOperations()


def _cps(session: InternalSession) -> dict[bytes, list[ua.ReferenceDescription]]:
    held: dict[bytes, list[ua.ReferenceDescription]] = session.__dict__.setdefault("_strict_cps", {})
    return held


def _answer(session: InternalSession, refs: list[ua.ReferenceDescription], requested: int,
            cp: bytes | None = None) -> ua.BrowseResult:
    res = ua.BrowseResult()
    per = min(requested or REFERENCES_PER_NODE, REFERENCES_PER_NODE)
    held = _cps(session)
    if len(refs) <= per:
        res.References = refs
        return res
    if cp is None:
        if len(held) >= CONTINUATION_POINTS:
            res.StatusCode = ua.StatusCode(cast(ua.UInt32, ua.StatusCodes.BadNoContinuationPoints))
            _record(service="cp", refused=True)
            return res
        cp = os.urandom(8)
    res.References, held[cp] = refs[:per], refs[per:]
    res.ContinuationPoint = cp
    return res


async def _browse(self: InternalSession, params: ua.BrowseParameters) -> list[ua.BrowseResult]:
    _limit("browse", len(params.NodesToBrowse), LIMITS["MaxNodesPerBrowse"])
    full = self.iserver.view_service.browse(params)
    return [r if not r.StatusCode.is_good() else _answer(self, list(r.References), params.RequestedMaxReferencesPerNode)
            for r in full]


async def _browse_next(self: InternalSession, params: ua.BrowseNextParameters) -> list[ua.BrowseResult]:
    _limit("browse_next", len(params.ContinuationPoints), LIMITS["MaxNodesPerBrowse"])
    held = _cps(self)
    out = []
    for cp in params.ContinuationPoints:
        refs = held.pop(cp, None)
        if refs is None:
            res = ua.BrowseResult()
            res.StatusCode = ua.StatusCode(cast(ua.UInt32, ua.StatusCodes.BadContinuationPointInvalid))
            out.append(res)
        elif params.ReleaseContinuationPoints:
            out.append(ua.BrowseResult())
        else:
            out.append(_answer(self, refs, REFERENCES_PER_NODE, cp))
    return out


_read = InternalSession.read
_translate = InternalSession.translate_browsepaths_to_nodeids
_process = UaProcessor._process_message


async def _read_limited(self: InternalSession, params: ua.ReadParameters) -> list[ua.DataValue]:
    _limit("read", len(params.NodesToRead), LIMITS["MaxNodesPerRead"])
    return await _read(self, params)


async def _translate_limited(self: InternalSession, paths: list[ua.BrowsePath]) -> list[ua.BrowsePathResult]:
    _limit("translate", len(paths), LIMITS["MaxNodesPerTranslateBrowsePathsToNodeIds"])
    return await _translate(self, paths)


async def _process_message(self: UaProcessor, typeid: ua.NodeId, requesthdr: Any, seqhdr: Any, body: Any) -> Any:
    """asyncua's processor has no BrowseNext: answer it here."""
    if typeid == node_id(ua.ObjectIds.BrowseNextRequest_Encoding_DefaultBinary) and self.session is not None:
        params = struct_from_binary(ua.BrowseNextParameters, body)
        response = ua.BrowseNextResponse()
        response.Parameters.Results = await self.session.browse_next(params)
        self.send_response(requesthdr.RequestHandle, seqhdr, response)
        return True
    return await _process(self, typeid, requesthdr, seqhdr, body)


InternalSession.browse = _browse  # type: ignore[method-assign]
InternalSession.browse_next = _browse_next  # type: ignore[method-assign, assignment]
InternalSession.read = _read_limited  # type: ignore[method-assign]
InternalSession.translate_browsepaths_to_nodeids = _translate_limited  # type: ignore[method-assign, assignment]
UaProcessor._process_message = _process_message  # type: ignore[method-assign]


async def _build(server: Server) -> None:
    ns = await server.register_namespace(NAMESPACE)
    number = iter(range(1000, 100_000))

    def nid() -> ua.NodeId:
        return node_id(next(number), ns)

    plant = await server.nodes.objects.add_folder(nid(), ua.QualifiedName("Plant", ns))
    machines = await plant.add_folder(nid(), ua.QualifiedName("Machines", ns))
    names = ["WebSpeed", "PumpFlowActual", "WetFilmThickness", "ArealWeight", "DryerZone1Temp", "LineLoad",
             "Thickness", "Density", "SlitWidth"]
    for machine, count in MACHINES.items():
        m = await machines.add_object(nid(), ua.QualifiedName(machine, ns))
        mon = await m.add_folder(nid(), ua.QualifiedName("Monitoring", ns))
        for i in range(count):
            name = names[i] if i < len(names) else f"Track{i:02d}"
            var = await _analog_item(server, mon.nodeid, nid(), ua.QualifiedName(name, ns))
            eu = ua.EUInformation()
            eu.NamespaceUri = "http://www.opcfoundation.org/UA/units/un/cefact"
            eu.UnitId = int.from_bytes(b"2X", "big")
            eu.DisplayName = ua.LocalizedText("m/min")
            await var.add_property(nid(), ua.QualifiedName("EngineeringUnits", 0), eu)
            rng = ua.Range()
            rng.Low, rng.High = 0.0, 10.0
            await var.add_property(nid(), ua.QualifiedName("EURange", 0), rng)
        await mon.add_variable(nid(), ua.QualifiedName("CurrentRollID", ns), "CR-1", ua.VariantType.String)
        ctl = await m.add_folder(nid(), ua.QualifiedName("Control", ns))
        grant = await ctl.add_variable(nid(), ua.QualifiedName("RemoteEnable", ns), False, ua.VariantType.Boolean)
        await grant.set_writable()


async def _analog_item(server: Server, parent: ua.NodeId, nid: ua.NodeId, name: ua.QualifiedName) -> Node:
    """A Double AnalogItemType variable (asyncua's add_variable makes BaseDataVariableType ones)."""
    item = ua.AddNodesItem()
    item.RequestedNewNodeId = nid
    item.BrowseName = name
    item.NodeClass = ua.NodeClass.Variable
    item.ParentNodeId = parent
    item.ReferenceTypeId = node_id(ua.ObjectIds.HasComponent)
    item.TypeDefinition = node_id(ua.ObjectIds.AnalogItemType)
    attrs = ua.VariableAttributes()
    attrs.DisplayName = ua.LocalizedText(name.Name)
    attrs.Value = ua.Variant(1.0, ua.VariantType.Double)
    attrs.DataType = node_id(ua.ObjectIds.Double)
    attrs.ValueRank = -1
    attrs.AccessLevel = attrs.UserAccessLevel = ua.AccessLevel.CurrentRead.mask
    item.NodeAttributes = attrs
    (res,) = await server.iserver.isession.add_nodes([item])
    res.StatusCode.check()
    return server.get_node(nid)


async def main(port: int, data_dir: Path) -> None:
    global _log_path
    data_dir.mkdir(parents=True, exist_ok=True)
    _log_path = data_dir / "requests.jsonl"
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    for name, value in LIMITS.items():
        node = server.get_node(node_id(getattr(ua.ObjectIds, f"Server_ServerCapabilities_OperationLimits_{name}")))
        await node.write_value(ua.Variant(value, ua.VariantType.UInt32))
    await _build(server)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        print(json.dumps({"ready": True, "port": port}), flush=True)
        await stop.wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m tests.twin.strict_opcua")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--data-dir", type=Path, required=True)
    a = p.parse_args()
    asyncio.run(main(a.port, a.data_dir))
