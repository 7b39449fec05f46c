"""Which nodes to subscribe to: browse-based discovery below ``opcua.discovery.browse_path`` plus the configured
``opcua.nodes`` / ``opcua.groups``, each with its station, signal name, unit (EngineeringUnits as UCUM) and range.

Where a discovered item lands in the twin is the line description's business, never this module's: the source's
``signals`` rules map a browse path (or NodeId) to the twin's station and signal (``connectors/mapping.py``), its
``trace`` nodes say which IDs tag which stations' samples, ``trace_names`` covers lines that keep each station's IDs
beside its signals; items nothing maps are named from their browse path (``unmapped: derive``) or left out.

Run after every (re)connection on a *new* client: node ids are re-resolved from the namespace URI and the browse, never
reused from a previous server run (Telegraf loops on ``BadNodeIdUnknown`` after a server restart, #15074, #19186).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.ua.object_ids import ObjectIds

from connectors.mapping import matches_any, resolve
from connectors.opcua.asyncua_adapter import node_id, property_path
from connectors.opcua.bulk import OperationLimits, browse_tree, operation_limits
from connectors.settings import DeadbandConfig, OpcuaConfig, OpcuaNode, TraceNode
from connectors.units import conversion, ucum_from_eu_information

ANALOG_ITEM_TYPES = {node_id(2368, 0), node_id(17497, 0), node_id(17570, 0)}  # AnalogItem, AnalogUnit(Range)
SERVER_OBJECT = node_id(ObjectIds.Server, 0)

UnitAndRange = tuple[str, tuple[float, float] | None]
#: (group namespace, group tags, group sampling interval ms, group deadband, group queue size, node)
ConfiguredNode = tuple[str, dict[str, str], float | None, DeadbandConfig | None, int | None, OpcuaNode]


@dataclass(frozen=True)
class NodeInfo:
    node_id: ua.NodeId
    source: str  # the node id as text, "ns=2;i=1017"
    station: str  # "Coating/Cathode"
    signal: str  # "PumpFlowRate"
    unit: str
    trace_key: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    sampling_interval_ms: float | None = None
    deadband: DeadbandConfig | None = None
    eu_range: tuple[float, float] | None = None
    queue_size: int | None = None  # the monitored item's queue; None = opcua.queue_size
    # a trace node: the stations whose samples it tags (empty = its own station), the gauge offsets along the web,
    # and whether it is a web speed to integrate into the roll position (TraceNode)
    trace_stations: tuple[str, ...] = ()
    offsets_m: tuple[tuple[str, float], ...] = ()
    integrate_speed: bool = False
    valid_range: tuple[float | None, float | None] | None = None  # physical range: the rule's, else the EURange
    scale: tuple[float, float] | None = None  # (factor, offset) from the server's unit to ``unit`` (the rule's)


def station_and_signal(path: Sequence[str]) -> tuple[str, str]:
    """Browse names below the root object -> (station, signal): ``Coating/Cathode/PumpFlowRate`` -> (Coating/Cathode,
    PumpFlowRate).

    Deeper items (``Drying/Cathode/MassLoadingProfile/P003``) keep the extra levels in the signal name with dots.
    """
    if len(path) == 1:
        return "Line", path[0]
    if len(path) == 2:
        return path[0], path[1]
    return f"{path[0]}/{path[1]}", ".".join(path[2:])


async def catalogue(cfg: OpcuaConfig, client: Client, ns: int) -> list[NodeInfo]:
    """Discovered and configured nodes, one per node id (a configured node wins over its discovered twin)."""
    infos: dict[str, NodeInfo] = {}
    if cfg.discovery.enabled:
        for info in await discover(cfg, client, ns):
            infos[info.source] = info
    for group_ns, group_tags, group_si, group_db, group_qs, node in configured_nodes(cfg):
        info = await explicit_node(cfg, client, ns, group_ns, group_tags, group_si, group_db, node, group_qs)
        infos[info.source] = info
    return list(infos.values())


def configured_nodes(cfg: OpcuaConfig) -> list[ConfiguredNode]:
    out: list[ConfiguredNode] = []
    for n in cfg.nodes:
        out.append(("", {}, None, None, None, n))
    for g in cfg.groups:
        for n in g.nodes:
            out.append((g.namespace, g.default_tags, g.sampling_interval_ms, g.deadband, g.queue_size, n))
    return out


async def explicit_node(cfg: OpcuaConfig, client: Client, ns: int, group_ns: str, group_tags: dict[str, str],
                        group_si: float | None, group_db: DeadbandConfig | None, n: OpcuaNode,
                        group_qs: int | None = None) -> NodeInfo:
    ns_text = n.namespace or group_ns
    if n.identifier.startswith("ns="):
        nid = ua.NodeId.from_string(n.identifier)
    else:
        idx = ns
        if ns_text:
            idx = int(ns_text) if ns_text.isdigit() else await client.get_namespace_index(ns_text)
        ident: Any = n.identifier
        if n.identifier_type == "i":
            ident = int(ident)
        nid = node_id(ident, idx)
    node = client.get_node(nid)
    unit = n.unit
    eu_range = None
    if not unit:
        unit, eu_range = await unit_and_range(node)
    path = str(nid.Identifier).split(".")
    station = n.station or (station_and_signal(path[1:-1] + [n.name])[0] if len(path) > 2 else "Line")
    tags = {**cfg.default_tags, **group_tags, **n.default_tags}
    return NodeInfo(nid, nid.to_string(), station, n.name, unit, None, tuple(sorted(tags.items())),
                    n.sampling_interval_ms or group_si, n.deadband or group_db, eu_range, group_qs)


async def unit_and_range(node: Node) -> UnitAndRange:
    unit = ""
    rng = None
    for child in await node.get_properties():
        name = (await child.read_browse_name()).Name
        if name == "EngineeringUnits":
            eu = await child.read_value()
            unit = ucum_from_eu_information(int(eu.UnitId), eu.DisplayName.Text or "")
        elif name == "EURange":
            r = await child.read_value()
            rng = (float(r.Low), float(r.High))
    return unit, rng


def _split_name(part: str, ns: int) -> str:
    """``3:Machines`` keeps its namespace index, ``Machines`` gets the source's."""
    head, sep, tail = part.partition(":")
    return part if sep and head.isdigit() else f"{ns}:{part}"


async def browse_root(cfg: OpcuaConfig, client: Client, ns: int) -> tuple[Node, list[str]]:
    """The node discovery starts from, and its browse path below Objects (names without namespace indexes)."""
    parts = [p for p in cfg.discovery.browse_path.split("/") if p]
    node = client.nodes.objects
    if parts:
        node = await node.get_child([_split_name(p, ns) for p in parts])
    return node, [p.partition(":")[2] if p.partition(":")[0].isdigit() and ":" in p else p for p in parts]


def node_id_forms(nid: ua.NodeId, namespaces: Sequence[str]) -> tuple[str, ...]:
    """A NodeId written with its index and with its namespace URI, so a rule may use either."""
    text = nid.to_string()
    idx = nid.NamespaceIndex
    if 0 < idx < len(namespaces):
        tail = text.split(";", 1)[1] if text.startswith("ns=") else text
        return text, f"nsu={namespaces[idx]};{tail}"
    return (text,)


async def resolve_node_id(client: Client, text: str, ns: int) -> ua.NodeId:
    """A NodeId (``ns=2;i=5``, ``nsu=urn:x;i=5``, ``i=5``) or a browse path below Objects, resolved on the server."""
    t = text.strip()
    if t.startswith("nsu="):
        uri, _, rest = t[4:].partition(";")
        idx = await client.get_namespace_index(uri)
        return ua.NodeId.from_string(f"ns={idx};{rest}")
    if t.startswith(("ns=", "i=", "s=", "g=", "b=")):
        return ua.NodeId.from_string(t)
    parts = [p for p in t.strip("/").split("/") if p]
    node = await client.nodes.objects.get_child([_split_name(p, ns) for p in parts])
    return node.nodeid


async def discover(cfg: OpcuaConfig, client: Client, ns: int) -> list[NodeInfo]:
    """Every variable below the browse path, mapped by the source's rules (AnalogItems get their EngineeringUnits
    and EURange); then the trace nodes, wherever they are."""
    node, root_path = await browse_root(cfg, client, ns)
    namespaces: list[str] = list(await client.get_namespace_array())
    # many nodes per Browse, within what the server says it takes (one request per node is a round trip per node;
    # one request for everything is "message too large" on real servers)
    limits = await operation_limits(client)
    tree = await browse_tree(client, node.nodeid, limits, root_path)
    found = [(list(n.path), n.ref) for n in tree.nodes if n.is_variable]
    traced = {await _trace_key(client, t, ns): t for t in cfg.trace if not t.source or t.source == cfg.name}
    trace_ids = {k for k in traced if k}
    analog = [(p, r) for p, r in found if r.TypeDefinition in ANALOG_ITEM_TYPES]
    units = await units_batch(client, [r.NodeId for _, r in analog], limits)
    unit_of = {r.NodeId.to_string(): u for (_, r), u in zip(analog, units, strict=True)}
    infos: list[NodeInfo] = []
    tags = tuple(sorted(cfg.default_tags.items()))
    strip = len(root_path[:1])  # derived names: the browse names below the path's first element
    for path, ref in found:
        rel = path[strip:]
        if not rel:
            continue
        key = ref.NodeId.to_string()
        eu_unit, rng = unit_of.get(key, ("", None))
        forms = node_id_forms(ref.NodeId, namespaces)
        mapped = resolve(cfg.signals, "/".join(path), forms)
        if key in trace_ids:
            t = traced.pop(key)
            info = replace(trace_node_info(t, ref.NodeId), unit=eu_unit)
            if mapped is not None:  # a mapped signal that is also a trace input (a web speed to integrate)
                info = replace(info, station=mapped.station, signal=mapped.signal, unit=mapped.unit or eu_unit)
            infos.append(info)
            continue
        if mapped is not None:
            unit, scale = _unit_and_scale(mapped.unit, eu_unit)
            if rng is not None and scale is not None:
                rng_twin: tuple[float, float] | None = (rng[0] * scale[0] + scale[1], rng[1] * scale[0] + scale[1])
            else:
                rng_twin = rng
            low = mapped.low if mapped.low is not None else (rng_twin[0] if rng_twin else None)
            high = mapped.high if mapped.high is not None else (rng_twin[1] if rng_twin else None)
            infos.append(NodeInfo(ref.NodeId, key, mapped.station, mapped.signal, unit, None, tags,
                                  mapped.rule.sampling_interval_ms, mapped.rule.deadband, rng,
                                  valid_range=(low, high) if low is not None or high is not None else None,
                                  scale=scale))
            continue
        if matches_any(cfg.signals, "/".join(path), forms) or cfg.unmapped == "ignore":
            continue
        station, signal = station_and_signal(rel)
        trace_key = cfg.trace_names.get(rel[-1]) if cfg.discovery.trace_variables else None
        infos.append(NodeInfo(ref.NodeId, key, station, signal, unit_of.get(key, ("", None))[0], trace_key, tags,
                              None, None, rng, valid_range=rng if trace_key is None else None))
    for key, t in traced.items():
        if key:
            infos.append(trace_node_info(t, ua.NodeId.from_string(key)))
    return infos


def _unit_and_scale(rule_unit: str, server_unit: str) -> tuple[str, tuple[float, float] | None]:
    """The unit a mapped node's samples carry, and the conversion from the server's: the rule's unit when the server
    states none or it converts (g/m2 -> mg/cm2); the server's when it cannot be converted, so that the validator's unit
    check quarantines it rather than a number being stored under the wrong unit."""
    if not rule_unit:
        return server_unit, None
    if not server_unit:
        return rule_unit, None
    conv = conversion(server_unit, rule_unit)
    if conv is None:
        return server_unit, None
    return rule_unit, None if conv == (1.0, 0.0) else conv


async def _trace_key(client: Client, t: TraceNode, ns: int) -> str:
    """The configured trace node's id on this server, or "" when this server does not have it (it may be another
    server's node: every server of a line gets the whole trace list)."""
    try:
        nid = await resolve_node_id(client, t.node, ns)
        await client.get_node(nid).read_browse_name()
    except Exception:  # noqa: BLE001 - not on this server (BadNodeIdUnknown, BadNoMatch, unknown namespace ...)
        return ""
    return nid.to_string()


def trace_node_info(t: TraceNode, nid: ua.NodeId) -> NodeInfo:
    name = t.node.rstrip("/").rsplit("/", 1)[-1]
    return NodeInfo(nid, nid.to_string(), t.stations[0], _signal_name(name), "", t.key, (), None, None, None,
                    trace_stations=tuple(t.stations), offsets_m=tuple(sorted(t.offset_m.items())),
                    integrate_speed=t.integrate_speed)


def _signal_name(text: str) -> str:
    out = "".join(c if c.isalnum() or c in "_." else "_" for c in text.split(";")[-1].split("=")[-1])
    return out if out[:1].isalpha() else f"N{out}"


async def units_batch(client: Client, node_ids: list[ua.NodeId],
                      limits: OperationLimits | None = None) -> list[UnitAndRange]:
    """EngineeringUnits and EURange of many AnalogItems: per chunk two TranslateBrowsePaths and one Read, each within
    the server's operation limits (two properties per node are read, so a chunk is half the Read limit)."""
    if not node_ids:
        return []
    lim = limits or OperationLimits()
    per_chunk = max(1, min(lim.translate, lim.read // 2))
    out: list[UnitAndRange] = []
    for chunk_start in range(0, len(node_ids), per_chunk):
        chunk = node_ids[chunk_start:chunk_start + per_chunk]
        targets: dict[str, list[ua.NodeId | None]] = {}
        for prop in ("EngineeringUnits", "EURange"):
            paths = [property_path(nid, prop) for nid in chunk]
            results = await client.uaclient.translate_browsepaths_to_nodeids(paths)
            targets[prop] = [r.Targets[0].TargetId if r.StatusCode.is_good() and r.Targets else None
                             for r in results]
        to_read = [t for prop in ("EngineeringUnits", "EURange") for t in targets[prop] if t is not None]
        values = await client.read_values([client.get_node(t) for t in to_read]) if to_read else []
        by_id = {t.to_string(): v for t, v in zip(to_read, values, strict=True)}
        for i in range(len(chunk)):
            eu_id, rng_id = targets["EngineeringUnits"][i], targets["EURange"][i]
            unit = ""
            if eu_id is not None:
                eu = by_id.get(eu_id.to_string())
                if eu is not None:
                    unit = ucum_from_eu_information(int(eu.UnitId), eu.DisplayName.Text or "")
            rng = None
            if rng_id is not None:
                r = by_id.get(rng_id.to_string())
                if r is not None:
                    rng = (float(r.Low), float(r.High))
            out.append((unit, rng))
    return out
