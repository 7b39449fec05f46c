"""One run of the real line with all five faults; at the end every value the simulator recorded is in InfluxDB.

Real processes throughout: Debian's influxd and mosquitto, ``python -m simulator`` (OPC UA + MQTT, ``--record``)
and ``python -m twin ingest``. Timeline (wall clock):

1. ingest starts first (MQTT session exists before the cyclers publish), then the simulator at 60x speed;
2. influxd is killed with SIGKILL and stays down >= 30 s;
3. during the outage mosquitto is restarted, the ingest process is SIGKILLed and restarted, and the simulator is
   restarted (its line time continues);
4. influxd comes back; the spool drains.

Then, against the simulator's own record (tests/faults/checker.py, shared with the fault-schedule suite): every OPC UA
value after each run's first stored value per node (values a freshly started server published before any subscription
existed cannot be had over OPC UA) and before its last steps (the server was stopped before it could publish those),
once, with the trace IDs the record says were current; every cycler message (contiguous seq per channel); every trace
event; no series with two units.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.faults.checker import Run, check_all
from tests.ingest.conftest import (
    FAST_LINE,
    influx_rows,
    ingest_config,
    read_record,
    wait_until,
)

# the five faults in one long run (~55 s): make test-faults; make test runs the short schedule of tests/faults
pytestmark = [pytest.mark.slow, pytest.mark.faults]

SPEED, TICK_S = 120, 5


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
    report = check_all([Run(r, "stopped", TICK_S) for r in runs], rows)
    print(report.summary())
    assert report.opcua_checked > 10_000 and report.mqtt_checked > 50 and report.trace_checked > 20, report.summary()
    # the pre-subscription gap at a run's start is short (seconds of wall time, x60 line time)
    assert report.first_stored_median_s <= 20 * SPEED, report.summary()
    assert report.clean(), report.summary()
    for run in runs:
        seqs: dict[str, list[int]] = defaultdict(list)
        for topic, msg in run.mqtt:
            seqs[topic.split("/")[3]].append(int(msg["seq"]))
        for ch, s in seqs.items():
            assert sorted(s) == list(range(1, len(s) + 1)), f"{ch}: the simulator's own seq has gaps"
