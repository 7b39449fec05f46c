"""Calibrated 95 % intervals for the exported ensembles: split-conformal scaling of the ensemble spread, per output.

Why: the spread of K ensemble members measures how much the members disagree, not how far the mean is from the
physics; on fresh points ±2σ of the exported ensembles covered only 60-80 % (issue 13). A deep ensemble's spread is
still a good *shape* for the error (large where the members extrapolate), so we keep it and fix its *scale*.

Method: normalised split-conformal regression, done in numpy (no MAPIE / crepes dependency: the whole method is one
quantile). On a calibration set the ensemble never trained on, the score of each point is
``s_i = |y_i - mean_i| / std_i``; the scale factor of an output is the ``ceil((n + 1)(1 - alpha)) / n`` empirical
quantile of the scores (the finite-sample split-conformal quantile: marginal coverage >= 1 - alpha on exchangeable
fresh points). The runtime then gives ``mean ± q std`` as the 95 % interval and ``q std / 1.96`` as the calibrated
std. The guarantee is marginal over the design space the calibration points were drawn from (uniform on the card's
input box, minus what the card's constraints put out of domain); it says nothing about points outside it, which the
runtime flags anyway.

Calibration sets are fresh physics on seeds the training never used: scrambled Sobol points through the process chain
for ``structure`` (cheap: tens of thousands), and for ``cell`` / ``cost`` the training run's held-out 20 % (fitted on
by no member) plus fresh Sobol points through the DFN chain (``models.doe.run_doe``, resumable). Fresh *test* sets
(other Sobol seeds and plain uniform draws) are kept beside them so a test can check the coverage on points used
neither for training nor for calibration.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models import doe

FloatArray = NDArray[np.float64]
ALPHA = 0.05
Z95 = 1.959963984540054  # standard normal 97.5 % quantile: calibrated std = half-width / Z95
METHOD = ("split-conformal (normalised): q = ceil((n+1)(1-alpha))/n quantile of |y - mean| / ensemble std on "
          "held-out physics points; interval mean ± q std; numpy")
# Seeds nobody trained on (training: structure 2026, cell/cost 2027).
STRUCTURE_CAL_SEED, STRUCTURE_TEST_SEED = 5101, 5102
DFN_CAL_SEED, DFN_TEST_SEED, DFN_UNIFORM_SEED = 5201, 5202, 5203
DFN_SETS_FILE = "calibration_dfn.npz"  # in the artifacts directory beside the cards


def conformal_scale(y: FloatArray, mean: FloatArray, std: FloatArray, alpha: float = ALPHA) -> float:
    """The split-conformal scale factor of one output: interval mean ± q std covers >= 1 - alpha of fresh points."""
    y, mean, std = (np.asarray(a, dtype=float).reshape(-1) for a in (y, mean, std))
    ok = np.isfinite(y) & np.isfinite(mean) & np.isfinite(std)
    y, mean, std = y[ok], mean[ok], std[ok]
    n = len(y)
    if n < math.ceil(1.0 / alpha):
        raise ValueError(f"{n} calibration points cannot give a {1 - alpha:.0%} interval; "
                         f"need >= {math.ceil(1 / alpha)}")
    scores = np.abs(y - mean) / np.maximum(std, np.finfo(float).tiny)
    k = math.ceil((n + 1) * (1.0 - alpha))
    return float(np.sort(scores)[min(k, n) - 1])


def uniform_design(specs: Sequence[doe.InputSpec], n: int, seed: int) -> dict[str, FloatArray]:
    """Plain independent uniform draws on the input box (a second kind of fresh point beside Sobol)."""
    rng = np.random.default_rng(seed)
    return {s.name: rng.uniform(s.low, s.high, n) for s in specs}


def structure_sets(n_cal: int = 16384, n_test: int = 8192) -> dict[str, dict[str, dict[str, FloatArray]]]:
    """Calibration (Sobol) and test (Sobol, uniform) sets through the process chain: ``{set: {"x":..., "y":...}}``."""
    out = {}
    for key, x in (("calibration", doe.sobol_design(doe.STRUCTURE_INPUTS, n_cal, STRUCTURE_CAL_SEED)),
                   ("test_sobol", doe.sobol_design(doe.STRUCTURE_INPUTS, n_test, STRUCTURE_TEST_SEED)),
                   ("test_uniform", uniform_design(doe.STRUCTURE_INPUTS, n_test, STRUCTURE_TEST_SEED + 1))):
        out[key] = {"x": x, "y": doe.structure_outputs(x)}
    return out


def dfn_designs(n_cal: int = 1536, n_test: int = 1024) -> dict[str, dict[str, FloatArray]]:
    """The fresh DFN designs: calibration Sobol, test Sobol, test uniform (all on the cost model's inputs)."""
    return {"calibration": doe.sobol_design(doe.ALL_INPUTS, n_cal, DFN_CAL_SEED),
            "test_sobol": doe.sobol_design(doe.ALL_INPUTS, n_test, DFN_TEST_SEED),
            "test_uniform": uniform_design(doe.ALL_INPUTS, n_test, DFN_UNIFORM_SEED)}


def run_dfn_sets(work: Path, out: Path, processes: int = 1, n_cal: int = 1536, n_test: int = 1024,
                 log: Callable[[str], None] = print) -> Path:
    """Evaluate the fresh DFN designs (resumable chunks under ``work``) and save them to ``out/DFN_SETS_FILE``."""
    arrays: dict[str, Any] = {}
    for key, x in dfn_designs(n_cal, n_test).items():
        data = doe.run_doe(x, work, processes=processes, log=log)
        arrays |= {f"{key}__x__{k}": v for k, v in data["x"].items()}
        arrays |= {f"{key}__y__{k}": v for k, v in data["y"].items()}
        arrays[f"{key}__failed"] = data["failed"]
    arrays["physics_sha256"] = np.frombuffer(doe.physics_fingerprint().tobytes(), dtype=np.uint8)
    path = out / DFN_SETS_FILE
    np.savez_compressed(path, **arrays)
    return path


def load_sets(path: Path) -> dict[str, dict[str, dict[str, FloatArray]]]:
    """``{set: {"x": {name: array}, "y": {name: array}}}`` from a file written by ``run_dfn_sets`` (failed rows out)."""
    z = np.load(path)
    sets: dict[str, dict[str, dict[str, FloatArray]]] = {}
    for f in z.files:
        parts = f.split("__")
        if len(parts) == 3:
            sets.setdefault(parts[0], {"x": {}, "y": {}})[parts[1]][parts[2]] = z[f]
    for key, s in sets.items():
        keep = ~np.asarray(z[f"{key}__failed"], dtype=bool)
        for part in ("x", "y"):
            s[part] = {k: np.asarray(v)[keep] for k, v in s[part].items()}
    return sets


def training_holdout(dataset: Path, seed: int = 2026, test_fraction: float = 0.2,
                     outputs: Sequence[str] = ()) -> dict[str, dict[str, FloatArray]]:
    """The held-out rows of the training run (``models.train.fit_and_export``'s split, reproduced exactly)."""
    z = np.load(dataset)
    x = {f[3:]: z[f] for f in z.files if f.startswith("x__")}
    y = {f[3:]: z[f] for f in z.files if f.startswith("y__")}
    cols = np.column_stack([np.asarray(y[o], dtype=float) for o in outputs])
    ok = np.all(np.isfinite(cols), axis=1) & np.all(cols > 0, axis=1)
    idx = np.random.default_rng(seed).permutation(int(ok.sum()))
    n_test = max(2, int(round(test_fraction * int(ok.sum()))))
    rows = np.flatnonzero(ok)[idx[:n_test]]
    return {"x": {k: v[rows] for k, v in x.items()}, "y": {k: v[rows] for k, v in y.items()}}


def merge(*sets: Mapping[str, Mapping[str, FloatArray]]) -> dict[str, dict[str, FloatArray]]:
    keys_x = set.intersection(*(set(s["x"]) for s in sets))
    keys_y = set.intersection(*(set(s["y"]) for s in sets))
    return {"x": {k: np.concatenate([np.asarray(s["x"][k]) for s in sets]) for k in keys_x},
            "y": {k: np.concatenate([np.asarray(s["y"][k]) for s in sets]) for k in keys_y}}


def calibrate_model(registry: Any, name: str, data: Mapping[str, Mapping[str, FloatArray]],
                    source: str, alpha: float = ALPHA) -> dict[str, Any]:
    """Scale factors of every output of one model on one calibration set (raw ensemble spread, in-domain rows).

    ``registry`` is a ``models.runtime.ModelRegistry`` loaded *without* calibration being applied to the spread
    (``PredictionResult.ensemble_std`` is the raw spread in any case)."""
    res = registry.predict(name, data["x"])
    keep = np.asarray(res.in_domain, dtype=bool)
    per_output: dict[str, dict[str, float]] = {}
    for o, mean in res.outputs.items():
        y = np.asarray(data["y"][o], dtype=float)[keep]
        sd = np.asarray(res.ensemble_std[o], dtype=float)[keep]
        m = np.asarray(mean, dtype=float)[keep]
        q = conformal_scale(y, m, sd, alpha)
        raw_cover = float(np.mean(np.abs(y - m) <= 2.0 * sd))
        per_output[o] = {"scale_95": q, "raw_coverage_2std": raw_cover,
                         "median_relative_half_width": float(np.median(q * sd / np.abs(m)))}
    return {"method": METHOD, "alpha": alpha, "n": int(keep.sum()), "n_out_of_domain_dropped": int((~keep).sum()),
            "source": source, "physics_sha256": bytes(doe.physics_fingerprint()).hex(),
            "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "outputs": per_output}


def write_calibration(card_path: Path, calibration: Mapping[str, Any]) -> None:
    """Store the calibration in the card (top-level ``calibration``; per output ``calibration.scale_95``)."""
    card = json.loads(card_path.read_text(encoding="utf-8"))
    per_output = calibration["outputs"]
    for o in card["outputs"]:
        if o["name"] in per_output:
            o["calibration"] = dict(per_output[o["name"]])
    card["calibration"] = {k: v for k, v in calibration.items() if k != "outputs"}
    card["uncertainty"] = ("std = calibrated: half-width of the split-conformal 95 % interval / 1.96 (card "
                           "'calibration'); ensemble_std = the raw spread of the members (mean * std_log), which "
                           "alone under-covered")
    card_path.write_text(json.dumps(card, indent=1))


def _float32_sets(sets: Mapping[str, Mapping[str, Mapping[str, FloatArray]]], keep_y: Sequence[str],
                  ) -> dict[str, np.ndarray]:
    """Flat arrays for ``np.savez`` in float32 (the runtime feeds the graphs float32; outputs keep 7 digits)."""
    arrays: dict[str, np.ndarray] = {}
    for key, s in sets.items():
        arrays |= {f"{key}__x__{k}": np.asarray(v, dtype=np.float32) for k, v in s["x"].items()}
        arrays |= {f"{key}__y__{k}": np.asarray(v, dtype=np.float32) for k, v in s["y"].items() if k in keep_y}
        arrays[f"{key}__failed"] = np.zeros(len(next(iter(s["x"].values()))), dtype=bool)
    return arrays


def calibrate_artifacts(directory: Path, dfn_sets: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Calibrate every card in ``directory``; migrate the cell / cost cards to the N/P constraint and derived $/kWh.

    ``dfn_sets`` is the file ``run_dfn_sets`` wrote (fresh DFN calibration and test sets). The calibration and test
    sets actually used are saved beside the cards (``DFN_SETS_FILE``, float32) so tests can check coverage."""
    from models.runtime import ModelRegistry

    _migrate_cards(directory)
    reg = ModelRegistry.load(directory)
    report: dict[str, Any] = {}
    st = structure_sets()
    cal = calibrate_model(reg, "structure", st["calibration"],
                          f"{len(st['calibration']['y']['np_ratio'])} fresh scrambled Sobol points (seed "
                          f"{STRUCTURE_CAL_SEED}) through models.process_chain")
    write_calibration(directory / "structure.card.json", cal)
    report["structure"] = cal
    fresh = load_sets(dfn_sets)
    card = json.loads((directory / "cell.card.json").read_text(encoding="utf-8"))
    dataset = directory / card["dataset"]["file"]
    # cell and cost were fitted on one DFN dataset with one split (train.fit_and_export): the same held-out rows,
    # unless the finite/positive filters of their outputs differ, which this checks
    holdout = training_holdout(dataset, outputs=list(doe.CELL_OUTPUT_UNITS))
    same = training_holdout(dataset, outputs=list(doe.COST_OUTPUT_UNITS))
    if not np.array_equal(holdout["x"]["c_rate"], same["x"]["c_rate"]):
        raise RuntimeError("cell and cost held out different rows; calibrate them on fresh points only")
    calib = merge(holdout, fresh["calibration"])
    n_hold = len(holdout["y"]["np_ratio"])
    for name in ("cell", "cost"):
        src = (f"{n_hold} held-out points of the training DFN dataset (no member fitted on them) + "
               f"{len(fresh['calibration']['y']['np_ratio'])} fresh scrambled Sobol points (seed {DFN_CAL_SEED}) "
               "through the DFN chain (models.doe.evaluate_chain); rows with N/P < 1 are out of domain and dropped")
        cal = calibrate_model(reg, name, calib, src)
        write_calibration(directory / f"{name}.card.json", cal)
        report[name] = cal
        log(f"{name}: calibrated on {cal['n']} points")
    _derived_metrics(reg, directory, holdout)
    keep_y = set(doe.CELL_OUTPUT_UNITS) | set(doe.COST_OUTPUT_UNITS) | {"np_ratio"}
    stored: dict[str, Any] = _float32_sets({"calibration": calib, "test_sobol": fresh["test_sobol"],
                                            "test_uniform": fresh["test_uniform"]}, sorted(keep_y))
    np.savez_compressed(directory / DFN_SETS_FILE, **stored)
    return report


def apply_domain_and_derived(card: dict[str, Any], constraints: Sequence[Mapping[str, Any]],
                             derived: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Give a card its non-box domain constraints and turn the outputs in ``derived`` into derived outputs (the
    fitted graph column stays in the ONNX file, unused; its fit is kept under ``superseded_fit``)."""
    card["constraints"] = [dict(c) for c in constraints]
    for o in card["outputs"]:
        d = derived.get(o["name"])
        if d is not None and "derived" not in o:
            o["superseded_fit"] = {k: o.pop(k) for k in ("family", "file", "index", "metrics", "meets_targets",
                                                         "candidates") if k in o}
            o["family"] = "derived"
            o["derived"] = dict(d)
    return card


def _migrate_cards(directory: Path) -> None:
    """Cards written before issue 13: add the N/P >= 1 constraint and make $/kWh a derived output."""
    for name in ("cell", "cost"):
        path = directory / f"{name}.card.json"
        card = json.loads(path.read_text(encoding="utf-8"))
        apply_domain_and_derived(card, [doe.NP_CONSTRAINT], doe.DERIVED_OUTPUTS)
        path.write_text(json.dumps(card, indent=1))


def _derived_metrics(reg: Any, directory: Path, holdout: Mapping[str, Mapping[str, FloatArray]]) -> None:
    for name in ("cell", "cost"):
        derived_metrics(reg, directory / f"{name}.card.json", holdout)


def derived_metrics(reg: Any, card_path: Path, holdout: Mapping[str, Mapping[str, FloatArray]],
                    resamplings: int = 50, seed: int = 7) -> None:
    """Seed 002 metrics of a card's derived outputs on the training run's held-out rows (in domain), as the fitted
    outputs have them; their R2 interval is a bootstrap over those rows (a derived output has nothing to refit)."""
    from models import surrogates as sg

    card = json.loads(card_path.read_text(encoding="utf-8"))
    derived = [o for o in card["outputs"] if "derived" in o]
    if not derived:
        return
    res = reg.predict(card["name"], holdout["x"])
    keep = np.asarray(res.in_domain, dtype=bool)
    rng = np.random.default_rng(seed)
    for o in derived:
        t = np.asarray(holdout["y"][o["name"]], dtype=float)[keep][:, None]
        pred = np.asarray(res.outputs[o["name"]], dtype=float)[keep][:, None]
        if len(t) < 2:
            o["metrics"] = {"rmse_pct": float("nan"), "r2": float("nan"), "r2_ci95": [float("nan")] * 2,
                            "n_test": int(len(t)), "resamplings": resamplings,
                            "r2_ci95_note": "fewer than 2 held-out rows in domain"}
            o["meets_targets"] = False
            continue
        boots = []
        for _ in range(resamplings):
            b = rng.integers(0, len(t), len(t))
            boots.append(float(sg.r2(t[b], pred[b])[0]))
        rmse, r2 = float(sg.rmse_pct(t, pred)[0]), float(sg.r2(t, pred)[0])
        o["metrics"] = {"rmse_pct": rmse, "r2": r2,
                        "r2_ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))],
                        "n_test": int(keep.sum()), "resamplings": resamplings,
                        "r2_ci95_note": "derived output: bootstrap of the held-out rows (nothing to refit)"}
        o["meets_targets"] = bool(r2 >= sg.TARGET_R2 and rmse <= sg.TARGET_RMSE_PCT)
    card_path.write_text(json.dumps(card, indent=1))


def calibrate_on_holdout(directory: Path, name: str, x: Mapping[str, FloatArray], y: Mapping[str, FloatArray],
                         alpha: float = ALPHA) -> bool:
    """What ``models.train`` does after exporting a card: derived outputs' metrics, and a calibration on the split's
    held-out rows (no member fitted on them; they also chose the family, a mild optimism a fresh calibration with
    ``python -m models calibrate`` removes). Too few rows (< 1 / alpha in domain): left uncalibrated (the runtime then
    serves the raw spread and says ``calibrated`` False). True if calibrated."""
    from models.runtime import ModelRegistry

    reg = ModelRegistry.load(directory)
    data = {"x": dict(x), "y": dict(y)}
    derived_metrics(reg, directory / f"{name}.card.json", data)
    if int(np.sum(reg.predict(name, data["x"]).in_domain)) < math.ceil(1.0 / alpha):
        return False
    cal = calibrate_model(reg, name, data, f"{len(next(iter(y.values())))} held-out points of the training split "
                          "(fitted by no member; also used to choose the family)", alpha)
    write_calibration(directory / f"{name}.card.json", cal)
    return True
