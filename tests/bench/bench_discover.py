"""Nodes discovered per second: the batched browse (``connectors/opcua/bulk.py browse_tree``, many nodes per Browse
request within the server's operation limits) against one Browse per node (the walk the connector's discovery does,
``Node.get_references`` per node), on the same server in the same run.

Prints one JSON object. The server is the simulator with ``--profile-points 1000`` (1 000 cross-web tracks per lane:
about 2 600 variables below ``PilotLine``, the 16 formation channels included). Each method runs ``ROUNDS`` times,
alternating; the median is reported. ``batched_100`` is the batched browse with at most 100 nodes per request, as
against a server that states MaxNodesPerBrowse 100. ``connector_discover_s`` is the connector's whole discovery
(walk, mapping, units) for reference.

Run: ``.venv/bin/python -m pytest -s tests/bench/bench_discover.py --override-ini addopts=``.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, cast

from asyncua import Client, ua

from connectors.opcua.asyncua_adapter import node_id
from connectors.opcua.browse import discover
from connectors.opcua.bulk import OperationLimits, browse_tree, operation_limits
from connectors.settings import OpcuaConfig, OpcuaDiscovery
from deploy.localstack import Simulator

SIM_ARGS = ["--security", "none", "--profile-points", "1000"]
ROUNDS = 3


async def per_node_walk(client: Client, root: ua.NodeId) -> tuple[int, int]:
    """(nodes, Browse requests): one request per node, as the connector's discovery walks."""
    seen: set[str] = set()
    queue = [client.get_node(root)]
    requests = 0
    while queue:
        node = queue.pop(0)
        refs = await node.get_references(refs=ua.ObjectIds.HierarchicalReferences,
                                         direction=ua.BrowseDirection.Forward,
                                         nodeclassmask=cast(ua.NodeClass, ua.NodeClass.Object | ua.NodeClass.Variable))
        requests += 1
        for ref in refs:
            if ref.ReferenceTypeId == node_id(ua.ObjectIds.HasProperty) or ref.NodeId.NamespaceIndex == 0:
                continue
            if ref.NodeId.to_string() not in seen:
                seen.add(ref.NodeId.to_string())
                queue.append(client.get_node(ref.NodeId))
    return len(seen), requests


async def _run(endpoint: str) -> dict[str, Any]:
    client = Client(endpoint, timeout=60)
    await client.connect()
    try:
        root = (await client.nodes.objects.get_child(["2:PilotLine"])).nodeid
        limits = await operation_limits(client)
        runs: dict[str, list[tuple[int, int, float]]] = {"per_node": [], "batched": [], "batched_100": []}
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            n, req = await per_node_walk(client, root)
            runs["per_node"].append((n, req, time.perf_counter() - t0))
            for name, lim in (("batched", limits), ("batched_100", OperationLimits(browse=100, read=100))):
                t0 = time.perf_counter()
                tree = await browse_tree(client, root, lim, ["PilotLine"])
                runs[name].append((len(tree.nodes), tree.browse_requests, time.perf_counter() - t0))
        t0 = time.perf_counter()
        infos = await discover(OpcuaConfig(endpoint=endpoint, discovery=OpcuaDiscovery(browse_path="PilotLine")),
                               client, 2)
        connector_s = time.perf_counter() - t0
    finally:
        await client.disconnect()
    out: dict[str, Any] = {"server_limits": limits.stated, "nodes_per_browse_used": limits.browse}
    for name, rs in runs.items():
        nodes = {n for n, _, _ in rs}
        assert len(nodes) == 1, (name, rs)
        sec = statistics.median(s for _, _, s in rs)
        out[name] = {"nodes": rs[0][0], "browse_requests": rs[0][1], "seconds_median": round(sec, 3),
                     "seconds_all": [round(s, 3) for _, _, s in rs], "nodes_per_s": round(rs[0][0] / sec)}
    out["speedup_batched_vs_per_node"] = round(out["per_node"]["seconds_median"] / out["batched"]["seconds_median"],
                                               1)
    out["connector_discover_s"] = round(connector_s, 3)
    out["connector_discover_items"] = len(infos)
    return out


def test_bench_discover(tmp_path: Path) -> None:
    sim = Simulator(tmp_path / "sim", None, SIM_ARGS)
    sim.start()
    try:
        out = asyncio.run(_run(sim.endpoint))
    finally:
        sim.stop()
    out["server"] = "python -m simulator " + " ".join(SIM_ARGS)
    out["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=2))
    assert out["per_node"]["nodes"] == out["batched"]["nodes"] == out["batched_100"]["nodes"], out
