"""The cell model against plain PyBaMM and against seed 001 (issue 13 item 4).

- Chen2020's own cell: the project's plumbing (areas, currents, lithium inventory from the formation loss and the
  4.2 V full-charge state) agrees with plain ``pybamm.ParameterValues("Chen2020")`` within 1 %.
- Seed 001's ProZell cathode with Table A2: 2.41 mAh/cm2 at 1 mA/cm2 (~0.4C) when the whole solid (1 - eps) stores
  lithium; Table A2's window over X_AM (0.58) holds only 2.09 mAh/cm2 (docs/models.md, "Seed 001 reproduced").
- Lithium inventory: no cell is filled beyond what its lithium allows; an anode smaller than the cathode's window
  (N/P < 1) is out of domain.
- Transport: the carbon-binder fractions reach the DFN; the tortuosity goes through Table A2's value.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("PYBAMM_DISABLE_TELEMETRY", "true")

import pybamm  # noqa: E402
import pytest  # noqa: E402

from models import cell as cell_mod  # noqa: E402
from models import parameters  # noqa: E402
from tests.models.test_cell import REFERENCE  # noqa: E402


@pytest.fixture(scope="module")
def chen_model() -> Any:
    return cell_mod.CellModel(parameter_set="Chen2020")


def _plain_chen2020(c_rate: float) -> tuple[float, float]:
    pv = pybamm.ParameterValues("Chen2020")
    model = pybamm.lithium_ion.DFN(options={"calculate discharge energy": "true"})
    sol = pybamm.Simulation(model, parameter_values=pv, C_rate=c_rate).solve([0.0, 3600.0 / c_rate * 1.3])
    return float(sol["Discharge capacity [A.h]"].entries[-1]), float(sol["Discharge energy [W.h]"].entries[-1])


def test_plain_pybamm_and_the_cell_model_agree_on_chen2020s_cell(chen_model: Any) -> None:
    """Audit: 5.358 Ah (anode filled to 0.98, no formation loss) vs PyBaMM's 4.938 Ah (+8.5 %)."""
    q_ref, e_ref = _plain_chen2020(1.0)
    structure = cell_mod.chen2020_structure()
    res = chen_model.evaluate(structure, c_rates={"1C": 1.0})
    assert not res.failed, res.error
    assert res.values["capacity_Ah_1C"] == pytest.approx(q_ref, rel=0.01)
    assert res.values["energy_Wh_1C"] == pytest.approx(e_ref, rel=0.01)
    # the inventory is Chen2020's own: the formation loss is what its stoichiometries imply
    balance = chen_model.balance(structure)
    pv = pybamm.ParameterValues("Chen2020")
    lithium_chen = (pv["Initial concentration in negative electrode [mol.m-3]"] * 0.75 * 85.2e-6
                    + pv["Initial concentration in positive electrode [mol.m-3]"] * 0.665 * 75.6e-6)
    assert balance["cyclable_lithium_mol_m2"] == pytest.approx(lithium_chen, rel=1e-3)
    # full charge is the 4.2 V cut-off, not an anode stoichiometry of 0.98
    assert cell_mod.open_circuit_voltage(balance["y100"], balance["x100"]) == pytest.approx(4.2, abs=1e-6)
    assert balance["x100"] < 0.95 and balance["anode_limited"] == 0.0


def test_seed001_half_cell_reproduces_241_mAh_cm2_and_1892_Wh_L() -> None:
    z = parameters.load("ProZell_seed001")
    solid = cell_mod.seed001_half_cell("solid")
    assert solid["capacity_mAh_cm2"] == pytest.approx(z["reported_capacity_mAh_cm2"], abs=0.07)  # the seed's +-0.07
    assert solid["c_rate"] == pytest.approx(0.4, abs=0.02)  # "1 mA/cm2 (approx. 0.4C)" holds for 1 - eps only
    # energy per litre of coating within 2 %: the residual is the OCP (Table A2 prints none; Chen2020's NMC811 curve)
    assert solid["energy_density_Wh_L"] == pytest.approx(z["reported_energy_density_Wh_L"], rel=0.02)
    active = cell_mod.seed001_half_cell("active")
    assert active["window_capacity_mAh_cm2"] == pytest.approx(2.09, abs=0.01)  # the audit's 2.09
    assert active["capacity_mAh_cm2"] < 2.1 < z["reported_capacity_mAh_cm2"] - 0.07


def test_an_anode_smaller_than_the_cathode_window_is_out_of_domain() -> None:
    """Audit: N/P down to 0.78 was in domain, and such a cell was filled to x = 0.98 with no formation loss."""
    model = cell_mod.CellModel(model="SPMe")
    small = {**REFERENCE, "anode_thickness_um": 36.0}
    res = model.evaluate(small, c_rates={"1C": 1.0})
    assert res.values["np_ratio"] < 1.0
    assert not res.in_domain and "N/P" in res.domain_violation
    ok = model.evaluate(REFERENCE, c_rates={"1C": 1.0})
    assert ok.in_domain and ok.values["np_ratio"] > 1.0
    # the formation loss leaves the cell short of the cathode window: less than the window, never more
    mats = model.materials
    b = model.balance(REFERENCE)
    q_p = REFERENCE["cathode_active_volume_fraction"] * REFERENCE["cathode_thickness_um"] * 1e-6 * (
        mats.c_max_positive_mol_m3)
    window_Ah = (cell_mod.CHEN2020_Y0 - cell_mod.CHEN2020_Y100) * q_p * cell_mod.FARADAY_C_MOL / 3600 * model.area_m2
    assert b["nominal_capacity_Ah"] < window_Ah * (1 - 0.5 * mats.formation_loss_fraction)


def test_tortuosity_goes_through_table_a2_and_rises_with_the_carbon_binder_domain() -> None:
    z = parameters.load("ProZell_seed001")
    tau = float(cell_mod.electrolyte_tortuosity(z["cathode_porosity"], z["conductive_volume_fraction"],
                                                z["binder_volume_fraction"]))
    assert tau == pytest.approx(z["cathode_tortuosity"], rel=2e-3)
    assert tau > 3.0 * z["cathode_porosity"] ** -0.5  # plain Bruggeman: 1.78
    assert float(cell_mod.electrolyte_tortuosity(0.315, 0.0, 0.0)) == pytest.approx(0.315 ** -0.5)
    assert cell_mod.cbd_exponent_slope() == pytest.approx(parameters.load("pilot_cell")["cbd_exponent_slope"],
                                                          rel=1e-3)


def test_conductive_and_binder_fractions_reach_the_dfn() -> None:
    """More carbon-binder domain at the same porosity: a more tortuous electrolyte path, less capacity at 3C."""
    model = cell_mod.CellModel(model="SPMe")
    lean = model.evaluate(REFERENCE, c_rates={"3C": 3.0})
    rich = model.evaluate({**REFERENCE, "cathode_conductive_volume_fraction": 0.08,
                           "cathode_binder_volume_fraction": 0.08}, c_rates={"3C": 3.0})
    assert not lean.failed and not rich.failed
    assert rich.values["capacity_Ah_3C"] < lean.values["capacity_Ah_3C"] * 0.995
    with pytest.raises(KeyError, match="cathode_binder_volume_fraction"):
        model.evaluate({k: v for k, v in REFERENCE.items() if k != "cathode_binder_volume_fraction"})
