"""The dashboard's aggregated reads against a real influxd: a trend's buckets equal the raw samples' mean / min / max
in each bucket, with spec limits and the twin's setpoint writes; the rolls a gauge saw; a roll's 2-D map from its
cross-web tracks with its segments; bad input answered 422 with what is wrong."""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from connectors.records import Sample, TraceEvent, ns_to_iso
from tests.simline import sim_specs
from twin.alarms import AlarmManager
from twin.api import create_app
from twin.audit import AuditLog
from twin.auth import Role, TokenStore
from twin.context import TwinContext
from twin.control import Controller
from twin.live import LiveState
from twin.metrics import Metrics
from twin.plant_model import PhysicsModel
from twin.recommend import Recommender
from twin.service_settings import LiveSettings, ServiceSettings
from twin.store.lineproto import sample_line, trace_event_line
from twin.store.query import InfluxQuery

T0 = 1_764_000_000 * 10**9
STEP = 10 * 10**9
N = 360  # one hour at 0.1 Hz
ROLLS = ("CR-C-000001", "CR-C-000002")


def _write(url: str, db: str, lines: list[str]) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{url}/query", data=f"q=CREATE DATABASE {db}".encode()))  # noqa: S310
    for i in range(0, len(lines), 5000):
        req = urllib.request.Request(f"{url}/write?db={db}&precision=ns", data="\n".join(lines[i:i + 5000]).encode())
        urllib.request.urlopen(req).read()  # noqa: S310 - loopback


@pytest.fixture
def env(tmp_path: Path, influxd: Any) -> Iterator[Any]:
    db = f"dash_{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(3)
    ml = 14.31 + 0.1 * rng.standard_normal(N)
    lines = []
    for i in range(N):
        t = T0 + i * STEP
        roll = ROLLS[i * 2 // N]
        trace = {"roll_id": roll, "roll_position_m": (i % (N // 2)) * 0.5}
        lines.append(sample_line(Sample(t, "PL1", "Drying/Cathode", "MassLoading", float(ml[i]), "mg/cm2", "good",
                                        "t", dict(trace))))
        for k in range(4):
            lines.append(sample_line(Sample(t, "PL1", "Drying/Cathode", f"MassLoadingProfile.P{k:03d}",
                                            float(ml[i] + 0.1 * k), "mg/cm2", "good", "t", dict(trace))))
        lines.append(sample_line(Sample(t, "PL1", "Coating/Cathode", "PumpFlowRate", 700.0 + i, "cm3/h", "good", "t",
                                        {})))
    for j in range(3):
        ev = TraceEvent.from_json({"schema": "pilotline.trace.v1", "seq": 100 + j, "line": "PL1",
                                   "time": ns_to_iso(T0 + (N // 2) * STEP + j), "kind": "created",
                                   "id": f"SEG-C-000001-{j + 1:03d}", "type": "RollSegment", "step": "Coating",
                                   "station": "Coating/Cathode",
                                   "inputs": [{"id": ROLLS[0], "type": "CoatedRoll", "from_m": 30.0 * j,
                                               "to_m": 30.0 * (j + 1)}]})
        lines.append(trace_event_line(ev))
    write_t = T0 + 100 * STEP
    lines.append('twin_audit,line=PL1,action=write,loop=Cathode audit_id=1i,who="olga",why="test",'
                 f'target="PilotLine/Coating/Cathode/PumpFlowRateSetpoint",before=700.0,after=720.0 {write_t}')
    _write(influxd.url, db, lines)
    from tests.twin.plantsim import control_settings

    settings = ServiceSettings(control=control_settings(), live=LiveSettings(specs=sim_specs()))
    settings.auth.token_file = tmp_path / "tokens.json"
    tokens = TokenStore(settings.auth.token_file)
    alarms = AlarmManager()
    live = LiveState(settings.live, alarms)
    query = InfluxQuery(influxd.url, db)

    async def grant() -> bool:
        return True

    ctl = Controller(Recommender(settings.control, PhysicsModel(), live), AuditLog(), alarms,
                     lambda *a: None, grant)  # type: ignore[arg-type,return-value]
    ctx = TwinContext(settings=settings, line="PL1", live=live, alarms=alarms, audit=AuditLog(), tokens=tokens,
                      controller=ctl, metrics=Metrics(lambda: {"samples_total": 0, "mode": "off",
                                                               "recommendations": {}}),
                      influx=lambda: query)
    with TestClient(create_app(ctx)) as client:  # one event loop for the store's HTTP client, as in the service
        client.headers["Authorization"] = "Bearer " + tokens.create(Role.viewer, "v")
        yield {"client": client, "ml": ml, "write_t": write_t}


def test_trend_buckets_equal_the_raw_samples_with_spec_and_setpoint_writes(env: Any) -> None:
    signals = ["Drying/Cathode/MassLoading", "Coating/Cathode/PumpFlowRate"]
    r = env["client"].get("/api/trend", params={"signal": signals, "start": T0, "end": T0 + N * STEP, "points": 36})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["bucket_s"] == 100
    ml, pump = body["series"]
    assert ml["spec"]["lsl"] == sim_specs()["Drying/Cathode/MassLoading"].lsl and pump["spec"] is None
    assert len(ml["points"]) == 36
    for t, mean, lo, hi, n in ml["points"]:
        i = (t - T0) // STEP
        chunk = env["ml"][i:i + 10]
        assert n == 10 and mean == pytest.approx(chunk.mean()) and lo == pytest.approx(chunk.min())
        assert hi == pytest.approx(chunk.max())
    [mark] = body["setpoint_changes"]
    assert mark["time_ns"] == env["write_t"] and mark["signal"] == "Coating/Cathode/PumpFlowRate"
    assert (mark["before"], mark["after"], mark["who"]) == (700.0, 720.0, "olga")


def test_rolls_and_the_roll_map_with_its_segments(env: Any) -> None:
    c = env["client"]
    r = c.get("/api/rolls", params={"signal": "Drying/Cathode/MassLoading", "end": T0 + N * STEP, "days": 1})
    assert r.status_code == 200, r.text
    rolls = r.json()["rolls"]
    assert [x["roll"] for x in rolls] == [ROLLS[1], ROLLS[0]] and all(x["n"] == N // 2 for x in rolls)
    tracks = c.get("/api/rolls", params={"signal": "Drying/Cathode/MassLoadingProfile", "end": T0 + N * STEP}).json()
    assert [x["roll"] for x in tracks["rolls"]] == [ROLLS[1], ROLLS[0]]  # the profile gauge's rolls, from its tracks
    m = c.get("/api/rollmap2d", params={"signal": "Drying/Cathode/MassLoadingProfile", "roll": ROLLS[0],
                                        "bins": 18}).json()
    assert m["tracks"] == [f"MassLoadingProfile.P{k:03d}" for k in range(4)] and m["source"] == "cross-web tracks"
    assert 17 <= len(m["x_m"]) <= 19 and all(len(row) == len(m["x_m"]) for row in m["values"])
    raw = env["ml"][: N // 2]
    # each track is the gauge plus 0.1 k; the machine-direction bins' means average back to the roll's mean
    for k, row in enumerate(m["values"]):
        assert np.mean(row) == pytest.approx(raw.mean() + 0.1 * k, abs=0.02)
    assert m["x_m"] == sorted(m["x_m"]) and m["x_m"][0] < 5 and m["x_m"][-1] > 80
    assert [s["id"] for s in m["segments"]] == [f"SEG-C-000001-{j:03d}" for j in (1, 2, 3)]
    assert m["segments"][1]["from_m"] == 30.0 and m["segments"][1]["to_m"] == 60.0
    # a gauge without tracks: itself as the one track, bin means equal to the raw samples'
    one = c.get("/api/rollmap2d", params={"signal": "Drying/Cathode/MassLoading", "roll": ROLLS[1], "bins": 18}).json()
    assert one["tracks"] == ["MassLoading"] and one["source"].startswith("the gauge")
    assert one["spec"]["target"] == sim_specs()["Drying/Cathode/MassLoading"].target and one["segments"] == []
    assert np.mean(one["values"][0]) == pytest.approx(env["ml"][N // 2:].mean(), abs=0.02)  # bins of ~10 samples
    none = c.get("/api/rollmap2d", params={"signal": "Coating/Cathode/PumpFlowRate", "roll": ROLLS[0]})
    assert none.status_code == 404 and "on roll" in none.json()["detail"]  # the pump's samples carry no roll


def test_bad_input_is_answered_with_what_is_wrong(env: Any) -> None:
    c = env["client"]
    assert c.get("/api/trend", params={"signal": "MassLoading"}).status_code == 422
    assert c.get("/api/trend", params={"signal": ["a/b"] * 9}).status_code == 422
    ml = "Drying/Cathode/MassLoading"
    assert c.get("/api/trend", params={"signal": ml, "start": 10, "end": 5}).status_code == 422
    r = c.get("/api/trend", params={"signal": 'Dr"ying/Cathode/MassLoading'})
    assert r.status_code == 422 and "station" in r.json()["detail"]
    assert c.get("/api/rollmap2d", params={"signal": "Drying/Cathode/Mass.Loading", "roll": "CR-1"}).status_code == 422
    assert c.get("/api/rollmap2d", params={"signal": ml, "roll": "CR/../x"}).status_code == 422
    assert c.get("/api/rollmap2d", params={"signal": ml, "roll": "CR-X-9"}).status_code == 404
