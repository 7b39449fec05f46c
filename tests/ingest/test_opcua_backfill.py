"""OPC UA history backfill with real processes: a gap that no subscription can bring back is read from the server's
history, and every value the simulator recorded is in InfluxDB exactly once, with the trace IDs of its time.

Both faults leave the connector with a *new* subscription (nothing to transfer), so without the backfill the values
the simulator published in the gap are lost (``opcua.history_backfill: false`` loses them; the checker counts them):

1. the ingest process is killed and stays away longer than its session (``session_timeout_s`` 1 s): the restarted
   process cannot resume the session, creates a new subscription, and the server's in-memory history has the gap;
2. the ingest process is killed, the simulator goes on publishing, then stops and starts again (line time carries on)
   with its history in SQLite: the values published before its restart are only in that file.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.faults.checker import Report, Run, check_opcua
from tests.ingest.conftest import FAST_LINE, influx_rows, ingest_config, read_record, wait_until

SPEED, TICK_S = 20, 1


def _sim_args(record: Path, start: datetime, history_db: Path | None) -> list[str]:
    args = ["--security", "none", "--speed", str(SPEED), "--tick", str(TICK_S), "--scenario", str(FAST_LINE),
            "--record", str(record), "--start-time", start.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "--historize"]
    return args + (["--history-db", str(history_db)] if history_db else [])


def _config(tmp: Path, influx_url: str, db: str, endpoint: str) -> Path:
    # a session the server forgets 1 s after the cut: the restarted ingest cannot take its subscription over
    return ingest_config(tmp, influx_url=influx_url, database=db, opcua_endpoint=endpoint, mqtt_url=None,
                         client_id=f"ingest-{db}", opcua={"session_timeout_s": 1.0})


def _opcua(ingest: Any) -> dict[str, Any]:
    return ingest.status().get("opcua") or {}


def _drained(ingest: Any) -> bool:
    st = ingest.status()
    return st["spool"]["depth_lines"] == 0 and st["inbox_records"] == 0


def _check(runs: list[Run], influx_url: str, db: str) -> Report:
    report = Report()
    check_opcua(runs, influx_rows(influx_url, db, "SELECT * FROM /.*/"), report)
    print(report.summary())
    return report


def test_ingest_away_longer_than_its_session_backfills_the_gap(tmp_path: Path, influxd: Any, simulator_factory: Any,
                                                                ingest_factory: Any) -> None:
    record = tmp_path / "record.jsonl"
    sim = simulator_factory(args=_sim_args(record, datetime.now(tz=UTC).replace(microsecond=0), None))
    ingest = ingest_factory(_config(tmp_path, influxd.url, "backfill_session", sim.endpoint))
    wait_until(lambda: _opcua(ingest).get("connected") and ingest.status()["counts"]["stored"] > 300, 30,
               what="first samples stored")
    time.sleep(1.0)
    ingest.kill()
    time.sleep(3.0)  # ~60 line seconds published while no session of ours exists; the session expires
    ingest.start()
    wait_until(lambda: _opcua(ingest).get("backfilled", 0) > 0, 20, what="values backfilled")
    time.sleep(2.0)
    sim.stop()  # graceful: the record is complete
    wait_until(lambda: _drained(ingest), 30, 0.2, "spool drained")
    st = _opcua(ingest)
    ingest.stop()
    assert st["resumed"] == 0, f"the subscription was taken over (no gap to fill): {st}"
    report = _check([Run(read_record(record), "stopped", TICK_S)], influxd.url, "backfill_session")
    assert report.opcua_checked > 3000, report.summary()
    assert report.clean(), report.summary()


def test_simulator_restart_with_sqlite_history_backfills_what_it_published_before(
        tmp_path: Path, influxd: Any, simulator_factory: Any, ingest_factory: Any) -> None:
    rec1, rec2, history = tmp_path / "record1.jsonl", tmp_path / "record2.jsonl", tmp_path / "history.sqlite"
    sim = simulator_factory(args=_sim_args(rec1, datetime.now(tz=UTC).replace(microsecond=0), history))
    ingest = ingest_factory(_config(tmp_path, influxd.url, "backfill_restart", sim.endpoint))
    wait_until(lambda: _opcua(ingest).get("connected") and ingest.status()["counts"]["stored"] > 300, 30,
               what="first samples stored")
    time.sleep(1.0)
    ingest.kill()
    time.sleep(2.0)  # the server goes on publishing: these values exist only in its history after its restart
    sim.stop()
    last_t = max(int(line.split('"t_ns":')[1].split(",")[0]) for line in rec1.read_text().splitlines() if line)
    sim.args = _sim_args(rec2, datetime.fromtimestamp(last_t / 1e9, tz=UTC) + timedelta(seconds=TICK_S), history)
    sim.start()
    ingest.start()
    wait_until(lambda: _opcua(ingest).get("backfilled", 0) > 0, 20, what="values backfilled")
    time.sleep(2.0)
    sim.stop()
    wait_until(lambda: _drained(ingest), 30, 0.2, "spool drained")
    st = _opcua(ingest)
    ingest.stop()
    assert st["resumed"] == 0, st
    report = _check([Run(read_record(rec1), "stopped", TICK_S), Run(read_record(rec2), "stopped", TICK_S)],
                    influxd.url, "backfill_restart")
    assert report.opcua_checked > 3000, report.summary()
    assert report.clean(), report.summary()
