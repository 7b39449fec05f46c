"""``python -m twin discover`` and ``python -m twin check-line`` against real servers: the vendor-style line
(tests/lines/vendor_line: numeric NodeIds, a Machinery-like tree, g/m2 areal weight) and the bundled simulator.

Both commands run as the user runs them (a process, its stdout, its exit code); the servers are real processes on
free ports. The batched browse is checked against the per-node walk it replaces, on the same server.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from asyncua import Client, ua

from connectors.opcua.asyncua_adapter import node_id
from connectors.opcua.bulk import OperationLimits, browse_tree, operation_limits, read_attributes
from deploy.localstack import REPO, PythonService, Simulator, free_port
from twin.line.load import parse_line

SIMULATOR_LINE = REPO / "deploy" / "lines" / "simulator.yaml"


def twin_cli(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "twin", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout_s, check=False)


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    sim = Simulator(tmp_path_factory.mktemp("sim"), None, ["--security", "none"])
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def vendor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.lines import VendorLine

    line = VendorLine(tmp_path_factory.mktemp("vendor"))
    line.start()
    yield line
    line.stop()


class StrictServer(PythonService):
    """tests/twin/strict_opcua.py: enforces the operation limits it states, continuation points included."""

    name = "strict-opcua"
    start_timeout_s = 60.0

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "tests.twin.strict_opcua", "--port", str(self.port), "--data-dir",
                str(self.data_dir)]

    def requests(self) -> list[dict[str, Any]]:
        path = self.data_dir / "requests.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StrictServer]:
    server = StrictServer(tmp_path_factory.mktemp("strict"))
    server.start()
    yield server
    server.stop()


def _guessed(lines: list[str], i: int) -> bool:
    """Whether the entry on line ``i`` is preceded by its ``# GUESS:`` comment (comment lines directly above)."""
    j = i - 1
    while j >= 0 and lines[j].lstrip().startswith("#"):
        if "# GUESS:" in lines[j]:
            return True
        j -= 1
    return False


def _uncommented_products(text: str) -> str:
    """The draft with its commented product block switched on and one target filled in, as an engineer would."""
    out = []
    on = False
    for line in text.splitlines():
        if line.startswith("# product:"):
            on = True
        if on and line.startswith("# "):
            line = line[2:]
            if line.lstrip().startswith("targets: []"):
                indent = line[:len(line) - len(line.lstrip())]
                line = (f"{indent}targets: [{{signal: Drying/MassLoading, output: drying.dry_mass_loading_mg_cm2, "
                        f"target: 14.3, tolerance: 0.2, gauge_position_m: 6.0}}]")
        out.append(line)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------------------------
# discover
# ---------------------------------------------------------------------------------------------------------------------


def test_discover_vendor_line_draft_loads_and_marks_every_guess(vendor: Any, tmp_path: Path) -> None:
    r = twin_cli("discover", vendor.coater_endpoint, "--namespace", "urn:vendor:coater", "--browse-path", "Machines",
                 "--line-id", "VL1")
    assert r.returncode == 0, r.stderr
    desc = parse_line(r.stdout, "draft")
    assert desc.line.id == "VL1"
    (src,) = desc.sources.opcua
    assert (src.name, src.endpoint, src.namespace_uri) == ("coater", vendor.coater_endpoint, "urn:vendor:coater")
    assert src.discovery.browse_path == "Machines" and src.unmapped == "ignore"
    rules = {rule.match.rsplit("/", 1)[-1]: rule for rule in src.signals}
    # the beta gauge's g/m2 areal weight: the twin's dry MassLoading in mg/cm2, its EURange converted (0..500 g/m2)
    aw = rules["ArealWeight"]
    assert (aw.match, aw.station, aw.signal, aw.unit) == (
        "Machines/SlotDieCoater_01/Monitoring/BetaGauge/ArealWeight", "Drying", "MassLoading", "mg/cm2")
    assert (aw.min, aw.max) == (0.0, 50.0)
    wet = rules["WetFilmThickness"]
    assert (wet.station, wet.signal, wet.unit, wet.min, wet.max) == ("Coating", "WetFilmThickness", "um", 0.0, 1000.0)
    assert (rules["PumpFlowActual"].signal, rules["PumpFlowActual"].unit) == ("PumpFlowRate", "cm3/h")
    assert (rules["DryerZone2Temp"].station, rules["DryerZone2Temp"].signal) == ("Drying", "Zone2Temperature")
    assert rules["PumpFlowSetpoint"].signal == "PumpFlowRateSetpoint"
    assert src.grant_node == "Machines/SlotDieCoater_01/Control/RemoteControlEnabled"
    trace = {t.node.rsplit("/", 1)[-1]: t for t in desc.trace}
    assert trace["CurrentRollID"].key == "roll_id" and trace["CurrentRollID"].source == "coater"
    assert set(trace["CurrentRollID"].stations) == {"Coating", "Drying"}
    assert trace["SlurryBatchID"].key == "slurry_batch_id"
    assert trace["RollPosition"].key == "roll_position_m"
    assert {u.station for u in desc.equipment.units} == {"Coating", "Drying"}
    # every guess is marked: each rule, trace entry, work unit and the grant has its '# GUESS:' line
    lines = r.stdout.splitlines()
    entries = [i for i, line in enumerate(lines)
               if re.match(r"\s*- \{(match|node|name):", line) or line.strip().startswith("grant_node:")]
    assert len(entries) == len(src.signals) + len(desc.trace) + len(desc.equipment.units) + 1
    assert [lines[i] for i in entries if not _guessed(lines, i)] == []
    # the proposed setpoints (commented out) are a valid product once switched on
    prod = parse_line(_uncommented_products(r.stdout), "draft+product")
    manipulated = {m.setpoint_node: m for loop in prod.products["my-product"].loops.values() for m in loop.manipulated}
    pump = manipulated["Machines/SlotDieCoater_01/Control/PumpFlowSetpoint"]
    assert (pump.input, pump.low, pump.high, pump.source) == ("pump_flow_rate_cm3_h", 100.0, 1500.0, "coater")
    assert re.search(r"discover: 18 nodes \(13 variables\) browsed in \d+ Browse requests", r.stderr), r.stderr
    # and the draft, as printed, passes check-line against the same server
    path = tmp_path / "line.yaml"
    path.write_text(r.stdout)
    check = twin_cli("check-line", str(path))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "ERROR" not in check.stdout


def test_discover_and_check_line_with_sign_and_encrypt_and_a_user(tmp_path: Path) -> None:
    """Security and user go through the connector's own client set-up (make_client); the draft keeps them, and
    check-line connects with them, or says why it cannot."""
    from tests.lines import VendorLine

    line = VendorLine(tmp_path / "secure-line", ["--security"])
    line.start()
    try:
        password = tmp_path / "operator.pw"
        password.write_text(line.passwords["operator"] + "\n")
        pki = ["--certificate", str(tmp_path / "pki" / "cert.der"), "--private-key", str(tmp_path / "pki" / "key.pem")]
        r = twin_cli("discover", line.calender_endpoint, "--namespace", "urn:vendor:calender", "--browse-path",
                     "Machines", "--security-policy", "Basic256Sha256", "--security-mode", "SignAndEncrypt",
                     "--username", "operator", "--password-file", str(password), *pki)
        assert r.returncode == 0, r.stderr
        desc = parse_line(r.stdout, "draft")
        (src,) = desc.sources.opcua
        assert (src.security_policy, src.security_mode, src.auth_method, src.username, src.password) == (
            "Basic256Sha256", "SignAndEncrypt", "username", "operator", "")  # the password stays out of the file
        rules = {rule.match.rsplit("/", 1)[-1]: rule for rule in src.signals}
        assert (rules["Thickness"].station, rules["Thickness"].signal) == ("Calendering", "CalenderedThickness")
        assert (rules["LineLoad"].unit, rules["LineLoad"].min, rules["LineLoad"].max) == ("N/mm", 0.0, 300.0)
        path = tmp_path / "calender.yaml"
        path.write_text(r.stdout)
        ok = twin_cli("check-line", str(path), "--password-file", str(password))
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert re.search(r"^OK +sources\.opcua\.0: .*security Basic256Sha256/SignAndEncrypt, user operator", ok.stdout,
                         re.M), ok.stdout
        wrong = tmp_path / "wrong.pw"
        wrong.write_text("not-the-password")
        bad = twin_cli("check-line", str(path), "--password-file", str(wrong))
        assert bad.returncode == 1
        assert re.search(rf"^ERROR +{re.escape(str(path))}:\d+ sources\.opcua\.0\.endpoint: \(calender\) cannot "
                         r"connect .* as user operator", bad.stdout, re.M), bad.stdout
    finally:
        line.stop()


def test_discover_simulator_names_the_twins_signals(simulator: Simulator) -> None:
    """The simulator already speaks the twin's vocabulary: the draft must give back its own names."""
    r = twin_cli("discover", simulator.endpoint, "--browse-path", "PilotLine")
    assert r.returncode == 0, r.stderr
    desc = parse_line(r.stdout, "draft")
    (src,) = desc.sources.opcua
    mapped = {rule.match: (rule.station, rule.signal, rule.unit) for rule in src.signals}
    assert mapped["PilotLine/Drying/Cathode/MassLoading"] == ("Drying/Cathode", "MassLoading", "mg/cm2")
    assert mapped["PilotLine/Calendering/Anode/CoatingDensity"] == ("Calendering/Anode", "CoatingDensity", "g/cm3")
    assert mapped["PilotLine/Coating/Cathode/PumpFlowRateSetpoint"][1] == "PumpFlowRateSetpoint"
    assert mapped["PilotLine/DryRoom/DewPoint"] == ("DryRoom", "DewPoint", "Cel")
    assert mapped["PilotLine/Formation/CH-03/Voltage"] == ("Formation/CH-03", "Voltage", "V")
    assert src.grant_node == "PilotLine/RemoteSetpointsEnabled"
    keys = {(t.node, t.key) for t in desc.trace}
    assert ("PilotLine/Coating/Cathode/RollId", "roll_id") in keys
    assert ("PilotLine/Calendering/Anode/SourceRollId", "source_roll_id") in keys
    assert ("PilotLine/Formation/CH-16/CellId", "cell_id") in keys


# ---------------------------------------------------------------------------------------------------------------------
# the batched browse
# ---------------------------------------------------------------------------------------------------------------------


async def _per_node_walk(client: Client, root: ua.NodeId) -> set[str]:
    """The walk the connector's discovery does: one Browse per node (Node.get_references)."""
    seen: set[str] = set()
    queue = [client.get_node(root)]
    while queue:
        node = queue.pop(0)
        refs = await node.get_references(refs=ua.ObjectIds.HierarchicalReferences,
                                         direction=ua.BrowseDirection.Forward,
                                         nodeclassmask=cast(ua.NodeClass,
                                                            ua.NodeClass.Object | ua.NodeClass.Variable))
        for ref in refs:
            if ref.ReferenceTypeId == node_id(ua.ObjectIds.HasProperty) or ref.NodeId.NamespaceIndex == 0:
                continue
            if ref.NodeId.to_string() not in seen:
                seen.add(ref.NodeId.to_string())
                queue.append(client.get_node(ref.NodeId))
    return seen


def test_browse_tree_within_limits_finds_what_the_per_node_walk_finds(simulator: Simulator) -> None:
    async def go() -> None:
        client = Client(simulator.endpoint, timeout=20)
        await client.connect()
        try:
            sizes: dict[str, list[int]] = {"browse": [], "read": []}
            browse, read = client.uaclient.browse, client.uaclient.read

            async def counting_browse(params: ua.BrowseParameters) -> list[ua.BrowseResult]:
                sizes["browse"].append(len(params.NodesToBrowse))
                return await browse(params)

            async def counting_read(params: ua.ReadParameters) -> list[ua.DataValue]:
                sizes["read"].append(len(params.NodesToRead))
                return await read(params)

            client.uaclient.browse = counting_browse  # type: ignore[method-assign, assignment]
            client.uaclient.read = counting_read  # type: ignore[method-assign, assignment]
            root = (await client.nodes.objects.get_child(["2:PilotLine"])).nodeid
            stated = await operation_limits(client)
            assert stated.stated["browse"] == 10000 and stated.browse == 1000  # asyncua states 10 000: capped
            expected = await _per_node_walk(client, root)
            sizes["browse"].clear()
            small = OperationLimits(browse=7, read=10)
            tree = await browse_tree(client, root, small, ["PilotLine"])
            assert {n.node_id.to_string() for n in tree.nodes} == expected
            assert len(tree.nodes) == len(expected) and tree.failed == []
            assert max(sizes["browse"]) == 7 and len(sizes["browse"]) == tree.browse_requests
            variables = [n.node_id for n in tree.nodes if n.is_variable]
            values = await read_attributes(client, variables, [ua.AttributeIds.DataType, ua.AttributeIds.ValueRank],
                                           small)
            assert len(values) == len(variables) and max(sizes["read"]) <= 10
            paths = {"/".join(n.path) for n in tree.nodes}
            assert "PilotLine/Drying/Cathode/MassLoading" in paths
        finally:
            await client.disconnect()

    asyncio.run(go())


def test_discover_respects_a_strict_servers_operation_limits(strict: StrictServer) -> None:
    """A server that states 5 nodes per Browse, 8 per Read, 6 per TranslateBrowsePaths, answers at most 10
    references per node (the rest by BrowseNext) and keeps 2 continuation points per session without saying so:
    discover stays within every limit, follows the continuation points, browses again what got no point, and
    finds every variable the server has."""
    from tests.twin.strict_opcua import LIMITS, MACHINES

    r = twin_cli("discover", strict.endpoint, "--browse-path", "Plant")
    assert r.returncode == 0, r.stderr
    desc = parse_line(r.stdout, "draft")
    numeric = {rule.match for rule in desc.sources.opcua[0].signals}
    assert len(numeric) == sum(MACHINES.values())
    assert "Plant/Machines/SlotDieCoater_01/Monitoring/Track23" in numeric  # past the 10-reference answers
    ids = {t.node for t in desc.trace}
    assert ids == {f"Plant/Machines/{m}/Monitoring/CurrentRollID" for m in MACHINES}
    seen = strict.requests()
    assert [e for e in seen if e["refused"] and e["service"] != "cp"] == []  # never BadTooManyOperations
    most = {s: max(e["nodes"] for e in seen if e["service"] == s) for s in ("browse", "read", "translate")}
    assert most["browse"] <= LIMITS["MaxNodesPerBrowse"] and most["read"] <= LIMITS["MaxNodesPerRead"]
    assert most["translate"] <= LIMITS["MaxNodesPerTranslateBrowsePathsToNodeIds"]
    assert any(e["service"] == "browse_next" for e in seen)  # continuation points were followed
    assert any(e["service"] == "cp" for e in seen)  # one node got none at first, and was browsed again

    async def too_much() -> None:  # the server does refuse what exceeds its limits
        client = Client(strict.endpoint, timeout=20)
        await client.connect()
        try:
            nodes = [node_id(ua.ObjectIds.Server_ServerStatus)] * 9
            with pytest.raises(ua.uaerrors.BadTooManyOperations):
                await read_attributes(client, nodes, [ua.AttributeIds.Value], OperationLimits(read=100))
            assert len(await read_attributes(client, nodes, [ua.AttributeIds.Value],
                                             await operation_limits(client))) == 9
        finally:
            await client.disconnect()

    asyncio.run(too_much())


def test_connector_discovery_on_a_strict_server(strict: StrictServer) -> None:
    from connectors.opcua.browse import discover
    from connectors.settings import OpcuaConfig, OpcuaDiscovery
    from tests.twin.strict_opcua import MACHINES

    async def go() -> int:
        client = Client(strict.endpoint, timeout=20)
        await client.connect()
        try:
            cfg = OpcuaConfig(endpoint=strict.endpoint, discovery=OpcuaDiscovery(browse_path="Plant"))
            infos = await discover(cfg, client, 2)
            return sum(1 for i in infos if i.eu_range is not None)
        finally:
            await client.disconnect()

    assert asyncio.run(go()) == sum(MACHINES.values())


# ---------------------------------------------------------------------------------------------------------------------
# check-line
# ---------------------------------------------------------------------------------------------------------------------


def _key_line(text: str, pattern: str) -> int:
    """The 1-based line of the first line matching ``pattern``."""
    return next(i + 1 for i, line in enumerate(text.splitlines()) if re.search(pattern, line))


def test_check_line_passes_on_the_simulators_description(simulator: Simulator) -> None:
    r = twin_cli("check-line", str(SIMULATOR_LINE), "--endpoint", f"simulator={simulator.endpoint}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "check-line: 0 errors" in r.stdout
    assert re.search(r"^OK +products\.prozell-cathode\.loops\.CathodeCoating\.manipulated\.0\.setpoint_node: "
                     r"PilotLine/Coating/Cathode/PumpFlowRateSetpoint on simulator: Double, EURange 100\.\.2000",
                     r.stdout, re.M), r.stdout
    assert re.search(r"^OK +sources\.opcua\.0\.grant_node: .*Boolean", r.stdout, re.M)


def test_check_line_names_each_wrong_key_and_its_line(simulator: Simulator, tmp_path: Path) -> None:
    text = SIMULATOR_LINE.read_text()
    text = text.replace("setpoint_node: PilotLine/Coating/Cathode/PumpFlowRateSetpoint",
                        "setpoint_node: PilotLine/Coating/Cathode/PumpFlowRateSetpointX")  # no such node
    text = text.replace("setpoint_node: PilotLine/Calendering/Cathode/LineLoadSetpoint",
                        "setpoint_node: PilotLine/Calendering/Cathode/LineLoad")  # the actual value: read only
    text = text.replace("grant_node: PilotLine/RemoteSetpointsEnabled", "grant_node: PilotLine/RemoteEnabled")
    text = text.replace("actual_signal: Coating/Anode/PumpFlowRate,", "actual_signal: Coating/Anode/PumpFlowRat,")
    text = text.replace("      unmapped: derive\n", "      unmapped: derive\n      signals:\n"
                        "        - {match: \"ns=2;s=PilotLine.NoSuchNode\", station: Line, signal: X}\n"
                        "        - {match: \"PilotLine/Nowhere/*\", station: Line}\n")
    text += ("trace:\n  - {node: PilotLine/Coating/Cathode/WebSpeed, key: roll_id, stations: [Coating/Cathode]}\n"
             "  - {node: PilotLine/Coating/Cathode/RollTag, key: roll_id, stations: [Coating/Cathode]}\n")
    path = tmp_path / "line.yaml"
    path.write_text(text)
    r = twin_cli("check-line", str(path), "--endpoint", f"simulator={simulator.endpoint}")
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    base = "products.prozell-cathode.loops"
    expected = {
        f"{base}.CathodeCoating.manipulated.0.setpoint_node": ("PumpFlowRateSetpointX", "not found"),
        f"{base}.CathodeCalender.manipulated.0.setpoint_node": (
            "setpoint_node: PilotLine/Calendering/Cathode/LineLoad,", "not writable by anonymous"),
        "sources.opcua.0.grant_node": ("grant_node:", "not found"),
        f"{base}.AnodeCoating.manipulated.0.actual_signal": ("PumpFlowRat,", "produced by no source"),
        "sources.opcua.0.signals.0.match": ("NoSuchNode", "does not exist"),
        "trace.0.node": ("Cathode/WebSpeed, key: roll_id", "is a Double; roll_id needs a String node"),
        "trace.1.node": ("RollTag", "not found on simulator"),
    }
    for key, (pattern, message) in expected.items():
        line = _key_line(text, pattern)
        assert re.search(rf"^ERROR +{re.escape(str(path))}:{line} {re.escape(key)}: .*{message}", out, re.M), \
            f"{key} (line {line}) not reported as an error with {message!r}:\n{out}"
    assert re.search(r"^WARN .* sources\.opcua\.0\.signals\.1\.match: 'PilotLine/Nowhere/\*' matches no variable",
                     out, re.M), out
    assert re.search(rf"check-line: {len(expected)} errors", out), out


def test_check_line_reports_unreachable_servers_wrong_namespace_and_mqtt(simulator: Simulator, tmp_path: Path,
                                                                       mosquitto: Any) -> None:
    closed = free_port()
    desc = yaml.safe_load(SIMULATOR_LINE.read_text())
    src = desc["sources"]["opcua"][0]
    desc["sources"]["opcua"] += [{**src, "name": "wrongns", "namespace_uri": "urn:nobody"},
                                 {**src, "name": "down", "endpoint": f"opc.tcp://127.0.0.1:{closed}"}]
    desc["sources"]["mqtt"] = {"url": mosquitto.url, "client_id": "check-line-test"}
    path = tmp_path / "line.yaml"
    path.write_text(yaml.safe_dump(desc, sort_keys=False))
    r = twin_cli("check-line", str(path), "--endpoint", f"simulator={simulator.endpoint}",
                 "--endpoint", f"wrongns={simulator.endpoint}", "--timeout", "5")
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"^ERROR .* sources\.opcua\.1\.namespace_uri: 'urn:nobody' is not among", r.stdout, re.M)
    assert re.search(rf"^ERROR .* sources\.opcua\.2\.endpoint: \(down\) cannot connect to opc\.tcp://127\.0\.0\.1:"
                     rf"{closed}", r.stdout, re.M), r.stdout
    assert re.search(r"^OK +sources\.mqtt\.url: connected to mqtt://", r.stdout, re.M), r.stdout
    assert re.search(r"check-line: 2 errors", r.stdout), r.stdout
    # the same broker, down
    r = twin_cli("check-line", str(path), "--endpoint", f"simulator={simulator.endpoint}",
                 "--endpoint", f"wrongns={simulator.endpoint}", "--mqtt-url", f"mqtt://127.0.0.1:{closed}",
                 "--timeout", "5")
    assert re.search(r"^ERROR .* sources\.mqtt\.url: cannot reach the broker", r.stdout, re.M), r.stdout


def test_check_line_stops_on_errors_in_the_file(tmp_path: Path) -> None:
    text = SIMULATOR_LINE.read_text().replace("unmapped: derive", "unmapped: sometimes")
    path = tmp_path / "line.yaml"
    path.write_text(text)
    r = twin_cli("check-line", str(path))
    assert r.returncode == 1
    line = _key_line(text, "unmapped: sometimes")
    assert f"{path}:{line}: sources.opcua.0.unmapped" in r.stdout, r.stdout
    assert "connected" not in r.stdout  # nothing checked against servers with a broken file
