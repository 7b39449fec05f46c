"""Setpoint recommendations: bias estimation with gauge transport delays, then optimisation on the plant model.

Feedback (why a bias estimator): the plant model is right about the physics but not about today's slurry or rolls
(solid content drifts between batches, compaction resistance with the rolls). For every good gauge sample taken at
time t we evaluate the model on the inputs that were acting on *that piece of web*: each actuator's actual value at
t - (gauge position - actuator position) / web speed - dead time. The mean residual (measured - model) of the most
recent samples is the bias; a first-order filter smooths it. Because the delay is honoured per actuator, a setpoint
change that has not yet reached the gauge does not leak into the bias, so the loop does not double-correct.

Optimisation: minimise the objective of the product (``tracking``: sum w_i ((y_i + b_i - target_i) / tol_i)^2, or
``scalarised``: seed 002 eq. 3, Cf = 1/n sum y_scaled^2 over the minimised set, with y_scaled = |deviation| /
(4 tol) clipped to [0, 1]) plus a move penalty, over the manipulated setpoints, with L-BFGS-B inside the intersection
of the hard bounds and current +- max step. Nothing is proposed from a bad-quality, missing or out-of-domain state.

Confidence: the probability that the product made at the proposed setpoints, as its gauge reads it, lands within
target ± tolerance for every target (the product of the per-target probabilities: the gauges' errors are independent).
Per target, the reading is modelled as normal around model(proposed) + bias, with the variance of four independent
parts: the bias standard error (from the last gauge samples, with the effective sample size of autocorrelated
residuals), the model's calibrated error at the proposed point (``models.runtime``'s split-conformal std; zero for the
exact physics), the error of carrying an additive bias to a point where the output differs (a mismatch that scales
the output, such as solid content, changes the bias by bias * relative change), and the spread of single readings
about their mean (gauge noise plus short-term process variation, the residuals' std). The centre is the latest raw
bias estimate, not the filtered one the optimiser uses: the filter trades lag for smoothness, and its lag is an error
of where the product lands. Checked on the process-chain physics with noise (tests/twin/test_recommend_confidence.py,
reliability table in tests/bench/bench_models.py): of the proposals with confidence p, about p land within tolerance.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
from scipy.optimize import minimize
from scipy.stats import norm

from twin.plant_model import PhysicsModel, PlantModel
from twin.service_settings import ControlSettings, Loop, Product, Target

# gauge samples whose residual trend estimates the drift of the bias (at least; 3 x bias_samples when larger)
TREND_SAMPLES = 150
RefusalKind = Literal["missing", "bad_quality", "out_of_domain", "insufficient_data", "on_target", "no_improvement",
                      "waiting"]
_AT_CARD_EDGE = "; at the edge of the surrogate's card"
# a measured disturbance that moves the predicted product by more than this many tolerances lifts a loop's dwell
# (a whole tolerance: the noise of a single speed reading must not)
DWELL_LIFT_TOLERANCES = 1.0


class SignalSource(Protocol):
    """What the recommender reads: the live state (latest value with quality, and windows of good samples)."""

    def value(self, key: str) -> Any: ...

    def window(self, key: str, since_ns: int | None = None,
               until_ns: int | None = None) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class SetpointChange:
    input: str
    node: str
    before: float
    after: float
    low: float
    high: float
    max_step: float


@dataclass
class ExpectedEffect:
    signal: str
    output: str
    target: float
    tolerance: float
    current: float      # model at the current setpoints + bias: what the gauge should read now (segment mean)
    expected: float     # model at the proposed setpoints + bias: what it should read once the change reaches it
    bias: float
    bias_se: float
    model_std: float    # calibrated model error at the proposed setpoints (0 for the exact physics)
    measured_mean: float
    samples: int
    noise_std: float = 0.0       # spread of single gauge readings about their mean (residual std)
    transfer_std: float = 0.0    # error of carrying the additive bias to the proposed point
    drift_std: float = 0.0       # trend of the bias over the horizon until the new product reaches the gauge
    probability: float = 1.0     # that a reading of the new product lands within target ± tolerance


@dataclass
class Proposal:
    loop: str
    electrode: str
    setpoints: list[SetpointChange]
    expected: list[ExpectedEffect]
    objective_before: float
    objective_after: float
    confidence: float
    model_version: str
    reason: str
    inputs: dict[str, float]
    time_ns: int = field(default_factory=time.time_ns)
    compute_ms: float = 0.0
    process_time_ns: int = 0  # the newest sample of the loop's signals: the line's clock, for the dwell

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Refusal:
    loop: str
    kind: RefusalKind
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def anomaly(self) -> bool:
        """Refusals that mean the state cannot be trusted (a closed loop must stop on them). ``waiting`` is not one:
        a loop whose gauge has not seen material yet (or is idle between rolls) holds its setpoints and waits."""
        return self.kind in ("missing", "bad_quality", "out_of_domain")


@dataclass(frozen=True)
class _BiasEstimate:
    bias: float          # mean residual (measured - model) of the most recent good samples
    se: float            # its standard error (effective sample size of autocorrelated residuals)
    measured_mean: float
    n: int
    noise_std: float     # std of the residuals: the spread of single readings about their mean
    drift_std: float = 0.0  # how far the bias may move before the proposed product reaches the gauge
    ahead: float = 0.0      # the bias' significant linear trend carried over that horizon (loops[].drift_window_s)


@dataclass(frozen=True)
class _Move:
    """The last move of one setpoint, for the dwell: when (process time), which way, and the measured inputs then."""

    time_ns: int
    direction: float
    measured: dict[str, float]


def _scalar(x: Any) -> float:
    """One number from a model answer (the physics answers 0-d arrays, the surrogate one-row arrays)."""
    return float(np.asarray(x, dtype=float).reshape(-1)[0])


def _step_hold(t_hist: np.ndarray, v_hist: np.ndarray, t_query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Value acting at each query time (last sample at or before it); the mask says where history reaches back."""
    idx = np.searchsorted(t_hist, t_query, side="right") - 1
    ok = idx >= 0
    out = np.full(t_query.shape, np.nan)
    out[ok] = v_hist[idx[ok]]
    return out, ok


def _travel_s(t_meas: np.ndarray, ts: np.ndarray, vs: np.ndarray, dist_m: float) -> np.ndarray:
    """Seconds the web took to carry a point ``dist_m`` up to each ``t_meas``: the speed history (m/min) integrated,
    so a speed change while the material was in transit is honoured (distance / current speed is not: after a step
    from 1.0 to 0.8 m/min it matched the gauge's readings with inputs up to 105 s off). NaN where the history does not
    reach back that far."""
    t = (ts - ts[0]) / 1e9
    v = np.clip(vs, 0.0, None) / 60.0
    dist = np.concatenate(([0.0], np.cumsum(v[:-1] * np.diff(t))))
    tm = (t_meas - ts[0]) / 1e9
    at = np.interp(tm, t, dist) + np.clip(tm - t[-1], 0.0, None) * v[-1]
    back = at - dist_m
    out = tm - np.interp(back, dist, t)
    out[(back < 0.0) | (tm < 0.0)] = np.nan
    return out


class Recommender:
    """Stateless apart from the filtered biases; call ``recommend(loop_name)`` once per control interval."""

    def __init__(self, settings: ControlSettings, model: PlantModel, source: SignalSource) -> None:
        self.settings = settings
        self.primary = model
        self.model = model  # the model of the evaluation under way: the primary, or the physics outside its card
        # a surrogate's card is narrower than the physics it was trained on: a drifting line leaves it long before it
        # leaves the process chain's domain (control.outside_surrogate)
        self.physics: PlantModel | None = (
            PhysicsModel() if settings.outside_surrogate == "physics" and not isinstance(model, PhysicsModel) else None)
        self.source = source
        self.bias_samples = settings.bias_samples
        self.deadband = settings.deadband
        self.biases: dict[tuple[str, str], float] = {}
        # filtered biases of a recommend(commit=False) not yet taken over by commit(): the live evaluation on every
        # gauge sample must not advance the filter, which is defined per control interval
        self._staged: dict[str, dict[tuple[str, str], float]] = {}
        # each loop's last optimum: the next optimisation starts there (warm start; between two gauge samples the
        # problem barely changes, so L-BFGS-B needs a step or two instead of ten)
        self._last_x: dict[str, np.ndarray] = {}
        # setpoint node -> (value, monotonic time) of our last successful write (the controller fills it)
        self.commanded: dict[str, tuple[float, float]] = {}
        self.commanded_ttl_s = 120.0
        # setpoint node -> its last move (the controller reports writes through note_move); loop -> holding inside the
        # deadband (hysteresis)
        self.moves: dict[str, _Move] = {}
        self._holding: dict[str, bool] = {}

    @staticmethod
    def _manipulated_names(loop: Loop) -> set[str]:
        return {m.input for m in loop.manipulated}

    @property
    def product(self) -> Product:
        return self.settings.active

    # -- state checks -----------------------------------------------------------------------------------------------
    def _latest_good(self, key: str) -> tuple[float | None, Refusal | None, str]:
        last = self.source.value(key)
        if last is None:
            return None, None, f"no sample of {key} yet"
        if last.quality != "good" or not math.isfinite(last.value):
            return None, None, f"{key} is {last.quality} ({last.value})"
        return float(last.value), None, ""

    def check_state(self) -> list[Refusal]:
        """The refusals that make the current state untrustworthy (bad, missing, out of domain), per loop."""
        out = []
        for name, loop in self.product.loops.items():
            r = self._current(name, loop)
            if isinstance(r, Refusal) and r.anomaly:
                out.append(r)
        return out

    def _now_ns(self, loop: Loop) -> int:
        """The line's clock as this loop sees it: the newest sample of its actuators, measured inputs and gauges."""
        keys = [m.actual_signal for m in loop.manipulated] + [mi.signal for mi in loop.measured_inputs] + [
            t.signal for t in loop.targets]
        return max((last.time_ns for k in keys if (last := self.source.value(k)) is not None), default=0)

    def note_move(self, proposal: Proposal, node: str, before: float, after: float) -> None:
        """A setpoint of ``proposal`` was written: remember when and which way, for the loop's dwell."""
        loop = self.product.loops.get(proposal.loop)
        if loop is None or after == before:
            return
        measured = {mi.input: proposal.inputs[mi.input] for mi in loop.measured_inputs if mi.input in proposal.inputs}
        self.moves[node] = _Move(proposal.process_time_ns, math.copysign(1.0, after - before), measured)

    def _current(self, loop_name: str, loop: Loop,
                 physics: bool = False) -> tuple[dict[str, float], dict[str, float]] | Refusal:
        u0: dict[str, float] = {}
        d: dict[str, float] = {}
        missing: list[str] = []
        bad: list[str] = []
        for m in loop.manipulated:
            value, _, why = self._latest_good(m.actual_signal)
            if value is None:
                (missing if "no sample" in why else bad).append(why)
            else:
                # where the actuator is going: the setpoint the line reports, else what we wrote lately, else actual
                sp, _, _ = self._latest_good(m.actual_signal + "Setpoint")
                written = self.commanded.get(m.setpoint_node)
                if sp is None and written is not None and time.monotonic() - written[1] < self.commanded_ttl_s:
                    sp = written[0]
                u0[m.input] = sp if sp is not None else value
        for mi in loop.measured_inputs:
            value, _, why = self._latest_good(mi.signal)
            if value is None:
                (missing if "no sample" in why else bad).append(why)
            else:
                # where the line is heading (a speed the HMI asked for) is the proposal's input: the pump follows
                # before the drive has ramped; the bias keeps the measured value, which is what acted on the web
                ahead = self._latest_good(mi.setpoint_signal)[0] if mi.setpoint_signal else None
                d[mi.input] = (value if ahead is None else ahead) * mi.scale
        waiting: list[str] = []
        for t in loop.targets:
            value, _, why = self._latest_good(t.signal)
            if value is None:
                # a gauge that has never reported has not seen material yet: the loop waits (its actuators and
                # measured inputs must still be there); one that reported and went bad is an anomaly
                (waiting if "no sample" in why else bad).append(why)
        if bad:
            return Refusal(loop_name, "bad_quality", "; ".join(bad))
        if missing:
            return Refusal(loop_name, "missing", "; ".join(missing))
        now_ns = self._now_ns(loop)
        for t in loop.targets:
            last = self.source.value(t.signal)
            if t.max_age_s is not None and last is not None and now_ns - last.time_ns > t.max_age_s * 1e9:
                waiting.append(f"{t.signal}: newest sample {(now_ns - last.time_ns) / 1e9:.0f} s old "
                               f"(max_age_s {t.max_age_s:g}): its station is idle")
        if waiting:
            return Refusal(loop_name, "waiting", "; ".join(waiting))
        self.model = self.primary
        d_primary, violations = self._in_domain(self.primary, loop, u0, d)
        if (violations or physics) and self.physics is not None:
            d_physics, physics_violations = self._in_domain(self.physics, loop, u0, d)
            if not physics_violations:
                self.model = self.physics  # this evaluation runs on the chain the surrogate was trained on
                return u0, d_physics
            violations = physics_violations
        if violations:
            return Refusal(loop_name, "out_of_domain", "model inputs out of domain: " + "; ".join(violations),
                           {"violations": violations})
        return u0, d_primary

    def _in_domain(self, model: PlantModel, loop: Loop, u0: dict[str, float],
                   d: dict[str, float]) -> tuple[dict[str, float], list[str]]:
        """The measured inputs with sensor noise at the domain's edge clamped onto it, and what still lies outside."""
        d = dict(d)
        dom = model.domain(loop.electrode)
        tol = self.settings.domain_edge_tolerance
        for key, value in list(d.items()):
            rng = dom.get(key)
            if rng is not None:
                edge = tol * (rng[1] - rng[0])
                if rng[0] - edge <= value < rng[0] or rng[1] < value <= rng[1] + edge:
                    d[key] = min(max(value, rng[0]), rng[1])
        return d, model.check_domain({**u0, **d}, loop.electrode)

    # -- bias --------------------------------------------------------------------------------------------------------
    def estimate_bias(self, loop: Loop, target: Target) -> tuple[float, float, float, int] | None:
        """(bias, standard error, measured mean, n) from the most recent good gauge samples, or None if too few."""
        est = self._bias(loop, target)
        return None if est is None else (est.bias, est.se, est.measured_mean, est.n)

    def _bias(self, loop: Loop, target: Target) -> _BiasEstimate | None:
        t_meas, v_meas = self.source.window(target.signal)
        if len(t_meas) == 0:
            return None
        keep = max(self.bias_samples * 3, TREND_SAMPLES)  # the trend of the residuals needs a longer look back
        if loop.drift_window_s is not None:
            keep = max(keep, int(np.count_nonzero(t_meas >= t_meas[-1] - int(loop.drift_window_s * 1e9))))
        t_meas, v_meas = t_meas[-keep:], v_meas[-keep:]
        speed_key = loop.web_speed_signal
        if speed_key is not None:
            ts, vs = self.source.window(speed_key)
            speed_m_min, ok = _step_hold(ts, vs, t_meas) if len(ts) else (np.full(len(t_meas), np.nan),
                                                                          np.zeros(len(t_meas), bool))
        else:
            speed_m_min, ok = np.full(len(t_meas), 1.0), np.ones(len(t_meas), bool)
        ok &= np.isfinite(speed_m_min) & (speed_m_min > 0)
        speed_m_s = np.where(ok, speed_m_min, 1.0) / 60.0
        inputs: dict[str, np.ndarray] = {}
        actors = [(m.input, m.actual_signal, m.position_m) for m in loop.manipulated] + [
            (mi.input, mi.signal, mi.position_m) for mi in loop.measured_inputs]
        scales = {mi.input: mi.scale for mi in loop.measured_inputs}
        for name, signal, pos in actors:
            pos = target.input_positions_m.get(name, pos)
            if name in self._manipulated_names(loop):
                # the commanded setpoint is the model input when the line reports it: actuator faults (pump wear:
                # it delivers less than told) then show up in the bias and the recommendation compensates them
                sp_t, _ = self.source.window(signal + "Setpoint")
                if len(sp_t):
                    signal = signal + "Setpoint"
            dist_m = max(0.0, target.gauge_position_m - pos)
            travel_s = dist_m / speed_m_s
            if speed_key is not None and len(ts) >= 2 and dist_m > 0:
                integrated = _travel_s(t_meas, ts, vs, dist_m)
                travel_s = np.where(np.isfinite(integrated), integrated, travel_s)
            delay_ns = ((travel_s + target.dead_time_s) * 1e9).astype(np.int64)
            th, vh = self.source.window(signal)
            if len(th) == 0:
                return None
            vals, have = _step_hold(th, vh, t_meas - delay_ns)
            # the window must reach back past the delayed instant, otherwise we would guess the input
            ok &= have
            inputs[name] = np.where(have, vals, vh[-1]) * scales.get(name, 1.0)
        if int(ok.sum()) < target.min_samples:
            return None
        good = np.flatnonzero(ok)
        answer = self.model.evaluate(loop.electrode, {k: v[good] for k, v in inputs.items()})
        resid_all = v_meas[good] - np.asarray(answer.outputs[target.output], dtype=float)
        sel = good[-self.bias_samples:]
        resid = resid_all[-self.bias_samples:]
        n = len(resid)
        if n < 2:
            return _BiasEstimate(float(resid.mean()), float("inf"), float(v_meas[sel].mean()), n, float("inf"))
        # drift: the bias moves on between the samples it was estimated from and the moment the product made at the
        # proposed setpoints reaches the gauge (the slowest actuator's transport delay); a linear trend of the longer
        # residual history, and its own uncertainty, over that horizon
        horizon_s = (float(t_meas[-1] - t_meas[sel].mean()) / 1e9 + max(
            (max(0.0, target.gauge_position_m - target.input_positions_m.get(name, pos)) / float(speed_m_s[-1])
             + target.dead_time_s) for name, _, pos in actors if name in self._manipulated_names(loop)))
        drift = 0.0
        if len(resid_all) >= 3 * self.bias_samples and len(resid_all) >= 10:
            tt = (t_meas[good] - t_meas[good][-1]) / 1e9
            coef, cov = np.polyfit(tt, resid_all, 1, cov=True)
            drift = math.hypot(float(coef[0]), math.sqrt(max(float(cov[0, 0]), 0.0))) * horizon_s
        ahead = 0.0
        if loop.drift_window_s is not None and len(resid_all) >= 10:
            # dead-time compensation of a drift (pump wear, slow compaction): the product made now reaches the gauge
            # a transport delay after the samples the bias comes from, so carry a significant trend over that horizon
            tt = (t_meas[good] - t_meas[good][-1]) / 1e9
            win = tt >= -loop.drift_window_s
            # only from a window at least half full: a trend of a minute's samples carried over a transport delay
            # is mostly noise
            if int(win.sum()) >= 10 and float(np.ptp(tt[win])) >= 0.5 * loop.drift_window_s:
                coef, cov = np.polyfit(tt[win], resid_all[win], 1, cov=True)
                slope, slope_se = float(coef[0]), math.sqrt(max(float(cov[0, 0]), 0.0))
                if abs(slope) > 2.0 * slope_se:
                    ahead = slope * horizon_s
        sd = float(resid.std(ddof=1))
        # residuals of a drifting or slowly varying process are correlated: n of them carry fewer than n independent
        # pieces of information (AR(1) effective sample size n (1 - r) / (1 + r), r = lag-1 autocorrelation)
        dev = resid - resid.mean()
        denom = float(np.dot(dev, dev))
        r1 = float(np.dot(dev[1:], dev[:-1]) / denom) if denom > 0 else 0.0
        r1 = min(max(r1, 0.0), 0.95)
        n_eff = max(1.0, n * (1.0 - r1) / (1.0 + r1))
        return _BiasEstimate(float(resid.mean()), sd / math.sqrt(n_eff), float(v_meas[sel].mean()), n, sd, drift,
                             ahead)

    # -- objective ---------------------------------------------------------------------------------------------------
    def _objective(self, targets: list[Target], y: Mapping[str, np.ndarray], bias: Mapping[str, float]) -> np.ndarray:
        dev = [(np.asarray(y[t.output]) + bias[t.signal] - t.target) / t.tolerance for t in targets]
        if self.product.objective == "scalarised":
            # seed 002 eq. 3 with every property in the minimised set Ym (deviation from target, scaled to [0, 1])
            scaled = [np.clip(np.abs(x) / 4.0, 0.0, 1.0) for x in dev]
            return np.asarray(sum(s ** 2 for s in scaled) / len(scaled))
        return np.asarray(sum(t.weight * x ** 2 for t, x in zip(targets, dev, strict=True)))

    # -- the round --------------------------------------------------------------------------------------------------
    def recommend(self, loop_name: str, commit: bool = True) -> Proposal | Refusal:
        """The proposal for one loop now. ``commit=False`` leaves the bias filter where it is (see ``commit``)."""
        staged: dict[tuple[str, str], float] = {}
        try:
            result = self._recommend(loop_name, staged)
            if result.reason.endswith(_AT_CARD_EDGE):
                result = self._recommend(loop_name, staged, physics=True)
            return result
        finally:
            if commit:
                self.biases.update(staged)
                self._staged.pop(loop_name, None)
            else:
                self._staged[loop_name] = staged

    def commit(self, loop_name: str) -> None:
        """Advance the bias filter by the step the latest ``recommend(loop_name, commit=False)`` computed."""
        self.biases.update(self._staged.pop(loop_name, {}))

    def _recommend(self, loop_name: str, staged: dict[tuple[str, str], float],
                   physics: bool = False) -> Proposal | Refusal:
        started = time.perf_counter()
        loop = self.product.loops.get(loop_name)
        if loop is None:
            raise KeyError(f"unknown loop {loop_name!r}; configured loops: {sorted(self.product.loops)}")
        state = self._current(loop_name, loop, physics)
        if isinstance(state, Refusal):
            return state
        u0, d = state
        bias: dict[str, float] = {}
        info: dict[str, _BiasEstimate] = {}
        for t in loop.targets:
            est = self._bias(loop, t)
            if est is None:
                return Refusal(loop_name, "insufficient_data",
                               f"fewer than {t.min_samples} good samples of {t.signal} with their inputs in history")
            key = (loop_name, t.signal)
            prev = self.biases.get(key)
            raw = est.bias + est.ahead
            b = raw if prev is None else prev + self.settings.bias_filter * (raw - prev)
            staged[key] = b
            bias[t.signal] = b
            info[t.signal] = est

        names = [m.input for m in loop.manipulated]
        x0 = np.array([u0[n] for n in names])
        step = np.array([m.max_step for m in loop.manipulated])
        lo = np.maximum([m.low for m in loop.manipulated], x0 - step)
        hi = np.minimum([m.high for m in loop.manipulated], x0 + step)
        # never propose outside the model's domain of validity either
        dom = self.model.domain(loop.electrode)
        lo_free, hi_free = lo.copy(), hi.copy()
        lo = np.maximum(lo, [dom.get(n, (-np.inf, np.inf))[0] for n in names])
        hi = np.minimum(hi, [dom.get(n, (-np.inf, np.inf))[1] for n in names])
        lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)  # a current value outside the bounds: move toward them
        now_ns = self._now_ns(loop)
        if loop.dwell_s > 0:
            lo, hi = self._dwell(loop, names, x0, d, lo, hi, now_ns)
        cost_w = np.array([m.cost_weight for m in loop.manipulated])

        def evaluate(x: np.ndarray) -> dict[str, np.ndarray]:
            return self.model.evaluate(loop.electrode, {**d, **dict(zip(names, x, strict=True))}).outputs

        n_u = len(names)
        h = 1e-4  # forward-difference step in max-step units

        def f_and_grad(z: np.ndarray) -> tuple[float, np.ndarray]:
            # one vectorised model call for the point and its n forward differences (the chain is vectorised)
            zs = np.vstack([z, z + h * np.eye(n_u)])
            xs = x0 + zs * step
            y = self.model.evaluate(loop.electrode, {**d, **{n: xs[:, i] for i, n in enumerate(names)}}).outputs
            j = np.asarray(self._objective(loop.targets, y, bias), dtype=float) + np.sum(cost_w * zs ** 2, axis=1)
            return float(j[0]), (j[1:] - j[0]) / h

        y0 = evaluate(x0)
        j0 = _scalar(self._objective(loop.targets, y0, bias))
        worst = max(abs(_scalar(y0[t.output]) + bias[t.signal] - t.target) / t.tolerance for t in loop.targets)
        # hysteresis: inside the deadband the loop holds until a target is predicted beyond deadband_enter
        holding = self._holding.get(loop_name, False)
        threshold = (loop.deadband_enter if loop.deadband_enter is not None else self.deadband) if holding \
            else self.deadband
        if worst < threshold:
            self._holding[loop_name] = True
            return Refusal(loop_name, "on_target", f"every target within {threshold} tolerance", {"worst": worst})
        self._holding[loop_name] = False
        z_lo, z_hi = (lo - x0) / step, (hi - x0) / step
        last = self._last_x.get(loop_name)
        z0 = (last - x0) / step if last is not None and last.shape == x0.shape else np.zeros_like(x0)
        res = minimize(f_and_grad, np.clip(z0, z_lo, z_hi), jac=True, method="L-BFGS-B",
                       bounds=list(zip(z_lo, z_hi, strict=True)), options={"maxiter": 100})
        self._last_x[loop_name] = x0 + res.x * step
        x = np.clip(np.round(x0 + res.x * step, 2), lo, hi)
        # the optimum pressed against the surrogate's card where the hard bounds and the step allow more: the
        # surrogate cannot say what lies beyond, the physics it was trained on can (recommend() asks it again)
        at_card_edge = self.physics is not None and self.model is not self.physics and bool(np.any(
            ((np.abs(x - hi) < 1e-6) & (hi < hi_free)) | ((np.abs(x - lo) < 1e-6) & (lo > lo_free))))
        y1 = evaluate(x)
        j1 = _scalar(self._objective(loop.targets, y1, bias))
        if j0 - j1 <= self.settings.min_improvement * max(j0, 1e-9) or np.allclose(x, x0):
            return Refusal(loop_name, "no_improvement", f"objective {j0:.3g} -> {j1:.3g} is not worth a change"
                           + (_AT_CARD_EDGE if at_card_edge else ""), {"at_card_edge": at_card_edge})

        # confidence: probability that a reading of the new product lands within tolerance (module docstring)
        expected, probs = [], []
        std_answer = self.model.evaluate(loop.electrode, {**d, **dict(zip(names, x, strict=True))}).std
        for t in loop.targets:
            est = info[t.signal]
            model_std = float(np.asarray(std_answer.get(t.output, 0.0)).reshape(-1)[0]) if std_answer else 0.0
            y_now, y_new = _scalar(y0[t.output]), _scalar(y1[t.output])
            transfer = abs(est.bias) * abs(y_new - y_now) / max(abs(y_now), 1e-12)
            sigma = math.sqrt(min(est.se, 10 * t.tolerance) ** 2 + model_std ** 2 + transfer ** 2
                              + min(est.noise_std, 10 * t.tolerance) ** 2
                              + min(est.drift_std, 10 * t.tolerance) ** 2) or 1e-12
            exp_v = y_new + bias[t.signal]
            off = y_new + est.bias - t.target  # centred on the latest raw bias (the filter's lag is an error)
            p = float(norm.cdf((t.tolerance - off) / sigma) - norm.cdf((-t.tolerance - off) / sigma))
            probs.append(p)
            expected.append(ExpectedEffect(signal=t.signal, output=t.output, target=t.target, tolerance=t.tolerance,
                                           current=y_now + bias[t.signal], expected=exp_v,
                                           bias=bias[t.signal], bias_se=est.se, model_std=model_std,
                                           measured_mean=est.measured_mean, samples=est.n, noise_std=est.noise_std,
                                           transfer_std=transfer, drift_std=est.drift_std, probability=p))
        changes = [SetpointChange(input=m.input, node=m.setpoint_node, before=float(x0[i]), after=float(x[i]),
                                  low=m.low, high=m.high, max_step=m.max_step) for i, m in enumerate(loop.manipulated)]
        worst_sig = max(expected, key=lambda e: abs(e.current - e.target) / e.tolerance)
        reason = (f"{worst_sig.signal} estimated {worst_sig.current:.4g} vs target {worst_sig.target:.4g} "
                  f"(bias {worst_sig.bias:+.3g} from {worst_sig.samples} samples); objective {j0:.3g} -> {j1:.3g}"
                  + (_AT_CARD_EDGE if at_card_edge else ""))
        return Proposal(loop=loop_name, electrode=loop.electrode, setpoints=changes, expected=expected,
                        objective_before=j0, objective_after=j1, confidence=float(np.prod(probs)),
                        model_version=self.model.version, reason=reason, inputs={**u0, **d},
                        compute_ms=(time.perf_counter() - started) * 1e3, process_time_ns=now_ns)

    def _dwell(self, loop: Loop, names: list[str], x0: np.ndarray, d: dict[str, float],
               lo: np.ndarray, hi: np.ndarray, now_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """Within ``dwell_s`` of a setpoint's last move, it may go on the same way but not back (no chattering),
        unless a measured disturbance has since moved the predicted product by more than a tolerance: a
        speed change at the HMI is a reason to move, a noisy bias is not."""
        lo, hi = lo.copy(), hi.copy()
        for i, m in enumerate(loop.manipulated):
            mv = self.moves.get(m.setpoint_node)
            if mv is None or now_ns - mv.time_ns >= loop.dwell_s * 1e9:
                continue
            if mv.measured and any(abs(mv.measured.get(k, v) - v) > 0 for k, v in d.items()):
                at = dict(zip(names, x0, strict=True))
                y_now = self.model.evaluate(loop.electrode, {**d, **at}).outputs
                y_then = self.model.evaluate(loop.electrode, {**d, **mv.measured, **at}).outputs
                if any(abs(_scalar(y_now[t.output]) - _scalar(y_then[t.output])) > DWELL_LIFT_TOLERANCES * t.tolerance
                       for t in loop.targets):
                    continue
            if mv.direction > 0:
                lo[i] = min(max(lo[i], x0[i]), hi[i])
            else:
                hi[i] = max(min(hi[i], x0[i]), lo[i])
        return lo, hi
