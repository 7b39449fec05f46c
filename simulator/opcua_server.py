"""The OPC UA face of the line (asyncua): address space from ``spec``, security, users, guarded setpoint writes.

Writes are checked before asyncua's own write service sees them:

- viewer (and anonymous) sessions: ``BadUserAccessDenied`` for every write;
- operator writing a ``...Setpoint`` while ``RemoteSetpointsEnabled`` is false: ``BadNotWritable``;
- value not finite or outside the node's EURange: ``BadOutOfRange``; wrong data type: ``BadTypeMismatch``;
- read-only nodes: asyncua's ``BadUserAccessDenied`` (their AccessLevel has no CurrentWrite).

A refused write changes nothing. An accepted one is applied to the plant at once and published with the simulated
time as SourceTimestamp.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from cryptography.x509.oid import ExtendedKeyUsageOID

from .faults import WAITING_STATUS
from .history import make_storage
from .plant import Plant
from .spec import NAMESPACE_URI, ROOT, UNECE_NAMESPACE, UNITS, NodeSpec, unece_unit_id
from .users import LineUserManager

log = logging.getLogger("simulator.opcua")


def _nid(identifier: int | str, ns: int = 0) -> ua.NodeId:
    """asyncua annotates NodeId's fields with its wire types (Int32 / String, Int16); at run time it takes the plain
    ``int`` and ``str`` every example passes, so the one cast is here rather than at each call site."""
    return ua.NodeId(identifier, ns)  # type: ignore[arg-type]


POLICIES = {
    "none": ua.SecurityPolicyType.NoSecurity,
    "sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "sign-encrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
}
APPLICATION_URI = "urn:pilotline:simulator:server"
INTERNAL_USER = User(role=UserRole.Admin)  # asyncua's default for in-process writes
VARIANT = {"Double": ua.VariantType.Double, "String": ua.VariantType.String, "Boolean": ua.VariantType.Boolean,
           "UInt32": ua.VariantType.UInt32}
DATATYPE = {"Double": ua.ObjectIds.Double, "String": ua.ObjectIds.String, "Boolean": ua.ObjectIds.Boolean,
            "UInt32": ua.ObjectIds.UInt32}
INITIAL = {"Double": 0.0, "String": "", "Boolean": False, "UInt32": 0}
TRACE_EVENT_FIELDS: list[tuple[str, ua.VariantType]] = [
    ("Seq", ua.VariantType.UInt32), ("Line", ua.VariantType.String), ("Kind", ua.VariantType.String),
    ("MaterialId", ua.VariantType.String), ("MaterialType", ua.VariantType.String),
    ("Step", ua.VariantType.String), ("Station", ua.VariantType.String), ("Equipment", ua.VariantType.String),
    ("Inputs", ua.VariantType.String), ("StartTime", ua.VariantType.String), ("EndTime", ua.VariantType.String),
    ("Payload", ua.VariantType.String),
]


_STATUS: dict[str, ua.StatusCode] = {}


def status(name: str) -> ua.StatusCode:
    code = _STATUS.get(name)
    if code is None:
        code = _STATUS[name] = ua.StatusCode(getattr(ua.StatusCodes, name))
    return code


def _share_immutable_datavalues() -> None:
    """asyncua deep-copies every DataValue for every monitored item (``MonitoredItemValues.set_current_datavalue``)
    in case the caller mutates it later; that copy is two thirds of the server's CPU per notification. Every value
    in this address space is a scalar in a fresh frozen DataValue that nobody mutates, so sharing it is safe and
    doubles the notification rate (tests/bench/bench_simulator.py)."""
    from asyncua.server import monitored_item_service as mis

    def set_current_datavalue(self: Any, cur_val: ua.DataValue) -> None:
        self.old_dvalue = self.current_dvalue
        self.current_dvalue = cur_val

    mis.MonitoredItemValues.set_current_datavalue = set_current_datavalue  # type: ignore[method-assign]


_share_immutable_datavalues()


async def ensure_certificate(data_dir: Path, host: str) -> tuple[Path, Path]:
    """Server certificate + key in ``data_dir/pki``: created on first start, reused (renewed only when invalid)."""
    pki = data_dir / "pki"
    pki.mkdir(parents=True, exist_ok=True)
    cert, key = pki / "server_cert.der", pki / "server_key.pem"
    await setup_self_signed_certificate(
        key, cert, APPLICATION_URI, host, [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        {"countryName": "DE", "organizationName": "pilotline-twin", "commonName": "pilotline simulator"},
    )
    return cert, key


@dataclass(frozen=True)
class HistoryOptions:
    """``--historize``: the server offers HistoryRead on its analog and String nodes (simulator/history.py)."""

    path: Path | None = None  # SQLite file (survives a server restart); None = in memory
    max_values: int = 20_000  # per node, the oldest go first


def _both_nan(a: Any, b: Any) -> bool:
    return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)


class LineServer:
    """Builds, starts, stops (and restarts) the asyncua server; publishes plant values into it."""

    def __init__(self, plant: Plant, host: str, port: int, data_dir: Path, security: list[str],
                 users: LineUserManager, on_write: Callable[[str, Any], None] | None = None,
                 history: HistoryOptions | None = None) -> None:
        self.plant = plant
        self.history = history
        self.host, self.port, self.data_dir = host, port, data_dir
        self.security = security
        self.users = users
        self.on_write = on_write
        self.server: Server | None = None
        self.ns = 2
        self.node_ids: dict[str, ua.NodeId] = {}
        self.spec_by_nodeid: dict[ua.NodeId, NodeSpec] = {}
        self.cache: dict[str, tuple[Any, str]] = {}
        self.event_gen: Any = None

    @property
    def up(self) -> bool:
        return self.server is not None

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}"

    def nodeid_string(self, path: str) -> str:
        return f"ns={self.ns};s={ROOT}.{path}"

    async def start(self) -> None:
        server = Server(user_manager=self.users)  # type: ignore[arg-type]
        if self.history is not None:
            server.iserver.history_manager.set_storage(make_storage(self.history.path, self.history.max_values))
        await server.init()
        server.set_endpoint(f"opc.tcp://{self.host}:{self.port}/")
        server.set_server_name("Pilot-line simulator")
        await server.set_application_uri(APPLICATION_URI)
        server.set_security_policy([POLICIES[s] for s in self.security])
        tokens: list[type] = [ua.UserNameIdentityToken]
        if self.users.allow_anonymous:
            tokens.insert(0, ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        if any(s != "none" for s in self.security):
            cert, key = await ensure_certificate(self.data_dir, self.host)
            await server.load_certificate(str(cert))
            await server.load_private_key(str(key))
        self.ns = await server.register_namespace(NAMESPACE_URI)
        await self._build(server)
        self._guard_writes(server)
        await server.start()
        if self.history is not None:
            await self._historize(server)
        self.server = server
        self.cache.clear()
        log.info("OPC UA server listening on %s (security %s)", self.endpoint, ",".join(self.security))

    async def _historize(self, server: Server) -> None:
        """HistoryRead for the analog (scalar) and String nodes: the measurements and every ID variable.

        What ``Server.historize_node_data_change`` does (Historizing and the HistoryRead access bits set, the node
        registered with the history storage), except how values reach the storage: asyncua subscribes to the nodes
        internally and stores each value from a task of its own (two tasks and a publish cycle per value: the
        simulator then published 20 000 instead of 93 000 values/s flat out); here the address space's data-change
        callback stores each written value directly (tests/bench/bench_opcua_backfill.py has both figures)."""
        assert self.history is not None
        storage = server.iserver.history_manager.storage
        aspace = server.iserver.aspace
        for spec in self.plant.specs:
            if not ((spec.analog and not spec.array_length) or spec.kind == "String"):
                continue
            nid = self.node_ids[spec.path]
            node = server.get_node(nid)
            await node.write_attribute(ua.AttributeIds.Historizing, ua.DataValue(ua.Variant(True)))
            await node.set_attr_bit(ua.AttributeIds.AccessLevel, ua.AccessLevel.HistoryRead)
            await node.set_attr_bit(ua.AttributeIds.UserAccessLevel, ua.AccessLevel.HistoryRead)
            await storage.new_historized_node(nid, None, self.history.max_values)
            await storage.save_node_value(nid, aspace.read_attribute_value(nid, ua.AttributeIds.Value))  # as now

            async def save(_handle: int, dv: ua.DataValue, nid: ua.NodeId = nid) -> None:
                await storage.save_node_value(nid, dv)

            aspace.add_datachange_callback(nid, ua.AttributeIds.Value, save)

    async def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            await server.stop()

    # -- address space ----------------------------------------------------------------------------------------------
    async def _build(self, server: Server) -> None:
        ns = self.ns
        session = server.iserver.isession
        items: list[ua.AddNodesItem] = []
        objects: set[str] = set()

        def obj(path: str, parent: ua.NodeId) -> None:
            if path in objects:
                return
            objects.add(path)
            item = ua.AddNodesItem()
            item.RequestedNewNodeId = _nid(path, ns)
            item.BrowseName = ua.QualifiedName(path.split(".")[-1], ns)
            item.NodeClass = ua.NodeClass.Object
            item.ParentNodeId = parent
            item.ReferenceTypeId = _nid(ua.ObjectIds.Organizes if path == ROOT else ua.ObjectIds.HasComponent)
            item.TypeDefinition = _nid(ua.ObjectIds.FolderType if path == ROOT else ua.ObjectIds.BaseObjectType)
            attrs = ua.ObjectAttributes()
            attrs.DisplayName = ua.LocalizedText(path.split(".")[-1])
            attrs.Description = ua.LocalizedText(path.replace(".", "/"))
            attrs.EventNotifier = 1 if path == ROOT else 0
            item.NodeAttributes = attrs
            items.append(item)

        obj(ROOT, _nid(ua.ObjectIds.ObjectsFolder))
        for spec in self.plant.specs:
            parts = spec.node_id.split(".")
            for i in range(2, len(parts)):
                obj(".".join(parts[:i]), _nid(".".join(parts[: i - 1]), ns))
            nid = _nid(spec.node_id, ns)
            self.node_ids[spec.path] = nid
            self.spec_by_nodeid[nid] = spec
            items.append(self._variable(spec, nid, _nid(".".join(parts[:-1]), ns)))
            if spec.analog:
                items += self._analog_properties(spec, nid)
        for res in await session.add_nodes(items):
            res.StatusCode.check()
        # initial state: measurements wait for their first sample, commands show their current value
        for spec in self.plant.specs:
            if spec.analog and not spec.writable:
                await server.write_attribute_value(self.node_ids[spec.path], ua.DataValue(
                    ua.Variant(None, ua.VariantType.Null), StatusCode=status(WAITING_STATUS)))
        base = server.get_node(_nid(ua.ObjectIds.BaseEventType))
        etype = await base.add_object_type(_nid("TraceEventType", ns), ua.QualifiedName("TraceEventType", ns))
        for name, vtype in TRACE_EVENT_FIELDS:
            await etype.add_property(_nid(f"TraceEventType.{name}", ns), ua.QualifiedName(name, ns),
                                     ua.get_default_value(vtype), varianttype=vtype)
        self.event_gen = await server.get_event_generator(etype, _nid(ROOT, ns))

    def _variable(self, spec: NodeSpec, nid: ua.NodeId, parent: ua.NodeId) -> ua.AddNodesItem:
        item = ua.AddNodesItem()
        item.RequestedNewNodeId = nid
        item.BrowseName = ua.QualifiedName(spec.path.split(".")[-1], self.ns)
        item.NodeClass = ua.NodeClass.Variable
        item.ParentNodeId = parent
        item.ReferenceTypeId = _nid(ua.ObjectIds.HasComponent)
        item.TypeDefinition = _nid(ua.ObjectIds.AnalogItemType if spec.analog else
                                        ua.ObjectIds.BaseDataVariableType)
        attrs = ua.VariableAttributes()
        attrs.DisplayName = ua.LocalizedText(spec.path.split(".")[-1])
        attrs.Description = ua.LocalizedText(spec.description)
        attrs.DataType = _nid(DATATYPE[spec.kind])
        if spec.array_length:
            attrs.Value = ua.Variant([0.0] * spec.array_length, ua.VariantType.Double)
            attrs.ValueRank = ua.ValueRank.OneDimension
            attrs.ArrayDimensions = [spec.array_length]
        else:
            attrs.Value = ua.Variant(INITIAL[spec.kind], VARIANT[spec.kind])
            attrs.ValueRank = ua.ValueRank.Scalar
            attrs.ArrayDimensions = None  # type: ignore[assignment]  # a scalar has none; asyncua's hint says list
        access = ua.AccessLevel.CurrentRead.mask | (ua.AccessLevel.CurrentWrite.mask if spec.writable else 0)
        attrs.AccessLevel = access
        attrs.UserAccessLevel = access
        attrs.WriteMask = 0
        attrs.UserWriteMask = 0
        attrs.Historizing = False
        item.NodeAttributes = attrs
        return item

    def _analog_properties(self, spec: NodeSpec, nid: ua.NodeId) -> list[ua.AddNodesItem]:
        assert spec.unit is not None and spec.eu_range is not None
        symbol, name = UNITS[spec.unit]
        eu = ua.EUInformation(NamespaceUri=UNECE_NAMESPACE, UnitId=unece_unit_id(spec.unit),
                              DisplayName=ua.LocalizedText(symbol), Description=ua.LocalizedText(name))
        rng = ua.Range(Low=float(spec.eu_range[0]), High=float(spec.eu_range[1]))
        out = []
        for bname, value, dtype in (("EngineeringUnits", eu, ua.ObjectIds.EUInformation),
                                    ("EURange", rng, ua.ObjectIds.Range)):
            item = ua.AddNodesItem()
            item.RequestedNewNodeId = _nid(f"{spec.node_id}.{bname}", self.ns)
            item.BrowseName = ua.QualifiedName(bname, 0)
            item.NodeClass = ua.NodeClass.Variable
            item.ParentNodeId = nid
            item.ReferenceTypeId = _nid(ua.ObjectIds.HasProperty)
            item.TypeDefinition = _nid(ua.ObjectIds.PropertyType)
            attrs = ua.VariableAttributes()
            attrs.DisplayName = ua.LocalizedText(bname)
            attrs.DataType = _nid(dtype)
            attrs.Value = ua.Variant(value, ua.VariantType.ExtensionObject)
            attrs.ValueRank = ua.ValueRank.Scalar
            attrs.AccessLevel = ua.AccessLevel.CurrentRead.mask
            attrs.UserAccessLevel = ua.AccessLevel.CurrentRead.mask
            item.NodeAttributes = attrs
            out.append(item)
        return out

    # -- writes -----------------------------------------------------------------------------------------------------
    def _guard_writes(self, server: Server) -> None:
        service = server.iserver.attribute_service
        original = service.write

        async def guarded(params: ua.WriteParameters, user: User = INTERNAL_USER) -> list[ua.StatusCode]:
            results: list[ua.StatusCode] = []
            for wv in params.NodesToWrite:
                spec = self.spec_by_nodeid.get(wv.NodeId)
                if user.role == UserRole.Admin or spec is None or not spec.writable:
                    results += await original(ua.WriteParameters(NodesToWrite=[wv]), user)
                    continue
                results.append(await self._client_write(server, spec, wv, user))
            return results

        service.write = guarded  # type: ignore[method-assign]

    async def _client_write(self, server: Server, spec: NodeSpec, wv: ua.WriteValue, user: User) -> ua.StatusCode:
        if wv.AttributeId != ua.AttributeIds.Value:
            return status("BadNotWritable")
        if self.users.role(user) != "operator":
            return status("BadUserAccessDenied")
        if spec.setpoint_of is not None and not self.plant.grant:
            return status("BadNotWritable")
        variant = wv.Value.Value if wv.Value is not None else None
        value = variant.Value if variant is not None else None
        if spec.kind == "Boolean":
            if not isinstance(value, bool):
                return status("BadTypeMismatch")
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return status("BadTypeMismatch")
            value = float(value)
            lo, hi = spec.eu_range or (-math.inf, math.inf)
            if not math.isfinite(value) or not lo <= value <= hi:
                return status("BadOutOfRange")
        if spec.path == "RemoteSetpointsEnabled":
            self.plant.grant = bool(value)
        else:
            self.plant.set_setpoint(spec.path, float(value))
        log.info("write %s = %r by %s", spec.path, value, user.name)
        await self._write(server, spec.path, value, "Good", self.plant.now())
        if self.on_write is not None:
            self.on_write(spec.path, value)
        return ua.StatusCode()

    # -- publishing -------------------------------------------------------------------------------------------------
    async def _write(self, server: Server, path: str, value: Any, status_name: str, t: datetime,
                     wall: datetime | None = None) -> None:
        spec = self.plant.by_path[path]
        bad = status_name.startswith("Bad")
        if bad or value is None:
            variant = ua.Variant(None, ua.VariantType.Null)
        else:
            variant = ua.Variant(value, VARIANT[spec.kind])
        dv = ua.DataValue(variant, StatusCode=status(status_name), SourceTimestamp=t,  # type: ignore[arg-type]
                          ServerTimestamp=wall or datetime.now(UTC))  # type: ignore[arg-type]
        await server.iserver.aspace.write_attribute_value(self.node_ids[path], ua.AttributeIds.Value, dv)
        self.cache[path] = (value, status_name)

    async def publish(self, values: dict[str, tuple[Any, str]], t: datetime) -> list[tuple[str, Any, str]]:
        """Write what changed; returns [(nodeid string, value, status)] of what was published, for the record."""
        server = self.server
        if server is None:
            return []
        wall = datetime.now(UTC)
        published: list[tuple[str, Any, str]] = []
        cache = self.cache
        for path, (value, st) in values.items():
            old = cache.get(path)
            if old is not None and old[1] == st and (old[0] == value or _both_nan(old[0], value)):
                continue
            await self._write(server, path, value, st, t, wall)
            published.append((self.nodeid_string(path), value, st))
        return published

    async def trace_event(self, event: dict[str, Any], t: datetime) -> None:
        if self.server is None or self.event_gen is None:
            return
        ev = self.event_gen.event
        ev.Seq = ua.Variant(event["seq"], ua.VariantType.UInt32)
        ev.Line, ev.Kind, ev.MaterialId = event["line"], event["kind"], event["id"]
        ev.MaterialType, ev.Step, ev.Station = event["type"], event["step"], event["station"]
        ev.Equipment, ev.StartTime, ev.EndTime = event["equipment"], event["start"], event["end"]
        ev.Inputs = json.dumps(event["inputs"], separators=(",", ":"))
        ev.Payload = json.dumps(event, separators=(",", ":"))
        ev.Severity = 100
        await self.event_gen.trigger(t, f"{event['kind']} {event['type']} {event['id']}")
