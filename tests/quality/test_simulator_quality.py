"""The quality views on a real simulator run (OPC UA -> the twin's ingest -> InfluxDB and the genealogy), with an
injected cause: the cathode pump flow turned down 10 % for ten minutes (tests/quality/scenarios/pump_dip.yaml).

- for formed cells, the record's mass-loading mean over the cell's stretch equals a direct InfluxDB query over that
  stretch, and its formation capacity equals what the simulator recorded (its --record file);
- the record's JSON-LD parses and conforms to the SHACL shapes;
- root cause of the cells below a capacity: the injected cause (the cathode coating's mass-loading chain) ranks
  first.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import rdflib

from ontology.shapes import validate
from tests.twin.simstack import sim_args, start_time_in_past, twin_config, wait_for
from twin.auth import Role
from twin.quality.jsonld import record_graph
from twin.service import TwinService

SCENARIO = Path(__file__).parent / "scenarios" / "pump_dip.yaml"
FORMED = 32  # formation runs to wait for: the low roll's cells and some after it
#: the injected cause: the pump flow dip and what it makes on the cathode (wet film, dry mass loading)
CAUSE = {"Coating/Cathode/PumpFlowRateSetpoint", "Coating/Cathode/PumpFlowRate", "Coating/Cathode/WetFilmThickness",
         "Drying/Cathode/MassLoading"}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _formation_events(path: Path) -> dict[str, dict[str, Any]]:
    """cell -> the FormationRun trace event the simulator published (from its --record file)."""
    out: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        if '"FormationRun"' not in line:
            continue
        rec = json.loads(line)
        if not str(rec.get("source", "")).startswith("opcua-event:"):
            continue
        ev = rec["value"] if isinstance(rec["value"], dict) else json.loads(rec["value"])
        if ev.get("type") == "FormationRun" and ev.get("kind") == "created":
            out[ev["inputs"][0]["id"]] = ev
    return out


async def _run(tmp: Path, influxd: Any, mosquitto: Any, simulator_factory: Any) -> None:
    from simulator.users import default_users

    record_file = tmp / "sim-record.jsonl"
    sim = simulator_factory(args=[*sim_args(60, 11, start_time_in_past(6), scenario=SCENARIO,
                                            mqtt_url=mosquitto.url), "--record", str(record_file)], start=False)
    default_users(sim.data_dir)  # the operator password the twin logs in with, before the simulator runs
    cfg = twin_config(tmp, influxd, sim, mqtt_url=mosquitto.url,
                      extra={"PILOTLINE__SERVICE__GENEALOGY__ENABLED": "true",
                             "PILOTLINE__SERVICE__GENEALOGY__STORE_PATH": str(tmp / "genealogy")})
    cfg.service.control.mode = "off"
    svc = TwinService(cfg)
    await svc.start()
    try:
        # the twin's MQTT session exists before the line starts, so no trace event of the run is missed (the
        # raw-material lots are received in the first simulated seconds, before an OPC UA client could subscribe)
        await wait_for(lambda: svc.pipeline.status().connectors.get("mqtt", False), 30, "the twin's MQTT session")
        await asyncio.to_thread(sim.start)
        await wait_for(lambda: len(_formation_events(record_file)) >= FORMED, 420, f"{FORMED} formed cells")
        sim.stop()
        formed = _formation_events(record_file)
        assert svc.genealogy is not None
        await asyncio.to_thread(svc.genealogy.flush, 60)
        await wait_for(lambda: svc.pipeline.status().spool.depth_lines == 0, 60, "the spool to drain")
        token = svc.tokens.create(Role.viewer, "quality-test")
        h = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://twin",
                                     timeout=120) as client:
            await _check_records(client, h, svc, formed)
            await _check_rootcause(client, h, formed)
    finally:
        await svc.stop()
        sim.stop()


async def _check_records(client: httpx.AsyncClient, h: dict[str, str], svc: TwinService,
                         formed: dict[str, dict[str, Any]]) -> None:
    from twin.quality.influx import InfluxReader

    i = svc.cfg.influx
    direct = InfluxReader(i.url, i.database)
    checked = 0
    for cell in sorted(formed)[::3]:
        r = await client.get(f"/api/cells/{cell}/record", headers=h)
        assert r.status_code == 200, r.text
        rec = r.json()
        cr = next(m for m in rec["materials"] if m["type"] == "CoatedRoll" and m["id"].startswith("CR-C"))
        stats = cr["signals"].get("Drying/Cathode/MassLoading")
        rows = direct.query(['SELECT mean("value"), count("value") FROM "Drying" WHERE "lane" = $lane AND '
                             '"signal" = $signal AND "roll_id" = $roll AND "quality" = $good AND '
                             '"roll_position_m" >= $a AND "roll_position_m" < $b'],
                            {"lane": "Cathode", "signal": "MassLoading", "roll": cr["id"], "good": "good",
                             "a": cr["from_m"], "b": cr["to_m"]})[0]
        if stats is None:  # the stretch passed the gauge while the twin was reconnecting (a loaded machine)
            assert rows == []
        else:
            assert stats["n"] == rows[0]["count"] > 0
            assert stats["mean"] == pytest.approx(rows[0]["mean"], rel=1e-12)
            checked += 1
        assert cr["to_m"] - cr["from_m"] == pytest.approx(2.0)  # 20 cathode sheets of 0.1 m
        recorded = formed[cell]["properties"]["discharge_capacity_Ah"]
        measured = rec["formation"][0]["results"]["discharge_capacity_Ah"]["value"]
        assert measured == recorded
        ld = record_graph(svc.genealogy, rec)
        report = validate(ld)
        assert report.conforms, report.text
        text = (await client.get(f"/api/cells/{cell}/record", params={"format": "jsonld"}, headers=h)).text
        assert len(rdflib.Graph().parse(data=text, format="json-ld")) == len(ld)
    direct.close()
    assert checked >= 5


async def _check_rootcause(client: httpx.AsyncClient, h: dict[str, str], formed: dict[str, dict[str, Any]]) -> None:
    # every cell of this time-compressed line fails formation on its first-cycle efficiency (five minutes of
    # post-drying leave the coils wet: CE ~0.83 < 0.85), so the cells to explain are those below a capacity: nominal
    # ~2.15 Ah, the dip's ~1.94 Ah
    low = sorted(c for c, ev in formed.items() if ev["properties"]["discharge_capacity_Ah"] < 2.05)
    assert 3 <= len(low) <= len(formed) - 3, f"{len(low)} of {len(formed)} below 2.05 Ah: the dip must split them"
    r = await client.get("/api/rootcause", params={"capacity_below": 2.05}, headers=h)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["selected"] == len(low) and sorted(out["selected_cells"]) == low
    first = out["causes"][0]
    assert first["cause"] in CAUSE, [c["cause"] for c in out["causes"][:5]]
    # every cause ranked above the first unrelated one is the injected one
    unrelated = next(i for i, c in enumerate(out["causes"]) if c["cause"] not in CAUSE)
    assert all(c["cause"] in CAUSE for c in out["causes"][:unrelated])
    assert out["features"][0]["q"] < 0.01
    assert out["forest"]["cause_importances"][0]["cause"] in CAUSE
    failed = await client.get("/api/rootcause", params={"formation_failed": "true"}, headers=h)
    assert failed.status_code == 200 and failed.json()["rest"] == 0 and "at least 3" in failed.json()["note"]


def test_records_and_root_cause_on_a_simulator_run(tmp_path: Path, influxd: Any, mosquitto: Any,
                                                   simulator_factory: Any) -> None:
    asyncio.run(_run(tmp_path, influxd, mosquitto, simulator_factory))
