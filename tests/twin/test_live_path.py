"""The live path: OPC UA samples reach the subscribers (live state, recommender) when their publish response arrives,
and the store path does not hand them over a second time; the live evaluation between control rounds does not
advance the bias filter, and the round takes it over instead of computing again."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from connectors.records import Sample, TraceEvent
from tests.twin.plantsim import Plant, control_settings, new_live
from tests.twin.simstack import sim_args, start_time_in_past, twin_config
from twin.alarms import AlarmManager
from twin.audit import AuditLog
from twin.control import Controller
from twin.ingest import IngestPipeline
from twin.plant_model import PhysicsModel
from twin.recommend import Proposal, Recommender

pytestmark = [pytest.mark.timeout(120)]


def _influx_rows(url: str, db: str, q: str) -> list[list[Any]]:
    query = urllib.parse.urlencode({"db": db, "q": q, "epoch": "ns"})
    with urllib.request.urlopen(f"{url}/query?{query}", timeout=10) as r:  # noqa: S310 - loopback test server
        series = json.loads(r.read())["results"][0].get("series", [])
    return [row for s in series for row in s["values"]]


async def test_each_sample_reaches_subscribers_once_with_the_stored_trace_ids(tmp_path: Path, influxd: Any,
                                                                               simulator_factory: Any) -> None:
    sim = simulator_factory(args=sim_args(120, 5, start_time_in_past(12)))
    cfg = twin_config(tmp_path, influxd, sim)  # discovery: every variable, the ID variables and trace events
    assert cfg.ingest.live_dispatch  # the default
    pipe = IngestPipeline(cfg, mqtt=False)
    got: list[Sample | TraceEvent] = []
    pipe.subscribe(got.extend)
    await pipe.start()
    try:
        await asyncio.sleep(15)  # at x120 the first coated roll has reached the drying gauge
    finally:
        await pipe.stop()
    samples = [r for r in got if isinstance(r, Sample)]
    keys = Counter((s.station, s.signal, s.time_ns) for s in samples)
    assert samples and max(keys.values()) == 1, "a sample reached the subscribers twice"
    events = [r for r in got if isinstance(r, TraceEvent)]
    assert events and pipe.counts["live_dispatched"] == len(samples)
    assert len(got) == pipe.counts["accepted"]  # every stored record reached the subscribers, none twice
    assert pipe.counts["live_dropped"] == 0
    # what the live path said a mass-loading sample's roll was is what InfluxDB holds for it
    live_roll = {s.time_ns: s.trace.get("roll_id") for s in samples
                 if s.station == "Drying/Cathode" and s.signal == "MassLoading" and s.quality == "good"}
    assert len(live_roll) > 10 and all(live_roll.values())
    stored = _influx_rows(influxd.url, cfg.influx.database,
                          "SELECT value, roll_id FROM Drying WHERE lane = 'Cathode' AND signal = 'MassLoading' "
                          "AND quality = 'good'")
    stored_roll = {int(t): roll for t, _value, roll in stored}
    assert stored_roll == live_roll


async def test_live_evaluation_leaves_the_bias_filter_to_the_round_which_takes_it_over() -> None:
    plant, live = Plant(), new_live()
    plant.drifted(live)  # solid content has drifted: mass loading is low
    rec = Recommender(control_settings(), PhysicsModel(), live)
    calls = Counter[str]()
    recommend = rec.recommend

    def counted(loop_name: str, commit: bool = True) -> Any:
        calls["commit" if commit else "live"] += 1
        return recommend(loop_name, commit)

    rec.recommend = counted  # type: ignore[method-assign]

    async def grant() -> bool:
        return True

    ctl = Controller(rec, AuditLog(), AlarmManager(), plant.write, grant)
    for _ in range(5):  # five gauge samples between two rounds
        result = await ctl.evaluate("Cathode")
        assert isinstance(result, Proposal)
        assert rec.biases == {}  # the filter has not moved
    assert ctl.live["Cathode"].result is result and ctl.evaluations["proposal"] == 5
    out = await ctl.run_round()
    assert calls == {"live": 5}  # the round used the newest live evaluation, computed nothing again
    assert len(out) == 1 and out[0].proposal is result  # type: ignore[union-attr]
    assert set(rec.biases) == {("Cathode", t.signal) for t in rec.product.loops["Cathode"].targets}
    biases = dict(rec.biases)
    plant.run(live, plant.t_s + 200.0)  # the drift goes on, no gauge triggers an evaluation
    await ctl.run_round()  # nothing evaluated since the last round: it computes, and the filter takes its step
    assert calls == {"live": 5, "commit": 1}
    assert rec.biases != biases
