"""The recommender and the control loop on the process-chain physics with transport delays and drift."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.twin.plantsim import Plant, control_settings, new_live
from twin.alarms import AlarmManager
from twin.audit import AuditLog
from twin.auth import Principal, Role
from twin.control import ControlError, Controller
from twin.plant_model import PhysicsModel
from twin.recommend import Proposal, Recommender, Refusal

ENGINEER = Principal("eng", Role.engineer)
OPERATOR = Principal("op", Role.operator)
VIEWER = Principal("view", Role.viewer)


def _controller(plant: Plant, live, grant: list[bool] | None = None) -> Controller:  # type: ignore[no-untyped-def]
    settings = control_settings()
    rec = Recommender(settings, PhysicsModel(), live)
    grant = grant if grant is not None else [True]

    async def read_grant() -> bool:
        return grant[0]

    return Controller(rec, AuditLog(), AlarmManager(), plant.write, read_grant)


async def _run(closed: bool, seconds: float = 4000.0, dt: float = 2.0, round_every_s: float = 30.0) -> dict:
    plant, live = Plant(seed=7), new_live()
    ctl = _controller(plant, live)
    if closed:
        plant.feed(live)  # a closed loop is refused until the state is trustworthy (every signal good)
        await ctl.set_mode("closed_loop", ENGINEER, "test")
    devs: dict[str, list[float]] = {"Drying/Cathode/MassLoading": [], "Calendering/Cathode/Density": []}
    targets = {"Drying/Cathode/MassLoading": 14.31, "Calendering/Cathode/Density": 2.96}
    next_round = 0.0
    while plant.t_s < seconds:
        m = plant.feed(live)
        if plant.t_s > 1000:  # after the drift has started to bite
            for k in devs:
                devs[k].append(m[k] - targets[k])
        if closed and plant.t_s >= next_round:
            await ctl.run_round()
            next_round += round_every_s
        plant.t_s += dt
    return {"rms": {k: math.sqrt(float(np.mean(np.square(v)))) for k, v in devs.items()}, "ctl": ctl, "plant": plant}


async def test_closed_loop_rejects_drift_on_the_physics() -> None:
    open_ = await _run(closed=False)
    closed = await _run(closed=True)
    for key in open_["rms"]:
        reduction = 1 - closed["rms"][key] / open_["rms"][key]
        assert reduction >= 0.7, f"{key}: open {open_['rms'][key]:.4f} closed {closed['rms'][key]:.4f}"
    ctl: Controller = closed["ctl"]
    assert ctl.mode == "closed_loop"
    assert ctl.counts["writes"] > 0
    for node, value in closed["plant"].writes:  # never outside the hard bounds
        assert (500 <= value <= 900) if "PumpFlowRate" in node else (40 <= value <= 140)
    writes = [e for e in ctl.audit.list(limit=10_000) if e.action == "write"]
    assert writes and all(e.model_version and e.before is not None and e.after is not None for e in writes)


async def test_proposal_moves_the_right_way_within_step_and_bounds() -> None:
    plant, live = Plant(), new_live()
    plant.drifted(live)  # solid content has drifted to 0.66: mass loading low, so more pump flow
    rec = Recommender(control_settings(), PhysicsModel(), live)
    p = rec.recommend("Cathode")
    assert isinstance(p, Proposal), p
    pump = next(s for s in p.setpoints if s.input == "pump_flow_rate_cm3_h")
    assert pump.after > pump.before and pump.after - pump.before <= 40 + 1e-9
    ml = next(e for e in p.expected if e.signal.endswith("MassLoading"))
    assert ml.current < 14.31 - 0.3 and abs(ml.expected - 14.31) < abs(ml.current - 14.31)
    assert 0.0 <= p.confidence <= 1.0
    assert p.compute_ms > 0


async def test_no_recommendation_from_bad_quality_or_out_of_domain_state() -> None:
    plant, live = Plant(), new_live()
    plant.run(live, 800.0)  # 400 samples
    rec = Recommender(control_settings(), PhysicsModel(), live)
    t_ns = int(plant.t_s * 1e9) + 1_700_000_000_000_000_000
    live.update("Drying/Cathode/MassLoading", float("nan"), t_ns, quality="bad")
    r = rec.recommend("Cathode")
    assert isinstance(r, Refusal) and r.kind == "bad_quality" and r.anomaly
    plant.feed(live)
    live.update("Coating/Cathode/WebSpeed", 9.0, t_ns + 1)  # 9 m/min: outside the model's domain
    r = rec.recommend("Cathode")
    assert isinstance(r, Refusal) and r.kind == "out_of_domain" and "web_speed_m_min" in r.reason
    with pytest.raises(KeyError, match="unknown loop"):
        rec.recommend("Nope")


async def test_modes_roles_grant_and_fallback() -> None:
    plant, live = Plant(), new_live()
    grant = [False]
    ctl = _controller(plant, live, grant)
    with pytest.raises(ControlError) as e:
        await ctl.set_mode("closed_loop", OPERATOR)
    assert e.value.status == 403
    with pytest.raises(ControlError) as e:
        await ctl.set_mode("closed_loop", ENGINEER)  # grant is off
    assert e.value.status == 409
    with pytest.raises(ControlError) as e:
        await ctl.set_mode("advisory", VIEWER)
    assert e.value.status == 403
    with pytest.raises(ControlError):
        await ctl.set_mode("turbo", ENGINEER)
    grant[0] = True
    with pytest.raises(ControlError, match="cannot be trusted") as e:
        await ctl.set_mode("closed_loop", ENGINEER)  # no data yet: nothing to close a loop on
    assert e.value.status == 409
    plant.feed(live)
    await ctl.set_mode("closed_loop", ENGINEER)
    # a sensor goes bad: the loop drops to advisory, with an alarm and an audit entry
    plant.feed(live)
    live.update("Drying/Cathode/MassLoading", float("nan"), 1, quality="bad")
    await ctl.run_round()
    assert ctl.mode == "advisory"
    assert ctl.alarms.is_active("control_fallback", "control")
    assert any(e.action == "fallback" for e in ctl.audit.list())
    # the grant withdrawn while nothing needs writing: the next round leaves the closed loop all the same
    ctl.alarms.clear("control_fallback", "control")
    plant.feed(live)
    await ctl.set_mode("closed_loop", ENGINEER)
    grant[0] = False
    await ctl.run_round()
    assert ctl.mode == "advisory" and ctl.alarms.is_active("control_fallback", "control")
    assert plant.writes == []


async def test_advisory_approve_reject_and_no_write_without_grant() -> None:
    plant, live = Plant(), new_live()
    plant.drifted(live)
    grant = [False]
    ctl = _controller(plant, live, grant)
    out = await ctl.run_round()
    rec = next(r for r in out if not isinstance(r, Refusal))
    with pytest.raises(ControlError) as e:
        await ctl.approve(rec.id, VIEWER)
    assert e.value.status == 403
    await ctl.approve(rec.id, OPERATOR, "go")
    assert rec.state == "failed" and plant.writes == []  # the grant is off: nothing written
    out = await ctl.run_round()
    rec2 = next(r for r in out if not isinstance(r, Refusal))
    ctl.reject(rec2.id, OPERATOR, "not now")
    assert rec2.state == "rejected"
    with pytest.raises(ControlError) as e:
        await ctl.approve(rec2.id, OPERATOR)
    assert e.value.status == 409
    grant[0] = True
    out = await ctl.run_round()
    rec3 = next(r for r in out if not isinstance(r, Refusal))
    await ctl.approve(rec3.id, ENGINEER)
    assert rec3.state == "applied" and len(plant.writes) >= 1
    actions = [e.action for e in ctl.audit.list(limit=1000)]
    for a in ("proposed", "approved", "rejected", "write", "write_refused"):
        assert a in actions
    with pytest.raises(ControlError) as e:
        await ctl.approve(99999, OPERATOR)
    assert e.value.status == 404


async def test_scalarised_objective_seed002_eq3() -> None:
    """The seed 002 eq. 3 scalarisation (every property in the minimised set, scaled to [0, 1]) moves the same way."""
    plant, live = Plant(), new_live()
    plant.drifted(live)
    settings = control_settings()
    settings.active.objective = "scalarised"
    p = Recommender(settings, PhysicsModel(), live).recommend("Cathode")
    assert isinstance(p, Proposal), p
    assert 0.0 <= p.objective_after < p.objective_before <= 1.0  # eq. 3 lies in [0, 1]
    pump = next(s for s in p.setpoints if s.input == "pump_flow_rate_cm3_h")
    assert pump.after > pump.before
