"""One run of the real line with all five faults; at the end every value the simulator recorded is in InfluxDB.

Real processes throughout: Debian's influxd and mosquitto, ``python -m simulator`` (OPC UA + MQTT, ``--record``)
and ``python -m twin ingest``. Timeline (wall clock):

1. ingest starts first (MQTT session exists before the cyclers publish), then the simulator at 60x speed;
2. influxd is killed with SIGKILL and stays down >= 30 s;
3. during the outage mosquitto is restarted, the ingest process is SIGKILLed and restarted, and the simulator is
   restarted (its line time continues);
4. influxd comes back; the spool drains.

Then, against the simulator's own record: every OPC UA value after each run's first stored value per node (values a
freshly started server published before any subscription existed cannot be had over OPC UA) and before its last steps
(the server was stopped before it could publish those), with the trace IDs the record says were current; every cycler message (contiguous seq per channel); every trace event; no series twice.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.records import iso_to_ns
from tests.ingest.conftest import (
    FAST_LINE,
    IdTimeline,
    Record,
    influx_rows,
    ingest_config,
    read_record,
    station_signal,
    wait_until,
)

pytestmark = pytest.mark.slow

ID_VARS = {"RollId": "roll_id", "BatchId": "slurry_batch_id", "SlurryBatchId": "slurry_batch_id"}
SPEED, TICK_S = 120, 5
# 24 steps per wall second and a 100 ms publishing interval: the server stops before publishing its last 2-3 steps
LAST_STEPS_UNPUBLISHED = 3


def _sim_args(mqtt_url: str, record: Path, start: datetime) -> list[str]:
    return ["--security", "none", "--speed", str(SPEED), "--tick", str(TICK_S), "--mqtt-url", mqtt_url,
            "--scenario", str(FAST_LINE), "--record", str(record),
            "--start-time", start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")]


def test_run_with_all_five_faults_loses_nothing(tmp_path: Path, influxd_factory: Any, mosquitto_factory: Any,
                                                 simulator_factory: Any, ingest_factory: Any) -> None:
    influx = influxd_factory()
    mq = mosquitto_factory()
    rec1, rec2 = tmp_path / "record1.jsonl", tmp_path / "record2.jsonl"
    start1 = datetime.now(tz=UTC).replace(microsecond=0)
    sim = simulator_factory(args=_sim_args(mq.url, rec1, start1), start=False)
    cfg = ingest_config(tmp_path, influx_url=influx.url, database="faults", opcua_endpoint=sim.endpoint,
                        mqtt_url=mq.url, client_id="ingest-faults")
    ingest = ingest_factory(cfg)
    wait_until(lambda: (ingest.status().get("mqtt") or {}).get("connected"), 20, what="ingest MQTT connected")
    sim.start()
    wait_until(lambda: ingest.status()["counts"]["stored"] > 500, 30, what="first samples stored")
    wait_until(lambda: (ingest.status().get("mqtt") or {}).get("messages", 0) > 40, 40, what="cyclers reporting")

    # 1. the database dies (SIGKILL) and stays away >= 30 s
    time.sleep(2)
    influx.kill()
    t_db_down = time.monotonic()

    # 2. the broker restarts
    time.sleep(2)
    mq.restart()

    # 3. the twin's ingest process crashes (SIGKILL) and is started again
    time.sleep(3)
    ingest.kill()
    time.sleep(1.5)
    ingest.start()
    wait_until(lambda: (ingest.status().get("opcua") or {}).get("connected"), 20, what="ingest OPC UA back")
    resumed_after_crash = ingest.status()["opcua"]["resumed"]

    # 4. the simulator (OPC UA server, cyclers) restarts; its line time carries on
    time.sleep(3)
    sim.stop()
    last_t = max(int(line.split('"t_ns":')[1].split(",")[0]) for line in rec1.read_text().splitlines() if line)
    start2 = datetime.fromtimestamp(last_t / 1e9, tz=UTC) + timedelta(seconds=TICK_S)
    sim.args = _sim_args(mq.url, rec2, start2)
    sim.start()
    t_sim_up = time.monotonic()
    before = ingest.status()["opcua"]["last_data_ns"]
    flow_again_s = wait_until(lambda: ingest.status()["opcua"]["last_data_ns"] > before
                              and ingest.status()["opcua"]["connected"], 15, 0.05, "data after simulator restart")
    flow_again_s += time.monotonic() - t_sim_up - flow_again_s  # measured from the server being up

    # 5. the database comes back after >= 30 s
    time.sleep(max(0.0, 31 - (time.monotonic() - t_db_down)))
    outage_s = time.monotonic() - t_db_down
    influx.start()
    time.sleep(max(4.0, 22 - (time.monotonic() - t_sim_up)))  # cells of the second run reach the cyclers
    sim.stop()  # graceful: the record is complete, the cyclers' MQTT queue flushed
    wait_until(lambda: ingest.status()["spool"]["depth_lines"] == 0 and ingest.status()["inbox_records"] == 0,
               60, 0.5, "spool drained")
    time.sleep(1.0)
    wait_until(lambda: ingest.status()["spool"]["depth_lines"] == 0, 30, 0.5, "spool drained (late MQTT)")
    final = ingest.status()
    ingest.stop()

    assert outage_s >= 30
    assert flow_again_s <= 5.0, f"data flowed again {flow_again_s:.1f} s after the simulator restart"
    assert resumed_after_crash >= 1, "the restarted ingest did not take over its OPC UA subscription"
    assert final["counts"]["rejected"] == 0, final["quarantine"]
    assert final["database"]["refused_batches"] == 0

    runs = [read_record(rec1), read_record(rec2)]
    rows = influx_rows(influx.url, "faults", "SELECT * FROM /.*/")
    _check_opcua(runs, rows)
    _check_mqtt(runs, rows)
    _check_trace_events(runs, rows)
    _check_no_duplicate_series(rows)


def _run_range(run: Record) -> tuple[int, int]:
    ts = [t for vals in run.opcua.values() for t, _, _ in vals]
    return min(ts), max(ts)


def _check_opcua(runs: list[Record], rows: list[dict[str, Any]]) -> None:
    stored: dict[tuple[str, str, str], dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        if r["_measurement"] != "trace_events" and r.get("protocol") is None:
            stored[(r["_measurement"], r.get("lane") or "", r["signal"])][r["time"]] = r
    missing: list[tuple[str, int, str]] = []
    wrong_value: list[tuple[str, int, Any, Any]] = []
    wrong_ids: list[tuple[str, int, str, Any, Any]] = []
    checked = 0
    for run in runs:
        lo, hi = _run_range(run)
        timelines = {p: IdTimeline(v) for p, v in run.opcua.items() if p.rsplit(".", 1)[-1] in ID_VARS}
        first_stored: list[int] = []
        for path, values in run.opcua.items():
            key = station_signal(path)
            mine = {t: row for t, row in stored[key].items() if lo <= t <= hi}
            recorded_times = {t for t, _, _ in values}
            matched = [t for t in mine if t in recorded_times]
            assert matched, f"nothing recorded was stored for {path} in a run"
            t_first = min(matched)  # the first value our subscription saw (initial 'waiting' samples do not count)
            first_stored.append(t_first - lo)
            station = path.rsplit(".", 1)[0]
            for t, value, status in values:
                if t < t_first:
                    continue  # published before any subscription of ours existed (server just started)
                if t > hi - LAST_STEPS_UNPUBLISHED * TICK_S * 10**9:
                    continue  # the last steps before the server was stopped: no publish cycle followed them
                checked += 1
                row = mine.get(t)
                if row is None:
                    missing.append((path, t, f"{(hi - t) / (TICK_S * 1e9):.0f} steps before the run's end"))
                    continue
                if status and status.startswith("Bad"):
                    if row["quality"] != "bad":
                        wrong_value.append((path, t, value, row))
                elif isinstance(value, float) or isinstance(value, int) and not isinstance(value, bool):
                    if row.get("value") is None or not math.isclose(row["value"], float(value), rel_tol=1e-12,
                                                                     abs_tol=1e-12):
                        wrong_value.append((path, t, value, row.get("value")))
                elif isinstance(value, str) and row.get("value_str", "") != value and not (value == "" and
                                                                                           row.get("value_str") is None):
                    wrong_value.append((path, t, value, row.get("value_str")))
                for var, tag in ID_VARS.items():
                    tl = timelines.get(f"{station}.{var}")
                    if tl is not None:
                        want = tl.at(t)
                        if row.get(tag) != want:
                            wrong_ids.append((path, t, tag, want, row.get(tag)))
        # the pre-subscription gap at a run's start is short (seconds of wall time, x60 line time)
        assert sorted(first_stored)[len(first_stored) // 2] <= 20 * SPEED * 10**9
    assert checked > 10_000
    assert not missing, f"{len(missing)} of {checked} recorded OPC UA values missing, e.g. {missing[:5]}"
    assert not wrong_value, f"{len(wrong_value)} values differ, e.g. {wrong_value[:3]}"
    assert not wrong_ids, f"{len(wrong_ids)} samples carry the wrong trace IDs, e.g. {wrong_ids[:3]}"


def _check_mqtt(runs: list[Record], rows: list[dict[str, Any]]) -> None:
    stored = {(r["lane"], int(r["seq"]), r["time"]) for r in rows
              if r["_measurement"] == "Formation" and r.get("protocol") == "mqtt" and r.get("seq") is not None}
    total = 0
    for run in runs:
        seqs: dict[str, list[int]] = defaultdict(list)
        for topic, msg in run.mqtt:
            ch = topic.split("/")[3]
            seqs[ch].append(int(msg["seq"]))
            total += 1
            assert (ch, int(msg["seq"]), iso_to_ns(msg["time"])) in stored, f"cycler message lost: {topic} {msg}"
        for ch, s in seqs.items():
            assert sorted(s) == list(range(1, len(s) + 1)), f"{ch}: the simulator's own seq has gaps"
    assert total > 50, "too few cycler messages for the test to mean anything"


def _check_trace_events(runs: list[Record], rows: list[dict[str, Any]]) -> None:
    import json

    stored = {(e["seq"], e["id"], e["kind"], e["time"]) for e in
              (json.loads(r["json"]) for r in rows if r["_measurement"] == "trace_events")}
    n = 0
    for run in runs:
        for ev in run.trace:
            n += 1
            assert (ev["seq"], ev["id"], ev["kind"], ev["time"]) in stored, f"trace event lost: {ev}"
    assert n > 20


def _check_no_duplicate_series(rows: list[dict[str, Any]]) -> None:
    units: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    per_instant = Counter()
    for r in rows:
        if r["_measurement"] == "trace_events":
            continue
        k = (r["_measurement"], r.get("lane") or "", r["signal"])
        units[k].add(r.get("unit") or "")
        per_instant[(k, r.get("protocol"), r["time"])] += 1
    assert all(len(u) == 1 for u in units.values()), {k: u for k, u in units.items() if len(u) > 1}
    dup = [k for k, n in per_instant.items() if n > 1]
    assert not dup, f"{len(dup)} (signal, time) pairs are stored in more than one series, e.g. {dup[:3]}"
