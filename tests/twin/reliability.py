"""Reliability of the recommender's confidence on the process-chain physics with noise and model-plant mismatch.

Each scenario is a cathode line (the loop of ``tests.twin.plantsim``: pump flow and calender line load moved, mass
loading and calendered density gauged 4 m and 9 m down the web at 1 m/min) whose plant differs from the model:
solid content and compaction resistance off their defaults (and drifting slowly), gauges with their own noise. The
line runs at random setpoints long enough for the bias estimator, the recommender proposes once, the proposal is
applied, and once the change has reached both gauges we count the readings within target ± tolerance. A confidence
that means what it says has, over many scenarios, an observed fraction close to its value in every bin.

Vectorised: with the setpoints held, one process-chain call gives every reading of a phase, so a scenario costs
milliseconds (the time-stepped ``plantsim.Plant`` would take half a second).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models.process_chain import flatten, run_chain
from tests.twin.plantsim import CAL_M, DENS_GAUGE_M, ML_GAUGE_M, SPEED_M_MIN, control_settings, new_live
from twin.plant_model import PlantModel
from twin.recommend import Proposal, Recommender

T0_NS = 1_700_000_000_000_000_000
DT_S = 2.0
ML, DENS = "Drying/Cathode/MassLoading", "Calendering/Cathode/Density"
BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 1.0000001)


@dataclass
class Outcome:
    confidence: float
    probability: dict[str, float]  # per target signal
    within: dict[str, float]  # observed fraction of readings within tolerance, per target signal
    within_all: float  # fraction of the k-th readings of every gauge all within tolerance
    legacy_confidence: float  # the formula before issue 13 (bias SE and ensemble std only, min over targets)


def _chain(pump: np.ndarray, load: np.ndarray, solid: np.ndarray, gamma: np.ndarray) -> dict[str, np.ndarray]:
    return flatten(run_chain({"pump_flow_rate_cm3_h": pump, "web_speed_m_min": SPEED_M_MIN, "solid_content": solid,
                              "line_load_N_mm": load, "compaction_resistance_ref_N_mm": gamma}))


def scenario(seed: int, model: PlantModel, bias_samples: int | None = None, drift: float = 1.0) -> Outcome | None:
    """One proposal and what became of it; None when the recommender refuses (on target, no improvement ...).

    ``drift`` scales the solid-content drift (1: up to ±0.01 per 1000 s, like ``plantsim.Plant``; 0: none)."""
    rng = np.random.default_rng(seed)
    solid0 = rng.uniform(0.665, 0.735)
    solid_drift = rng.uniform(-0.01, 0.01) / 1000.0 * drift  # per second of coating
    gamma0 = rng.uniform(105.0, 160.0)
    noise = {ML: float(np.exp(rng.uniform(np.log(0.02), np.log(0.25)))),
             DENS: float(np.exp(rng.uniform(np.log(0.003), np.log(0.035))))}
    pump0, load0 = rng.uniform(640.0, 750.0), rng.uniform(62.0, 108.0)
    n_bias = bias_samples or int(rng.choice([5, 10, 20, 40]))
    settings = control_settings(bias_samples=n_bias)
    live = new_live()
    v = SPEED_M_MIN / 60.0

    def solid(t: np.ndarray) -> np.ndarray:
        return solid0 + solid_drift * t

    def readings(t: np.ndarray, pump_at: Any, load_at: Any) -> dict[str, np.ndarray]:
        t_ml, t_coat, t_cal = t - ML_GAUGE_M / v, t - DENS_GAUGE_M / v, t - (DENS_GAUGE_M - CAL_M) / v
        ml = _chain(pump_at(t_ml), load_at(t_ml), solid(t_ml), np.full(t.shape, gamma0))
        dens = _chain(pump_at(t_coat), load_at(t_cal), solid(t_coat), np.full(t.shape, gamma0))
        return {ML: ml["drying.dry_mass_loading_mg_cm2"] + rng.normal(0.0, noise[ML], t.shape),
                DENS: dens["calendering.calendered_density_g_cm3"] + rng.normal(0.0, noise[DENS], t.shape)}

    t_pre = np.arange(0.0, 800.0, DT_S)
    pre = readings(t_pre, lambda t: np.full(t.shape, pump0), lambda t: np.full(t.shape, load0))
    for i, t in enumerate(t_pre):
        t_ns = T0_NS + int(t * 1e9)
        live.update("Coating/Cathode/PumpFlowRate", pump0, t_ns)
        live.update("Calendering/Cathode/LineLoad", load0, t_ns)
        live.update("Coating/Cathode/WebSpeed", SPEED_M_MIN, t_ns)
        for key in (ML, DENS):
            live.update(key, float(pre[key][i]), t_ns)
    rec = Recommender(settings, model, live)
    p = rec.recommend("Cathode")
    if not isinstance(p, Proposal):
        return None
    new = {s.input: s.after for s in p.setpoints}
    t_switch = float(t_pre[-1])
    pump1, load1 = new["pump_flow_rate_cm3_h"], new["line_load_N_mm"]
    # each gauge's readings of the product made at the new setpoints: 40 instants from when the change has reached
    # it (the mass-loading gauge sees the pump change after 4 m of web, the density gauge after 9 m)
    steps = DT_S * np.arange(1, 41)
    pump_at = lambda t: np.where(t >= t_switch, pump1, pump0)  # noqa: E731
    load_at = lambda t: np.where(t >= t_switch, load1, load0)  # noqa: E731
    post = {ML: readings(t_switch + ML_GAUGE_M / v + steps, pump_at, load_at)[ML],
            DENS: readings(t_switch + DENS_GAUGE_M / v + steps, pump_at, load_at)[DENS]}
    ok = {}
    for e in p.expected:
        ok[e.signal] = np.abs(post[e.signal] - e.target) <= e.tolerance
    legacy = min(_legacy_probability(e) for e in p.expected)
    return Outcome(legacy_confidence=legacy, confidence=p.confidence,
                   probability={e.signal: e.probability for e in p.expected},
                   within={k: float(v_.mean()) for k, v_ in ok.items()},
                   within_all=float(np.mean(np.logical_and.reduce(list(ok.values())))))


def _legacy_probability(e: Any) -> float:
    """P(within tolerance) as computed before issue 13: centred on the filtered bias, spread = bias SE of
    independent samples and the model's std, no gauge noise, drift or bias transfer (the baseline in the bench)."""
    from scipy.stats import norm

    sigma = float(np.hypot(min(e.noise_std / np.sqrt(e.samples), 10 * e.tolerance), e.model_std)) or 1e-12
    off = e.expected - e.target
    return float(norm.cdf((e.tolerance - off) / sigma) - norm.cdf((-e.tolerance - off) / sigma))


def reliability_table(confidence: np.ndarray, observed: np.ndarray,
                      bins: tuple[float, ...] = BINS) -> list[dict[str, float]]:
    """Bins of p: count, mean p, observed fraction within tolerance (mean over the proposals in the bin)."""
    rows = []
    for lo, hi in zip(bins[:-1], bins[1:], strict=True):
        sel = (confidence >= lo) & (confidence < hi)
        if sel.any():
            rows.append({"p_low": lo, "p_high": min(hi, 1.0), "count": int(sel.sum()),
                         "mean_confidence": float(confidence[sel].mean()),
                         "observed_fraction": float(observed[sel].mean())})
    return rows


def run(seeds: range, model: PlantModel, drift: float = 1.0) -> dict[str, Any]:
    outcomes = [o for o in (scenario(s, model, drift=drift) for s in seeds) if o is not None]
    conf = np.array([o.confidence for o in outcomes])
    obs = np.array([o.within_all for o in outcomes])
    per_target = {}
    for key in (ML, DENS):
        pk = np.array([o.probability[key] for o in outcomes])
        ok = np.array([o.within[key] for o in outcomes])
        per_target[key] = reliability_table(pk, ok)
    legacy = np.array([o.legacy_confidence for o in outcomes])
    return {"scenarios": len(seeds), "proposals": len(outcomes), "table": reliability_table(conf, obs),
            "legacy_table": reliability_table(legacy, obs),
            "legacy_brier": float(np.mean((legacy - obs) ** 2)) if len(legacy) else float("nan"),
            "per_target": per_target, "mean_confidence": float(conf.mean()) if len(conf) else float("nan"),
            "mean_observed": float(obs.mean()) if len(obs) else float("nan"),
            "brier": float(np.mean((conf - obs) ** 2)) if len(conf) else float("nan")}
