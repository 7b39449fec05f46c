"""The quick training run end to end (DFN DOE -> surrogates -> ONNX -> cards) and the runtime the twin uses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import doe
from models.runtime import ModelRegistry

REPO = Path(__file__).resolve().parents[2]


def _centre(card: dict[str, Any]) -> dict[str, float]:
    return {i["name"]: 0.5 * (i["low"] + i["high"]) for i in card["inputs"]}


def test_quick_run_writes_cards_onnx_and_dataset(quick_run: tuple[Path, dict[str, Any]]) -> None:
    out, cards = quick_run
    assert set(cards) == {"structure", "cell", "cost"}
    for name, card in cards.items():
        assert (out / f"{name}.card.json").exists()
        for f in card["files"].values():
            assert (out / f).stat().st_size > 0
        for o in card["outputs"]:
            m = o["metrics"]
            assert set(m) >= {"rmse_pct", "r2", "r2_ci95", "n_test"} and m["resamplings"] >= 50
            assert o["unit"] and (o["family"] in card["files"] or "derived" in o)
        assert len(card["dataset"]["sha256"]) == 64
        assert card["packages"]["pybamm"] == "26.10.1.1"
        assert {i["name"] for i in card["inputs"]} <= {s.name for s in doe.ALL_INPUTS}
    meta = json.loads((out / "dataset_dfn_quick.json").read_text())
    assert meta["n"] == 32 and meta["hash"] == cards["cell"]["dataset"]["sha256"]


def test_runtime_reproduces_the_training_data(quick_run: tuple[Path, dict[str, Any]]) -> None:
    """Through ONNX, the structure surrogate reproduces the process chain on its design space."""
    out, _ = quick_run
    reg = ModelRegistry.load(out)
    x = doe.sobol_design(doe.STRUCTURE_INPUTS, 64, seed=404)
    truth = doe.structure_outputs(x)
    res = reg.predict("structure", x)
    assert res.in_domain.all() and res.violations == [{}] * 64
    for k in ("cathode_dry_mass_loading_mg_cm2", "anode_calendered_porosity", "np_ratio"):
        assert np.max(np.abs(res.outputs[k] / truth[k] - 1)) < 0.02, k
        assert np.all(res.std[k] >= 0)


def test_batch_equals_single_predictions(quick_run: tuple[Path, dict[str, Any]]) -> None:
    reg = ModelRegistry.load(quick_run[0])
    x = doe.sobol_design(doe.ALL_INPUTS, 8, seed=1)
    batch = reg.predict("cost", x)
    for i in range(8):
        one = reg.predict("cost", {k: float(v[i]) for k, v in x.items()})
        for k, v in one.outputs.items():
            assert v.shape == (1,)
            assert v[0] == pytest.approx(batch.outputs[k][i], rel=1e-5)


def test_domain_check_flags_offending_inputs(quick_run: tuple[Path, dict[str, Any]]) -> None:
    reg = ModelRegistry.load(quick_run[0])
    inputs: dict[str, Any] = _centre(reg.card("cell"))
    inputs["c_rate"] = np.array([1.0, 3.2, 0.1])
    inputs["cathode_line_load_N_mm"] = np.array([200.0, 80.0, 80.0])
    res = reg.predict("cell", inputs)
    assert res.in_domain.tolist() == [False, False, False]
    assert res.violations[0] == {"cathode_line_load_N_mm": "value 200 outside [60, 110]"}
    assert res.violations[1] == {"c_rate": "value 3.2 outside [0.2, 3]"}
    assert set(res.violations[2]) == {"c_rate"}
    assert np.all(np.isfinite(res.outputs["capacity_Ah_C3"]))  # flagged, mean still returned
    strict = ModelRegistry.load(quick_run[0], out_of_domain="nan").predict("cell", inputs)
    assert np.all(np.isnan(strict.outputs["capacity_Ah_C3"]))


def test_bad_requests_get_clear_errors(quick_run: tuple[Path, dict[str, Any]]) -> None:
    reg = ModelRegistry.load(quick_run[0])
    centre = _centre(reg.card("structure"))
    missing = dict(centre)
    del missing["anode_web_speed_m_min"]
    with pytest.raises(KeyError, match="anode_web_speed_m_min"):
        reg.predict("structure", missing)
    with pytest.raises(ValueError, match="cathode_solid_content.*finite"):
        reg.predict("structure", {**centre, "cathode_solid_content": float("nan")})
    with pytest.raises(ValueError, match="common length"):
        reg.predict("structure", {**centre, "cathode_solid_content": [0.7, 0.71], "anode_solid_content": [0.5] * 3})
    with pytest.raises(KeyError, match="unknown model"):
        reg.predict("nope", centre)
    with pytest.raises(FileNotFoundError, match="models train"):
        ModelRegistry.load(quick_run[0] / "work")


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=18, max_size=18))
def test_any_finite_input_is_answered_and_flagged_when_outside(quick_run: tuple[Path, dict[str, Any]],
                                                             values: list[float]) -> None:
    reg = ModelRegistry.load(quick_run[0])
    names = reg.inputs("structure")
    card = reg.card("structure")
    res = reg.predict("structure", dict(zip(names, values, strict=True)))
    outside = {i["name"] for i, v in zip(card["inputs"], values, strict=True) if not i["low"] <= v <= i["high"]}
    assert bool(res.in_domain[0]) == (not outside)
    assert set(res.violations[0]) == outside
    assert all(np.isfinite(v).all() or not res.in_domain[0] for v in res.outputs.values())


def _cli(args: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "models", *args], input=stdin, capture_output=True, text=True,
                          cwd=REPO, timeout=240)


def test_cli_predict_json_in_json_out(quick_run: tuple[Path, dict[str, Any]]) -> None:
    reg = ModelRegistry.load(quick_run[0])
    req = {"model": "structure", "inputs": _centre(reg.card("structure"))}
    r = _cli(["predict", "--dir", str(quick_run[0])], json.dumps(req))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["in_domain"] == [True] and out["units"]["cathode_dry_mass_loading_mg_cm2"] == "mg/cm2"
    assert out["outputs"]["cathode_dry_mass_loading_mg_cm2"][0] > 0
    bad = _cli(["predict", "--dir", str(quick_run[0])], "{not json")
    assert bad.returncode == 2 and "not valid JSON" in json.loads(bad.stdout)["error"]
    missing = _cli(["predict", "--dir", str(quick_run[0])], json.dumps({"model": "structure", "inputs": {}}))
    assert missing.returncode == 2 and "needs input" in json.loads(missing.stdout)["error"]


def test_cli_validate_runs_fresh_points_through_physics_and_onnx(quick_run: tuple[Path, dict[str, Any]]) -> None:
    r = _cli(["validate", "--seed", "77", "--n", "4", "--processes", "1", "--dir", str(quick_run[0])])
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["seed"] == 77 and rep["n"] == 4 and rep["n_failed_physics"] == 0
    assert set(rep["models"]) == {"structure", "cell", "cost"}
    s = rep["models"]["structure"]["outputs"]["cathode_dry_mass_loading_mg_cm2"]
    assert s["rmse_pct"] < 2.0 and isinstance(s["meets_targets"], bool)
