"""Online calibration benchmark (issue 13 item 2): rolls to converge, prediction error, update time per sample.

Run (prints one JSON document):
    .venv/bin/python tests/bench/bench_calibration.py [--rolls 20] [--seeds 3]

Everything runs in-process in simulated time (tests/calibration/linerun.py: the simulator's Plant stepped with 2 s
ticks, 20 m rolls, the recipe moved every three rolls). The plant's parameters are 5-15 % off the literature set
(linerun.MISMATCH). Per seed, the same scenario twice: with the twin's calibration (auto accept) and without it
(the baseline: the literature chain, which the twin used before). For each electrode and each of the roll's mean
beta-gauge loading and mean calendered density, the twin's one-step-ahead prediction error in units of one gauge
reading's noise (beta gauge 0.5 % of reading; density = 10 m / h, 0.5 % and 0.3 um in quadrature), and the first
roll from which every prediction stays within one sigma. Then the false-alarm side: the literature plant, with and
without batch-to-batch solid-content variation. Update time: ``ElectrodeCalibration.observe`` per roll record (the
filter's 13 sigma points through the chain, residual test), against one evaluation of the chain (PhysicsModel) in
the same run. Closed loop: the recommender in closed loop on the same mismatched plant (no recipe moves), open loop
as the baseline, on the literature chain and on the calibrated one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from tests.calibration.linerun import MISMATCH, closed_loop, rolls_to_converge, run  # noqa: E402
from twin.calibration import parameters as cp  # noqa: E402
from twin.calibration.estimator import ElectrodeCalibration, Observation  # noqa: E402
from twin.plant_model import PhysicsModel  # noqa: E402

KINDS = ("loading", "density")


def _errors(r: Any, electrode: str, kind: str, from_roll: int = 1) -> list[float]:
    seq = [e.error_in_sigma for e in r.errors if e.electrode == electrode and e.kind == kind]
    return seq[from_roll - 1:]


def accuracy(rolls: int, seeds: int) -> dict[str, Any]:
    out: dict[str, Any] = {"rolls": rolls, "seeds": list(range(1, seeds + 1)), "per_seed": []}
    for seed in out["seeds"]:
        t0 = time.perf_counter()
        cal = run(rolls, calibrate=True, seed=seed)
        wall_cal = time.perf_counter() - t0
        base = run(rolls, calibrate=False, seed=seed)
        row: dict[str, Any] = {"seed": seed, "wall_s_calibrated_run": round(wall_cal, 2),
                               "simulated_h": round(cal.sim_s / 3600, 2)}
        for electrode in ("cathode", "anode"):
            for kind in KINDS:
                n = rolls_to_converge(cal.errors, electrode, kind)
                after = _errors(cal, electrode, kind, 4)
                row[f"{electrode}_{kind}"] = {
                    "rolls_to_within_1_sigma": n,
                    "calibrated_median_error_sigma_from_roll_4": round(statistics.median(after), 3),
                    "calibrated_max_error_sigma_from_roll_4": round(max(after), 3),
                    "calibrated_share_within_1_sigma_from_roll_4": round(sum(e <= 1.0 for e in after) / len(after), 3),
                    "baseline_median_error_sigma": round(statistics.median(_errors(base, electrode, kind)), 2),
                    "baseline_rolls_to_within_1_sigma": rolls_to_converge(base.errors, electrode, kind)}
            c = cal.calibration.get(electrode)
            v = c.current()
            truth = {**cp.defaults(electrode), **MISMATCH[electrode]}
            row[f"{electrode}_estimates"] = {
                k: {"estimate": round(v.values[k], 4), "std": round(v.std[k], 4), "plant": truth[k],
                    "literature": cp.defaults(electrode)[k]} for k in cp.NAMES}
            row[f"{electrode}_versions_accepted"] = c.accepted
        row["update_ms_per_roll_record"] = round(1e3 * statistics.median(cal.calibration.update_s), 3)
        out["per_seed"].append(row)
    return out


def false_alarms(rolls: int) -> dict[str, Any]:
    out = {}
    for variation in (0.0, 1.0):
        r = run(rolls, calibrate=True, plant={}, seed=3, batch_variation=variation)
        out[f"batch_variation_{variation:g}"] = {
            "rolls": rolls, "mismatch_alarms": r.calibration.counts["mismatches"],
            "versions_accepted": r.calibration.counts["accepted"],
            "max_error_sigma": round(max(e.error_in_sigma for e in r.errors), 2)}
    return out


def update_time(n: int = 2000) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    c = ElectrodeCalibration("L", "p", "cathode")
    model = PhysicsModel()
    obs = []
    for i in range(n):
        inputs = {"pump_flow_rate_cm3_h": 696.0 * (1 + 0.03 * np.sin(i)), "web_speed_m_min": 1.0,
                  "coating_width_mm": 125.0, "line_load_N_mm": 84.0 + 10 * np.cos(i), "roll_temperature_C": 25.0}
        out = cp.evaluate("cathode", inputs, {**cp.defaults("cathode"), **MISMATCH["cathode"]})
        obs.append(Observation(f"R{i}", inputs, {k: float(out[k]) * (1 + 0.003 * rng.standard_normal())
                                                 for k in ("coating.wet_film_thickness_um",
                                                           "drying.dry_mass_loading_mg_cm2",
                                                           "drying.dry_film_thickness_um",
                                                           "calendering.calendered_thickness_um")}))
    times = []
    for o in obs:
        t0 = time.perf_counter()
        c.observe(o)
        times.append(time.perf_counter() - t0)
    base = []
    for o in obs[:500]:
        t0 = time.perf_counter()
        model.evaluate("cathode", o.inputs)
        base.append(time.perf_counter() - t0)
    q = np.percentile
    return {"samples": n, "outputs_per_sample": 4, "parameters": len(cp.NAMES),
            "update_us_median": round(1e6 * statistics.median(times), 1),
            "update_us_p95": round(1e6 * float(q(times, 95)), 1),
            "baseline_one_chain_evaluation_us_median": round(1e6 * statistics.median(base), 1),
            "updates_per_s": round(1.0 / statistics.median(times))}


def closed_loop_rms(rolls: int) -> dict[str, Any]:
    """RMS deviation of the 5-minute means from target, rolls 3..: open loop (baseline), closed loop on the
    literature chain (calibration off: the bias filter alone absorbs the mismatch), closed loop on CalibratedModel."""
    runs = {mode: asyncio.run(closed_loop(rolls, mode)) for mode in ("open", "literature", "calibrated")}
    out: dict[str, Any] = {"rolls": rolls}
    for key, rms_open in runs["open"]["rms"].items():
        out[key] = {"open": round(rms_open, 4),
                    **{m: round(runs[m]["rms"][key], 4) for m in ("literature", "calibrated")},
                    **{f"reduction_{m}": round(1 - runs[m]["rms"][key] / rms_open, 3)
                       for m in ("literature", "calibrated")}}
    out["writes"] = {m: runs[m]["writes"] for m in runs}
    out["versions_accepted_calibrated"] = runs["calibrated"]["versions_accepted"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rolls", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args(argv)
    report = {"calibration_accuracy": accuracy(args.rolls, args.seeds),
              "false_alarms_literature_plant": false_alarms(2 * args.rolls),
              "update_time_per_sample": update_time(),
              "closed_loop_rms": closed_loop_rms(10)}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
