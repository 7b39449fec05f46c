"""Benchmark: surrogate latency (single, batch of 1000) vs numpy and scikit-learn in the same run; PyBaMM per point.

Run: .venv/bin/python -m pytest -q -s tests/bench/bench_models.py --override-ini addopts=
Prints one JSON document. Nothing here asserts wall-clock time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import onnxruntime as ort

from models import doe, onnx_export
from models import surrogates as sg
from models.runtime import DEFAULT_DIRECTORY, ModelRegistry


def _median_s(fn: Callable[[], Any], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _numpy_mlp(members: list[Any], coords: sg.Coordinates) -> Callable[[np.ndarray], np.ndarray]:
    """The same ensemble written as plain numpy (float32): the 'no runtime' baseline."""
    layers = []
    for m in members:
        sc, mlp = m["scale"], m["mlp"]
        layers.append(([w.astype(np.float32) for w in mlp.coefs_], [b.astype(np.float32) for b in mlp.intercepts_],
                       sc.mean_.astype(np.float32), sc.scale_.astype(np.float32)))
    mask = coords.log_mask
    mu, sd = coords.y_mu.astype(np.float32), coords.y_sd.astype(np.float32)

    def f(x: np.ndarray) -> np.ndarray:
        xt = np.where(mask, np.log(np.maximum(x, 1e-12)), x).astype(np.float32)
        outs = []
        for ws, bs, m_, s_ in layers:
            h = (xt - m_) / s_
            for w, b in zip(ws[:-1], bs[:-1], strict=True):
                h = np.tanh(h @ w + b)
            outs.append(h @ ws[-1] + bs[-1])
        z = np.stack(outs)
        return np.exp(z.mean(axis=0) * sd + mu)

    return f


def test_bench_models() -> None:
    report: dict[str, Any] = {}
    reg = ModelRegistry.load()
    x1000 = doe.sobol_design(doe.ALL_INPUTS, 1000, seed=8)
    x1 = {k: v[:1] for k, v in x1000.items()}
    for name in reg.names:
        report[f"registry.predict[{name}]"] = {
            "single_us": 1e6 * _median_s(lambda n=name: reg.predict(n, x1), 2000),
            "batch1000_ms": 1e3 * _median_s(lambda n=name: reg.predict(n, x1000), 50),
            "families": reg.card(name)["files"],
        }
    # same-architecture MLP ensemble: ONNX vs scikit-learn vs numpy, on the committed DFN dataset
    data = np.load(DEFAULT_DIRECTORY / "dataset_dfn.npz")
    specs = doe.STRUCTURE_INPUTS + doe.OPERATING_INPUTS
    X = np.column_stack([data[f"x__{s.name}"] for s in specs])
    Y = np.column_stack([data[f"y__{o}"] for o in doe.CELL_OUTPUT_UNITS])
    ok = np.all(np.isfinite(Y), axis=1)
    X, Y = X[ok], Y[ok]
    coords = sg.Coordinates.fit([s.low for s in specs], Y)
    fam = sg.fit_mlp(coords.x(X), coords.y(Y), members=3, hidden=(32, 32), max_iter=50)
    model = onnx_export.build_ensemble(fam.members, X.shape[1], coords.log_mask, coords.y_mu, coords.y_sd,
                                       list(range(Y.shape[1])))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    np_f = _numpy_mlp(fam.members, coords)
    xb = X[:1000].astype(np.float32) if len(X) >= 1000 else np.resize(X, (1000, X.shape[1])).astype(np.float32)
    xs = xb[:1]

    def sk(x: np.ndarray) -> np.ndarray:
        return coords.y_back(fam.predict_z(coords.x(x.astype(np.float64)))[0])

    assert np.allclose(sess.run(None, {"X": xb})[0], np_f(xb), rtol=1e-4)
    report["mlp_ensemble_3x(32,32)_19in_20out"] = {
        "onnxruntime": {"single_us": 1e6 * _median_s(lambda: sess.run(None, {"X": xs}), 3000),
                        "batch1000_ms": 1e3 * _median_s(lambda: sess.run(None, {"X": xb}), 100)},
        "numpy_float32": {"single_us": 1e6 * _median_s(lambda: np_f(xs), 3000),
                          "batch1000_ms": 1e3 * _median_s(lambda: np_f(xb), 100)},
        "scikit_learn": {"single_us": 1e6 * _median_s(lambda: sk(xs), 500),
                         "batch1000_ms": 1e3 * _median_s(lambda: sk(xb), 50)},
    }
    # physics: the whole chain per point (process chain + 4 DFN discharges + lifetime + cost), and one rebuild
    from models import cell as cell_mod

    t0 = time.perf_counter()
    model_dfn = cell_mod.CellModel()
    build_s = time.perf_counter() - t0
    x8 = doe.sobol_design(doe.ALL_INPUTS, 8, seed=3)
    doe.evaluate_chain({k: v[:1] for k, v in x8.items()}, model_dfn)  # warm
    t0 = time.perf_counter()
    _, failed, _ = doe.evaluate_chain(x8, model_dfn)
    per_point = (time.perf_counter() - t0) / 8
    s = doe.structure_outputs(x8)
    design = {"cathode_thickness_um": float(s["cathode_calendered_thickness_um"][0]),
              "cathode_porosity": float(s["cathode_calendered_porosity"][0]),
              "cathode_active_volume_fraction": float(s["cathode_active_volume_fraction"][0]),
              "cathode_particle_radius_um": float(x8["cathode_particle_radius_um"][0]),
              "anode_thickness_um": float(s["anode_calendered_thickness_um"][0]),
              "anode_porosity": float(s["anode_calendered_porosity"][0]),
              "anode_active_volume_fraction": float(s["anode_active_volume_fraction"][0]),
              "anode_particle_radius_um": float(x8["anode_particle_radius_um"][0])} | {
                  k: float(s[k][0]) for k in cell_mod.FRACTION_KEYS}
    rebuild = _median_s(lambda: model_dfn.solve_rebuilt(design, 1.0), 3)
    symbolic = _median_s(lambda: model_dfn._solve("default", model_dfn._inputs(
        design, model_dfn.balance(design), 1.0), 1.0, False), 5)
    report["physics"] = {"model_build_s": build_s, "chain_per_point_s": per_point, "failed": int(failed.sum()),
                         "dfn_1C_solve_symbolic_mesh_s": symbolic, "dfn_1C_solve_full_rebuild_s": rebuild,
                         "rebuild_over_symbolic": rebuild / symbolic}
    cost_single = report["registry.predict[cost]"]["single_us"] * 1e-6
    report["speedup_physics_over_surrogate"] = {
        "per_point_single": per_point / cost_single,
        "per_point_in_batch1000": per_point / (report["registry.predict[cost]"]["batch1000_ms"] * 1e-3 / 1000),
    }
    print(json.dumps(report, indent=1))
    assert failed.sum() == 0


def test_bench_recommendation_confidence_reliability() -> None:
    """Reliability table of the recommender's confidence (issue 13): scenarios on the process-chain physics with
    gauge noise, model-plant mismatch and solid-content drift; the recommender on the physics and on the calibrated
    structure surrogate. Baseline in the same run: the confidence formula before issue 13 (bias SE of independent
    samples and the ensemble std, centred on the filtered bias, min over targets) on the same proposals."""
    from tests.twin import reliability
    from twin.plant_model import PhysicsModel, RegistryModel

    report: dict[str, Any] = {}
    models = {"physics": PhysicsModel(), "structure_surrogate": RegistryModel(ModelRegistry.load(), "structure")}
    for label, model in models.items():
        for drift in (0.0, 1.0):
            t0 = time.perf_counter()
            out = reliability.run(range(600), model, drift=drift)
            out["seconds"] = time.perf_counter() - t0
            if label != "physics":
                out.pop("per_target")
            report[f"{label}, drift x{drift:g}"] = out
    print(json.dumps({"recommendation_confidence_reliability": report}, indent=1))
    for out in report.values():
        assert out["proposals"] > 0


def test_bench_prediction_latency_with_intervals() -> None:
    """registry.predict (calibrated intervals, N/P constraint, derived $/kWh) against the bare ONNX session run of
    the same graph in the same run: what the calibration and the derived outputs cost per call."""
    reg = ModelRegistry.load()
    x1000 = doe.sobol_design(doe.ALL_INPUTS, 1000, seed=8)
    x1 = {k: v[:1] for k, v in x1000.items()}
    report: dict[str, Any] = {}
    for name in reg.names:
        m = reg._get(name)
        names = m.input_names
        xb = np.column_stack([x1000[n] for n in names]).astype(np.float32)
        sess = next(iter(m.sessions.values()))
        report[name] = {
            "predict_single_us": 1e6 * _median_s(lambda n=name: reg.predict(n, x1), 1000),
            "predict_batch1000_ms": 1e3 * _median_s(lambda n=name: reg.predict(n, x1000), 30),
            "session_single_us": 1e6 * _median_s(lambda s=sess, x=xb[:1]: s.run(None, {"X": x}), 1000),
            "session_batch1000_ms": 1e3 * _median_s(lambda s=sess, x=xb: s.run(None, {"X": x}), 30),
            "calibrated": reg.predict(name, x1).calibrated,
        }
    print(json.dumps({"prediction_latency_with_intervals": report}, indent=1))


def test_bench_inverse_design_bayesian_vs_random_search() -> None:
    """Seed 002's inverse design: Bayesian optimisation of eq. 3 (scikit-optimize) against random search with the same
    number of surrogate evaluations (the baseline, same run): best Cf found and wall time."""
    from models import analysis
    from models.objective import scalarised

    reg = ModelRegistry.load()
    n_calls = 30
    t0 = time.perf_counter()
    bo = analysis.inverse_design_bo(reg, n_calls=n_calls, seed=3)
    bo_s = time.perf_counter() - t0
    terms = analysis.default_eq3_terms(reg)
    names = [i["name"] for i in reg.card("structure")["inputs"]]
    lo = np.array([i["low"] for i in reg.card("structure")["inputs"]])
    hi = np.array([i["high"] for i in reg.card("structure")["inputs"]])
    rng = np.random.default_rng(3)
    t0 = time.perf_counter()
    best = np.inf
    for _ in range(n_calls):
        inputs = {k: np.array([0.5 * (a + b)]) for k, a, b in zip(names, lo, hi, strict=True)}
        for sp in analysis.SETPOINTS:
            j = names.index(f"cathode_{sp}")
            inputs[f"cathode_{sp}"] = np.array([lo[j] + rng.random() * (hi[j] - lo[j])])
        y = reg.predict("structure", inputs).outputs
        best = min(best, float(scalarised(terms, {**y, **analysis.derived_structure(inputs, y)})[0]))
    rs_s = time.perf_counter() - t0
    report = {"evaluations": n_calls, "bayesian": {"best_cf": bo["cf_surrogate"], "cf_on_physics": bo["cf_physics"],
                                                   "wall_s": bo_s},
              "random_search": {"best_cf": best, "wall_s": rs_s}}
    print(json.dumps({"inverse_design_eq3": report}, indent=1))
    assert bo["cf_surrogate"] <= best + 1e-9
