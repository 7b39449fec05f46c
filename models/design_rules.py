"""Seed 000 design rules: transport limits on thickness and particle size, N/P ratio, usable areal capacity.

These are order-of-magnitude screens (diffusion time <= discharge time / 5), not performance predictions: the DFN
in ``models.cell`` is the judge. They are exposed as feasibility flags so the twin can say *why* a setpoint is bad.
Diffusivities are Chen2020's (the cell model's set) at 1 M, 25 degC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class TransportProperties:
    electrolyte_diffusivity_m2_s: float = 1.77e-10  # Chen2020 D_e(c_e = 1000 mol/m3) (Nyman 2008 fit)
    bruggeman_exponent: float = 1.5  # seed 000: b ~ 1.5
    cathode_solid_diffusivity_m2_s: float = 4.0e-15  # Chen2020 positive particle diffusivity
    anode_solid_diffusivity_m2_s: float = 3.3e-14  # Chen2020 negative particle diffusivity
    time_margin: float = 5.0  # seed 000: tau <= t_C / 5
    np_min: float = 1.05  # seed 000: N/P "usually greater than 1 (e.g. 1.05 to 1.2)"
    np_max: float = 1.2


DEFAULT_TRANSPORT = TransportProperties()


def _a(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def max_thickness_um(c_rate: ArrayLike, porosity: ArrayLike, p: TransportProperties = DEFAULT_TRANSPORT) -> FloatArray:
    """Seed 000: L <= sqrt((t_C / 5) D_e eps^b), t_C = 3600 / C."""
    t_c = 3600.0 / _a(c_rate)
    return np.sqrt(t_c / p.time_margin * p.electrolyte_diffusivity_m2_s * _a(porosity) ** p.bruggeman_exponent) * 1e6


def max_particle_radius_um(c_rate: ArrayLike, solid_diffusivity_m2_s: ArrayLike,
                           p: TransportProperties = DEFAULT_TRANSPORT) -> FloatArray:
    """Seed 000: d_part <= 2 sqrt((t_C / 5) D_s), returned as a radius (d / 2)."""
    t_c = 3600.0 / _a(c_rate)
    return np.sqrt(t_c / p.time_margin * _a(solid_diffusivity_m2_s)) * 1e6


def usable_areal_capacity_mAh_cm2(cathode_mAh_cm2: ArrayLike, target_mAh_cm2: ArrayLike | None = None) -> FloatArray:
    """Seed 000: Q_use = min(Q_A, Q_A,p)."""
    q_p = _a(cathode_mAh_cm2)
    return q_p if target_mAh_cm2 is None else np.minimum(_a(target_mAh_cm2), q_p)


def feasibility(
    c_rate: ArrayLike,
    cathode_thickness_um: ArrayLike,
    cathode_porosity: ArrayLike,
    cathode_particle_radius_um: ArrayLike,
    anode_thickness_um: ArrayLike,
    anode_porosity: ArrayLike,
    anode_particle_radius_um: ArrayLike,
    cathode_areal_capacity_mAh_cm2: ArrayLike,
    anode_areal_capacity_mAh_cm2: ArrayLike,
    p: TransportProperties = DEFAULT_TRANSPORT,
) -> dict[str, FloatArray | BoolArray]:
    """Limits and flags for a target C-rate; ``feasible`` is the conjunction of all flags."""
    np_ratio = _a(anode_areal_capacity_mAh_cm2) / _a(cathode_areal_capacity_mAh_cm2)
    lim = {
        "cathode_max_thickness_um": max_thickness_um(c_rate, cathode_porosity, p),
        "anode_max_thickness_um": max_thickness_um(c_rate, anode_porosity, p),
        "cathode_max_particle_radius_um": max_particle_radius_um(c_rate, p.cathode_solid_diffusivity_m2_s, p),
        "anode_max_particle_radius_um": max_particle_radius_um(c_rate, p.anode_solid_diffusivity_m2_s, p),
    }
    flags = {
        "cathode_thickness_ok": _a(cathode_thickness_um) <= lim["cathode_max_thickness_um"],
        "anode_thickness_ok": _a(anode_thickness_um) <= lim["anode_max_thickness_um"],
        "cathode_particle_ok": _a(cathode_particle_radius_um) <= lim["cathode_max_particle_radius_um"],
        "anode_particle_ok": _a(anode_particle_radius_um) <= lim["anode_max_particle_radius_um"],
        "np_ratio_ok": (np_ratio >= p.np_min),
        "np_ratio_in_band": (np_ratio >= p.np_min) & (np_ratio <= p.np_max),
    }
    feasible = np.logical_and.reduce([flags[k] for k in flags if k != "np_ratio_in_band"])
    return {
        **lim,
        **flags,
        "np_ratio": np_ratio,
        "usable_areal_capacity_mAh_cm2": usable_areal_capacity_mAh_cm2(cathode_areal_capacity_mAh_cm2),
        "feasible": feasible,
    }
