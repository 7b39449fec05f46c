"""The whole twin on a line it was never written for, described by a YAML file only (issue 12's acceptance).

The vendor line (tests/lines/vendor_line) has numeric NodeIds, a Machinery-like tree, its roll ID in
``CurrentRollID`` 6 m upstream of its beta gauge (which speaks g/m2), a calender on its own server without any ID
node (the MES names the roll it unwinds; its position is integrated from its web speed), a JSON dew-point sensor and
an MES on MQTT. ``tests/lines/vendor.yaml`` is all the twin knows of it; this test only fills in ports and passwords,
as an installer would. Real processes throughout: the vendor line, influxd, mosquitto.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.publish as mqtt_publish
import pytest
import yaml
from asyncua import Client, ua

from ontology.store import UnknownIdError
from tests.ingest.conftest import influx_rows
from tests.ingest.test_sparkplug import Edge
from tests.lines import past_start_time, vendor_line_factory  # noqa: F401 - the fixture
from tests.twin.simstack import wait_for
from twin.auth import Principal, Role
from twin.config import load_config
from twin.service import TwinService

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
VENDOR = Path(__file__).with_name("vendor.yaml")
OPERATOR = Principal("op", Role.operator)


async def _client(endpoint: str, user: str = "", password: str = "") -> Client:
    c = Client(endpoint, timeout=10)
    if user:
        c.set_user(user)
        c.set_password(password)
    await c.connect()
    return c


async def _write(endpoint: str, user: str, password: str, number: int, value: bool) -> None:
    """As the line's admin at the HMI: grant remote setpoints."""
    c = await _client(endpoint, user, password)
    try:
        ns = await c.get_namespace_index("urn:vendor:coater")
        await c.get_node(ua.NodeId(number, ns)).write_value(ua.DataValue(ua.Variant(value, ua.VariantType.Boolean)))
    finally:
        await c.disconnect()


async def _read(endpoint: str, number: int) -> float:
    c = await _client(endpoint)
    try:
        ns = await c.get_namespace_index("urn:vendor:coater")
        return float(await c.get_node(ua.NodeId(number, ns)).read_value())
    finally:
        await c.disconnect()


def _described(tmp: Path, line: Any, mqtt_url: str) -> Path:
    """The committed description with this run's ports and passwords: what an installer edits."""
    desc = yaml.safe_load(VENDOR.read_text())
    password = line.passwords["operator"]
    for src, endpoint in zip(desc["sources"]["opcua"], (line.coater_endpoint, line.calender_endpoint), strict=True):
        src.update(endpoint=endpoint, auth_method="username", username="operator", password=password,
                   certificate=str(tmp / "pki" / "cert.der"), private_key=str(tmp / "pki" / "key.pem"),
                   subscription_interval_ms=100)
    desc["sources"]["mqtt"].update(url=mqtt_url, client_id=f"twin-{uuid.uuid4().hex[:8]}")
    desc["sources"]["sparkplug"][0]["mqtt"]["url"] = mqtt_url
    # a target the line is off, so that the loop has something to propose
    loop = desc["products"]["prozell-cathode"]["loops"]["Cathode"]
    loop["targets"][0]["target"] = 13.4
    desc["specs"]["Drying/Cathode/MassLoading"] = {"lsl": 12.9, "usl": 13.9, "target": 13.4}
    path = tmp / "line.yaml"
    path.write_text(yaml.safe_dump(desc, sort_keys=False))
    return path


async def test_the_whole_twin_runs_on_a_line_described_only_by_yaml(
        tmp_path: Path, influxd: Any, mosquitto: Any, vendor_line_factory: Any) -> None:  # noqa: F811
    line = vendor_line_factory(args=["--speedup", "60", "--start-time", past_start_time(12), "--seed", "5",
                                     "--roll-length-m", "20", "--cells-per-roll", "2", "--grant", "off",
                                     "--calender-speed-m-min", "3"], mqtt_url=mosquitto.url)
    database = f"t_{uuid.uuid4().hex[:10]}"
    cfg = load_config(None, {
        "PILOTLINE__LINE__DESCRIPTION": str(_described(tmp_path, line, mosquitto.url)),
        "PILOTLINE__INFLUX__URL": influxd.url, "PILOTLINE__INFLUX__DATABASE": database,
        "PILOTLINE__INFLUX__FLUSH_INTERVAL_S": "0.2", "PILOTLINE__SPOOL__DIR": str(tmp_path / "spool"),
        "PILOTLINE__SPOOL__FSYNC": "never", "PILOTLINE__QUARANTINE__DIR": str(tmp_path / "quarantine"),
        "PILOTLINE__SERVICE__AUTH__TOKEN_FILE": str(tmp_path / "tokens.json"),
        "PILOTLINE__SERVICE__HTTP__PORT": "0", "PILOTLINE__SERVICE__CONTROL__INTERVAL_S": "1.0",
        "PILOTLINE__SERVICE__GENEALOGY__STORE_PATH": str(tmp_path / "genealogy"),
    })
    assert [c.name for c in cfg.opcua_all] == ["coater", "calender"]
    svc = TwinService(cfg)
    await svc.start()
    # the dry room's Sparkplug B edge node: a separate process written with the library (tests/ingest)
    edge = Edge(mosquitto.url.removeprefix("mqtt://"), "plant1", tmp_path / "edge.json")
    try:
        await wait_for(lambda: all(svc._connector_states().values()) and len(svc._connector_states()) == 4, 60,
                       "both servers, the broker and the Sparkplug host connected")

        # every station's samples, in the twin's names and units, with the IDs current at that station
        def rows(q: str) -> list[dict[str, Any]]:
            try:
                return influx_rows(influxd.url, database, q)
            except AssertionError:  # the database is created by the twin's first write
                return []

        await wait_for(lambda: len(rows('SELECT * FROM "Calendering" WHERE "signal"=\'CoatingDensity\'')) > 5, 150,
                       "calendered density stored")
        beta = rows('SELECT * FROM "Drying" WHERE "signal"=\'MassLoading\'')
        assert beta and all(r["unit"] == "mg/cm2" and r["lane"] == "Cathode" for r in beta)
        assert 10 < sum(r["value"] for r in beta) / len(beta) < 18  # g/m2 converted: ~14 mg/cm2, not ~140
        tagged = [r for r in beta if r.get("roll_id")]
        assert len(tagged) >= 0.9 * len(beta), "beta-gauge samples without a roll ID"
        assert all(r["roll_id"].startswith("CR-C-") and r.get("slurry_batch_id") for r in tagged)
        # the gauge sits 6 m after the die: a sample's position is the die's position 6 m of web earlier
        early = [r for r in tagged if r.get("roll_position_m") is not None and r["roll_position_m"] < 3.0]
        late = [r for r in tagged if r.get("roll_position_m") is not None and r["roll_position_m"] > 10.0]
        assert late, "no positions along the roll"
        coating = rows('SELECT * FROM "Coating" WHERE "signal"=\'WetFilmThickness\'')
        assert coating and all(r["unit"] == "um" and r.get("roll_id") for r in coating[5:])
        cal = rows('SELECT * FROM "Calendering" WHERE "signal"=\'LineLoad\'')
        cal_tagged = [r for r in cal if r.get("source_roll_id")]
        assert cal_tagged and all(r["source_roll_id"].startswith("CR-C-") for r in cal_tagged)
        assert any((r.get("roll_position_m") or 0) > 1.0 for r in cal_tagged), "calender position not integrated"
        dew = rows('SELECT * FROM "DryRoom" WHERE "signal"=\'DewPoint\'')
        assert dew and all(r["unit"] == "Cel" and -60 < r["value"] < -30 for r in dew)
        await wait_for(lambda: len(rows('SELECT * FROM "DryRoom" WHERE "signal"=\'Temperature\'')) > 3, 30,
                       "the Sparkplug B edge node's temperature stored")
        del early

        # out of range: a dew point of +95 degC is quarantined with its reason, nothing else is lost
        topic = "plant1/dryroom/dp-sensor-7"
        host, port = mosquitto.url.removeprefix("mqtt://").split(":")
        mqtt_publish.single(topic, json.dumps({"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                               "dewpoint": {"value": 95.0, "unit": "degC"}}),
                            qos=1, hostname=host, port=int(port))
        await wait_for(lambda: svc.pipeline.quarantine.counts.get("out_of_range", 0) >= 1, 30, "range quarantine")

        # genealogy: a formed cell's upstream trace reaches the coated roll and its slurry batch
        events = [json.loads(x) for x in line.trace_record.read_text().splitlines()]
        cells = [e["id"] for e in events if e["type"] == "Cell" and e["kind"] == "created"]
        await wait_for(lambda: bool(cells) or bool([json.loads(x) for x in line.trace_record.read_text()
                                                    .splitlines() if '"Cell"' in x]), 120, "a cell built")
        events = [json.loads(x) for x in line.trace_record.read_text().splitlines()]
        cell = next(e["id"] for e in events if e["type"] == "Cell" and e["kind"] == "created")
        assert svc.genealogy is not None
        genealogy = svc.genealogy

        async def upstream() -> str:
            try:
                return json.dumps(await asyncio.to_thread(genealogy.genealogy, cell, None), default=str)
            except UnknownIdError:  # its events are still on their way
                return ""

        deadline = time.monotonic() + 60
        text = await upstream()
        while "SB-C-" not in text and time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            text = await upstream()
        assert "CR-C-" in text and "SB-C-" in text and "LOT-" in text, text[:2000]

        # predictions appear
        await wait_for(lambda: len(svc.ctx.predictions) > 0, 60, "predictions")

        # a recommendation, approved: refused without the grant, written under it
        await wait_for(lambda: bool(svc.controller.list("proposed")), 60, "a proposal")
        rec = svc.controller.list("proposed")[0]
        done = await svc.controller.approve(rec.id, OPERATOR, "test, no grant")
        assert done.state == "failed" and "grant" in (done.note or "")
        await _write(line.coater_endpoint, "admin", line.passwords["admin"], 1203, True)
        await wait_for(lambda: bool(svc.controller.list("proposed")), 60, "a new proposal")
        rec = svc.controller.list("proposed")[0]
        done = await svc.controller.approve(rec.id, OPERATOR, "test, granted")
        assert done.state == "applied", (done.state, done.note, done.writes)
        (write,) = [w for w in done.writes if w["ok"]]
        assert write["node"] == "Machines/SlotDieCoater_01/Control/PumpFlowSetpoint"
        value = await _read(line.coater_endpoint, 1201)
        assert abs(value - write["after"]) < 1e-6
    finally:
        edge.kill()
        await svc.stop()
