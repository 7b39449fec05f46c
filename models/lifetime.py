"""Mechanism-based cycle-life estimate (seed 000, "Modeling Degradation and Lifetime").

Two mechanisms, both scaled from a calibrated reference design instead of fitted to this cell:

1. SEI growth (loss of lithium inventory): diffusion-limited, so the lost fraction grows with sqrt(time); its rate is
   proportional to the anode's electrochemically active surface area per unit of cell capacity (seed 000: more
   surface -> faster SEI), with Arrhenius temperature dependence. Cell temperature = ambient + I^2 R x R_th (joule
   heat of the cycling current through the DFN's 10 s resistance), so high C-rates age the cell hotter.
2. Chemo-mechanical damage: diffusion-induced stress grows linearly with electrode thickness and the resulting
   resistance rise with its square (seed 000: Delta R ~ L^2). It is counted per cycle and scaled with C-rate (stress
   follows the concentration gradient, i.e. the current density); its capacity effect is the fraction of the window
   lost to the extra IR drop.

cycles_to_80 solves  a sqrt(N) + b N = 0.2  in closed form (vectorised).

Limits (honest): the two rate constants are calibrated so the reference design (seed 001 cathode at N/P 1.15, 1C,
25 degC) reaches 1500 full cycles with SEI 70 % / mechanics 30 % of the loss: typical of NMC/graphite, not measured
here. Absent: lithium plating (fast charge, cold), cathode dissolution, calendar ageing during rest, binder effects.
Treat the output as a *ranking* of designs, not a warranty figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
GAS_CONSTANT = 8.314462618


@dataclass(frozen=True)
class AgeingParameters:
    reference_cycles_to_80: float = 1500.0
    reference_sei_share: float = 0.7
    sei_activation_energy_J_mol: float = 55_000.0  # SEI growth, 50-60 kJ/mol typical (e.g. Waldmann et al. 2014)
    reference_temperature_C: float = 25.0
    ambient_temperature_C: float = 25.0
    thermal_resistance_K_W: float = 3.0  # pouch cell to ambient, natural convection with fixture (assumption)
    # reference design (defaults of models.process_chain, N/P 1.15, 1C)
    reference_anode_surface_m2_per_Ah: float = 0.0
    reference_cathode_thickness_um: float = 48.4
    reference_anode_thickness_um: float = 52.2
    reference_c_rate: float = 1.0
    hours_per_cycle_at_1C: float = 2.0  # full charge + full discharge at the cycling rate


DEFAULT_AGEING = AgeingParameters()


def _a(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def anode_surface_m2_per_Ah(
    anode_active_volume_fraction: ArrayLike,
    anode_thickness_um: ArrayLike,
    anode_particle_radius_um: ArrayLike,
    cathode_areal_capacity_mAh_cm2: ArrayLike,
) -> FloatArray:
    """Active surface a = 3 eps_AM / r (spheres) times thickness, per Ah of (cathode-limited) capacity."""
    a_m2_per_m2 = (3.0 * _a(anode_active_volume_fraction) / (_a(anode_particle_radius_um) * 1e-6)
                   * _a(anode_thickness_um) * 1e-6)
    ah_per_m2 = _a(cathode_areal_capacity_mAh_cm2) * 10.0  # mAh/cm2 -> Ah/m2
    return a_m2_per_m2 / ah_per_m2


# Reference anode: ANODE_GRAPHITE defaults of models.process_chain (computed once, documented value).
_REF_ANODE_SURFACE = float(anode_surface_m2_per_Ah(0.602, 52.16, 8.0, 2.153))


def cell_temperature_C(c_rate: ArrayLike, capacity_Ah: ArrayLike, resistance_ohm: ArrayLike,
                       p: AgeingParameters = DEFAULT_AGEING) -> FloatArray:
    current = _a(c_rate) * _a(capacity_Ah)
    return p.ambient_temperature_C + current**2 * _a(resistance_ohm) * p.thermal_resistance_K_W


def cycles_to_80(
    c_rate: ArrayLike,
    anode_surface_per_Ah: ArrayLike,
    cathode_thickness_um: ArrayLike,
    anode_thickness_um: ArrayLike,
    temperature_C: ArrayLike,
    p: AgeingParameters = DEFAULT_AGEING,
) -> dict[str, FloatArray]:
    """Full cycles until 80 % capacity, and each mechanism's loss per cycle at the reference point."""
    ref_surface = p.reference_anode_surface_m2_per_Ah or _REF_ANODE_SURFACE
    n_ref = p.reference_cycles_to_80
    # calibrate: a_ref sqrt(N_ref) = 0.2 share_sei ; b_ref N_ref = 0.2 (1 - share_sei)
    a_ref = 0.2 * p.reference_sei_share / np.sqrt(n_ref * p.hours_per_cycle_at_1C / p.reference_c_rate)
    b_ref = 0.2 * (1.0 - p.reference_sei_share) / n_ref
    t_k = _a(temperature_C) + 273.15
    arrhenius = np.exp(-p.sei_activation_energy_J_mol / GAS_CONSTANT
                       * (1.0 / t_k - 1.0 / (p.reference_temperature_C + 273.15)))
    # SEI: loss = a_t sqrt(time_h); time per cycle shrinks with C-rate
    a_t = a_ref * (_a(anode_surface_per_Ah) / ref_surface) * arrhenius
    hours_per_cycle = p.hours_per_cycle_at_1C / _a(c_rate)
    a = a_t * np.sqrt(hours_per_cycle)  # loss = a sqrt(N)
    # mechanics: Delta R ~ L^2 (seed 000), driven by current density ~ C-rate; thickness-weighted over both electrodes
    l2 = 0.5 * ((_a(cathode_thickness_um) / p.reference_cathode_thickness_um) ** 2
                + (_a(anode_thickness_um) / p.reference_anode_thickness_um) ** 2)
    b = b_ref * l2 * (_a(c_rate) / p.reference_c_rate)
    # a sqrt(N) + b N = 0.2  ->  sqrt(N) = (-a + sqrt(a^2 + 0.8 b)) / (2 b)
    root = (-a + np.sqrt(a**2 + 0.8 * b)) / (2.0 * b)
    n80 = root**2
    return {
        "cycles_to_80": n80,
        "sei_loss_share_at_eol": a * root / 0.2,
        "cell_temperature_C": _a(temperature_C),
    }
