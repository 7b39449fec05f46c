"""Cell performance from electrode structure: PyBaMM Doyle-Fuller-Newman model in the reference pouch format.

Parameter sets are data (``models/parameters/``, every value with its source key in docs/references.md):

- ``pilot_cell`` (default): the project's cell. Chen2020's kinetics, electrolyte and OCP curves (as functions of
  stoichiometry), maximum concentrations rescaled so that Chen2020's stoichiometry window holds the process chain's
  practical capacity (c_max = q_practical * rho_AM / (F * window)), and transport from the electrode structure (below).
- ``Chen2020``: PyBaMM's Chen2020 unchanged (its own cell, Bruggeman transport): the regression that the plumbing here
  (areas, currents, lithium inventory) reproduces plain PyBaMM within 1 % (tests/models/test_cell_seed.py).
- ``ProZell_seed001``: seed 001 Table A2, run as the seed ran it (a cathode half cell, ``seed001_half_cell``).

Why Chen2020 underneath: the only NMC / graphite full-cell set in PyBaMM 26.10.1.1 parameterised end to end from one
cell, no download, and its symbolic-mesh path was measured to agree with a full rebuild (research/models.md 1.4).

**Transport from structure (not plain Bruggeman).** The electrolyte tortuosity factor is tau = eps^(1 - alpha) with
alpha = 1.5 + s * phi_CBD, phi_CBD = (X_CA + X_PB) / (1 - eps) the carbon-binder share of the solid: Bruggeman (1935)
for a bed of spheres without carbon-binder domain (alpha = 1.5), its exponent raised by the carbon-binder domain, which
fills the necks between particles. s = 7.145 puts the relation through seed 001 Table A2's tau = 5.9449 at eps = 0.315,
X_CA = X_PB = 0.05 (Table A1), a value seed 001 took from a microstructure-resolved surrogate (Laue et al. 2019); plain
Bruggeman gives 1.78 there, 3.3x less resistive. It is a one-point interpolation of ours between those two anchors, not
a published law: that surrogate's equations are not printed in seed 001. The solid's effective conductivity adds the
two conducting phases in parallel, each by Bruggeman: sigma_eff = kappa_CBM X_CBD^1.5 + kappa_AM X_AM^1.5 (Table A2:
760 and 0.0309 S/m for the cathode; graphite 215 S/m, Chen2020, and carbon black for the anode). Both enter PyBaMM
through its ``tortuosity factor`` transport option as ``[input]`` parameters, so the conductive and binder volume
fractions of the process chain reach the DFN.

**Lithium inventory.** The cyclable lithium is what both electrodes hold at their discharged stoichiometries less the
formation loss: n_Li = (1 - f) (y0 q_p + x0 q_n), f = 5.98 % (the loss Chen2020's own stoichiometries imply). Full
charge is where the open-circuit voltage reaches the upper cut-off (4.2 V): U_p(y100) - U_n(x100) = 4.2 V with
x100 = (n_Li - y100 q_p) / q_n, as PyBaMM's electrode state-of-health calculation does. An anode that would be filled
beyond 0.98 stops the charge there (plating); such a cell has N/P < 1 and is **out of domain**: ``CellResult.in_domain``
is False and ``domain_violation`` says why (its numbers are still computed, for display only).

The structure of both electrodes (thickness, porosity, active volume fraction, particle radius, tortuosities) enters as
PyBaMM ``[input]`` parameters on ``SymbolicUniform1DSubMesh`` meshes, so a design of experiments reuses one
discretised model (research/models.md 1.4: ~0.03 s per solve instead of ~0.25 s per rebuild). ``solve_rebuilt`` keeps
the slow full-rebuild path for the regression test.

A solver failure is retried once with tight tolerances (research/models.md 1.4: IDA_CONV_FAIL near the cut-off);
if it still fails the point is returned with ``failed=True`` and the error text, never dropped.
"""

from __future__ import annotations

import os

os.environ.setdefault("PYBAMM_DISABLE_TELEMETRY", "true")

from collections.abc import Mapping, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from functools import lru_cache  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from numpy.typing import ArrayLike, NDArray  # noqa: E402
from scipy.optimize import brentq  # noqa: E402

from models import parameters  # noqa: E402
from models.cell_format import REFERENCE_POUCH, PouchFormat  # noqa: E402

FARADAY_C_MOL = 96485.33212
_CHEN = parameters.load("Chen2020")
_PILOT = parameters.load("pilot_cell")
# Chen2020: electrode stoichiometries at 0 % and 100 % state of charge (models/parameters/Chen2020.yaml).
CHEN2020_Y0, CHEN2020_Y100 = _CHEN["cathode_stoichiometry_0"], _CHEN["cathode_stoichiometry_100"]  # NMC811
CHEN2020_X0, CHEN2020_X100 = _CHEN["anode_stoichiometry_0"], _CHEN["anode_stoichiometry_100"]  # graphite
ANODE_MAX_STOICHIOMETRY = _PILOT["anode_max_stoichiometry"]  # charge stops here when the anode is too small
GRAPHITE_THEORETICAL_mAh_g = _PILOT["anode_theoretical_mAh_g"]  # LiC6
UPPER_VOLTAGE_V = _CHEN["upper_voltage_V"]

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
# The carbon-binder domain of each electrode (process chain eq. 16): reaches the DFN through the tortuosities.
FRACTION_KEYS: tuple[str, ...] = tuple(f"{e}_{k}_volume_fraction" for e in ("cathode", "anode")
                                       for k in ("conductive", "binder"))
STRUCTURE_KEYS: tuple[str, ...] = (*_INPUTS, *FRACTION_KEYS)
_TORTUOSITY = {
    "tau_e_p": "Positive electrode tortuosity factor (electrolyte)",
    "tau_s_p": "Positive electrode tortuosity factor (electrode)",
    "tau_e_n": "Negative electrode tortuosity factor (electrolyte)",
    "tau_s_n": "Negative electrode tortuosity factor (electrode)",
}
_STATE = {
    "c_n_init": "Initial concentration in negative electrode [mol.m-3]",
    "c_p_init": "Initial concentration in positive electrode [mol.m-3]",
    "current_A": "Current function [A]",
}


# ---------------------------------------------------------------------------------------------------------------------
# Structure -> transport
# ---------------------------------------------------------------------------------------------------------------------


def cbd_exponent_slope() -> float:
    """s of alpha = 1.5 + s phi_CBD, from seed 001's anchor (Table A2 tau at Table A1's structure)."""
    z = parameters.load("ProZell_seed001")
    eps = z["cathode_porosity"]
    alpha = 1.0 - np.log(z["cathode_tortuosity"]) / np.log(eps)
    phi = (z["conductive_volume_fraction"] + z["binder_volume_fraction"]) / (1.0 - eps)
    return float((alpha - _PILOT["bruggeman_exponent"]) / phi)


def electrolyte_tortuosity(porosity: ArrayLike, conductive_volume_fraction: ArrayLike,
                           binder_volume_fraction: ArrayLike) -> NDArray[np.float64]:
    """tau = eps^(1 - alpha), alpha = 1.5 + s (X_CA + X_PB) / (1 - eps) (module docstring)."""
    eps = np.asarray(porosity, dtype=float)
    phi = (np.asarray(conductive_volume_fraction, dtype=float) + np.asarray(binder_volume_fraction, dtype=float)) / (
        1.0 - eps)
    alpha = _PILOT["bruggeman_exponent"] + _PILOT["cbd_exponent_slope"] * phi
    return np.asarray(eps ** (1.0 - alpha), dtype=float)


def solid_conductivity_S_m(electrode: str, active_volume_fraction: ArrayLike, conductive_volume_fraction: ArrayLike,
                           binder_volume_fraction: ArrayLike) -> NDArray[np.float64]:
    """Effective electronic conductivity: active material and carbon-binder domain in parallel, each by Bruggeman."""
    x_am = np.asarray(active_volume_fraction, dtype=float)
    x_cbd = np.asarray(conductive_volume_fraction, dtype=float) + np.asarray(binder_volume_fraction, dtype=float)
    b = _PILOT["bruggeman_exponent"]
    am = _PILOT["cathode_active_conductivity_S_m"] if electrode == "cathode" else _PILOT["anode_conductivity_S_m"]
    return np.asarray(_PILOT["cbd_conductivity_S_m"] * x_cbd**b + am * x_am**b, dtype=float)


def transport_inputs(structure: Mapping[str, float]) -> dict[str, float]:
    """PyBaMM tortuosity factors of both electrodes from the structure. PyBaMM's ``tortuosity factor`` option uses
    B_e = eps / tau_e and B_s = (1 - eps) / tau_s with the electrode conductivity parameter set to 1 S/m, so
    tau_s = (1 - eps) / sigma_eff."""
    out: dict[str, float] = {}
    for e, side in (("cathode", "p"), ("anode", "n")):
        eps = float(structure[f"{e}_porosity"])
        xc, xb = float(structure[f"{e}_conductive_volume_fraction"]), float(structure[f"{e}_binder_volume_fraction"])
        out[f"tau_e_{side}"] = float(electrolyte_tortuosity(eps, xc, xb))
        sigma = float(solid_conductivity_S_m(e, structure[f"{e}_active_volume_fraction"], xc, xb))
        out[f"tau_s_{side}"] = (1.0 - eps) / sigma
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Materials and lithium inventory
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActiveMaterials:
    """Capacities, densities and inventory constants (``models/parameters/pilot_cell.yaml``). ``*_c_max_mol_m3`` set
    explicitly (the Chen2020 set) replace the rescaling from the practical capacity."""

    cathode_specific_capacity_mAh_g: float = _PILOT["cathode_specific_capacity_mAh_g"]
    cathode_density_g_cm3: float = _PILOT["cathode_density_g_cm3"]
    anode_density_g_cm3: float = _PILOT["anode_density_g_cm3"]
    anode_theoretical_mAh_g: float = GRAPHITE_THEORETICAL_mAh_g
    formation_loss_fraction: float = _PILOT["formation_loss_fraction"]
    anode_max_stoichiometry: float = ANODE_MAX_STOICHIOMETRY
    upper_voltage_V: float = UPPER_VOLTAGE_V
    cathode_c_max_mol_m3: float | None = None
    anode_c_max_mol_m3: float | None = None

    @classmethod
    def chen2020(cls) -> ActiveMaterials:
        return cls(formation_loss_fraction=_CHEN["formation_loss_fraction"],
                   cathode_c_max_mol_m3=_CHEN["cathode_c_max_mol_m3"], anode_c_max_mol_m3=_CHEN["anode_c_max_mol_m3"])

    @property
    def c_max_positive_mol_m3(self) -> float:
        if self.cathode_c_max_mol_m3 is not None:
            return self.cathode_c_max_mol_m3
        vol_capacity_C_m3 = self.cathode_specific_capacity_mAh_g * 3.6 * self.cathode_density_g_cm3 * 1e6
        return vol_capacity_C_m3 / FARADAY_C_MOL / (CHEN2020_Y0 - CHEN2020_Y100)

    @property
    def c_max_negative_mol_m3(self) -> float:
        if self.anode_c_max_mol_m3 is not None:
            return self.anode_c_max_mol_m3
        return self.anode_theoretical_mAh_g * 3.6 * self.anode_density_g_cm3 * 1e6 / FARADAY_C_MOL


@lru_cache(maxsize=1)
def _ocp_tables() -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Chen2020's OCP curves on a fine stoichiometry grid (both parameter sets of the full cell use them)."""
    import pybamm

    pv = pybamm.ParameterValues("Chen2020")
    grid = np.linspace(1e-4, 1.0 - 1e-4, 4001)
    up = pv.process_symbol(pv["Positive electrode OCP [V]"](pybamm.Vector(grid))).evaluate().ravel()
    un = pv.process_symbol(pv["Negative electrode OCP [V]"](pybamm.Vector(grid))).evaluate().ravel()
    return grid, np.asarray(up, dtype=float), np.asarray(un, dtype=float)


def open_circuit_voltage(y: float, x: float) -> float:
    grid, up, un = _ocp_tables()
    return float(np.interp(y, grid, up) - np.interp(x, grid, un))


@dataclass
class CellResult:
    """Outputs of one design; ``failed`` points carry NaN values and the solver's message. ``in_domain`` is False for
    a design the model is not valid for (N/P < 1): its values are computed but must not be acted on."""

    values: dict[str, float] = field(default_factory=dict)
    failed: bool = False
    error: str = ""
    retried: bool = False
    in_domain: bool = True
    domain_violation: str = ""


def lithium_balance(
    structure: Mapping[str, float], materials: ActiveMaterials, fmt: PouchFormat | None = REFERENCE_POUCH,
    area_m2: float | None = None,
) -> dict[str, float]:
    """Initial (full-charge) concentrations, nominal capacity and N/P from both electrodes and the lithium inventory.

    ``area_m2``: total electrode area (default: the pouch's unit layers)."""
    q_p = (structure["cathode_active_volume_fraction"] * structure["cathode_thickness_um"] * 1e-6
           * materials.c_max_positive_mol_m3)  # lithium sites, mol per m2 of electrode
    q_n = (structure["anode_active_volume_fraction"] * structure["anode_thickness_um"] * 1e-6
           * materials.c_max_negative_mol_m3)
    x_max = materials.anode_max_stoichiometry
    n_li = (1.0 - materials.formation_loss_fraction) * (CHEN2020_Y0 * q_p + CHEN2020_X0 * q_n)

    def excess_V(y: float) -> float:  # OCV at cathode stoichiometry y minus the upper cut-off
        return open_circuit_voltage(y, (n_li - y * q_p) / q_n) - materials.upper_voltage_V

    y_low = max(1e-4, (n_li - (1.0 - 1e-4) * q_n) / q_p)  # below this the anode would be over-full
    y_high = min(CHEN2020_Y0, n_li / q_p)
    if excess_V(y_low) < 0.0:  # even a full anode does not reach the cut-off: charge ends at the anode limit
        anode_limited = True
    else:
        y100 = brentq(excess_V, y_low, y_high, xtol=1e-10) if excess_V(y_high) < 0.0 else y_high
        anode_limited = (n_li - y100 * q_p) / q_n > x_max
    if not anode_limited:
        x100 = (n_li - y100 * q_p) / q_n
    else:  # the charge stops where the anode is full (plating beyond): fewer Ah than the cathode could give
        x100, y100 = x_max, (n_li - x_max * q_n) / q_p
    # a discharge ends when the anode is empty (x0) or the cathode full (y0), whichever comes first
    transfer = min((x100 - CHEN2020_X0) * q_n, (CHEN2020_Y0 - y100) * q_p)
    np_ratio = (x_max - CHEN2020_X0) * q_n / ((CHEN2020_Y0 - CHEN2020_Y100) * q_p)
    area = area_m2 if area_m2 is not None else (fmt or REFERENCE_POUCH).unit_layer_area_m2 * (
        fmt or REFERENCE_POUCH).unit_layers
    return {
        "c_n_init": x100 * materials.c_max_negative_mol_m3,
        "c_p_init": y100 * materials.c_max_positive_mol_m3,
        "x100": x100, "y100": y100,
        "cyclable_lithium_mol_m2": n_li,
        "nominal_capacity_Ah": transfer * FARADAY_C_MOL / 3600.0 * area,
        "anode_limited": float(anode_limited),
        "np_ratio": np_ratio,
    }


class CellModel:
    """One discretised DFN (or SPMe) with structure as inputs; ``evaluate`` runs the C-rate set for one design.

    ``parameter_set``: ``pilot_cell`` (default: structure transport, pouch format ``fmt``) or ``Chen2020`` (PyBaMM's
    set unchanged: its own geometry and Bruggeman transport; ``fmt`` is ignored)."""

    def __init__(
        self,
        model: str = "DFN",
        materials: ActiveMaterials | None = None,
        fmt: PouchFormat = REFERENCE_POUCH,
        temperature_C: float = 25.0,
        parameter_set: str = "pilot_cell",
    ) -> None:
        import pybamm

        if parameter_set not in ("pilot_cell", "Chen2020"):
            raise ValueError(f"unknown full-cell parameter set {parameter_set!r}; use 'pilot_cell' or 'Chen2020' "
                             "(ProZell_seed001 is a half cell: seed001_half_cell)")
        self._pybamm = pybamm
        self.model_name = model
        self.parameter_set = parameter_set
        self.structure_transport = parameter_set == "pilot_cell"
        self.materials = materials or (ActiveMaterials.chen2020() if parameter_set == "Chen2020"
                                       else ActiveMaterials())
        self.fmt = fmt
        self.temperature_C = temperature_C
        self.required_keys = STRUCTURE_KEYS if self.structure_transport else tuple(_INPUTS)
        self.parameter_values = self._parameter_values(symbolic=True)
        self.area_m2 = float(self.parameter_values["Electrode height [m]"] * self.parameter_values[
            "Electrode width [m]"] * self.parameter_values["Number of electrodes connected in parallel to make a cell"])
        self._sims = {
            "default": self._simulation(pybamm.IDAKLUSolver()),
            "tight": self._simulation(pybamm.IDAKLUSolver(rtol=1e-8, atol=1e-10)),
        }

    # -- construction ---------------------------------------------------------------------------------------------
    def _base_parameters(self) -> Any:
        pybamm = self._pybamm
        pv = pybamm.ParameterValues("Chen2020")
        temperature = {"Ambient temperature [K]": 273.15 + self.temperature_C,
                       "Initial temperature [K]": 273.15 + self.temperature_C,
                       "Reference temperature [K]": 273.15 + self.temperature_C}
        if not self.structure_transport:
            pv.update(temperature)
            return pv
        eps_sep = self.fmt.separator_porosity
        pv.update(
            {
                "Maximum concentration in positive electrode [mol.m-3]": self.materials.c_max_positive_mol_m3,
                "Maximum concentration in negative electrode [mol.m-3]": self.materials.c_max_negative_mol_m3,
                "Electrode height [m]": self.fmt.cathode_width_mm * 1e-3,
                "Electrode width [m]": self.fmt.cathode_length_mm * 1e-3,
                "Number of electrodes connected in parallel to make a cell": float(self.fmt.unit_layers),
                "Separator thickness [m]": self.fmt.separator_thickness_um * 1e-6,
                "Separator porosity": eps_sep,
                "Positive current collector thickness [m]": self.fmt.al_foil_thickness_um * 1e-6,
                "Negative current collector thickness [m]": self.fmt.cu_foil_thickness_um * 1e-6,
                # structure transport: B_s = (1 - eps) / tau_s with sigma = 1 S/m (transport_inputs)
                "Positive electrode conductivity [S.m-1]": 1.0,
                "Negative electrode conductivity [S.m-1]": 1.0,
                "Separator tortuosity factor (electrolyte)": eps_sep ** (1.0 - _PILOT["bruggeman_exponent"]),
                **temperature,
            }
        )
        pv.update({name: 1.0 for name in _TORTUOSITY.values()}, check_already_exists=False)
        return pv

    def _parameter_values(self, symbolic: bool) -> Any:
        pv = self._base_parameters()
        if symbolic:
            pv.update({name: "[input]" for name, _ in _INPUTS.values()})
            pv.update({name: "[input]" for name in _STATE.values()})
            if self.structure_transport:
                pv.update({name: "[input]" for name in _TORTUOSITY.values()})
        return pv

    def _new_model(self) -> Any:
        pybamm = self._pybamm
        options = {"calculate discharge energy": "true"}
        if self.structure_transport:
            options["transport efficiency"] = "tortuosity factor"
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
    def balance(self, structure: Mapping[str, float]) -> dict[str, float]:
        return lithium_balance(structure, self.materials, area_m2=self.area_m2)

    def _inputs(self, structure: Mapping[str, float], balance: Mapping[str, float], c_rate: float) -> dict[str, float]:
        x = {pname: float(structure[key]) * scale for key, (pname, scale) in _INPUTS.items()}
        x[_STATE["c_n_init"]] = balance["c_n_init"]
        x[_STATE["c_p_init"]] = balance["c_p_init"]
        x[_STATE["current_A"]] = c_rate * balance["nominal_capacity_Ah"]
        if self.structure_transport:
            x.update({_TORTUOSITY[k]: v for k, v in transport_inputs(structure).items()})
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

    def evaluate(self, structure: Mapping[str, float], operating_c_rate: float | None = None,
                 c_rates: Mapping[str, float] | None = None) -> CellResult:
        """Discharge at C/3, 1C, 3C (``c_rates`` replaces that set) and the operating C-rate, each from full charge at
        25 degC, CC to the lower cut-off. N/P < 1 is flagged out of domain (values still computed)."""
        missing = [k for k in self.required_keys if k not in structure]
        if missing:
            raise KeyError(f"structure is missing {missing}; pass every key of models.cell.STRUCTURE_KEYS")
        balance = self.balance(structure)
        rates = dict(C_RATES if c_rates is None else c_rates)
        if operating_c_rate is not None:
            rates["op"] = float(operating_c_rate)
        result = CellResult(values={k: balance[k] for k in ("nominal_capacity_Ah", "anode_limited", "np_ratio")})
        if balance["np_ratio"] < 1.0:
            result.in_domain = False
            result.domain_violation = (f"N/P {balance['np_ratio']:.3f} < 1: the anode cannot take the cathode's "
                                       "lithium (anode-limited, plating); outside the cell model's domain")
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
        balance = self.balance(structure)
        pv = self._base_parameters()
        pv.update(self._inputs(structure, balance, c_rate), check_already_exists=False)
        sim = self._simulation(self._pybamm.IDAKLUSolver(), parameter_values=pv, symbolic=False)
        sol = sim.solve([0.0, 3600.0 / c_rate * 1.6])
        return self._discharge(sol, c_rate * balance["nominal_capacity_Ah"], pulse=False)


def chen2020_structure() -> dict[str, float]:
    """Chen2020's own electrodes in the cell model's structure keys (models/parameters/Chen2020.yaml)."""
    out: dict[str, float] = {}
    for e in ("cathode", "anode"):
        out[f"{e}_thickness_um"] = _CHEN[f"{e}_thickness_m"] * 1e6
        out[f"{e}_porosity"] = _CHEN[f"{e}_porosity"]
        out[f"{e}_active_volume_fraction"] = _CHEN[f"{e}_active_volume_fraction"]
        out[f"{e}_particle_radius_um"] = _CHEN[f"{e}_particle_radius_m"] * 1e6
    return out


def seed001_window_capacity_mAh_cm2(active_volume_fraction: float) -> float:
    """Capacity Table A2's concentration window holds: (c_max - c_0) x active fraction x thickness x F."""
    z = parameters.load("ProZell_seed001")
    window = z["cathode_c_max_mol_m3"] - z["cathode_c_0_mol_m3"]
    return window * active_volume_fraction * z["cathode_thickness_m"] * FARADAY_C_MOL / 3600.0 * 0.1


def seed001_half_cell(intercalating_fraction: str = "solid", current_density_mA_cm2: float | None = None,
                      structure: Mapping[str, float] | None = None) -> dict[str, float]:
    """Seed 001's use case as the seed ran it: a P2D half cell (ProZell cathode against lithium metal) with the Table
    A2 parameters, CC discharge at 1 mA/cm2 (~0.4C) to 3.0 V; capacity per cathode area, energy per litre of coating.

    ``intercalating_fraction``: the volume fraction that stores lithium, ``"solid"`` = 1 - eps (0.685: the whole solid
    phase, carbon-binder matrix included, which is what reproduces seed 001's 2.41 mAh/cm2) or ``"active"`` = X_AM
    of Table A1 (0.58, what eq. 16 says the active material occupies). Lithium-metal counter electrode and separator
    thickness from PyBaMM's Xu2019 half-cell set; OCP, electrolyte and exchange current from Chen2020 (Table A2 prints
    no OCP; at 0.65 A/m2 of interface the kinetics do not limit).

    ``structure`` replaces Table A1/A2's structure (ANCOVA samples): ``thickness_m``, ``porosity``,
    ``active_volume_fraction``, ``cbd_volume_fraction``; the tortuosity then follows ``electrolyte_tortuosity``."""
    import pybamm

    z = parameters.load("ProZell_seed001")
    st = {"thickness_m": z["cathode_thickness_m"], "porosity": z["cathode_porosity"],
          "active_volume_fraction": z["active_volume_fraction"],
          "cbd_volume_fraction": z["conductive_volume_fraction"] + z["binder_volume_fraction"]}
    tau = z["cathode_tortuosity"]
    if structure is not None:
        st.update({k: float(v) for k, v in structure.items()})
        tau = float(electrolyte_tortuosity(st["porosity"], st["cbd_volume_fraction"], 0.0))
    eps = st["porosity"]
    if intercalating_fraction == "solid":
        fraction = 1.0 - eps
    elif intercalating_fraction == "active":
        fraction = st["active_volume_fraction"]
    else:
        raise ValueError("intercalating_fraction must be 'solid' or 'active'")
    i_mA_cm2 = z["current_density_mA_cm2"] if current_density_mA_cm2 is None else float(current_density_mA_cm2)
    chen = pybamm.ParameterValues("Chen2020")
    pv = pybamm.ParameterValues("Xu2019")
    area_m2 = float(pv["Electrode height [m]"] * pv["Electrode width [m]"])
    sigma_eff = (_PILOT["cbd_conductivity_S_m"] * st["cbd_volume_fraction"] ** 1.5
                 + z["active_material_conductivity_S_m"] * st["active_volume_fraction"] ** 1.5)
    shared = ["Positive electrode OCP [V]", "Positive electrode exchange-current density [A.m-2]",
              "Electrolyte diffusivity [m2.s-1]", "Electrolyte conductivity [S.m-1]",
              "Cation transference number", "Thermodynamic factor"]
    pv.update({k: chen[k] for k in shared}, check_already_exists=False)
    pv.update(z.pybamm_updates(), check_already_exists=False)
    pv.update({
        "Positive electrode thickness [m]": st["thickness_m"], "Positive electrode porosity": eps,
        "Positive electrode tortuosity factor (electrolyte)": tau,
        "Positive electrode active material volume fraction": fraction,
        "Positive electrode conductivity [S.m-1]": sigma_eff / (1.0 - eps),
        "Positive electrode tortuosity factor (electrode)": 1.0,
        "Lower voltage cut-off [V]": z["lower_voltage_V"], "Upper voltage cut-off [V]": 4.6,
        "Current function [A]": i_mA_cm2 * 10.0 * area_m2,
    }, check_already_exists=False)
    model = pybamm.lithium_ion.DFN({"working electrode": "positive", "transport efficiency": "tortuosity factor"})
    sol = pybamm.Simulation(model, parameter_values=pv).solve([0.0, 10.0 * 3600.0])
    if "Minimum voltage" not in str(sol.termination):
        raise RuntimeError(f"seed 001 half cell did not reach the cut-off ({sol.termination})")
    t = sol["Time [s]"].entries
    v = sol["Voltage [V]"].entries
    capacity = float(sol["Discharge capacity [A.h]"].entries[-1]) / area_m2 * 0.1  # mAh/cm2
    energy_Wh_m2 = float(np.trapezoid(v, t)) * i_mA_cm2 * 10.0 / 3600.0
    window = (z["cathode_c_max_mol_m3"] - z["cathode_c_0_mol_m3"]) * fraction * st["thickness_m"] * (
        FARADAY_C_MOL / 3600.0 * 0.1)
    return {"intercalating_volume_fraction": fraction, "capacity_mAh_cm2": capacity,
            "energy_density_Wh_L": energy_Wh_m2 / (st["thickness_m"] * 1e3),
            "mean_voltage_V": energy_Wh_m2 / capacity * 0.1, "tortuosity": tau,
            "window_capacity_mAh_cm2": window, "utilisation": capacity / window, "c_rate": i_mA_cm2 / window,
            "specific_capacity_mAh_g": capacity / (z["dry_mass_loading_mg_cm2"] * z["w_active"]) * 1e3}


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
        out[f"{name}_conductive_volume_fraction"] = np.asarray(r["calendering.conductive_volume_fraction"])
        out[f"{name}_binder_volume_fraction"] = np.asarray(r["calendering.binder_volume_fraction"])
        out[f"{name}_particle_radius_um"] = np.asarray(r["particle_radius_um"])
    return out


def evaluate_many(
    model: CellModel, structures: Sequence[Mapping[str, float]], c_rates: Sequence[float | None]
) -> list[CellResult]:
    """Loop over designs with one model: the discretisation is reused, only the inputs change."""
    return [model.evaluate(s, c) for s, c in zip(structures, c_rates, strict=True)]
