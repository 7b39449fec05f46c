"""Calibrated 95 % intervals of the committed surrogates on fresh physics points (issue 13 item 1).

Fresh means used neither for training nor for calibration: for ``structure`` new scrambled Sobol and uniform points
through the process chain (cheap, made here); for ``cell`` / ``cost`` the DFN test sets stored beside the cards
(other Sobol seed and uniform draws, ``models/artifacts/calibration_dfn.npz``, made by ``python -m models calibrate``;
the DFN is too slow to run thousands of points in a test).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from models import calibration as cal
from models import doe
from models.runtime import DEFAULT_DIRECTORY, ModelRegistry


@pytest.fixture(scope="module")
def reg() -> ModelRegistry:
    return ModelRegistry.load(DEFAULT_DIRECTORY)


def _coverage(reg: ModelRegistry, name: str, x: dict, y: dict) -> dict[str, tuple[float, float, int]]:
    """output -> (calibrated coverage, raw ±2σ coverage of the ensemble spread, rows in domain)."""
    res = reg.predict(name, x)
    keep = res.in_domain
    out = {}
    for o in res.outputs:
        t = np.asarray(y[o], dtype=float)[keep]
        inside = (t >= res.lower[o][keep]) & (t <= res.upper[o][keep])
        raw = np.abs(t - res.outputs[o][keep]) <= 2.0 * res.ensemble_std[o][keep]
        out[o] = (float(inside.mean()), float(raw.mean()), int(keep.sum()))
    return out


def test_split_conformal_scale_is_the_finite_sample_quantile() -> None:
    rng = np.random.default_rng(0)
    sd = rng.uniform(0.5, 2.0, 4000)
    y = rng.normal(0.0, 3.0 * sd)  # the spread under-states the error threefold
    q = cal.conformal_scale(y[:2000], np.zeros(2000), sd[:2000])
    assert q == pytest.approx(3.0 * 1.96, rel=0.05)
    inside = np.abs(y[2000:]) <= q * sd[2000:]
    assert 0.93 <= inside.mean() <= 0.97
    scores = np.sort(np.abs(y[:19]) / sd[:19])
    with pytest.raises(ValueError, match="need >= 20"):
        cal.conformal_scale(y[:19], np.zeros(19), sd[:19])
    assert cal.conformal_scale(y[:39], np.zeros(39), sd[:39]) == np.sort(np.abs(y[:39]) / sd[:39])[37]  # ceil(38)
    assert scores[-1] > 0


def test_cards_carry_their_calibration(reg: ModelRegistry) -> None:
    for name in reg.names:
        card = reg.card(name)
        c = card["calibration"]
        assert c["method"].startswith("split-conformal") and c["alpha"] == 0.05 and c["n"] >= 1000
        assert "physics_sha256" in c and c["source"]
        for o in card["outputs"]:
            assert o["calibration"]["scale_95"] > 0, (name, o["name"])


def test_structure_intervals_cover_95_percent_of_fresh_points(reg: ModelRegistry) -> None:
    for x in (doe.sobol_design(doe.STRUCTURE_INPUTS, 8192, seed=cal.STRUCTURE_CAL_SEED + 10),
              cal.uniform_design(doe.STRUCTURE_INPUTS, 8192, seed=cal.STRUCTURE_CAL_SEED + 11)):
        y = doe.structure_outputs(x)
        for o, (cover, raw, n) in _coverage(reg, "structure", x, y).items():
            assert n == 8192
            assert 0.93 <= cover <= 0.97, f"{o}: calibrated 95 % interval covers {cover:.3f}"
            assert raw < 0.9, f"{o}: the raw ±2σ spread covered {raw:.3f} (why calibrate?)"


@pytest.mark.parametrize("name", ["cell", "cost"])
def test_cell_and_cost_intervals_cover_95_percent_of_fresh_dfn_points(reg: ModelRegistry, name: str) -> None:
    sets = cal.load_sets(DEFAULT_DIRECTORY / cal.DFN_SETS_FILE)
    both = cal.merge(sets["test_sobol"], sets["test_uniform"])
    cov = _coverage(reg, name, both["x"], both["y"])
    for o, (cover, _, n) in cov.items():
        assert n > 1500
        assert 0.93 <= cover <= 0.97, f"{name}.{o}: calibrated 95 % interval covers {cover:.3f} of {n}"


def test_np_below_one_is_out_of_domain_for_cell_and_cost(reg: ModelRegistry) -> None:
    """An anode-limited cell (N/P < 1) is inside the input box but outside the cell model's domain."""
    base = {i["name"]: 0.5 * (i["low"] + i["high"]) for i in reg.card("cost")["inputs"]}
    thin_anode = dict(base, anode_pump_flow_rate_cm3_h=800.0, cathode_pump_flow_rate_cm3_h=760.0,
                      anode_w_active=0.94, cathode_w_active=0.955)
    x = {k: np.array([base[k], thin_anode[k]]) for k in base}
    np_ratio = reg.predict("structure", x).outputs["np_ratio"]
    assert np_ratio[0] > 1.0 > np_ratio[1]
    for name in ("cell", "cost"):
        res = reg.predict(name, x)
        assert res.in_domain.tolist() == [True, False]
        assert "np_ratio" in res.violations[1] and "anode-limited" in res.violations[1]["np_ratio"]
        assert res.violations[0] == {}
    strict = ModelRegistry.load(DEFAULT_DIRECTORY, out_of_domain="nan").predict("cell", x)
    assert np.isnan(strict.outputs["capacity_Ah_C3"][1]) and np.isfinite(strict.outputs["capacity_Ah_C3"][0])


def test_cost_per_kWh_is_derived_from_cost_per_cell_and_energy(reg: ModelRegistry) -> None:
    card = reg.card("cost")
    entry = next(o for o in card["outputs"] if o["name"] == "cost_usd_per_kWh")
    assert entry["family"] == "derived" and "file" not in entry
    sets = cal.load_sets(DEFAULT_DIRECTORY / cal.DFN_SETS_FILE)
    x, y = sets["test_uniform"]["x"], sets["test_uniform"]["y"]
    cost, cell = reg.predict("cost", x), reg.predict("cell", x)
    ratio = cost.outputs["cost_usd_per_cell"] / cell.outputs["energy_Wh_C3"] * 1000.0
    np.testing.assert_allclose(cost.outputs["cost_usd_per_kWh"], ratio, rtol=1e-12)
    ok = cost.in_domain
    err = np.abs(cost.outputs["cost_usd_per_kWh"][ok] / y["cost_usd_per_kWh"][ok] - 1.0)
    assert np.sqrt(np.mean(err ** 2)) < 0.01  # RMSE % below 1 % on fresh in-domain points


def test_uncalibrated_card_serves_the_raw_spread_and_says_so(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for f in DEFAULT_DIRECTORY.glob("structure.*"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    card = json.loads((tmp_path / "structure.card.json").read_text())
    card.pop("calibration")
    for o in card["outputs"]:
        o.pop("calibration")
    (tmp_path / "structure.card.json").write_text(json.dumps(card))
    raw = ModelRegistry.load(tmp_path).predict("structure", {i["name"]: i["low"] for i in card["inputs"]})
    calibrated = ModelRegistry.load(DEFAULT_DIRECTORY).predict("structure",
                                                              {i["name"]: i["low"] for i in card["inputs"]})
    assert not raw.calibrated and calibrated.calibrated
    for o in raw.outputs:
        np.testing.assert_allclose(raw.std[o], raw.ensemble_std[o])
        np.testing.assert_allclose(calibrated.ensemble_std[o], raw.ensemble_std[o])
        assert calibrated.std[o][0] > raw.std[o][0]  # every output's spread under-stated its error
        half = calibrated.upper[o] - calibrated.outputs[o]
        np.testing.assert_allclose(calibrated.std[o], half / 1.959963984540054)


def test_training_writes_constraints_derived_outputs_and_a_holdout_calibration(  # type: ignore[no-untyped-def]
        quick_run) -> None:
    """A retrain (here the CI-sized one) gives cards the same shape as the committed ones: the structure card is
    calibrated on its held-out rows, the 6 held-out DFN rows are too few, so cell and cost say they are not."""
    out, cards = quick_run
    assert cards["structure"]["calibration"]["n"] >= 20
    assert cards["cell"]["constraints"] == [doe.NP_CONSTRAINT] == cards["cost"]["constraints"]
    kwh = next(o for o in cards["cost"]["outputs"] if o["name"] == "cost_usd_per_kWh")
    assert kwh["derived"] == doe.DERIVED_OUTPUTS["cost_usd_per_kWh"] and "metrics" in kwh
    reg = ModelRegistry.load(out)
    mid = {i["name"]: 0.5 * (i["low"] + i["high"]) for i in cards["cost"]["inputs"]}
    assert reg.predict("structure", mid).calibrated
    res = reg.predict("cost", mid)
    assert not res.calibrated and "calibration" not in cards["cost"]
    np.testing.assert_allclose(res.std["cost_usd_per_cell"], res.ensemble_std["cost_usd_per_cell"])
