"""Bottom-up cost model (seed 000): CRF, bottleneck, monotonic drivers, bad input, gigafactory vs BatPaC range."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import cost as cm

BILL = cm.CellBill(
    cathode_coating_g=17.2, anode_coating_g=9.4, cathode_w_active=0.94, cathode_w_conductive=0.03,
    cathode_w_binder=0.03, anode_w_active=0.955, anode_w_conductive=0.01, anode_w_binder=0.035,
    cathode_solid_content=0.70, anode_solid_content=0.50, cathode_slurry_density_g_cm3=2.2,
    anode_slurry_density_g_cm3=1.37, cathode_solvent_evaporated_g_m2=61.3, anode_solvent_evaporated_g_m2=74.3,
    cathode_coated_m2=0.12, anode_coated_m2=0.126, electrolyte_cm3=6.0, separator_m2=0.27, al_foil_m2=0.12,
    cu_foil_m2=0.126, energy_Wh=9.1,
)
SPEED = {"cathode": 1.0, "anode": 1.0}
WIDTH = {"cathode": 125.0, "anode": 125.0}


def _cost(**kw: Any) -> dict[str, np.ndarray]:
    args = {"cell_yield": 0.9, "oee": 0.75, "dew_point_C": -40.0, "cycles_to_80": 1500.0} | kw
    return cm.cell_cost(BILL, SPEED, WIDTH, **args)


def test_capital_recovery_factor() -> None:
    assert cm.capital_recovery_factor(0.08, 10) == pytest.approx(0.149029, rel=1e-5)
    assert cm.capital_recovery_factor(0.0, 10) == pytest.approx(0.1)


def test_line_rate_is_the_bottleneck() -> None:
    rates = cm.station_rates_cells_h(cm.PILOT_LINE, BILL, SPEED, WIDTH)
    c = _cost()
    assert float(c["line_throughput_cells_h"]) == pytest.approx(min(float(np.min(v)) for v in rates.values()))
    assert cm.station_names()[int(c["bottleneck_index"])] == min(rates, key=lambda k: float(rates[k]))
    # formation channels: 1536 channels over 20 h
    assert float(rates["formation"]) == pytest.approx(1536 / 20)


def test_cost_adds_up() -> None:
    c = _cost()
    parts = ["materials", "processing", "utilities", "labour", "depreciation"]
    assert float(sum(c[f"{p}_usd_per_cell"] for p in parts)) == pytest.approx(float(c["cost_usd_per_cell"]))
    assert float(c["cost_usd_per_kWh"]) == pytest.approx(float(c["cost_usd_per_cell"]) / 0.0091)
    assert float(c["lcos_usd_per_kWh"]) == pytest.approx(float(c["cost_usd_per_cell"]) / (0.95 * 0.0091 * 1500 * 0.9))


@settings(max_examples=100, deadline=None)
@given(st.floats(0.5, 0.95), st.floats(0.4, 0.9), st.floats(-70, -20), st.floats(1.01, 1.05))
def test_cost_drivers_act_in_the_right_direction(y: float, oee: float, dew: float, k: float) -> None:
    base = float(_cost(cell_yield=y, oee=oee, dew_point_C=dew)["cost_usd_per_cell"])
    assert float(_cost(cell_yield=y * k, oee=oee, dew_point_C=dew)["cost_usd_per_cell"]) < base
    assert float(_cost(cell_yield=y, oee=oee * k, dew_point_C=dew)["cost_usd_per_cell"]) < base
    drier = _cost(cell_yield=y, oee=oee, dew_point_C=dew - 5)
    assert (float(drier["utilities_usd_per_cell"])
            > float(_cost(cell_yield=y, oee=oee, dew_point_C=dew)["utilities_usd_per_cell"]))


def test_dry_room_power_doubles_per_15_K() -> None:
    a = float(_cost(dew_point_C=-40.0)["dry_room_kWh_per_cell"])
    b = float(_cost(dew_point_C=-55.0)["dry_room_kWh_per_cell"])
    assert b == pytest.approx(2 * a)


def test_faster_coating_is_cheaper_when_the_coater_is_the_bottleneck() -> None:
    slow = _cost()
    fast = cm.cell_cost(BILL, {"cathode": 1.1, "anode": 1.1}, WIDTH, 0.9, 0.75, -40.0, 1500.0)
    assert float(fast["line_throughput_cells_h"]) > float(slow["line_throughput_cells_h"])
    assert float(fast["cost_usd_per_cell"]) < float(slow["cost_usd_per_cell"])


@pytest.mark.parametrize("kw", [{"cell_yield": 0.0}, {"cell_yield": 1.2}, {"oee": -0.1}])
def test_bad_operating_figures_are_rejected(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must lie in"):
        _cost(**kw)


def test_gigafactory_lands_in_the_batpac_range_and_the_pilot_line_does_not() -> None:
    """research/models.md 3.1: BatPaC-style cell cost ~90-160 $/kWh at GWh scale; materials > 75 % of it."""
    from models import analysis

    r = analysis.plant_costs()
    giga, pilot = r["gigafactory"], r["pilot"]
    assert 90.0 <= giga["cost_usd_per_kWh"] <= 160.0
    assert giga["materials_share"] > 0.75
    assert 1.0 <= giga["annual_GWh"] <= 20.0
    assert 20.0 <= giga["energy_kWh_per_kWh_cell"] <= 40.0  # Degen et al. 2023: 20.3-37.5 kWh per kWh cell
    assert pilot["cost_usd_per_kWh"] > 10 * giga["cost_usd_per_kWh"]
    assert pilot["materials_share"] < 0.1  # a pilot line's cell cost is capital and labour
