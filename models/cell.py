"""Cell performance from electrode structure: PyBaMM Doyle-Fuller-Newman model in the reference pouch format.

Parameter set: **Chen2020** (LG M50, NMC811 / graphite-SiOx, Chen et al., J. Electrochem. Soc. 167 (2020) 080534).
Why: it is the only NMC / graphite set in PyBaMM 26.10.1.1 that was parameterised end to end from one commercial cell
(OCPs, diffusivities, kinetics, electrolyte), it needs no download, and its symbolic-mesh path was measured to agree
with a full rebuild (research/models.md 1.4). Mohtat2020 (NMC532) has thinner, small-particle electrodes far from our
pilot-line structures. The ProZell cathode of seed 001 is an NMC111 at 160 mAh/g, so we keep Chen2020's kinetics,
transport and OCP curves (as functions of stoichiometry) and rescale the maximum lithium concentrations so that the
stoichiometry window of Chen2020 holds exactly the practical capacity the process chain assumes:
c_max = q_practical * rho_AM / (F * window). This is the one deliberate departure from the published set.

The structure of both electrodes (thickness, porosity, active volume fraction, particle radius) enters as PyBaMM
``[input]`` parameters on ``SymbolicUniform1DSubMesh`` meshes, so a design of experiments reuses one discretised
model (research/models.md 1.4: ~0.03 s per solve instead of ~0.25 s per rebuild). ``solve_rebuilt`` keeps the slow
full-rebuild path for the regression test. Lithium inventory: at full charge the cathode sits at Chen2020's
y_100 and the anode receives all lithium of the cathode window; when the anode cannot hold it (N/P below ~1) the
charge stops at anode stoichiometry 0.98 instead, so the cell becomes anode-limited (design_rules flags it).

A solver failure is retried once with tight tolerances (research/models.md 1.4: IDA_CONV_FAIL near the cut-off);
if it still fails the point is returned with ``failed=True`` and the error text, never dropped.
"""

from __future__ import annotations

import os

os.environ.setdefault("PYBAMM_DISABLE_TELEMETRY", "true")

from collections.abc import Mapping, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from models.cell_format import REFERENCE_POUCH, PouchFormat  # noqa: E402

FARADAY_C_MOL = 96485.33212
# Chen et al. 2020, Table VII/VIII (LG M50): electrode stoichiometries at 0 % and 100 % state of charge.
CHEN2020_Y0, CHEN2020_Y100 = 0.9084, 0.2661  # positive (NMC811)
CHEN2020_X0, CHEN2020_X100 = 0.0279, 0.9014  # negative (graphite)
ANODE_MAX_STOICHIOMETRY = 0.98  # charge stops here when the anode is too small (N/P < ~1): no plating allowed
GRAPHITE_THEORETICAL_mAh_g = 372.0  # LiC6

C_RATES: dict[str, float] = {"C3": 1.0 / 3.0, "1C": 1.0, "3C": 3.0}
PULSE_S = 10.0  # DC resistance from the voltage drop 10 s into the 3C discharge (HPPC-style)

_GEOMETRY = ["negative electrode", "separator", "positive electrode", "negative particle", "positive particle"]
_INPUTS = {
    "cathode_thickness_um": ("Positive electrode thickness [m]", 1e-6),
    "cathode_porosity": ("Positive electrode porosity", 1.0),
    "cathode_active_volume_fraction": ("Positive electrode active material volume fraction", 1.0),
    "cathode_particle_radius_um": ("Positive particle radius [m]", 1e-6),
    "anode_thickness_um": ("Negative electrode thickness [m]", 1e-6),
    "anode_porosity": ("Negative electrode porosity", 1.0),
    "anode_active_volume_fraction": ("Negative electrode active material volume fraction", 1.0),
    "anode_particle_radius_um": ("Negative particle radius [m]", 1e-6),
}
STRUCTURE_KEYS: tuple[str, ...] = tuple(_INPUTS)
_STATE = {
    "c_n_init": "Initial concentration in negative electrode [mol.m-3]",
    "c_p_init": "Initial concentration in positive electrode [mol.m-3]",
    "current_A": "Current function [A]",
}


@dataclass(frozen=True)
class ActiveMaterials:
    """Practical capacities and densities that fix the rescaled maximum concentrations (module docstring)."""

    cathode_specific_capacity_mAh_g: float = 160.0
    cathode_density_g_cm3: float = 4.75
    anode_density_g_cm3: float = 2.26
    anode_theoretical_mAh_g: float = GRAPHITE_THEORETICAL_mAh_g

    @property
    def c_max_positive_mol_m3(self) -> float:
        vol_capacity_C_m3 = self.cathode_specific_capacity_mAh_g * 3.6 * self.cathode_density_g_cm3 * 1e6
        return vol_capacity_C_m3 / FARADAY_C_MOL / (CHEN2020_Y0 - CHEN2020_Y100)

    @property
    def c_max_negative_mol_m3(self) -> float:
        return self.anode_theoretical_mAh_g * 3.6 * self.anode_density_g_cm3 * 1e6 / FARADAY_C_MOL


@dataclass
class CellResult:
    """Outputs of one design; ``failed`` points carry NaN values and the solver's message."""

    values: dict[str, float] = field(default_factory=dict)
    failed: bool = False
    error: str = ""
    retried: bool = False


def lithium_balance(
    structure: Mapping[str, float], materials: ActiveMaterials, fmt: PouchFormat = REFERENCE_POUCH
) -> dict[str, float]:
    """Initial concentrations and nominal capacity from both electrodes' lithium-site inventories."""
    q_p = (structure["cathode_active_volume_fraction"] * structure["cathode_thickness_um"] * 1e-6
           * materials.c_max_positive_mol_m3)
    q_n = (structure["anode_active_volume_fraction"] * structure["anode_thickness_um"] * 1e-6
           * materials.c_max_negative_mol_m3)
    transfer = (CHEN2020_Y0 - CHEN2020_Y100) * q_p  # mol/m2 the cathode window can release
    x100 = CHEN2020_X0 + transfer / q_n
    y100 = CHEN2020_Y100
    anode_limited = x100 > ANODE_MAX_STOICHIOMETRY
    if anode_limited:
        transfer = (ANODE_MAX_STOICHIOMETRY - CHEN2020_X0) * q_n
        x100 = ANODE_MAX_STOICHIOMETRY
        y100 = CHEN2020_Y0 - transfer / q_p
    nominal_Ah = transfer * FARADAY_C_MOL / 3600.0 * fmt.unit_layer_area_m2 * fmt.unit_layers
    return {
        "c_n_init": x100 * materials.c_max_negative_mol_m3,
        "c_p_init": y100 * materials.c_max_positive_mol_m3,
        "nominal_capacity_Ah": nominal_Ah,
        "anode_limited": float(anode_limited),
    }


class CellModel:
    """One discretised DFN (or SPMe) with structure as inputs; ``evaluate`` runs the C-rate set for one design."""

    def __init__(
        self,
        model: str = "DFN",
        materials: ActiveMaterials | None = None,
        fmt: PouchFormat = REFERENCE_POUCH,
        temperature_C: float = 25.0,
    ) -> None:
        import pybamm

        self._pybamm = pybamm
        self.model_name = model
        self.materials = materials or ActiveMaterials()
        self.fmt = fmt
        self.temperature_C = temperature_C
        self.parameter_values = self._parameter_values(symbolic=True)
        self._sims = {
            "default": self._simulation(pybamm.IDAKLUSolver()),
            "tight": self._simulation(pybamm.IDAKLUSolver(rtol=1e-8, atol=1e-10)),
        }

    # -- construction ---------------------------------------------------------------------------------------------
    def _base_parameters(self) -> Any:
        pybamm = self._pybamm
        pv = pybamm.ParameterValues("Chen2020")
        pv.update(
            {
                "Maximum concentration in positive electrode [mol.m-3]": self.materials.c_max_positive_mol_m3,
                "Maximum concentration in negative electrode [mol.m-3]": self.materials.c_max_negative_mol_m3,
                "Electrode height [m]": self.fmt.cathode_width_mm * 1e-3,
                "Electrode width [m]": self.fmt.cathode_length_mm * 1e-3,
                "Number of electrodes connected in parallel to make a cell": float(self.fmt.unit_layers),
                "Separator thickness [m]": self.fmt.separator_thickness_um * 1e-6,
                "Separator porosity": self.fmt.separator_porosity,
                "Positive current collector thickness [m]": self.fmt.al_foil_thickness_um * 1e-6,
                "Negative current collector thickness [m]": self.fmt.cu_foil_thickness_um * 1e-6,
                "Ambient temperature [K]": 273.15 + self.temperature_C,
                "Initial temperature [K]": 273.15 + self.temperature_C,
                "Reference temperature [K]": 273.15 + self.temperature_C,
            }
        )
        return pv

    def _parameter_values(self, symbolic: bool) -> Any:
        pv = self._base_parameters()
        if symbolic:
            pv.update({name: "[input]" for name, _ in _INPUTS.values()})
            pv.update({name: "[input]" for name in _STATE.values()})
        return pv

    def _new_model(self) -> Any:
        pybamm = self._pybamm
        options = {"calculate discharge energy": "true"}
        if self.model_name == "DFN":
            return pybamm.lithium_ion.DFN(options=options)
        if self.model_name == "SPMe":
            return pybamm.lithium_ion.SPMe(options=options)
        raise ValueError(f"unknown cell model {self.model_name!r}; use 'DFN' or 'SPMe'")

    def _simulation(self, solver: Any, parameter_values: Any | None = None, symbolic: bool = True) -> Any:
        pybamm = self._pybamm
        model = self._new_model()
        submesh = dict(model.default_submesh_types)
        if symbolic:
            for domain in _GEOMETRY:
                submesh[domain] = pybamm.SymbolicUniform1DSubMesh
        return pybamm.Simulation(
            model,
            parameter_values=parameter_values if parameter_values is not None else self.parameter_values,
            submesh_types=submesh,
            solver=solver,
        )

    # -- evaluation -----------------------------------------------------------------------------------------------
    def _inputs(self, structure: Mapping[str, float], balance: Mapping[str, float], c_rate: float) -> dict[str, float]:
        x = {pname: float(structure[key]) * scale for key, (pname, scale) in _INPUTS.items()}
        x[_STATE["c_n_init"]] = balance["c_n_init"]
        x[_STATE["c_p_init"]] = balance["c_p_init"]
        x[_STATE["current_A"]] = c_rate * balance["nominal_capacity_Ah"]
        return x

    @staticmethod
    def _discharge(sol: Any, current_A: float, pulse: bool) -> dict[str, float]:
        if "Minimum voltage" not in str(sol.termination):
            raise RuntimeError(f"discharge did not reach the lower cut-off ({sol.termination})")
        out = {
            "capacity_Ah": float(sol["Discharge capacity [A.h]"].entries[-1]),
            "energy_Wh": float(sol["Discharge energy [W.h]"].entries[-1]),
        }
        if pulse:
            t = np.array([0.0, PULSE_S])
            ocv = sol["Bulk open-circuit voltage [V]"](t)
            v = sol["Voltage [V]"](t)
            out["resistance_ohm"] = float((ocv[1] - v[1]) / current_A)
            out["ocv_V"] = float(ocv[0])
        return out

    def _solve(self, which: str, inputs: Mapping[str, float], c_rate: float, pulse: bool) -> dict[str, float]:
        t_end = 3600.0 / c_rate * 1.6
        sol = self._sims[which].solve([0.0, t_end], inputs=dict(inputs))
        return self._discharge(sol, inputs[_STATE["current_A"]], pulse)

    def evaluate(self, structure: Mapping[str, float], operating_c_rate: float | None = None) -> CellResult:
        """Discharge at C/3, 1C, 3C (and the operating C-rate), each from full charge at 25 degC, CC to 2.5 V."""
        missing = [k for k in STRUCTURE_KEYS if k not in structure]
        if missing:
            raise KeyError(f"structure is missing {missing}; pass every key of models.cell.STRUCTURE_KEYS")
        balance = lithium_balance(structure, self.materials, self.fmt)
        rates = dict(C_RATES)
        if operating_c_rate is not None:
            rates["op"] = float(operating_c_rate)
        result = CellResult(values={"nominal_capacity_Ah": balance["nominal_capacity_Ah"],
                                    "anode_limited": balance["anode_limited"]})
        for label, c_rate in rates.items():
            inputs = self._inputs(structure, balance, c_rate)
            pulse = label == "3C"
            try:
                out = self._solve("default", inputs, c_rate, pulse)
            except Exception as first:  # noqa: BLE001 - pybamm raises SolverError, RuntimeError, ValueError...
                result.retried = True
                try:
                    out = self._solve("tight", inputs, c_rate, pulse)
                except Exception as second:  # noqa: BLE001
                    result.failed = True
                    result.error = f"{label}: {type(first).__name__}: {first}; retry: {type(second).__name__}: {second}"
                    return result
            for k, v in out.items():
                result.values[f"{k}_{label}" if k in ("capacity_Ah", "energy_Wh") else k] = v
        return result

    def solve_rebuilt(self, structure: Mapping[str, float], c_rate: float) -> dict[str, float]:
        """Same discharge on a model built from scratch with plain numbers (default mesh): the regression reference."""
        balance = lithium_balance(structure, self.materials, self.fmt)
        pv = self._base_parameters()
        pv.update(self._inputs(structure, balance, c_rate))
        sim = self._simulation(self._pybamm.IDAKLUSolver(), parameter_values=pv, symbolic=False)
        sol = sim.solve([0.0, 3600.0 / c_rate * 1.6])
        return self._discharge(sol, c_rate * balance["nominal_capacity_Ah"], pulse=False)


def cell_figures(
    values: Mapping[str, np.ndarray], masses: Mapping[str, np.ndarray], fmt: PouchFormat = REFERENCE_POUCH
) -> dict[str, np.ndarray]:
    """Cell-level figures of merit from the DFN results and the pouch bill of components (vectorised)."""
    mass_kg = np.asarray(masses["cell_mass_g"]) * 1e-3
    volume_L = np.asarray(masses["cell_volume_cm3"]) * 1e-3
    out: dict[str, np.ndarray] = {}
    for label in list(C_RATES) + ["op"]:
        if f"capacity_Ah_{label}" not in values:
            continue
        cap = np.asarray(values[f"capacity_Ah_{label}"])
        energy = np.asarray(values[f"energy_Wh_{label}"])
        out[f"capacity_Ah_{label}"] = cap
        out[f"areal_capacity_mAh_cm2_{label}"] = cap * 1e3 / fmt.cathode_area_cm2
        out[f"energy_Wh_{label}"] = energy
        out[f"specific_energy_Wh_kg_{label}"] = energy / mass_kg
        out[f"energy_density_Wh_L_{label}"] = energy / volume_L
    r = np.asarray(values["resistance_ohm"])
    u = np.asarray(values["ocv_V"])
    out["resistance_10s_mohm"] = r * 1e3
    out["max_power_W"] = u**2 / (4.0 * r)  # seed 000: P_max = U^2 / (4 R_tot), matched load
    out["specific_power_W_kg"] = out["max_power_W"] / mass_kg
    out["cell_mass_g"] = mass_kg * 1e3
    out["cell_volume_cm3"] = volume_L * 1e3
    return out


def structure_from_chain(cathode: Mapping[str, Any], anode: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Map two flattened process-chain results (``process_chain.flatten``) and their particle radii to cell inputs."""
    out: dict[str, np.ndarray] = {}
    for name, r in (("cathode", cathode), ("anode", anode)):
        out[f"{name}_thickness_um"] = np.asarray(r["calendering.calendered_thickness_um"])
        out[f"{name}_porosity"] = np.asarray(r["calendering.calendered_porosity"])
        out[f"{name}_active_volume_fraction"] = np.asarray(r["calendering.active_volume_fraction"])
        out[f"{name}_particle_radius_um"] = np.asarray(r["particle_radius_um"])
    return out


def evaluate_many(
    model: CellModel, structures: Sequence[Mapping[str, float]], c_rates: Sequence[float | None]
) -> list[CellResult]:
    """Loop over designs with one model: the discretisation is reused, only the inputs change."""
    return [model.evaluate(s, c) for s, c in zip(structures, c_rates, strict=True)]
