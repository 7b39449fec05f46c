"""Fault schedules on the real line, checked value by value against the simulator's record.

``test_short_schedule`` is part of ``make test`` (about a minute of wall time); the long schedules run with
``make test-faults`` (``-m faults``). Each prints its schedule and seed first; ``FAULTS_SEED=<n>`` replays one with
the same fault times. Done when the worst schedule ends with 0 values lost, 0 duplicated, 0 mis-tagged and every
cell's genealogy complete.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.faults import schedule as S
from tests.faults.harness import FaultRun, Result, small_filesystem


def run_schedule(make: Callable[[int], S.Schedule], tmp_path: Path, fixtures: dict[str, Any]) -> Result:
    sched = make(S.seed_for(make.__name__))
    if sched.spool_fs_bytes:
        with small_filesystem(tmp_path / "spool", sched.spool_fs_bytes) as why_not:
            if why_not is not None:
                pytest.skip(f"disk-full schedule skipped: {why_not}")
            return FaultRun(tmp_path, sched, **fixtures).run()
    return FaultRun(tmp_path, sched, **fixtures).run()


@pytest.fixture
def fixtures(influxd_factory: Any, mosquitto_factory: Any, simulator_factory: Any,
             ingest_factory: Any) -> dict[str, Any]:
    return {"influxd_factory": influxd_factory, "mosquitto_factory": mosquitto_factory,
            "simulator_factory": simulator_factory, "ingest_factory": ingest_factory}


def assert_clean(result: Result) -> None:
    print(result.describe())
    if result.log_tail:
        print("warnings and errors logged:\n" + "\n".join(result.log_tail))
    r = result.report
    assert r.opcua_checked > 3000 and r.mqtt_checked > 20 and r.trace_checked > 20, (
        "too little data for the schedule to mean anything\n" + result.describe())
    assert r.clean(), result.describe()


@pytest.mark.slow
def test_short_schedule(tmp_path: Path, fixtures: dict[str, Any]) -> None:
    assert_clean(run_schedule(S.short, tmp_path, fixtures))


@pytest.mark.faults
@pytest.mark.timeout(900)
@pytest.mark.parametrize("make", S.LONG, ids=[m.__name__ for m in S.LONG])
def test_long_schedule(make: Callable[[int], S.Schedule], tmp_path: Path, fixtures: dict[str, Any]) -> None:
    assert_clean(run_schedule(make, tmp_path, fixtures))
