"""Smoke test of the vendor-style line: a real process, its two OPC UA servers browsed with asyncua, MQTT through a
real mosquitto. What the twin's line description will rely on is checked here, so that an acceptance failure later
points at the twin and not at the line."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from asyncua import Client, Node, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.ua.uaerrors import UaError
from cryptography.x509.oid import ExtendedKeyUsageOID

from contract.trace import parse_trace_event
from deploy.localstack import Mosquitto
from tests.lines import VendorLine, past_start_time
from tests.lines.vendor_line import CALENDER, COATER, UNECE_NAMESPACE, MachineSpec, node_id, unece_unit_id

ROLL_M = 3.0
SPEEDUP = 60.0  # 1 m/min of web -> 1 m per wall second


class Collector:
    """A paho subscriber that keeps every message per topic."""

    def __init__(self, url: str, topics: list[str], client_id: str = "", persistent: bool = False) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.messages: dict[str, list[bytes]] = {t: [] for t in topics}
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, clean_session=not persistent,
                                  client_id=client_id or f"vl-test-{uuid.uuid4().hex[:8]}")
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, int(port))
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages[msg.topic].append(bytes(msg.payload))

    def get(self, topic: str) -> list[bytes]:
        with self.lock:
            return list(self.messages[topic])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def wait_for(pred: Callable[[], Any], timeout_s: float, what: str, step_s: float = 0.1) -> Any:
    """Polls an (async or plain) predicate; a generous timeout guards against a hang, it measures nothing."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        got = pred()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(step_s)


async def machine_tree(client: Client, spec: MachineSpec) -> tuple[int, dict[str, Node]]:
    """Browse Objects/Machines/<machine>/... and return {relative path: node} of every variable below it; every
    node on the way must have a numeric NodeId in the vendor namespace."""
    ns = await client.get_namespace_index(spec.namespace)
    machine = await client.nodes.objects.get_child([f"{ns}:Machines", f"{ns}:{spec.machine}"])
    assert machine.nodeid == node_id(spec.machine_number, ns)
    out: dict[str, Node] = {}

    async def walk(node: Node, prefix: str) -> None:
        for child in await node.get_children(refs=ua.ObjectIds.HierarchicalReferences):
            name = (await child.read_browse_name()).Name
            path = f"{prefix}{name}"
            if child.nodeid.NamespaceIndex == 0:
                continue  # EngineeringUnits / EURange are standard properties, checked below
            assert child.nodeid.NamespaceIndex == ns and isinstance(child.nodeid.Identifier, int), (path, child)
            if await child.read_node_class() == ua.NodeClass.Variable:
                out[path] = child
            await walk(child, f"{path}/")

    await walk(machine, "")
    return ns, out


async def check_analog_items(spec: MachineSpec, nodes: dict[str, Node], skip: frozenset[str] = frozenset()) -> None:
    for item in spec.items:
        if item.path in skip:
            assert item.path not in nodes
            continue
        node = nodes[item.path]
        assert node.nodeid.Identifier == item.number
        if item.unit is None:
            continue
        assert await node.read_type_definition() == node_id(ua.ObjectIds.AnalogItemType, 0)
        eu = await (await node.get_child("0:EngineeringUnits")).read_value()
        rng = await (await node.get_child("0:EURange")).read_value()
        assert (eu.NamespaceUri, eu.UnitId) == (UNECE_NAMESPACE, unece_unit_id(item.unit)), item.path
        assert (rng.Low, rng.High) == item.eu_range, item.path


async def test_vendor_line_tree_roll_ids_setpoint_response_and_mqtt(
        vendor_line_factory: Callable[..., VendorLine], mosquitto: Mosquitto) -> None:
    topics = {"dewpoint": f"t{uuid.uuid4().hex[:6]}/dryroom/dp-sensor-7",
              "trace": f"t{uuid.uuid4().hex[:6]}/mes/trace"}
    sub = Collector(mosquitto.url, list(topics.values()))
    assert sub.subscribed.wait(10)
    line = await asyncio.to_thread(vendor_line_factory, [
        "--speedup", str(SPEEDUP), "--tick-s", "0.25", "--roll-length-m", str(ROLL_M), "--cells-per-roll", "2",
        "--start-time", past_start_time(), "--dewpoint-topic", topics["dewpoint"], "--trace-topic", topics["trace"],
        "--seed", "7"], mosquitto.url)
    assert line.info["coater"] == line.coater_endpoint and line.info["calender"] == line.calender_endpoint
    passwords = line.passwords
    coater, calender, admin = Client(line.coater_endpoint), Client(line.calender_endpoint), Client(line.coater_endpoint)
    for c in (coater, calender):
        c.set_user("operator")
        c.set_password(passwords["operator"])
    admin.set_user("admin")
    admin.set_password(passwords["admin"])
    try:
        async with coater, calender, admin:
            # -- the documented trees, numeric NodeIds, units and ranges ------------------------------------------
            ns, c_nodes = await machine_tree(coater, COATER)
            await check_analog_items(COATER, c_nodes)
            assert {"Identification/Manufacturer", "Identification/SerialNumber",
                    "Monitoring/BetaGauge/ArealWeight/DistanceFromDie"} <= set(c_nodes)
            _, k_nodes = await machine_tree(calender, CALENDER)
            await check_analog_items(CALENDER, k_nodes)
            assert not [p for p in k_nodes if "Roll" in p and "ID" in p.upper()], "the calender has no roll ID node"
            assert await k_nodes["Monitoring/Thickness/DistanceFromNip"].read_value() == 0.5

            roll_id, position, areal = (c_nodes[p] for p in ("Monitoring/CurrentRollID", "Monitoring/RollPosition",
                                                             "Monitoring/BetaGauge/ArealWeight"))
            setpoint, grant = c_nodes["Control/PumpFlowSetpoint"], c_nodes["Control/RemoteControlEnabled"]

            async def web_m() -> float:
                """Metres of web coated since start, from the roll number and the position in the roll."""
                rid, pos = await coater.read_values([roll_id, position])
                return (int(rid.rsplit("-", 1)[1]) - 1) * ROLL_M + pos

            # -- CurrentRollID changes every ROLL_M metres ------------------------------------------------------
            first = await roll_id.read_value()
            assert first.startswith("CR-C-")
            second = await wait_for(lambda: _changed(roll_id, first), 60, "CurrentRollID to change")
            assert int(second.rsplit("-", 1)[1]) > int(first.rsplit("-", 1)[1])

            # -- setpoint writes: grant, roles, clamping --------------------------------------------------------
            sp_as_op = coater.get_node(setpoint.nodeid)
            assert await _write_status(sp_as_op, 900.0) == "BadNotWritable"  # no grant yet
            assert await _write_status(coater.get_node(grant.nodeid), True) == "BadUserAccessDenied"  # not admin
            assert await _write_status(admin.get_node(grant.nodeid), True) == "Good"
            assert await grant.read_value() is True
            assert await _write_status(sp_as_op, 99999.0) == "GoodClamped"
            assert await setpoint.read_value() == 1500.0
            assert await _write_status(sp_as_op, float("nan")) == "BadOutOfRange"
            assert await _write_status(sp_as_op, "900") == "BadTypeMismatch"
            load_sp = k_nodes["Control/LineLoadSetpoint"]
            assert await _write_status(load_sp, 90.0) == "BadNotWritable", "each machine has its own grant"
            async with Client(line.calender_endpoint) as anonymous:
                assert await _write_status(anonymous.get_node(load_sp.nodeid), 90.0) == "BadUserAccessDenied"
                assert await anonymous.get_node(load_sp.nodeid).read_value() == 84.0  # anonymous may read

            # -- the pump setpoint reaches the beta gauge only after 6 m of web --------------------------------
            baseline = await areal.read_value()
            assert 130.0 < baseline < 155.0, baseline  # 14.3 mg/cm2 of the ProZell cathode, in g/m2
            await wait_for(lambda: _changed(setpoint, 1500.0, equal=True), 10, "clamped setpoint")
            assert await _write_status(sp_as_op, 900.0) == "Good"
            written_at_m = await web_m()
            target = baseline * 900.0 / 696.0  # pre-metered die: loading proportional to flow
            await wait_for(lambda: _above(areal, 0.5 * (baseline + target)), 60, "areal weight to respond")
            travelled = await web_m() - written_at_m
            assert travelled >= 5.0, f"the beta gauge answered after {travelled:.2f} m of web, not ~6 m"
            await wait_for(lambda: _above(areal, 0.98 * target), 60, "areal weight to settle")

            # -- the calender measures once it unwinds the first roll ------------------------------------------
            density = k_nodes["Monitoring/Density"]
            got = await wait_for(lambda: _good_value(density), 60, "calender density")
            assert 2.0 < got < 4.0, got

            # -- MQTT: the dew-point sensor and the MES -------------------------------------------------------
            cells = await wait_for(lambda: [e for e in map(json.loads, sub.get(topics["trace"]))
                                            if e["type"] == "FormationRun"], 60, "a formation run on MQTT")
            dew = [json.loads(m) for m in sub.get(topics["dewpoint"])]
            assert dew and all(set(d) == {"ts", "dewpoint"} and d["dewpoint"]["unit"] == "degC"
                               and -60 < d["dewpoint"]["value"] < -30 and d["ts"].endswith("Z") for d in dew)
            events = [parse_trace_event(m) for m in sub.get(topics["trace"])]
            assert [e.seq for e in events] == list(range(1, len(events) + 1)), "seq contiguous from 1, none lost"
            created: set[str] = set()
            for e in events:  # every input was booked before it is used: the genealogy can place each in order
                assert all(i.id in created for i in e.inputs), (e.id, [i.id for i in e.inputs])
                if e.kind == "created":
                    created.add(e.id)
            rolls = [e.id for e in events if e.type == "CoatedRoll" and e.kind == "created"]
            assert first in rolls and second in rolls[:3] + [second]
            assert any(e.kind == "consumed" and e.type == "CoatedRoll" and e.station == "Calendering/Cathode"
                       for e in events), "the MES names the roll the calender unwinds"
            assert cells[0]["inputs"][0]["id"].startswith("CELL-")
            recorded = [json.loads(x) for x in line.trace_record.read_text().splitlines()]
            assert [r["seq"] for r in recorded[:len(events)]] == [e.seq for e in events]
    finally:
        sub.close()


async def test_vendor_line_security_history_no_position_and_restart(
        vendor_line_factory: Callable[..., VendorLine]) -> None:
    line = await asyncio.to_thread(vendor_line_factory, [
        "--security", "--history", "--no-position", "--grant", "on", "--speedup", "30", "--tick-s", "0.25",
        "--roll-length-m", "2", "--start-time", past_start_time(), "--operator-password", "op-secret"])
    assert line.info["security"] == "Basic256Sha256/SignAndEncrypt" and line.info["position_node"] is False
    anonymous = Client(line.coater_endpoint)
    try:
        async with anonymous:
            raise AssertionError("an anonymous plain session must be refused under --security")
    except (UaError, OSError, TimeoutError, AssertionError) as exc:
        assert not isinstance(exc, AssertionError), exc
    cert, key = line.data_dir / "client_cert.der", line.data_dir / "client_key.pem"
    await setup_self_signed_certificate(key, cert, "urn:vendor-line-test:client", "localhost",
                                        [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "vendor-line-test"})

    async def secure_client() -> Client:
        client = Client(line.coater_endpoint)
        client.application_uri = "urn:vendor-line-test:client"
        await client.set_security_string(f"Basic256Sha256,SignAndEncrypt,{cert},{key}")
        client.set_user("operator")
        client.set_password("op-secret")
        return client

    async with await secure_client() as client:
        _, nodes = await machine_tree(client, COATER)
        await check_analog_items(COATER, nodes, skip=frozenset({"Monitoring/RollPosition"}))
        assert await nodes["Control/RemoteControlEnabled"].read_value() is True  # --grant on
        assert await _write_status(nodes["Control/PumpFlowSetpoint"], 750.0) == "Good"
        areal = nodes["Monitoring/BetaGauge/ArealWeight"]
        historizing = (await areal.read_attribute(ua.AttributeIds.Historizing)).Value
        assert historizing is not None and historizing.Value is True
        before = await wait_for(lambda: _history(areal, 3), 30, "historized values")
        roll_before = await nodes["Monitoring/CurrentRollID"].read_value()

    # a restart on the same data dir: history kept (SQLite), clock and roll numbers continue, no ID comes twice
    await asyncio.to_thread(line.restart)
    async with await secure_client() as client:
        _, nodes = await machine_tree(client, COATER)
        areal = nodes["Monitoring/BetaGauge/ArealWeight"]
        roll_after = await nodes["Monitoring/CurrentRollID"].read_value()
        assert int(roll_after.rsplit("-", 1)[1]) > int(roll_before.rsplit("-", 1)[1]), (roll_before, roll_after)
        dv = await areal.read_data_value()
        assert dv.SourceTimestamp is not None and dv.SourceTimestamp > before[-1].SourceTimestamp
        history = await _history(areal, len(before) + 1)
        assert history is not None and [h.SourceTimestamp for h in history[:len(before)]] == \
            [h.SourceTimestamp for h in before], "the history of before the restart is still served"
        values = [h.Value.Value if h.Value is not None else None for h in history]
        assert all(isinstance(v, float) and math.isfinite(v) for v in values), values


async def _changed(node: Node, old: Any, equal: bool = False) -> Any:
    value = await node.read_value()
    return value if (value == old) == equal else None


async def _above(node: Node, level: float) -> bool:
    return bool(await node.read_value() > level)


async def _good_value(node: Node) -> float | None:
    dv = await node.read_data_value(raise_on_bad_status=False)
    good = dv.StatusCode is not None and dv.StatusCode.is_good()
    return float(dv.Value.Value) if good and dv.Value is not None else None


async def _history(node: Node, at_least: int) -> list[ua.DataValue] | None:
    """Raw history from the start of the line, oldest first."""
    got = list(await node.read_raw_history(starttime=datetime(2000, 1, 1, tzinfo=UTC), numvalues=10000))
    got.sort(key=lambda dv: dv.SourceTimestamp or datetime.min.replace(tzinfo=UTC))
    return got if len(got) >= at_least else None


async def _write_status(node: Node, value: Any) -> str:
    """The server's answer to one client write, by name (asyncua raises Bad codes; Good* come back as results)."""
    variant = ua.Variant(value, ua.VariantType.Boolean if isinstance(value, bool) else
                         ua.VariantType.String if isinstance(value, str) else ua.VariantType.Double)
    params = ua.WriteParameters()
    wv = ua.WriteValue()
    wv.NodeId, wv.AttributeId, wv.Value = node.nodeid, ua.AttributeIds.Value, ua.DataValue(variant)
    params.NodesToWrite = [wv]
    result = await node.session.write(params)
    return str(result[0].name)


def test_readme_documents_every_node() -> None:
    """The README's tables are what a line description is written from: every node, its NodeId and unit code."""
    text = (Path(__file__).with_name("README.md")).read_text(encoding="utf-8")
    for spec in (COATER, CALENDER):
        section = next(s for s in text.split("\n## ") if s.split("\n", 1)[0].endswith(f"`{spec.namespace}`"))
        assert f"`i={spec.machine_number}`" in section
        for item in spec.items:
            row = next((r for r in section.splitlines() if r.startswith(f"| `{item.path}` |")), None)
            assert row is not None, f"{spec.machine}: {item.path} is not in the README"
            assert f"`i={item.number}`" in row and (item.unit is None or f"(`{item.unit}`)" in row), row
            assert item.eu_range is None or f"{item.eu_range[0]:g} .. {item.eu_range[1]:g}" in row, row


@pytest.mark.faults
async def test_mes_events_survive_a_broker_restart(vendor_line_factory: Callable[..., VendorLine],
                                                   mosquitto_factory: Callable[..., Mosquitto]) -> None:
    """The MES's QoS 1 events published while the broker is down reach a persistent subscriber afterwards: seq
    stays contiguous (duplicates allowed, as QoS 1 allows them)."""
    broker = mosquitto_factory()
    topic = f"t{uuid.uuid4().hex[:6]}/mes/trace"
    sub = Collector(broker.url, [topic], client_id=f"vl-persistent-{uuid.uuid4().hex[:6]}", persistent=True)
    assert sub.subscribed.wait(10)
    line = await asyncio.to_thread(vendor_line_factory, [
        "--speedup", "60", "--tick-s", "0.25", "--roll-length-m", "2", "--cells-per-roll", "1",
        "--start-time", past_start_time(), "--trace-topic", topic], broker.url)
    try:
        def seqs() -> list[int]:
            return sorted({json.loads(m)["seq"] for m in sub.get(topic)})

        await wait_for(lambda: len(seqs()) >= 10, 90, "the first events")
        await asyncio.to_thread(broker.stop)
        published_before = len(line.trace_record.read_text().splitlines())
        await wait_for(lambda: len(line.trace_record.read_text().splitlines()) >= published_before + 8, 90,
                       "events published while the broker is down")
        await asyncio.to_thread(broker.start)
        last = len(line.trace_record.read_text().splitlines())
        await wait_for(lambda: len(seqs()) >= last, 90, "every event after the restart")
        got = seqs()
        assert got == list(range(1, got[-1] + 1)), f"missing seq {sorted(set(range(1, got[-1] + 1)) - set(got))}"
    finally:
        sub.close()
