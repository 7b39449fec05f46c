"""Many nodes per request, within the server's operation limits: the batched Browse (with BrowseNext) and Read that
``python -m twin discover`` and ``check-line`` use, and that the connector's discovery can use too.

Why: browsing a tree one node per Browse costs a round trip per node (a line of a few thousand nodes takes that many
requests), and sending everything in one request is what breaks on real servers: Telegraf users hit "message too
large" at ~1 000 nodes. OPC UA says how much a server takes per request
(Server/ServerCapabilities/OperationLimits, Part 5 6.3.11) and how many continuation points it keeps per session
(MaxBrowseContinuationPoints); a server that states 0 or nothing sets no limit, and we then use a safe default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.object_ids import ObjectIds

from connectors.opcua.asyncua_adapter import node_id

#: Nodes per request when the server states no limit (0 or an unreadable OperationLimits variable).
DEFAULT_NODES_PER_REQUEST = 500
#: Never more nodes per request than this, whatever the server claims: a request (and its response) stays small.
MAX_NODES_PER_REQUEST = 1000
#: RequestedMaxReferencesPerNode of every Browse: a node with more references is continued with BrowseNext.
REFERENCES_PER_NODE = 1000

_LIMIT_NODES = {
    "browse": ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerBrowse,
    "read": ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
    "translate": ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerTranslateBrowsePathsToNodeIds,
    "monitored_items": ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
    "continuation_points": ObjectIds.Server_ServerCapabilities_MaxBrowseContinuationPoints,
}


@dataclass(frozen=True)
class OperationLimits:
    """Nodes per request for each service; ``continuation_points`` 0 = the server states no limit."""

    browse: int = DEFAULT_NODES_PER_REQUEST
    read: int = DEFAULT_NODES_PER_REQUEST
    translate: int = DEFAULT_NODES_PER_REQUEST
    monitored_items: int = DEFAULT_NODES_PER_REQUEST
    continuation_points: int = 0
    references_per_node: int = REFERENCES_PER_NODE
    stated: dict[str, int] = field(default_factory=dict, compare=False)  # what the server said (0 = nothing)


async def operation_limits(client: Client, default: int = DEFAULT_NODES_PER_REQUEST,
                           ceiling: int = MAX_NODES_PER_REQUEST) -> OperationLimits:
    """The server's operation limits in one Read: a stated limit is used up to ``ceiling``; 0, absent or unreadable
    = ``default``."""
    names = list(_LIMIT_NODES)
    values = await read_attributes(client, [node_id(_LIMIT_NODES[n], 0) for n in names], [ua.AttributeIds.Value],
                                   OperationLimits(read=len(names)))
    stated: dict[str, int] = {}
    for name, (dv,) in zip(names, values, strict=True):
        v = good_value(dv)
        stated[name] = int(v) if isinstance(v, int) and v > 0 else 0
    per = {n: min(stated[n], ceiling) if stated[n] else default for n in ("browse", "read", "translate",
                                                                            "monitored_items")}
    return OperationLimits(per["browse"], per["read"], per["translate"], per["monitored_items"],
                           stated["continuation_points"], stated=stated)


@dataclass(frozen=True)
class BrowsedNode:
    """One Object or Variable below the root: its browse names from the root down (the root's own path first)."""

    path: tuple[str, ...]
    ref: ua.ReferenceDescription

    @property
    def node_id(self) -> ua.NodeId:
        nid: ua.NodeId = self.ref.NodeId
        return nid

    @property
    def is_variable(self) -> bool:
        return bool(self.ref.NodeClass == ua.NodeClass.Variable)


@dataclass
class BrowseTree:
    nodes: list[BrowsedNode]
    browse_requests: int = 0  # Browse + BrowseNext requests sent
    failed: list[tuple[str, str]] = field(default_factory=list)  # (node id, status name) of nodes that failed


async def browse_tree(client: Client, root: ua.NodeId, limits: OperationLimits,
                      root_path: Sequence[str] = ()) -> BrowseTree:
    """Every Object and Variable below ``root`` along forward hierarchical references (HasProperty excluded:
    EngineeringUnits, EURange ... are metadata, not signals; namespace-0 nodes excluded: the Server object, types and
    standard folders are not the line's), breadth first, each node once, with as many nodes per Browse as
    ``limits.browse`` allows; continuation points are followed with BrowseNext."""
    tree = BrowseTree([])
    seen = {root.to_string()}
    frontier: list[tuple[ua.NodeId, tuple[str, ...]]] = [(root, tuple(root_path))]
    has_property = node_id(ObjectIds.HasProperty, 0)
    while frontier:
        refs = await browse_many(client, [nid for nid, _ in frontier], limits, tree)
        nxt: list[tuple[ua.NodeId, tuple[str, ...]]] = []
        for (_, path), node_refs in zip(frontier, refs, strict=True):
            for ref in node_refs:
                if ref.ReferenceTypeId == has_property or ref.NodeId.NamespaceIndex == 0:
                    continue
                key = ref.NodeId.to_string()
                if key in seen:
                    continue
                seen.add(key)
                child = (*path, ref.BrowseName.Name)
                tree.nodes.append(BrowsedNode(child, ref))
                nxt.append((ref.NodeId, child))  # variables may have components too
        frontier = nxt
    return tree


def _description(nid: ua.NodeId) -> ua.BrowseDescription:
    d = ua.BrowseDescription()
    d.NodeId = nid
    d.BrowseDirection = ua.BrowseDirection.Forward
    d.ReferenceTypeId = node_id(ObjectIds.HierarchicalReferences, 0)
    d.IncludeSubtypes = True
    d.NodeClassMask = cast(ua.UInt32, int(ua.NodeClass.Object | ua.NodeClass.Variable))
    d.ResultMask = cast(ua.UInt32, int(ua.BrowseResultMask.All))
    return d


async def browse_many(client: Client, node_ids: Sequence[ua.NodeId], limits: OperationLimits,
                      tree: BrowseTree | None = None) -> list[list[ua.ReferenceDescription]]:
    """The forward hierarchical references of each node, ``limits.browse`` nodes per Browse request.

    A node with more than ``limits.references_per_node`` references comes back with a continuation point, followed
    with BrowseNext (as many points per request as the browse limit allows) before the next Browse, so that the
    session never holds more points than one request made. A node the server had no continuation point left for
    (BadNoContinuationPoints) is browsed again in a smaller request; other failures are recorded in ``tree.failed``
    and the node has no children."""
    tree = tree if tree is not None else BrowseTree([])
    out: list[list[ua.ReferenceDescription]] = [[] for _ in node_ids]
    pending = list(range(len(node_ids)))
    per_request = limits.browse
    if limits.continuation_points:
        per_request = min(per_request, limits.continuation_points)
    while pending:
        batch, pending = pending[:per_request], pending[per_request:]
        params = ua.BrowseParameters()
        params.RequestedMaxReferencesPerNode = cast(ua.UInt32, limits.references_per_node)
        params.NodesToBrowse = [_description(node_ids[i]) for i in batch]
        results = await client.uaclient.browse(params)
        tree.browse_requests += 1
        retry: list[int] = []
        continued: list[tuple[int, bytes]] = []

        def keep(i: int, res: ua.BrowseResult, continued: list[tuple[int, bytes]]) -> None:
            """A node's references (or its failure), and its continuation point to follow."""
            if not res.StatusCode.is_good():
                tree.failed.append((node_ids[i].to_string(), res.StatusCode.name))
                return
            out[i].extend(res.References or [])
            if res.ContinuationPoint:
                continued.append((i, res.ContinuationPoint))

        for i, res in zip(batch, results, strict=True):
            if res.StatusCode.value == ua.StatusCodes.BadNoContinuationPoints:
                retry.append(i)
            else:
                keep(i, res, continued)
        while continued:
            step, continued = continued[:limits.browse], continued[limits.browse:]
            nparams = ua.BrowseNextParameters()
            nparams.ReleaseContinuationPoints = False
            nparams.ContinuationPoints = [cp for _, cp in step]
            nresults = await client.uaclient.browse_next(nparams)
            tree.browse_requests += 1
            for (i, _), res in zip(step, nresults, strict=True):
                keep(i, res, continued)
        if retry:
            if len(retry) < len(batch):
                per_request = len(batch) - len(retry)  # what the server had points for
            elif per_request > 1:
                per_request //= 2
            else:  # one node, nothing held, still no point: the server keeps none for us at all
                tree.failed.extend((node_ids[i].to_string(), "BadNoContinuationPoints") for i in retry)
                retry = []
            pending = retry + pending
    return out


async def read_attributes(client: Client, node_ids: Sequence[ua.NodeId], attributes: Sequence[ua.AttributeIds],
                          limits: OperationLimits) -> list[list[ua.DataValue]]:
    """``attributes`` of every node (one DataValue per node and attribute, in order), with at most ``limits.read``
    operations per Read request."""
    if not node_ids:
        return []
    per_request = max(1, limits.read // max(1, len(attributes)))
    out: list[list[ua.DataValue]] = []
    for start in range(0, len(node_ids), per_request):
        chunk = node_ids[start:start + per_request]
        params = ua.ReadParameters()
        params.TimestampsToReturn = ua.TimestampsToReturn.Neither
        for nid in chunk:
            for attr in attributes:
                rv = ua.ReadValueId()
                rv.NodeId = nid
                rv.AttributeId = cast(ua.UInt32, int(attr))
                params.NodesToRead.append(rv)
        values = await client.uaclient.read(params)
        n = len(attributes)
        out.extend(values[k * n:(k + 1) * n] for k in range(len(chunk)))
    return out


#: Built-in DataType ids (namespace 0) by what a value of that type is to the twin.
NUMERIC_TYPES = frozenset({2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 26, 27, 28})  # SByte .. Double, Number, Integer, UInteger
STRING_TYPES = frozenset({12, 21, 295})  # String, LocalizedText, LocaleId
BOOLEAN_TYPE = 1


def data_type_kind(data_type: ua.NodeId | None) -> str:
    """``numeric`` | ``string`` | ``boolean`` | ``other`` (structures, enumerations, vendor types, unknown)."""
    if data_type is None or data_type.NamespaceIndex != 0 or not isinstance(data_type.Identifier, int):
        return "other"
    i = data_type.Identifier
    if i == BOOLEAN_TYPE:
        return "boolean"
    if i in NUMERIC_TYPES:
        return "numeric"
    if i in STRING_TYPES:
        return "string"
    return "other"


def data_type_name(data_type: ua.NodeId | None) -> str:
    if data_type is None:
        return "?"
    if data_type.NamespaceIndex == 0 and isinstance(data_type.Identifier, int):
        return str(ua.ObjectIdNames.get(data_type.Identifier, data_type.to_string()))
    return str(data_type.to_string())


def good_value(dv: ua.DataValue) -> Any:
    """The value of a read result, or None when its status is not good (or it has none)."""
    if dv.StatusCode is not None and not dv.StatusCode.is_good():
        return None
    return dv.Value.Value if dv.Value is not None else None


def can_write(access_level: int | None) -> bool:
    """Whether an AccessLevel / UserAccessLevel byte has CurrentWrite."""
    return access_level is not None and bool(access_level & ua.AccessLevel.CurrentWrite.mask)
