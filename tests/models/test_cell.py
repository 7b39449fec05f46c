"""DFN cell model: symbolic-mesh path vs full rebuild, retry and failure recording, lithium balance, conservation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import cell as cell_mod
from models.cell_format import PRODUCTION_POUCH, REFERENCE_POUCH, cell_mass_and_volume

REFERENCE = {
    "cathode_thickness_um": 48.4, "cathode_porosity": 0.313, "cathode_active_volume_fraction": 0.585,
    "cathode_particle_radius_um": 5.5, "anode_thickness_um": 52.2, "anode_porosity": 0.349,
    "anode_active_volume_fraction": 0.602, "anode_particle_radius_um": 8.0,
    "cathode_conductive_volume_fraction": 0.050, "cathode_binder_volume_fraction": 0.050,
    "anode_conductive_volume_fraction": 0.0088, "anode_binder_volume_fraction": 0.0455,
}


@pytest.mark.parametrize("change", [{}, {"cathode_thickness_um": 70.0, "cathode_particle_radius_um": 3.5,
                                         "anode_thickness_um": 75.0, "anode_porosity": 0.30}])
def test_symbolic_mesh_matches_full_rebuild(cell_model: Any, change: dict[str, float]) -> None:
    """research/models.md 1.4: the symbolic mesh is newer than PyBaMM's docs, so we pin and compare."""
    design = {**REFERENCE, **change}
    fast = cell_model.evaluate(design)
    assert not fast.failed, fast.error
    for label, c_rate in (("1C", 1.0), ("3C", 3.0)):
        slow = cell_model.solve_rebuilt(design, c_rate)
        assert fast.values[f"capacity_Ah_{label}"] == pytest.approx(slow["capacity_Ah"], rel=1e-3)
        assert fast.values[f"energy_Wh_{label}"] == pytest.approx(slow["energy_Wh"], rel=2e-3)


def test_reference_cell_is_plausible(cell_model: Any) -> None:
    r = cell_model.evaluate(REFERENCE, operating_c_rate=0.5)
    v = r.values
    # capacity at C/3 close to the nominal (cathode window) capacity; rate capability falls with rate
    assert v["capacity_Ah_C3"] == pytest.approx(v["nominal_capacity_Ah"], rel=0.05)
    assert v["capacity_Ah_C3"] > v["capacity_Ah_op"] > v["capacity_Ah_1C"] > v["capacity_Ah_3C"] > 0
    # mean discharge voltage of an NMC / graphite cell
    for label in ("C3", "1C", "3C"):
        mean_v = v[f"energy_Wh_{label}"] / v[f"capacity_Ah_{label}"]
        assert 3.2 < mean_v < 3.9
    assert 5e-3 < v["resistance_ohm"] < 0.1
    assert v["anode_limited"] == 0.0


def test_solver_failure_is_retried_then_recorded(cell_model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    original = cell_model._solve

    def flaky(which: str, inputs: Any, c_rate: float, pulse: bool) -> dict[str, float]:
        calls.append(which)
        if which == "default":
            raise RuntimeError("IDA_CONV_FAIL (injected)")
        return original(which, inputs, c_rate, pulse)

    monkeypatch.setattr(cell_model, "_solve", flaky)
    r = cell_model.evaluate(REFERENCE)
    assert r.retried and not r.failed and "tight" in calls
    assert r.values["capacity_Ah_1C"] > 0

    def broken(which: str, inputs: Any, c_rate: float, pulse: bool) -> dict[str, float]:
        raise RuntimeError(f"diverged ({which})")

    monkeypatch.setattr(cell_model, "_solve", broken)
    r = cell_model.evaluate(REFERENCE)
    assert r.failed and "diverged (default)" in r.error and "diverged (tight)" in r.error


def test_missing_structure_key_is_named(cell_model: Any) -> None:
    bad = dict(REFERENCE)
    del bad["anode_porosity"]
    with pytest.raises(KeyError, match="anode_porosity"):
        cell_model.evaluate(bad)


def test_small_anode_makes_the_cell_anode_limited() -> None:
    mats = cell_mod.ActiveMaterials()
    ok = cell_mod.lithium_balance(REFERENCE, mats)
    thin = cell_mod.lithium_balance({**REFERENCE, "anode_thickness_um": 35.0}, mats)
    assert ok["anode_limited"] == 0.0 and thin["anode_limited"] == 1.0
    assert thin["nominal_capacity_Ah"] < ok["nominal_capacity_Ah"]
    assert thin["c_n_init"] == pytest.approx(cell_mod.ANODE_MAX_STOICHIOMETRY * mats.c_max_negative_mol_m3)
    assert thin["np_ratio"] < 1.0 <= ok["np_ratio"]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.floats(38.0, 60.0), st.floats(1.05, 1.3))
def test_thicker_cathode_stores_more_at_low_rate(cell_model: Any, thickness: float, factor: float) -> None:
    """Monotonicity: more cathode (anode grown with it, N/P kept) -> more Ah at C/3; C/3 >= 3C always."""
    def design(t: float) -> dict[str, float]:
        return {**REFERENCE, "cathode_thickness_um": t, "anode_thickness_um": 52.2 * t / 48.4 * 1.1}

    a = cell_model.evaluate(design(thickness))
    b = cell_model.evaluate(design(thickness * factor))
    assert not a.failed and not b.failed
    assert b.values["capacity_Ah_C3"] > a.values["capacity_Ah_C3"]
    assert a.values["capacity_Ah_C3"] >= a.values["capacity_Ah_3C"]


@settings(max_examples=100, deadline=None)
@given(st.floats(5, 30), st.floats(30, 150), st.floats(0.2, 0.5), st.floats(3, 20), st.floats(30, 150),
       st.floats(0.2, 0.5))
def test_cell_mass_is_the_sum_of_its_components(cl: float, ct: float, cp: float, al: float, at: float,
                                                ap: float) -> None:
    m = cell_mass_and_volume(cl, ct, cp, al, at, ap)
    parts = ["cathode_coating_g", "anode_coating_g", "al_foil_g", "cu_foil_g", "separator_g", "electrolyte_g",
             "pouch_and_tabs_g"]
    assert float(sum(m[k] for k in parts)) == pytest.approx(float(m["cell_mass_g"]))
    # the coating mass is loading x coated area, exactly
    assert float(m["cathode_coating_g"]) == pytest.approx(cl * 1e-3 * REFERENCE_POUCH.cathode_area_cm2)
    # electrolyte fills pores (plus excess): more porosity, more electrolyte
    more = cell_mass_and_volume(cl, ct, min(cp + 0.05, 0.6), al, at, ap)
    assert float(more["electrolyte_g"]) > float(m["electrolyte_g"])
    assert float(m["cell_volume_cm3"]) > 0


def test_reference_format_is_consistent() -> None:
    """The simulator's cell line builds this format: 20 + 21 single-sided 100 x 60 mm sheets, 20 facing pairs."""
    f = REFERENCE_POUCH
    assert (f.cathode_sheets, f.anode_sheets, f.unit_layers) == (20, 21, 20)
    assert f.cathode_area_cm2 == pytest.approx(1200.0)
    assert np.isclose(f.unit_layer_area_m2 * f.unit_layers * 1e4, f.cathode_area_cm2)
    p = PRODUCTION_POUCH
    assert p.unit_layers == 40 and p.anode_coated_faces == 40 and p.anode_length_mm > p.cathode_length_mm


def test_production_pouch_has_more_energy_per_mass_for_the_same_electrodes() -> None:
    args = (14.3, 48.4, 0.313, 7.43, 52.2, 0.349)
    pilot = cell_mass_and_volume(*args)
    prod = cell_mass_and_volume(*args, fmt=PRODUCTION_POUCH)
    # twice the active area, less than twice the mass (shared pouch, tabs; foils coated on both sides)
    assert float(prod["cell_mass_g"]) < 2 * float(pilot["cell_mass_g"])
