"""MQTT -> pipeline -> InfluxDB on real mosquitto and influxd: thousands of bad messages, good data untouched."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from connectors.records import Sample, TraceEvent
from deploy.localstack import Influxd, Mosquitto
from tests.ingest.conftest import influx_rows
from twin.config import Config
from twin.ingest import IngestPipeline

_n = itertools.count()
GOOD, BAD_EACH = 400, 500  # 400 good messages, 6 x 500 = 3000 bad ones


def config(tmp: Path, influxd: Influxd, mosquitto: Mosquitto, db: str, **extra: Any) -> Config:
    return Config.model_validate({
        "influx": {"url": influxd.url, "database": db, "flush_interval_s": 0.1},
        "spool": {"dir": str(tmp / "spool"), "fsync": "always"},
        "quarantine": {"dir": str(tmp / "quarantine")},
        "opcua": {"enabled": False},
        "mqtt": {"url": mosquitto.url, "client_id": f"ingest-{db}", "topics": [f"pilotline/{db}/#"]},
        **extra,
    })


def publisher(mosquitto: Mosquitto) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{next(_n)}-{time.time_ns()}")
    c.max_inflight_messages_set(1000)
    c.connect(mosquitto.host, mosquitto.port)
    c.loop_start()
    return c


def telemetry(line: str, ch: str, seq: int, **over: Any) -> dict[str, Any]:
    d = {"schema": "pilotline.cycler.telemetry.v1", "seq": seq, "line": line, "channel": ch,
         "time": f"2026-11-20T10:{seq // 60 % 60:02d}:{seq % 60:02d}.{seq:06d}Z", "cell_id": "CELL-000001",
         "formation_run_id": "FR-000001", "step": "charge", "voltage_V": 3.7, "current_A": 1.0,
         "capacity_Ah": 0.1, "temperature_C": 25.0}
    d.update(over)
    return d


async def test_thousands_of_bad_messages_are_quarantined_and_good_data_is_whole(
        tmp_path: Path, influxd: Influxd, mosquitto: Mosquitto) -> None:
    line = f"L{next(_n)}x{time.time_ns() % 10**6}"
    cfg = config(tmp_path, influxd, mosquitto, line)
    cfg = cfg.model_copy(update={"line": cfg.line.model_copy(update={"id": line})})
    pipe = IngestPipeline(cfg)
    seen: list[Sample | TraceEvent] = []
    pipe.subscribe(seen.extend)

    async def async_subscriber(records: Any) -> None:
        await asyncio.sleep(0)

    def faulty_subscriber(records: Any) -> None:
        raise RuntimeError("a consumer bug must not stop ingest")

    pipe.subscribe(async_subscriber)
    pipe.subscribe(faulty_subscriber)
    await pipe.start()
    try:
        for _ in range(100):
            if pipe.mqtt.state.connected:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # SUBACK
        pub = publisher(mosquitto)
        good_topic = f"pilotline/{line}/formation/CH-01/telemetry"
        bad_topic = f"pilotline/{line}/formation/CH-02/telemetry"
        infos = []
        bad_kinds = [
            ("malformed_json", lambda i: b"\x00\xff not json " + str(i).encode()),
            ("schema", lambda i: json.dumps({"time": "2026-11-21T10:00:00Z", "voltage_V": 1.0}).encode()),
            ("nan", lambda i: json.dumps(telemetry(line, "CH-02", 1000 + i, voltage_V=float("nan"))).encode()),
            ("out_of_range", lambda i: json.dumps(telemetry(line, "CH-02", 2000 + i, voltage_V=99.0)).encode()),
            ("unit", lambda i: json.dumps(telemetry(line, "CH-02", 3000 + i, units={"voltage_V": "furlong"})).encode()),
            ("trace_id", lambda i: json.dumps(telemetry(line, "CH-02", 4000 + i, cell_id="cell #1")).encode()),
        ]
        for i in range(BAD_EACH):
            if i < GOOD:
                infos.append(pub.publish(good_topic, json.dumps(telemetry(line, "CH-01", i + 1)), qos=1))
            for _, make in bad_kinds:
                infos.append(pub.publish(bad_topic, make(i + 1), qos=1))
        trace = {"schema": "pilotline.trace.v1", "seq": 1, "line": line, "time": "2026-11-21T10:00:00.000000Z",
                 "kind": "created", "id": "CELL-000001", "type": "Cell", "step": "Assembly", "station": "Assembly",
                 "equipment": "Stacker", "inputs": [], "parameters": {}, "properties": {}}
        infos.append(pub.publish(f"pilotline/{line}/trace", json.dumps(trace), qos=1))
        infos.append(pub.publish(f"pilotline/{line}/trace", json.dumps(trace), qos=1))  # duplicate delivery
        for info in infos:
            await asyncio.to_thread(info.wait_for_publish, 10)
        pub.loop_stop()
        pub.disconnect()
        expected_bad = BAD_EACH * len(bad_kinds)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            st = pipe.stats()
            if (st["counts"]["rejected"] >= expected_bad + 4 * BAD_EACH and st["spool"]["depth_lines"] == 0
                    and st["counts"]["stored"] >= GOOD * 5):
                break
            await asyncio.sleep(0.2)
        st = pipe.stats()
    finally:
        await pipe.stop()

    counts = st["quarantine"]
    # one rejection per bad sample: a malformed trace ID spoils all five samples of its message
    assert counts == {**{reason: BAD_EACH for reason, _ in bad_kinds}, "trace_id": 5 * BAD_EACH}, counts
    assert st["counts"]["trace_events"] == 1 and st["counts"]["duplicate_trace_events"] == 1
    assert st["counts"]["subscriber_errors"] > 0  # the faulty consumer failed, ingest went on
    # good data: every seq of CH-01, all five signals, in InfluxDB
    rows = influx_rows(influxd.url, line, 'SELECT * FROM "Formation" WHERE "lane" = \'CH-01\'')
    seqs = sorted({int(r["seq"]) for r in rows})
    assert seqs == list(range(1, GOOD + 1))
    assert len(rows) == GOOD * 5 and all(r["cell_id"] == "CELL-000001" and r["channel"] == "CH-01" for r in rows)
    # the bad messages' good members (e.g. Current of a message whose Voltage was out of range) are kept
    bad_ch = influx_rows(influxd.url, line, 'SELECT count("value") FROM "Formation" WHERE "lane" = \'CH-02\' '
                                            'AND "signal" = \'Current\'')
    assert bad_ch[0]["count"] == 3 * BAD_EACH  # nan, out_of_range and unit messages had a valid Current
    assert sum(isinstance(r, Sample) and r.station == "Formation/CH-01" for r in seen) == GOOD * 5
    assert sum(isinstance(r, TraceEvent) for r in seen) == 1
    # the quarantine keeps raw payloads, lists and exports them
    from twin.quarantine import Quarantine

    q = Quarantine(tmp_path / "quarantine")
    assert q.count_by_reason() == counts
    last = q.list("malformed_json", limit=3)
    assert len(last) == 3 and "raw_base64" in last[-1]
    assert q.export(tmp_path / "out.jsonl", "out_of_range") == BAD_EACH
    assert all(json.loads(x)["reason"] == "out_of_range" for x in (tmp_path / "out.jsonl").read_text().splitlines())


async def test_quarantine_cli_lists_and_exports(tmp_path: Path) -> None:
    import subprocess
    import sys

    from connectors.records import Rejected
    from twin.quarantine import Quarantine

    q = Quarantine(tmp_path / "q")
    q.add_many([Rejected("nan", "NaN with good quality", "src", b"raw", time.time_ns()) for _ in range(3)])
    q.close()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"quarantine: {{dir: {tmp_path / 'q'}}}\n")
    run = [sys.executable, "-m", "twin", "quarantine"]
    out = subprocess.run([*run, "counts", "--config", str(cfg)], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"nan": 3}
    out = subprocess.run([*run, "list", "--config", str(cfg), "--limit", "2"], capture_output=True, text=True,
                         check=True)
    assert len(out.stdout.splitlines()) == 2 and json.loads(out.stdout.splitlines()[0])["raw"] == "raw"
    out = subprocess.run([*run, "export", "--config", str(cfg), "--out", str(tmp_path / "e.jsonl")],
                         capture_output=True, text=True, check=True)
    assert "exported 3" in out.stdout
    bad = subprocess.run([*run, "counts", "--config", str(tmp_path / "missing.yaml")], capture_output=True, text=True)
    assert bad.returncode == 2 and "does not exist" in bad.stderr
