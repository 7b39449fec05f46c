"""One asyncua server per machine: the Machinery-like tree with numeric NodeIds, users, guarded setpoint writes,
optional historizing (HistoryRead raw from SQLite, so history survives a restart of the line)."""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from asyncua import Server, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.history_sql import HistorySQLite
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.lines.vendor_line.address_space import UNECE_NAMESPACE, UNITS, Item, MachineSpec, node_id, unece_unit_id

log = logging.getLogger("vendor_line.opcua")

VARIANT: Final = {"Double": ua.VariantType.Double, "String": ua.VariantType.String,
                  "Boolean": ua.VariantType.Boolean}
DATATYPE: Final = {"Double": ua.ObjectIds.Double, "String": ua.ObjectIds.String, "Boolean": ua.ObjectIds.Boolean}
INITIAL: Final[dict[str, Any]] = {"Double": 0.0, "String": "", "Boolean": False}
PROPERTY_NUMBERS_FROM: Final = 9000  # EngineeringUnits / EURange properties are numbered from here, in item order



_nid = node_id



# ---------------------------------------------------------------------------------------------------------------------
# Users
# ---------------------------------------------------------------------------------------------------------------------


class VendorUsers:
    """``operator`` writes setpoints under the grant; ``admin`` also sets the grant; anonymous reads (only when the
    server runs without security)."""

    ROLES: Final = ("operator", "admin")

    def __init__(self, passwords: dict[str, str], allow_anonymous: bool) -> None:
        self.passwords = passwords
        self.allow_anonymous = allow_anonymous

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if username is None:
            return User(role=UserRole.User, name="anonymous") if self.allow_anonymous else None
        expected = self.passwords.get(username)
        if expected is None or password is None or not hmac.compare_digest(expected.encode(), password.encode()):
            return None
        return User(role=UserRole.User, name=username)


def load_passwords(data_dir: Path, operator: str | None, admin: str | None) -> tuple[dict[str, str], Path]:
    """Passwords from the command line, else from ``data_dir/passwords.json`` (created 0600 with random ones)."""
    path = data_dir / "passwords.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.is_file() else {}
    out = {"operator": operator or stored.get("operator") or secrets.token_urlsafe(12),
           "admin": admin or stored.get("admin") or secrets.token_urlsafe(12)}
    if out != stored:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(out, fh)
    return out, path


# ---------------------------------------------------------------------------------------------------------------------
# One OPC UA server per machine
# ---------------------------------------------------------------------------------------------------------------------

INTERNAL_USER: Final = User(role=UserRole.Admin)  # asyncua's user for in-process writes
_UNSET: Final = object()


class MachineServer:
    """Builds the Machinery-like tree of one machine and guards client writes.

    Client writes to ``setpoint`` items need an operator or admin session and the grant; the value is clamped to
    the EURange (``GoodClamped``), refused when not finite (``BadOutOfRange``) or not a number
    (``BadTypeMismatch``); without the grant ``BadNotWritable``. The grant itself only an admin may write.
    """

    def __init__(self, spec: MachineSpec, host: str, port: int, data_dir: Path, users: VendorUsers, *,
                 security: bool, history: bool, position_node: bool,
                 grant: Callable[[], bool], on_write: Callable[[str, Any], Any]) -> None:
        self.spec = spec
        self.host, self.port, self.data_dir = host, port, data_dir
        self.users = users
        self.security, self.history = security, history
        self.items = tuple(i for i in spec.items if position_node or not i.path.endswith("RollPosition"))
        self.grant = grant
        self.on_write = on_write
        self.server: Server | None = None
        self.ns = 2
        self.by_path: dict[str, Item] = {i.path: i for i in self.items}
        self.by_nodeid: dict[ua.NodeId, Item] = {}
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.last: dict[str, Any] = {}

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}"

    async def start(self) -> None:
        server = Server(user_manager=self.users)  # type: ignore[arg-type]
        if self.history:  # before init(): init() opens the storage
            self.data_dir.mkdir(parents=True, exist_ok=True)
            server.iserver.history_manager.set_storage(
                HistorySQLite(str(self.data_dir / f"history-{self.spec.machine}.sqlite")))
        await server.init()
        server.set_endpoint(f"opc.tcp://{self.host}:{self.port}/")
        server.set_server_name(f"{self.spec.machine} (vendor-style test line)")
        await server.set_application_uri(self.spec.application_uri)
        if self.security:
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
            server.set_identity_tokens([ua.UserNameIdentityToken])
            pki = self.data_dir / "pki"
            pki.mkdir(parents=True, exist_ok=True)
            cert, key = pki / f"{self.spec.machine}_cert.der", pki / f"{self.spec.machine}_key.pem"
            await setup_self_signed_certificate(
                key, cert, self.spec.application_uri, self.host,
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
                {"countryName": "DE", "organizationName": "vendor-line", "commonName": self.spec.machine})
            await server.load_certificate(str(cert))
            await server.load_private_key(str(key))
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
            server.set_identity_tokens([ua.AnonymousIdentityToken, ua.UserNameIdentityToken])
        self.ns = await server.register_namespace(self.spec.namespace)
        await self._build(server)
        self._guard_writes(server)
        await server.start()
        if self.history:
            await server.historize_node_data_change(
                [server.get_node(_nid(i.number, self.ns)) for i in self.items if i.access != "grant"],
                period=None, count=0)  # type: ignore[arg-type]  # None: keep everything (asyncua accepts it)
        self.server = server

    async def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            await server.stop()

    # -- address space ----------------------------------------------------------------------------------------------
    def _object(self, number: int, name: str, parent: ua.NodeId, folder: bool) -> ua.AddNodesItem:
        item = ua.AddNodesItem()
        item.RequestedNewNodeId = _nid(number, self.ns)
        item.BrowseName = ua.QualifiedName(name, self.ns)
        item.NodeClass = ua.NodeClass.Object
        item.ParentNodeId = parent
        item.ReferenceTypeId = _nid(ua.ObjectIds.Organizes if folder else ua.ObjectIds.HasComponent, 0)
        item.TypeDefinition = _nid(ua.ObjectIds.FolderType if folder else ua.ObjectIds.BaseObjectType, 0)
        attrs = ua.ObjectAttributes()
        attrs.DisplayName = ua.LocalizedText(name)
        attrs.EventNotifier = 0
        item.NodeAttributes = attrs
        return item

    def _variable(self, number: int, name: str, parent: ua.NodeId, value: ua.Variant, datatype: int, *,
                  typedef: int, reference: int, access: int, description: str = "",
                  qualified_ns: int | None = None) -> ua.AddNodesItem:
        item = ua.AddNodesItem()
        item.RequestedNewNodeId = _nid(number, self.ns)
        item.BrowseName = ua.QualifiedName(name, self.ns if qualified_ns is None else qualified_ns)
        item.NodeClass = ua.NodeClass.Variable
        item.ParentNodeId = parent
        item.ReferenceTypeId = _nid(reference, 0)
        item.TypeDefinition = _nid(typedef, 0)
        attrs = ua.VariableAttributes()
        attrs.DisplayName = ua.LocalizedText(name)
        if description:
            attrs.Description = ua.LocalizedText(description)
        attrs.DataType = _nid(datatype, 0)
        attrs.Value = value
        attrs.ValueRank = ua.ValueRank.Scalar
        attrs.ArrayDimensions = None  # type: ignore[assignment]
        attrs.AccessLevel = access
        attrs.UserAccessLevel = access
        attrs.Historizing = bool(self.history and access & ua.AccessLevel.HistoryRead.mask)
        item.NodeAttributes = attrs
        return item

    async def _build(self, server: Server) -> None:
        spec, ns = self.spec, self.ns
        items: list[ua.AddNodesItem] = []
        machines = _nid(spec.machine_number - 1, ns)
        items.append(self._object(spec.machine_number - 1, "Machines", _nid(ua.ObjectIds.ObjectsFolder, 0), True))
        machine = _nid(spec.machine_number, ns)
        items.append(self._object(spec.machine_number, spec.machine, machines, False))
        for path, number in spec.objects.items():
            parent = machine if "/" not in path else _nid(spec.objects[path.rsplit("/", 1)[0]], ns)
            items.append(self._object(number, path.rsplit("/", 1)[-1], parent, False))
        read = ua.AccessLevel.CurrentRead.mask
        for number, name, value, vtype in spec.identification:
            items.append(self._variable(
                number, name, _nid(spec.objects["Identification"], ns), ua.Variant(value, vtype),
                {ua.VariantType.LocalizedText: ua.ObjectIds.LocalizedText, ua.VariantType.String: ua.ObjectIds.String,
                 ua.VariantType.UInt16: ua.ObjectIds.UInt16}[vtype],
                typedef=ua.ObjectIds.PropertyType, reference=ua.ObjectIds.HasProperty, access=read))
        prop_number = PROPERTY_NUMBERS_FROM
        for it in self.items:
            parent_path = it.path.rsplit("/", 1)[0]
            nid = _nid(it.number, ns)
            self.by_nodeid[nid] = it
            access = read | (ua.AccessLevel.CurrentWrite.mask if it.access else 0)
            if self.history and not it.access == "grant":
                access |= ua.AccessLevel.HistoryRead.mask
            items.append(self._variable(
                it.number, it.path.rsplit("/", 1)[-1], _nid(spec.objects[parent_path], ns),
                ua.Variant(INITIAL[it.kind], VARIANT[it.kind]), DATATYPE[it.kind],
                typedef=ua.ObjectIds.AnalogItemType if it.unit else ua.ObjectIds.BaseDataVariableType,
                reference=ua.ObjectIds.HasComponent, access=access, description=it.description))
            if it.unit is not None and it.eu_range is not None:
                symbol, long_name = UNITS[it.unit]
                eu = ua.EUInformation(NamespaceUri=UNECE_NAMESPACE, UnitId=unece_unit_id(it.unit),
                                      DisplayName=ua.LocalizedText(symbol), Description=ua.LocalizedText(long_name))
                rng = ua.Range(Low=float(it.eu_range[0]), High=float(it.eu_range[1]))
                for bname, value, dtype in (("EngineeringUnits", eu, ua.ObjectIds.EUInformation),
                                            ("EURange", rng, ua.ObjectIds.Range)):
                    items.append(self._variable(
                        prop_number, bname, nid, ua.Variant(value, ua.VariantType.ExtensionObject), dtype,
                        typedef=ua.ObjectIds.PropertyType, reference=ua.ObjectIds.HasProperty, access=read,
                        qualified_ns=0))
                    prop_number += 1
        for number, item_path, name, value, unit in spec.properties:
            if item_path in self.by_path:
                items.append(self._variable(
                    number, name, _nid(self.by_path[item_path].number, ns), ua.Variant(value, ua.VariantType.Double),
                    ua.ObjectIds.Double, typedef=ua.ObjectIds.PropertyType, reference=ua.ObjectIds.HasProperty,
                    access=read, description=f"{value:g} {UNITS[unit][0]}"))
        for res in await server.iserver.isession.add_nodes(items):
            res.StatusCode.check()
        waiting = ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData)  # type: ignore[arg-type]
        for it in self.items:
            if not it.access:
                await server.write_attribute_value(_nid(it.number, ns), ua.DataValue(
                    ua.Variant(None, ua.VariantType.Null), StatusCode=waiting))

    # -- writes -----------------------------------------------------------------------------------------------------
    def _guard_writes(self, server: Server) -> None:
        service = server.iserver.attribute_service
        original = service.write

        async def guarded(params: ua.WriteParameters, user: User = INTERNAL_USER) -> list[ua.StatusCode]:
            results: list[ua.StatusCode] = []
            for wv in params.NodesToWrite:
                item = self.by_nodeid.get(wv.NodeId)
                if item is None or not item.access or (user.role == UserRole.Admin and user.name is None):
                    results += await original(ua.WriteParameters(NodesToWrite=[wv]), user)
                else:
                    results.append(await self._client_write(item, wv, user))
            return results

        service.write = guarded  # type: ignore[method-assign]

    async def _client_write(self, item: Item, wv: ua.WriteValue, user: User) -> ua.StatusCode:
        def code(name: str) -> ua.StatusCode:
            return ua.StatusCode(getattr(ua.StatusCodes, name))

        if wv.AttributeId != ua.AttributeIds.Value:
            return code("BadNotWritable")
        if user.name not in VendorUsers.ROLES or (item.access == "grant" and user.name != "admin"):
            return code("BadUserAccessDenied")
        value = wv.Value.Value.Value if wv.Value is not None and wv.Value.Value is not None else None
        status = ua.StatusCode()
        if item.kind == "Boolean":
            if not isinstance(value, bool):
                return code("BadTypeMismatch")
        else:
            if not self.grant():
                return code("BadNotWritable")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return code("BadTypeMismatch")
            value = float(value)
            if not math.isfinite(value):
                return code("BadOutOfRange")
            lo, hi = item.eu_range or (-math.inf, math.inf)
            if not lo <= value <= hi:
                value, status = min(max(value, lo), hi), code("GoodClamped")
        self.on_write(item.path, value)
        await self.publish({item.path: value})
        log.info("%s: %s = %r written by %s (%s)", self.spec.machine, item.path, value, user.name, status.name)
        return status

    # -- publishing -------------------------------------------------------------------------------------------------
    async def publish(self, values: dict[str, Any], t: datetime | None = None) -> None:
        server = self.server
        if server is None:
            return
        source = t or self.clock()
        wall = datetime.now(UTC)
        for path, value in values.items():
            item = self.by_path.get(path)
            if item is None or self.last.get(path, _UNSET) == value:
                continue  # RollPosition under --no-position; an unchanged value (no notification, no history row)
            self.last[path] = value
            dv = ua.DataValue(ua.Variant(value, VARIANT[item.kind]), SourceTimestamp=source,  # type: ignore[arg-type]
                              ServerTimestamp=wall)  # type: ignore[arg-type]
            await server.iserver.aspace.write_attribute_value(_nid(item.number, self.ns), ua.AttributeIds.Value, dv)

