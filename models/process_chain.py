"""Mechanistic process chain of electrode production: mixing -> coating -> drying -> calendering.

The equations are those of Thomitzek et al. 2022 (seed 001, section 3.2, equations 8-16). Every function is pure and
vectorised: inputs broadcast as numpy arrays, so one call evaluates a whole Monte Carlo sample or Sobol design.

Units are in the names. Internally lengths are converted to cm and masses to g so that the seed's equations read as
printed (densities in g/cm3, mass loadings in mg/cm2 -> g/cm2 via 1e-3).

Run ``python -m models.process_chain --json -`` with a JSON object of inputs on stdin (omitted keys take the
defaults of the chosen electrode; ``"electrode": "anode"`` switches the defaults) to print every structure parameter
of every step.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

# --------------------------------------------------------------------------------------------------------------------
# Parameter sets (data, with their sources; the model functions below know nothing of them)
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ElectrodeParameters:
    """Formulation, raw-material, process and structure parameters of one electrode.

    Field names carry units. ``source`` says where the numbers come from.
    """

    # Formulation (dry mass fractions) and slurry solid content
    w_active: float
    w_conductive: float
    w_binder: float
    solid_content: float
    # Raw-material densities
    rho_active_g_cm3: float
    rho_conductive_g_cm3: float
    rho_binder_g_cm3: float
    rho_solvent_g_cm3: float
    # Slot-die coating
    pump_flow_rate_cm3_h: float
    web_speed_m_min: float
    coating_width_mm: float
    # Drying meta-model (exponential in wet mass loading, see dry_porosity)
    dry_porosity_ref: float
    dry_porosity_ref_wet_loading_mg_cm2: float
    dry_porosity_exp_per_mg_cm2: float
    # Calendering (Heckel-type, eq. 15) with roll-temperature dependence of the compaction resistance
    line_load_N_mm: float
    min_porosity: float
    compaction_resistance_ref_N_mm: float
    roll_temperature_C: float
    roll_temperature_ref_C: float
    compaction_resistance_temp_coeff_per_K: float
    # Active material
    particle_radius_um: float
    specific_capacity_mAh_g: float
    source: str = ""


# ProZell reference cathode (NMC, NMP-based slurry): seed 001 Appendix Table A1. The drying meta-model is calibrated
# so that eps_dry(20.45 mg/cm2) = 0.439 (Table A1, drying); its slope reproduces the Table A1 spread ratio of
# eps_dry (0.3 %) to m_wet (2.1 %): |d ln eps / d ln m| = 0.14 at the reference point. The seed's fitted
# coefficients (Fig. 7) are not printed; the sign (denser packing of heavier films) is our assumption.
# Roll temperature: Table A1 is taken as the 25 degC reference; heated calendering lowers the compaction resistance
# (Meyer et al. 2019, seed 001 ref. [26]); the 0.4 %/K coefficient is an order-of-magnitude estimate from that work.
# Particle radius 5.5 um: seed 001 Table A2. Specific capacity 160 mAh/g: NMC111 practical capacity (assumption:
# the ProZell reference material is NMC111 at 4.75 g/cm3).
CATHODE_PROZELL = ElectrodeParameters(
    w_active=0.94,
    w_conductive=0.03,
    w_binder=0.03,
    solid_content=0.70,
    rho_active_g_cm3=4.75,
    rho_conductive_g_cm3=1.80,
    rho_binder_g_cm3=1.70,
    rho_solvent_g_cm3=1.03,
    pump_flow_rate_cm3_h=696.0,
    web_speed_m_min=1.0,
    coating_width_mm=125.0,
    dry_porosity_ref=0.439,
    dry_porosity_ref_wet_loading_mg_cm2=20.45,
    dry_porosity_exp_per_mg_cm2=-0.0068,
    line_load_N_mm=84.0,
    min_porosity=0.176,
    compaction_resistance_ref_N_mm=129.0,
    roll_temperature_C=25.0,
    roll_temperature_ref_C=25.0,
    compaction_resistance_temp_coeff_per_K=0.004,
    particle_radius_um=5.5,
    specific_capacity_mAh_g=160.0,
    source="Thomitzek et al. 2022 (seed 001) Appendix Table A1 and Table A2; drying slope and temperature "
    "coefficient calibrated as documented in models/process_chain.py",
)

# Graphite anode, water-based (CMC/SBR) slurry. Literature values, not from a seed table:
# graphite 2.26 g/cm3 (theoretical density of graphite), carbon black 1.80 g/cm3 (as the cathode, Table A1),
# CMC/SBR binder 1.20 g/cm3 (mass-weighted mix of SBR ~0.96 and CMC ~1.6), water 1.00 g/cm3; 95.5/1/3.5 wt %
# and 50 % solids are typical of pilot-line graphite slurries (Kwade et al. 2018, Nat. Energy 3:290, seed 001 ref. 6).
# 350 mAh/g graphite practical capacity. Coating flow is chosen for an N/P ratio of about 1.15 against the cathode
# above; eps_min 0.22 / gamma_c 45 N/mm give ~35 % porosity and ~1.42 g/cm3 at 35 N/mm, typical of graphite anodes
# (Meyer et al. 2017, seed 001 ref. [24], report lower compaction resistance for graphite than for NMC).
ANODE_GRAPHITE = ElectrodeParameters(
    w_active=0.955,
    w_conductive=0.010,
    w_binder=0.035,
    solid_content=0.50,
    rho_active_g_cm3=2.26,
    rho_conductive_g_cm3=1.80,
    rho_binder_g_cm3=1.20,
    rho_solvent_g_cm3=1.00,
    pump_flow_rate_cm3_h=812.0,
    web_speed_m_min=1.0,
    coating_width_mm=125.0,
    dry_porosity_ref=0.50,
    dry_porosity_ref_wet_loading_mg_cm2=14.86,
    dry_porosity_exp_per_mg_cm2=-0.0068,
    line_load_N_mm=35.0,
    min_porosity=0.22,
    compaction_resistance_ref_N_mm=45.0,
    roll_temperature_C=25.0,
    roll_temperature_ref_C=25.0,
    compaction_resistance_temp_coeff_per_K=0.004,
    particle_radius_um=8.0,
    specific_capacity_mAh_g=350.0,
    source="Graphite/CMC/SBR literature values documented in models/process_chain.py",
)

PARAMETER_SETS: dict[str, ElectrodeParameters] = {"cathode": CATHODE_PROZELL, "anode": ANODE_GRAPHITE}
INPUT_NAMES: tuple[str, ...] = tuple(f.name for f in fields(ElectrodeParameters) if f.name != "source")


# --------------------------------------------------------------------------------------------------------------------
# Step models (pure, vectorised)
# --------------------------------------------------------------------------------------------------------------------


def _a(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def solids_specific_volume_cm3_g(
    w_active: ArrayLike,
    w_conductive: ArrayLike,
    w_binder: ArrayLike,
    rho_active_g_cm3: ArrayLike,
    rho_conductive_g_cm3: ArrayLike,
    rho_binder_g_cm3: ArrayLike,
) -> FloatArray:
    """Sum of w_i / rho_i: the bracket of eq. 8 and eq. 9."""
    return (
        _a(w_active) / _a(rho_active_g_cm3)
        + _a(w_conductive) / _a(rho_conductive_g_cm3)
        + _a(w_binder) / _a(rho_binder_g_cm3)
    )


def solids_density_g_cm3(specific_volume_cm3_g: ArrayLike) -> FloatArray:
    """Eq. 8: density of the dry mixture."""
    return 1.0 / _a(specific_volume_cm3_g)


def slurry_density_g_cm3(
    specific_volume_cm3_g: ArrayLike, solid_content: ArrayLike, rho_solvent_g_cm3: ArrayLike
) -> FloatArray:
    """Eq. 9: density of the slurry from its solids and solvent volumes."""
    x = _a(solid_content)
    return 1.0 / (x * _a(specific_volume_cm3_g) + (1.0 - x) / _a(rho_solvent_g_cm3))


def wet_film_thickness_um(
    pump_flow_rate_cm3_h: ArrayLike, web_speed_m_min: ArrayLike, coating_width_mm: ArrayLike
) -> FloatArray:
    """Eq. 10: the slot die is pre-metered, so the wet film is flow / (speed x width)."""
    speed_cm_h = _a(web_speed_m_min) * 100.0 * 60.0
    width_cm = _a(coating_width_mm) / 10.0
    return _a(pump_flow_rate_cm3_h) / (speed_cm_h * width_cm) * 1e4


def wet_mass_loading_mg_cm2(slurry_density: ArrayLike, wet_thickness_um: ArrayLike) -> FloatArray:
    """Eq. 11."""
    return _a(slurry_density) * _a(wet_thickness_um) * 1e-4 * 1e3


def dry_mass_loading_mg_cm2(wet_loading_mg_cm2: ArrayLike, solid_content: ArrayLike) -> FloatArray:
    """Eq. 12: only the solvent leaves the film in the dryer."""
    return _a(wet_loading_mg_cm2) * _a(solid_content)


def dry_porosity(
    wet_loading_mg_cm2: ArrayLike,
    porosity_ref: ArrayLike,
    ref_wet_loading_mg_cm2: ArrayLike,
    exp_per_mg_cm2: ArrayLike,
) -> FloatArray:
    """Exponential drying meta-model of seed 001 (section 3.2, Fig. 7): eps = eps_ref * exp(b (m_wet - m_ref)).

    The seed calibrated it on wet loadings of 14.2-35.4 mg/cm2 (DEM runs); far outside that range it is an
    extrapolation (at ~140 mg/cm2 it would predict a dried porosity below the calender's eps_min).
    """
    return _a(porosity_ref) * np.exp(_a(exp_per_mg_cm2) * (_a(wet_loading_mg_cm2) - _a(ref_wet_loading_mg_cm2)))


def coating_thickness_um(mass_loading_mg_cm2: ArrayLike, rho_solids: ArrayLike, porosity: ArrayLike) -> FloatArray:
    """Eq. 13 (after drying, and after calendering with the calendered porosity)."""
    return _a(mass_loading_mg_cm2) * 1e-3 / (_a(rho_solids) * (1.0 - _a(porosity))) * 1e4


def coating_density_g_cm3(mass_loading_mg_cm2: ArrayLike, thickness_um: ArrayLike) -> FloatArray:
    """Eq. 14."""
    return _a(mass_loading_mg_cm2) * 1e-3 / (_a(thickness_um) * 1e-4)


def compaction_resistance_N_mm(
    reference_N_mm: ArrayLike, roll_temperature_C: ArrayLike, reference_C: ArrayLike, coeff_per_K: ArrayLike
) -> FloatArray:
    """gamma_c falls as the rolls get hotter (binder softens; seed 001 ref. [26])."""
    return _a(reference_N_mm) * np.exp(-_a(coeff_per_K) * (_a(roll_temperature_C) - _a(reference_C)))


def compaction_resistance_at_loading_N_mm(
    gamma_c_N_mm: ArrayLike, dry_loading_mg_cm2: ArrayLike, reference_loading_mg_cm2: ArrayLike,
    loading_exp: ArrayLike,
) -> FloatArray:
    """gamma_c (m) = gamma_c (m_ref) * (m / m_ref) ** k: seed 001 reports a compaction resistance that depends on the
    mass loading (thicker coatings resist the rolls differently). ``run_chain`` does not apply it (k = 0 there); the
    simulator's plant applies it with a scenario's ``compaction_resistance_loading_exp`` and the twin's online
    calibration estimates k (twin/calibration). A power law keeps gamma_c positive for every k."""
    ratio = _a(dry_loading_mg_cm2) / _a(reference_loading_mg_cm2)
    return _a(gamma_c_N_mm) * np.power(np.maximum(ratio, 1e-9), _a(loading_exp))


def calendered_porosity(
    porosity_dry: ArrayLike, min_porosity: ArrayLike, line_load_N_mm: ArrayLike, gamma_c_N_mm: ArrayLike
) -> FloatArray:
    """Eq. 15 (Heckel-type, Meyer et al. 2017): the porosity falls from the dried one towards eps_min.

    A dried coating already denser than eps_min (the drying meta-model far outside its calibration, wet loadings
    well above 35 mg/cm2) is not loosened by the rolls: eq. 15 read literally would raise its porosity towards eps_min,
    so the calendered porosity is never above the dried one."""
    eps_min, eps_dry = _a(min_porosity), _a(porosity_dry)
    return np.minimum(eps_dry, eps_min + (eps_dry - eps_min) * np.exp(-_a(line_load_N_mm) / _a(gamma_c_N_mm)))


def solid_volume_fraction(
    porosity: ArrayLike, w_i: ArrayLike, rho_i_g_cm3: ArrayLike, specific_volume_cm3_g: ArrayLike
) -> FloatArray:
    """Eq. 16: each solid's share of the non-pore volume."""
    return (1.0 - _a(porosity)) * (_a(w_i) / _a(rho_i_g_cm3)) / _a(specific_volume_cm3_g)


def solvent_evaporated_g_m2(wet_loading_mg_cm2: ArrayLike, dry_loading_mg_cm2: ArrayLike) -> FloatArray:
    """Solvent the dryer must remove per coated area: drives drying energy in the cost model."""
    return (_a(wet_loading_mg_cm2) - _a(dry_loading_mg_cm2)) * 10.0


def post_drying_moisture_ppm(
    moisture_ppm: ArrayLike,
    oven_temperature_C: ArrayLike,
    duration_h: ArrayLike,
    equilibrium_ppm: ArrayLike = 150.0,
    rate_ref_per_h: ArrayLike = 1.0,
    reference_C: ArrayLike = 120.0,
    activation_energy_J_mol: ArrayLike = 40e3,
) -> FloatArray:
    """Residual moisture after vacuum post-drying: first-order desorption towards an equilibrium content.

    w(t) = w_eq + (w0 - w_eq) exp(-k(T) t), k(T) = k_ref exp(-Ea/R (1/T - 1/T_ref)). Seed 004 (section on
    post-drying) names temperature, time and pressure as the drivers and sorption equilibrium as the model family but
    prints no coefficients; k_ref = 1 /h at 120 degC, Ea = 40 kJ/mol and w_eq = 150 ppm are order-of-magnitude
    assumptions of ours (a few hours at 120 degC bring an electrode to a few hundred ppm).
    """
    temperature_K = _a(oven_temperature_C) + 273.15
    reference_K = _a(reference_C) + 273.15
    k_per_h = _a(rate_ref_per_h) * np.exp(-_a(activation_energy_J_mol) / 8.314
                                          * (1.0 / temperature_K - 1.0 / reference_K))
    w_eq = _a(equilibrium_ppm)
    return w_eq + (_a(moisture_ppm) - w_eq) * np.exp(-k_per_h * _a(duration_h))


# --------------------------------------------------------------------------------------------------------------------
# The chain
# --------------------------------------------------------------------------------------------------------------------


def resolve_inputs(inputs: Mapping[str, Any] | None = None, electrode: str | None = None) -> dict[str, FloatArray]:
    """Fill omitted inputs from the electrode's parameter set and reject unknown keys (typos must not pass silently)."""
    given = dict(inputs or {})
    electrode = str(given.pop("electrode", electrode or "cathode"))
    if electrode not in PARAMETER_SETS:
        raise ValueError(f"unknown electrode {electrode!r}; expected one of {sorted(PARAMETER_SETS)}")
    unknown = sorted(set(given) - set(INPUT_NAMES))
    if unknown:
        raise ValueError(f"unknown input(s) {unknown}; valid inputs: {list(INPUT_NAMES)}")
    defaults = asdict(PARAMETER_SETS[electrode])
    resolved: dict[str, FloatArray] = {}
    for name in INPUT_NAMES:
        value = _a(given.get(name, defaults[name]))
        if not np.all(np.isfinite(value)):
            raise ValueError(f"input {name!r} must be finite, got {value!r}")
        resolved[name] = value
    _check_physical(resolved)
    return resolved


def _check_physical(p: Mapping[str, FloatArray]) -> None:
    fractions = p["w_active"] + p["w_conductive"] + p["w_binder"]
    if np.any(np.abs(fractions - 1.0) > 1e-3):
        raise ValueError("mass fractions w_active + w_conductive + w_binder must sum to 1 (within 1e-3)")
    if np.any((p["solid_content"] <= 0) | (p["solid_content"] >= 1)):
        raise ValueError("solid_content must lie strictly between 0 and 1")
    for name in ("pump_flow_rate_cm3_h", "web_speed_m_min", "coating_width_mm", "compaction_resistance_ref_N_mm"):
        if np.any(p[name] <= 0):
            raise ValueError(f"{name} must be positive")
    if np.any(p["line_load_N_mm"] < 0):
        raise ValueError("line_load_N_mm must not be negative")
    if np.any((p["min_porosity"] < 0) | (p["min_porosity"] >= 1)):
        raise ValueError("min_porosity must lie in [0, 1)")


def run_chain(inputs: Mapping[str, Any] | None = None,
              electrode: str | None = None) -> dict[str, dict[str, FloatArray]]:
    """Evaluate every step; returns {step: {structure_parameter_with_unit: array}}."""
    p = resolve_inputs(inputs, electrode)
    v_s = solids_specific_volume_cm3_g(
        p["w_active"], p["w_conductive"], p["w_binder"],
        p["rho_active_g_cm3"], p["rho_conductive_g_cm3"], p["rho_binder_g_cm3"],
    )
    rho_solids = solids_density_g_cm3(v_s)
    rho_slurry = slurry_density_g_cm3(v_s, p["solid_content"], p["rho_solvent_g_cm3"])

    h_wet = wet_film_thickness_um(p["pump_flow_rate_cm3_h"], p["web_speed_m_min"], p["coating_width_mm"])
    m_wet = wet_mass_loading_mg_cm2(rho_slurry, h_wet)

    m_dry = dry_mass_loading_mg_cm2(m_wet, p["solid_content"])
    eps_dry = dry_porosity(
        m_wet, p["dry_porosity_ref"], p["dry_porosity_ref_wet_loading_mg_cm2"], p["dry_porosity_exp_per_mg_cm2"]
    )
    h_dry = coating_thickness_um(m_dry, rho_solids, eps_dry)
    rho_dry = coating_density_g_cm3(m_dry, h_dry)

    gamma_c = compaction_resistance_N_mm(
        p["compaction_resistance_ref_N_mm"], p["roll_temperature_C"], p["roll_temperature_ref_C"],
        p["compaction_resistance_temp_coeff_per_K"],
    )
    eps_cal = calendered_porosity(eps_dry, p["min_porosity"], p["line_load_N_mm"], gamma_c)
    h_cal = coating_thickness_um(m_dry, rho_solids, eps_cal)
    rho_cal = coating_density_g_cm3(m_dry, h_cal)
    x_am = solid_volume_fraction(eps_cal, p["w_active"], p["rho_active_g_cm3"], v_s)
    x_ca = solid_volume_fraction(eps_cal, p["w_conductive"], p["rho_conductive_g_cm3"], v_s)
    x_pb = solid_volume_fraction(eps_cal, p["w_binder"], p["rho_binder_g_cm3"], v_s)
    areal_capacity = m_dry * p["w_active"] * p["specific_capacity_mAh_g"] * 1e-3

    return {
        "mixing": {"solids_density_g_cm3": rho_solids},
        "dispersion": {"slurry_density_g_cm3": rho_slurry},
        "coating": {"wet_film_thickness_um": h_wet, "wet_mass_loading_mg_cm2": m_wet},
        "drying": {
            "dry_mass_loading_mg_cm2": m_dry,
            "dry_porosity": eps_dry,
            "dry_film_thickness_um": h_dry,
            "dry_coating_density_g_cm3": rho_dry,
            "solvent_evaporated_g_m2": solvent_evaporated_g_m2(m_wet, m_dry),
        },
        "calendering": {
            "compaction_resistance_N_mm": gamma_c,
            "calendered_porosity": eps_cal,
            "calendered_thickness_um": h_cal,
            "calendered_density_g_cm3": rho_cal,
            "active_volume_fraction": x_am,
            "conductive_volume_fraction": x_ca,
            "binder_volume_fraction": x_pb,
            "areal_capacity_mAh_cm2": areal_capacity,
        },
    }


def flatten(result: Mapping[str, Mapping[str, FloatArray]]) -> dict[str, FloatArray]:
    """{step.name: array}: handy for surrogates and tables."""
    return {f"{step}.{name}": value for step, outputs in result.items() for name, value in outputs.items()}


def _jsonable(value: FloatArray) -> float | list[Any]:
    return float(value) if value.ndim == 0 else value.tolist()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.process_chain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", metavar="FILE", default=None,
                        help="JSON object of inputs ('-' for stdin); omitted inputs take the electrode defaults")
    parser.add_argument("--electrode", choices=sorted(PARAMETER_SETS), default=None)
    parser.add_argument("--list-inputs", action="store_true", help="print the inputs and their defaults and exit")
    args = parser.parse_args(argv)
    if args.list_inputs:
        print(json.dumps({k: asdict(v) for k, v in PARAMETER_SETS.items()}, indent=2))
        return 0
    inputs: dict[str, Any] = {}
    if args.json is not None:
        text = sys.stdin.read() if args.json == "-" else open(args.json, encoding="utf-8").read()
        try:
            inputs = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            print(f"error: input is not valid JSON: {exc}", file=sys.stderr)
            return 2
        if not isinstance(inputs, dict):
            print("error: input must be a JSON object of {input_name: value}", file=sys.stderr)
            return 2
    try:
        result = run_chain(inputs, args.electrode)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    electrode = str(inputs.get("electrode", args.electrode or "cathode"))
    out = {"electrode": electrode, **{s: {k: _jsonable(v) for k, v in o.items()} for s, o in result.items()}}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
