"""The twin's loops against the simulator's plant physics in-process, in simulated time (issue 15's scenario family).

``simulator.plant.Plant`` is stepped directly (no OPC UA, no wall-clock waiting): every step's cathode readings go
into a ``twin.live.LiveState`` under the twin's signal names, with the simulator's status as quality, and a
``twin.control.Controller`` on the simulator line's product (deploy/lines/simulator.yaml, the cathode's loops) runs a
round every ``CONTROL_S`` simulated seconds, writing through ``Plant.set_setpoint`` while the plant grants remote
setpoints. Three ways to run one scenario, scored alike:

- open loop: the setpoints the scenario starts with (and its HMI steps);
- a PI from the beta gauge to the pump, the baseline a process engineer would run, tuned by SIMC (Skogestad 2003:
  tau_c = theta, Kc = tau / (k (tau_c + theta)), tau_I = min(tau, 4 (tau_c + theta))) from a step test of the pump on
  the same scenario (first-order-plus-dead-time fit by the 28 % / 63 % times), in velocity form, within the same bounds
  and maximum step as the twin, holding while the gauge is bad;
- the twin: the engineer switches the closed loop on from the start and again 60 s after each fallback (a gauge
  dropout drops it to advisory as in the service; re-engaging is what the engineer would do once the gauge is back).

Score: RMS against target of the 5-minute means (simulated time) of the cathode mass loading and calendered density,
from ``SCORE_FROM_S``. Every write is checked against the loop's bounds and maximum step from the plant's own
setpoint at that moment.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from simulator.plant import Plant
from simulator.scenario import Event, Scenario
from twin.alarms import AlarmManager
from twin.audit import AuditLog
from twin.auth import Principal, Role
from twin.config import SIMULATOR_LINE
from twin.control import Controller
from twin.line import load_line
from twin.live import LiveState
from twin.plant_model import PhysicsModel, PlantModel, RegistryModel
from twin.recommend import Recommender
from twin.service_settings import ControlSettings, LiveSettings, Product

TICK_S = 2.0
CONTROL_S = 5.0           # a recommendation round every 5 simulated seconds (the service: control.interval_s, 5 s)
SCORE_FROM_S = 600.0      # the first beta-gauge readings come at 7 min (7 m at 1 m/min)
REENGAGE_S = 60.0
BIN_S = 300.0
ML = "Drying/Cathode/MassLoading"
DENS = "Calendering/Cathode/CoatingDensity"
PUMP_SP = "Coating.Cathode.PumpFlowRateSetpoint"
T0_NS = 1_780_000_000_000_000_000
ENGINEER = Principal("engineer-bench", Role.engineer)
LANE_STATIONS = ("Mixing.Cathode.", "Coating.Cathode.", "Drying.Cathode.", "Calendering.Cathode.")


def cathode_product() -> tuple[Product, dict[str, float]]:
    """The simulator line's running product, cathode loops only, and its targets by signal."""
    desc = load_line(SIMULATOR_LINE)
    product = desc.products[desc.product].model_copy(deep=True)
    product.loops = {k: v for k, v in product.loops.items() if v.electrode == "cathode"}
    targets = {t.signal: t.target for loop in product.loops.values() for t in loop.targets}
    return product, targets


def plant_model(kind: str) -> PlantModel:
    if kind == "physics":
        return PhysicsModel()
    from models.runtime import ModelRegistry

    return RegistryModel(ModelRegistry.load(), "structure")


@dataclass
class Write:
    t_s: float
    node: str
    before: float
    after: float


@dataclass
class RunResult:
    mode: str
    rms_ml: float
    rms_dens: float
    means_ml: list[float]
    writes: list[Write] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    engaged_s: float | None = None
    first_move_s: dict[str, float] = field(default_factory=dict)
    fallbacks: int = 0
    reversals: dict[str, int] = field(default_factory=dict)
    refusals: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    pi: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"rms_ml": self.rms_ml, "rms_dens": self.rms_dens, "writes": len(self.writes),
                "violations": self.violations, "engaged_s": self.engaged_s, "first_move_s": self.first_move_s,
                "fallbacks": self.fallbacks, "reversals": self.reversals, "wall_s": round(self.wall_s, 2),
                **({"pi": self.pi} if self.pi else {})}


def _path(node: str) -> str:
    """``PilotLine/Coating/Cathode/PumpFlowRateSetpoint`` -> the plant's ``Coating.Cathode.PumpFlowRateSetpoint``."""
    return ".".join(node.split("/")[1:])


class Line:
    """One run of a scenario: the plant, its readings by twin signal key, and the 5-minute means for the score."""

    def __init__(self, scenario: Scenario, seed: int, live: LiveState | None = None) -> None:
        self.plant = Plant(scenario, seed, "PL1", datetime.fromtimestamp(T0_NS / 1e9, UTC))
        self.live = live
        self.readings: dict[str, list[tuple[float, float]]] = {ML: [], DENS: []}

    @property
    def t_s(self) -> float:
        return self.plant.t_s

    def step(self) -> dict[str, tuple[Any, str]]:
        out = self.plant.step(TICK_S)
        t_ns = T0_NS + int(round(self.plant.t_s * 1e9))
        for path, (value, status) in out.items():
            if not path.startswith(LANE_STATIONS) or isinstance(value, str) or isinstance(value, bool):
                continue
            key = path.replace(".", "/")
            good = status == "Good" and value is not None and math.isfinite(float(value))
            if key in self.readings and good:
                self.readings[key].append((self.plant.t_s, float(value)))
            if self.live is not None:
                self.live.update(key, float("nan") if value is None else float(value), t_ns,
                                 "good" if status == "Good" else "bad")
        return out

    def means(self, key: str) -> list[float]:
        """5-minute means of the good readings from SCORE_FROM_S (bins with readings only)."""
        if not self.readings[key]:
            return []
        t, v = np.array(self.readings[key]).T
        sel = t >= SCORE_FROM_S
        bins = np.floor((t[sel] - SCORE_FROM_S) / BIN_S).astype(int)
        return [float(v[sel][bins == b].mean()) for b in np.unique(bins)]

    def rms(self, key: str, target: float) -> float:
        m = self.means(key)
        return math.sqrt(float(np.mean(np.square(np.array(m) - target)))) if m else math.nan


def run_open(scenario: Scenario, seed: int, duration_s: float) -> RunResult:
    started = time.perf_counter()
    line = Line(scenario, seed)
    _, targets = cathode_product()
    while line.t_s < duration_s:
        line.step()
    return RunResult("open", line.rms(ML, targets[ML]), line.rms(DENS, targets[DENS]), line.means(ML),
                     wall_s=time.perf_counter() - started)


# -- the PI baseline ---------------------------------------------------------------------------------------------------
def step_test(scenario: Scenario, seed: int, step_rel: float = 0.10, at_s: float = 1000.0,
              record_s: float = 900.0) -> dict[str, float]:
    """Bump the pump by ``step_rel`` on the running line and fit a first-order-plus-dead-time model to the beta
    gauge, as an engineer would on a drifting line: the response is taken against the linear trend of the 400 s of
    readings before the step, gain from the last 2 minutes, tau = 1.5 (t63 - t28), theta = t63 - tau."""
    line = Line(scenario, seed)
    while line.t_s < at_s:
        line.step()
    u0 = line.plant.setpoint(PUMP_SP)
    line.plant.set_setpoint(PUMP_SP, u0 * (1.0 + step_rel))
    while line.t_s < at_s + record_s:
        line.step()
    t, v = np.array(line.readings[ML]).T
    pre = (t > at_s - 400.0) & (t <= at_s)
    trend = np.polyfit(t[pre] - at_s, v[pre], 1)
    tt = t[t > at_s]
    dv = v[t > at_s] - np.polyval(trend, tt - at_s)
    gain = float(dv[tt > at_s + record_s - 120.0].mean())
    k = gain / (u0 * step_rel)  # mg/cm2 per cm3/h
    smooth = np.convolve(dv, np.ones(15) / 15, mode="same")  # 30 s of readings against the gauge noise
    frac = smooth / gain
    t28 = float(tt[np.argmax(frac >= 0.283)] - at_s)
    t63 = float(tt[np.argmax(frac >= 0.632)] - at_s)
    tau = max(1.5 * (t63 - t28), TICK_S)
    theta = max(t63 - tau, TICK_S)
    return {"k": float(k), "tau_s": tau, "theta_s": theta}


def simc(fit: dict[str, float]) -> dict[str, float]:
    """SIMC PI settings for the tight-but-robust choice tau_c = theta."""
    k, tau, theta = fit["k"], fit["tau_s"], fit["theta_s"]
    tau_c = theta
    return {**fit, "Kc": tau / (k * (tau_c + theta)), "tau_I_s": min(tau, 4.0 * (tau_c + theta))}


def run_pi(scenario: Scenario, seed: int, duration_s: float, tuning: dict[str, float]) -> RunResult:
    started = time.perf_counter()
    product, targets = cathode_product()
    pump = next(m for loop in product.loops.values() for m in loop.manipulated
                if m.input == "pump_flow_rate_cm3_h")
    line = Line(scenario, seed)
    writes: list[Write] = []
    e_prev: float | None = None
    batch: list[float] = []
    next_at = CONTROL_S
    kc, ti = tuning["Kc"], tuning["tau_I_s"]
    while line.t_s < duration_s:
        out = line.step()
        value, status = out.get("Drying.Cathode.MassLoading", (None, "none"))
        if status == "Good" and value is not None and math.isfinite(value):
            batch.append(float(value))
        if line.t_s + 1e-9 >= next_at:
            next_at += CONTROL_S
            if not batch:
                continue  # no good reading this interval (dropout, or the web has not reached the gauge): hold
            e = targets[ML] - float(np.mean(batch))
            batch = []
            du = kc * ((e - e_prev) if e_prev is not None else 0.0) + kc * CONTROL_S / ti * e
            e_prev = e
            u0 = line.plant.setpoint(PUMP_SP)
            u1 = round(min(max(u0 + max(min(du, pump.max_step), -pump.max_step), pump.low), pump.high), 2)
            if u1 != u0:
                line.plant.set_setpoint(PUMP_SP, u1)
                writes.append(Write(line.t_s, pump.setpoint_node, u0, u1))
    res = RunResult("pi", line.rms(ML, targets[ML]), line.rms(DENS, targets[DENS]), line.means(ML), writes=writes,
                    wall_s=time.perf_counter() - started, pi=tuning)
    res.reversals = _reversals(writes)
    return res


# -- the twin --------------------------------------------------------------------------------------------------------
def _reversals(writes: list[Write]) -> dict[str, int]:
    out: dict[str, int] = {}
    last: dict[str, float] = {}
    for w in writes:
        d = math.copysign(1.0, w.after - w.before)
        if w.node in last and d != last[w.node]:
            out[w.node] = out.get(w.node, 0) + 1
        out.setdefault(w.node, 0)
        last[w.node] = d
    return out


async def run_twin(scenario: Scenario, seed: int, duration_s: float, model: str = "surrogate",
                   grant_off_at_s: float | None = None, **control: Any) -> RunResult:
    """The twin's closed loop on the scenario. ``grant_off_at_s``: the operator withdraws the grant then (and the
    engineer does not re-engage). ``control``: ControlSettings overrides."""
    started = time.perf_counter()
    product, targets = cathode_product()
    settings = ControlSettings(product="p", products={"p": product}, **control)
    live = LiveState(LiveSettings(window_size=600, specs={}), AlarmManager())
    line = Line(scenario, seed, live)
    limits = {m.setpoint_node: m for loop in product.loops.values() for m in loop.manipulated}
    writes: list[Write] = []
    violations: list[str] = []

    async def write(node: str, value: float) -> tuple[bool, str]:
        m = limits.get(node)
        before = line.plant.setpoint(_path(node))
        if m is None:
            violations.append(f"write to {node}, not a manipulated setpoint")
        elif not m.low <= value <= m.high:
            violations.append(f"{node} = {value} outside [{m.low}, {m.high}] at {line.t_s:.0f} s")
        elif abs(value - before) > m.max_step * (1 + 1e-9):
            violations.append(f"{node}: step {value - before:+g} beyond {m.max_step} at {line.t_s:.0f} s")
        if not line.plant.grant:
            violations.append(f"{node} written at {line.t_s:.0f} s without the grant")
            return False, "BadUserAccessDenied"
        line.plant.set_setpoint(_path(node), value)
        writes.append(Write(line.t_s, node, before, value))
        return True, "Good"

    async def grant() -> bool:
        return bool(line.plant.grant)

    ctl = Controller(Recommender(settings, plant_model(model), live), AuditLog(keep=100_000), AlarmManager(),
                     write, grant)
    engaged: float | None = None
    next_round, retry_at, withdrawn = CONTROL_S, 0.0, False
    first_move: dict[str, float] = {}
    while line.t_s < duration_s:
        line.step()
        if grant_off_at_s is not None and not withdrawn and line.t_s >= grant_off_at_s:
            line.plant.grant, withdrawn = False, True
        if line.t_s + 1e-9 < next_round:
            continue
        next_round += CONTROL_S
        if ctl.mode != "closed_loop" and not withdrawn and line.t_s >= retry_at:
            try:
                await ctl.set_mode("closed_loop", ENGINEER, "scenario family: engaged from the start")
                engaged = line.t_s if engaged is None else engaged
            except Exception:  # noqa: BLE001 - not trustworthy (yet): the engineer tries again later
                retry_at = line.t_s + REENGAGE_S
        n_before = ctl.counts["fallbacks"]
        await ctl.run_round()
        if ctl.counts["fallbacks"] > n_before:
            retry_at = line.t_s + REENGAGE_S
        for w in writes:
            first_move.setdefault(w.node, w.t_s)
    res = RunResult("twin", line.rms(ML, targets[ML]), line.rms(DENS, targets[DENS]), line.means(ML), writes=writes,
                    violations=violations, engaged_s=engaged, first_move_s=first_move,
                    fallbacks=ctl.counts["fallbacks"], wall_s=time.perf_counter() - started)
    res.reversals = _reversals(writes)
    res.refusals = dict(ctl.refusals)
    res.audit = ctl.audit  # type: ignore[attr-defined]
    res.controller = ctl  # type: ignore[attr-defined]
    return res


def run_scenario(scenario: Scenario, seed: int, duration_s: float, model: str = "surrogate") -> dict[str, Any]:
    """Open loop, SIMC-tuned PI and the twin on one scenario; the figures per run."""
    open_ = run_open(scenario, seed, duration_s)
    tuning = simc(step_test(scenario, seed))
    pi = run_pi(scenario, seed, duration_s, tuning)
    twin = asyncio.run(run_twin(scenario, seed, duration_s, model))
    return {"open": open_, "pi": pi, "twin": twin}


__all__ = ["Event", "Line", "RunResult", "cathode_product", "run_open", "run_pi", "run_scenario", "run_twin",
           "simc", "step_test"]
