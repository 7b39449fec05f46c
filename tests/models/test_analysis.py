"""Seed 001 Monte Carlo vs Table A1, Sobol indices, epsilon-constraint Pareto front and inverse design."""

from __future__ import annotations

import numpy as np
import pytest

from models import analysis
from models.runtime import DEFAULT_DIRECTORY, ModelRegistry


@pytest.fixture(scope="module")
def committed() -> ModelRegistry:
    """The committed artifacts (reproduced by `python -m models train`)."""
    return ModelRegistry.load(DEFAULT_DIRECTORY)


def test_monte_carlo_reproduces_table_a1_spreads() -> None:
    """1 % spread on formulation and process parameters (seed 001 section 3.4) -> Table A1 spreads. The paper's
    0.9 % on the solids density needs the three fractions perturbed on their own (sum(w) drifting ~1 %); with
    weighed, renormalised fractions it is 0.1 % (tests/models/test_analysis_seeds.py)."""
    r = analysis.monte_carlo_table_a1(n=20000, fractions="independent")
    for name, row in r["outputs"].items():
        # h_cal is the widest gap: 2.69-2.73 % against the printed 3.0 % over draws of 50 000 (lognormal marginals)
        assert abs(row["spread_pct"] - row["table_a1_spread_pct"]) <= 0.35, (name, row)
    # the means are the Table A1 values (the spreads are small, the model nearly linear)
    assert r["outputs"]["dry_mass_loading_mg_cm2"]["mean"] == pytest.approx(14.3, rel=0.01)
    assert r["outputs"]["calendered_density_g_cm3"]["mean"] == pytest.approx(2.95, rel=0.01)


def test_sobol_indices_name_the_drivers(committed: ModelRegistry) -> None:
    s = analysis.sobol_indices(committed, "cost", ["cost_usd_per_kWh"], n=256)["cost_usd_per_kWh"]
    first, total = s["first_order"], s["total_order"]
    assert sum(first.values()) <= 1.1
    assert all(total[k] >= first[k] - 0.05 for k in first)
    # on a pilot line the cost per kWh is fixed cost / good output: yield and OEE lead, dew point barely matters
    top = sorted(total, key=total.get, reverse=True)[:4]
    assert "cell_yield" in top and "oee" in top
    assert total["dew_point_C"] < 0.05
    cell = analysis.sobol_indices(committed, "cell", ["capacity_Ah_C3"], n=256)["capacity_Ah_C3"]["total_order"]
    # capacity follows the cathode loading: pump flow and web speed of the cathode coater
    assert max(cell, key=cell.get) in {"cathode_pump_flow_rate_cm3_h", "cathode_web_speed_m_min"}


def test_pareto_front_is_feasible_and_non_dominated(committed: ModelRegistry) -> None:
    r = analysis.pareto_front(committed, n_levels=3, n_life_levels=3, n_screen=2048, maxiter=15)
    pts = r["points"]
    assert len(pts) >= 2
    for p in pts:
        assert p["specific_energy_Wh_kg"] >= p["eps_specific_energy_Wh_kg"] * (1 - 1e-4)
        assert p["cycles_to_80"] >= p["eps_cycles_to_80"] * (1 - 1e-4)
        for q in pts:
            assert not (q["cost_usd_per_kWh"] < p["cost_usd_per_kWh"] and q["specific_energy_Wh_kg"] > p[
                "specific_energy_Wh_kg"] and q["cycles_to_80"] > p["cycles_to_80"])
    # the trade-off is with cycle life: the longest-lived front point stores less than the most energetic one
    longest = max(pts, key=lambda p: p["cycles_to_80"])
    densest = max(pts, key=lambda p: p["specific_energy_Wh_kg"])
    assert longest["specific_energy_Wh_kg"] < densest["specific_energy_Wh_kg"]


def test_inverse_design_finds_setpoints_for_a_target_structure(committed: ModelRegistry) -> None:
    target = {"cathode_dry_mass_loading_mg_cm2": 15.0, "cathode_calendered_density_g_cm3": 3.0}
    r = analysis.inverse_design(committed, target)
    for k, t in target.items():
        assert r["surrogate"][k] == pytest.approx(t, rel=0.002)
        assert r["physics"][k] == pytest.approx(t, rel=0.01)  # checked against the process chain
    card = committed.card("structure")
    for k, v in r["setpoints"].items():
        spec = next(i for i in card["inputs"] if i["name"] == k)
        assert spec["low"] <= v <= spec["high"]
    with pytest.raises(KeyError, match="unknown target"):
        analysis.inverse_design(committed, {"cathode_mass": 1.0})


def test_committed_cards_state_their_metrics(committed: ModelRegistry) -> None:
    for name in ("structure", "cell", "cost"):
        card = committed.card(name)
        assert not card["training"]["quick"]
        assert card["dataset"]["n"] >= 2048
        for o in card["outputs"]:
            lo, hi = o["metrics"]["r2_ci95"]
            assert lo <= hi and o["metrics"]["resamplings"] >= 50
        res = committed.predict(name, {i["name"]: 0.5 * (i["low"] + i["high"]) for i in card["inputs"]})
        assert res.in_domain.all() and all(np.isfinite(v).all() for v in res.outputs.values())
