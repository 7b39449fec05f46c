"""Which nodes to subscribe to: browse-based discovery below ``opcua.discovery.browse_path`` plus the configured
``opcua.nodes`` / ``opcua.groups``, each with its station, signal name, unit (EngineeringUnits as UCUM) and EURange.

Run after every (re)connection on a *new* client: node ids are re-resolved from the namespace URI and the browse, never
reused from a previous server run (Telegraf loops on ``BadNodeIdUnknown`` after a server restart, #15074, #19186).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.ua.object_ids import ObjectIds

from connectors.opcua.asyncua_adapter import node_id, property_path
from connectors.settings import DeadbandConfig, OpcuaConfig, OpcuaNode
from connectors.units import ucum_from_eu_information

ANALOG_ITEM_TYPES = {node_id(2368, 0), node_id(17497, 0), node_id(17570, 0)}  # AnalogItem, AnalogUnit(Range)
ROOT_NAME = "PilotLine"

#: ID variables -> trace keys. ``RollPosition`` is also stored as a sample of its own.
TRACE_VARIABLES: dict[str, str] = {
    "BatchId": "slurry_batch_id", "SlurryBatchId": "slurry_batch_id", "RollId": "roll_id",
    "SourceRollId": "source_roll_id", "RollPosition": "roll_position_m", "CellId": "cell_id",
    "StackId": "stack_id", "FormationRunId": "formation_run_id", "SegmentId": "segment_id",
}

UnitAndRange = tuple[str, tuple[float, float] | None]
#: (group namespace, group tags, group sampling interval ms, group deadband, group queue size, node)
ConfiguredNode = tuple[str, dict[str, str], float | None, DeadbandConfig | None, int | None, OpcuaNode]


@dataclass(frozen=True)
class NodeInfo:
    node_id: ua.NodeId
    source: str  # "ns=2;s=PilotLine.Coating.Cathode.PumpFlowRate"
    station: str  # "Coating/Cathode"
    signal: str  # "PumpFlowRate"
    unit: str
    trace_key: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    sampling_interval_ms: float | None = None
    deadband: DeadbandConfig | None = None
    eu_range: tuple[float, float] | None = None
    queue_size: int | None = None  # the monitored item's queue; None = opcua.queue_size


def station_and_signal(path: Sequence[str]) -> tuple[str, str]:
    """Browse names below PilotLine -> (station, signal): ``Coating/Cathode/PumpFlowRate`` -> (Coating/Cathode, ...).

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


async def discover(cfg: OpcuaConfig, client: Client, ns: int) -> list[NodeInfo]:
    """Every variable below the browse path (AnalogItems get their EngineeringUnits and EURange)."""
    parts = [p for p in cfg.discovery.browse_path.split("/") if p]
    node = client.nodes.objects
    if parts:
        node = await node.get_child([f"{ns}:{p}" for p in parts])
    base = parts[1:] if parts and parts[0] == ROOT_NAME else parts
    found: list[tuple[list[str], ua.ReferenceDescription]] = []
    queue: list[tuple[Node, list[str]]] = [(node, base)]
    while queue:
        parent, path = queue.pop(0)
        refs = await parent.get_references(refs=ObjectIds.HierarchicalReferences,
                                           direction=ua.BrowseDirection.Forward,
                                           nodeclassmask=cast(ua.NodeClass,
                                                              ua.NodeClass.Object | ua.NodeClass.Variable))
        for ref in refs:
            if ref.ReferenceTypeId == node_id(ObjectIds.HasProperty, 0):
                continue  # EngineeringUnits, EURange ...: metadata, not signals
            name = ref.BrowseName.Name
            if ref.NodeClass == ua.NodeClass.Object:
                queue.append((client.get_node(ref.NodeId), [*path, name]))
            elif ref.NodeClass == ua.NodeClass.Variable:
                found.append(([*path, name], ref))
                queue.append((client.get_node(ref.NodeId), [*path, name]))  # variables may have components
    analog = [(p, r) for p, r in found if r.TypeDefinition in ANALOG_ITEM_TYPES]
    units = await units_batch(client, [r.NodeId for _, r in analog])
    unit_of = {r.NodeId.to_string(): u for (_, r), u in zip(analog, units, strict=True)}
    infos: list[NodeInfo] = []
    tags = tuple(sorted(cfg.default_tags.items()))
    for path, ref in found:
        if not path:
            continue
        station, signal = station_and_signal(path)
        key = ref.NodeId.to_string()
        unit, rng = unit_of.get(key, ("", None))
        trace_key = TRACE_VARIABLES.get(path[-1]) if cfg.discovery.trace_variables else None
        infos.append(NodeInfo(ref.NodeId, key, station, signal, unit, trace_key, tags, None, None, rng))
    return infos


async def units_batch(client: Client, node_ids: list[ua.NodeId]) -> list[UnitAndRange]:
    """EngineeringUnits and EURange of many AnalogItems with two TranslateBrowsePaths + one Read."""
    if not node_ids:
        return []
    out: list[UnitAndRange] = []
    for chunk_start in range(0, len(node_ids), 500):
        chunk = node_ids[chunk_start:chunk_start + 500]
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
