"""A hung OPC UA server (SIGSTOP, then SIGCONT) on a line whose clock is hours away from the wall clock, then a crash
of the ingest process: every stored sample carries the roll ID and roll position that the simulator's record says
were current at its source time, and no instant is stored twice (with and without an ID tag).

Real processes throughout: Debian's influxd, ``python -m simulator --start-time <6 h ago> --record`` and
``python -m twin ingest``. The stop freezes the server's clock too: on SIGCONT it runs the steps it owes as fast as
it can, so the first publish responses after the stop carry hundreds of steps of every node (the catch-up).

What went wrong before (issue 10, item 4):

- ID nodes that the line has not written yet (a dryer with no roll) have the server's creation time as their
  SourceTimestamp, and values without one (RollPosition while it waits) were stamped with the wall clock: entries
  hours ahead of the line's clock, against which the history was trimmed (every 64 entries it dropped all but the
  newest position, so the catch-up's samples found none);
- the saved trace context kept only the newest entry per key (that future empty roll ID), so after the restart the
  republished samples found no roll ID, and were stored a second time without it.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.ingest.conftest import (
    FAST_LINE,
    IdTimeline,
    influx_rows,
    ingest_config,
    read_record,
    station_signal,
    wait_until,
)

SPEED, TICK_S = 40, 1
SKEW = timedelta(hours=-6)  # the line's clock runs six hours behind the wall clock (the documented --start-time)


def _run(tmp_path: Path, influx: Any, simulator_factory: Any, ingest_factory: Any, database: str,
         schedule: list[tuple[str, float]]) -> tuple[Any, list[dict[str, Any]], dict[str, Any]]:
    """Start the line and ingest, play ``schedule`` (("run" | "hang" | "crash", seconds)), stop, read back."""
    record = tmp_path / "record.jsonl"
    start = (datetime.now(tz=UTC) + SKEW).replace(microsecond=0)
    sim = simulator_factory(args=["--security", "none", "--speed", str(SPEED), "--tick", str(TICK_S),
                                  "--scenario", str(FAST_LINE), "--record", str(record),
                                  "--start-time", start.strftime("%Y-%m-%dT%H:%M:%SZ")])
    cfg = ingest_config(tmp_path, influx_url=influx.url, database=database, opcua_endpoint=sim.endpoint,
                        mqtt_url=None, client_id=f"ingest-{database}")
    ingest = ingest_factory(cfg)
    wait_until(lambda: ingest.status()["counts"]["stored"] > 200, 30, what="first samples stored")
    try:
        for what, seconds in schedule:
            if what == "run":
                time.sleep(seconds)
            elif what == "hang":  # the server process freezes: no answers, no publishing, its line clock stops
                os.killpg(sim.proc.pid, signal.SIGSTOP)
                try:
                    time.sleep(seconds)
                finally:
                    os.killpg(sim.proc.pid, signal.SIGCONT)
                wait_until(lambda: (ingest.status().get("opcua") or {}).get("connected"), 30, 0.1,
                           "ingest back on the server after the hang")
            elif what == "crash":  # the ingest process dies (SIGKILL) and is started again
                ingest.kill()
                time.sleep(seconds)
                ingest.start()
                wait_until(lambda: (ingest.status().get("opcua") or {}).get("connected"), 30, 0.1,
                           "ingest back after the crash")
            else:
                raise ValueError(what)
    finally:
        if sim.proc is not None:
            os.killpg(sim.proc.pid, signal.SIGCONT)
    sim.stop()  # graceful: the record is complete
    wait_until(lambda: ingest.status()["spool"]["depth_lines"] == 0 and ingest.status()["inbox_records"] == 0,
               60, 0.5, "spool drained")
    final = ingest.status()
    ingest.stop()
    rows = influx_rows(influx.url, database, "SELECT * FROM /.*/")
    return read_record(record), rows, final


def _check(rec: Any, rows: list[dict[str, Any]]) -> int:
    """Every stored OPC UA sample that the record has (the server's "waiting" placeholders, published before the
    line ran, are not in it) against the record; returns how many were checked.

    An ID cannot be known before the first value of its node that the subscription delivered (the initial values of
    the first subscription are older than that: their IDs were never published to us); those are left out."""
    ids = {"RollId": "roll_id", "RollPosition": "roll_position_m", "SlurryBatchId": "slurry_batch_id"}
    timelines = {p: IdTimeline(v) for p, v in rec.opcua.items() if p.rsplit(".", 1)[-1] in ids}
    recorded = {(station_signal(p), t) for p, vals in rec.opcua.items() for t, _, _ in vals}
    stored = [r for r in rows if r["_measurement"] != "trace_events" and r.get("protocol") is None]
    first_seen: dict[str, int] = {}
    for r in stored:
        path = ".".join(k for k in (r["_measurement"], r.get("lane") or "", r["signal"]) if k)
        if path in timelines and ((r["_measurement"], r.get("lane") or "", r["signal"]), r["time"]) in recorded:
            first_seen[path] = min(first_seen.get(path, r["time"]), r["time"])
    per_instant: Counter[tuple[str, str, str, int]] = Counter()
    wrong: dict[str, list[tuple[str, int, Any, Any]]] = defaultdict(list)
    checked = 0
    for r in stored:
        key = (r["_measurement"], r.get("lane") or "", r["signal"])
        per_instant[(*key, r["time"])] += 1
        if (key, r["time"]) not in recorded:
            continue
        station = ".".join(k for k in key[:2] if k)
        checked += 1
        for var, field in ids.items():
            tl = timelines.get(f"{station}.{var}")
            if tl is None or r["time"] < first_seen.get(f"{station}.{var}", 0):
                continue
            want, got = tl.at(r["time"]), r.get(field)
            if field == "roll_position_m":
                ok = (want is None and got is None) or (want is not None and got is not None
                                                        and math.isclose(got, want, rel_tol=0, abs_tol=1e-9))
            else:
                ok = want == got
            if not ok:
                wrong[field].append((f"{station}.{r['signal']}", r["time"], want, got))
    dup = [k for k, n in per_instant.items() if n > 1]
    report = {f: f"{len(w)} samples, e.g. {w[:3]}" for f, w in wrong.items()}
    assert not wrong, f"of {checked} stored samples, wrong trace IDs: {report}"
    assert not dup, f"{len(dup)} instants are stored in more than one series (different tags), e.g. {dup[:3]}"
    return checked


def test_hung_server_then_ingest_crash_on_a_skewed_line_clock(tmp_path: Path, influxd: Any, simulator_factory: Any,
                                                             ingest_factory: Any) -> None:
    rec, rows, final = _run(tmp_path, influxd, simulator_factory, ingest_factory, "hung_short",
                            [("run", 3.0), ("hang", 5.0), ("run", 3.0), ("crash", 1.0), ("run", 3.0)])
    assert final["opcua"]["resumed"] >= 1, final["opcua"]
    assert final["counts"]["rejected"] == 0, final["quarantine"]
    positions = [t for p, v in rec.opcua.items() if p.endswith("RollPosition") for t, _, _ in v]
    assert positions and max(positions) < time.time_ns() - 3 * 3600 * 10**9, "the line clock is not skewed"
    assert _check(rec, rows) > 5000


@pytest.mark.faults
def test_hung_server_and_crashes_long_schedule(tmp_path: Path, influxd: Any, simulator_factory: Any,
                                              ingest_factory: Any) -> None:
    """Issue 10's run: a 15 s hang, the catch-up, crashes during and after it, a second hang."""
    rec, rows, final = _run(tmp_path, influxd, simulator_factory, ingest_factory, "hung_long",
                            [("run", 5.0), ("hang", 15.0), ("crash", 0.5), ("run", 5.0), ("hang", 8.0),
                             ("run", 1.0), ("crash", 2.0), ("run", 5.0)])
    assert final["counts"]["rejected"] == 0, final["quarantine"]
    assert _check(rec, rows) > 20_000
