"""Seed 000 design rules and the mechanism-based lifetime estimate: limits, calibration, monotonic trends."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import design_rules as dr
from models import lifetime as lt


@settings(max_examples=100, deadline=None)
@given(st.floats(0.1, 5.0), st.floats(1.01, 3.0), st.floats(0.15, 0.6))
def test_transport_limits_tighten_with_rate(c_rate: float, factor: float, porosity: float) -> None:
    assert dr.max_thickness_um(c_rate * factor, porosity) < dr.max_thickness_um(c_rate, porosity)
    assert dr.max_particle_radius_um(c_rate * factor, 1e-14) < dr.max_particle_radius_um(c_rate, 1e-14)
    # more porosity -> faster electrolyte transport -> thicker electrodes allowed (Bruggeman)
    assert dr.max_thickness_um(c_rate, porosity * 1.1) > dr.max_thickness_um(c_rate, porosity)


def test_seed_000_formula_values() -> None:
    # L <= sqrt((t_C / 5) D_e eps^b): 3C, eps 0.3, D_e 1.77e-10, b 1.5
    expected = np.sqrt(3600 / 3 / 5 * 1.77e-10 * 0.3**1.5) * 1e6
    assert float(dr.max_thickness_um(3.0, 0.3)) == pytest.approx(expected)
    assert float(dr.max_particle_radius_um(1.0, 4e-15)) == pytest.approx(np.sqrt(720 * 4e-15) * 1e6)


def test_feasibility_flags_name_the_reason() -> None:
    f = dr.feasibility(c_rate=[0.2, 3.0, 0.2], cathode_thickness_um=[50, 150, 50], cathode_porosity=0.3,
                       cathode_particle_radius_um=2.0, anode_thickness_um=55, anode_porosity=0.35,
                       anode_particle_radius_um=3.0, cathode_areal_capacity_mAh_cm2=2.0,
                       anode_areal_capacity_mAh_cm2=[2.3, 2.3, 1.9])
    assert f["feasible"].tolist() == [True, False, False]
    assert not f["cathode_thickness_ok"][1] and f["np_ratio_ok"][1]
    assert not f["np_ratio_ok"][2] and f["cathode_thickness_ok"][2]


def test_lifetime_reference_calibration() -> None:
    p = lt.DEFAULT_AGEING
    surface = lt.anode_surface_m2_per_Ah(0.602, 52.16, 8.0, 2.153)
    r = lt.cycles_to_80(1.0, surface, p.reference_cathode_thickness_um, p.reference_anode_thickness_um, 25.0)
    assert float(r["cycles_to_80"]) == pytest.approx(p.reference_cycles_to_80, rel=1e-3)
    assert float(r["sei_loss_share_at_eol"]) == pytest.approx(p.reference_sei_share, rel=1e-3)


@settings(max_examples=100, deadline=None)
@given(st.floats(0.2, 3.0), st.floats(0.5, 2.0), st.floats(30, 90), st.floats(30, 90), st.floats(15, 45),
       st.floats(1.01, 1.5))
def test_lifetime_trends(c_rate: float, surf: float, lc: float, la: float, temp: float, k: float) -> None:
    """Seed 000: more anode surface, thicker electrodes or a hotter cell each shorten life."""
    base = float(lt.cycles_to_80(c_rate, surf, lc, la, temp)["cycles_to_80"])
    assert base > 0
    assert float(lt.cycles_to_80(c_rate, surf * k, lc, la, temp)["cycles_to_80"]) < base
    assert float(lt.cycles_to_80(c_rate, surf, lc * k, la, temp)["cycles_to_80"]) < base
    assert float(lt.cycles_to_80(c_rate, surf, lc, la, temp + 5 * k)["cycles_to_80"]) < base


def test_joule_heating_warms_the_cell_quadratically() -> None:
    t1 = float(lt.cell_temperature_C(1.0, 5.0, 0.02)) - 25.0
    t3 = float(lt.cell_temperature_C(3.0, 5.0, 0.02)) - 25.0
    assert t3 == pytest.approx(9 * t1)
