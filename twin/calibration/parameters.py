"""The process-chain parameters the twin calibrates, their priors, and the chain evaluated with them.

Which parameters: those that differ between lines and recipes or drift with the line, and that the line's own gauges
see (issue 13): slurry solid content and the active material's density (together the slurry density, eq. 8-9), the
pump's delivery efficiency (volume at the die / volume the flow meter reports), the drying meta-model's porosity at
its reference loading, and the calender's compaction resistance with its mass-loading dependence
(gamma_c = gamma_c_ref * (m_dry / m_ref) ** k, ``models.process_chain.compaction_resistance_at_loading_N_mm``).

The filter works on transformed coordinates so a Gaussian stays physical: the natural log of each positive parameter
relative to its literature default (0 = default; 0.1 = 10 % above it), and k itself (it is 0 in the literature
chain and may take either sign). Priors are N(0, prior_std^2) in those coordinates: 10 % for the positive ones,
0.5 for k. Per roll the parameters may move (random walk) by ``walk_std``: slow drifts (pump wear, rolls heating up)
are followed, and old rolls are forgotten at that pace. A new slurry batch is a step, not a drift: the solid content
may then move by ``batch_std`` more (0.6 %, about twice the batch-to-batch spread of a pilot line's mixer), so the
filter follows the new batch within a roll or two instead of averaging it with the old one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from models import process_chain as pc


@dataclass(frozen=True)
class CalibratedParameter:
    name: str
    log: bool          # True: coordinate = ln(value / default); False: coordinate = value
    prior_std: float   # in the coordinate
    walk_std: float    # random-walk std per observed roll, in the coordinate
    unit: str
    description: str
    batch_std: float = 0.0  # extra step when the roll was coated from a slurry batch not seen before


PARAMETERS: tuple[CalibratedParameter, ...] = (
    CalibratedParameter("solid_content", True, 0.10, 0.003, "1",
                        "slurry solid content (mass fraction of solids)", batch_std=0.006),
    CalibratedParameter("rho_active_g_cm3", True, 0.10, 0.001, "g/cm3",
                        "density of the active material: with the solid content, the slurry and solids densities"),
    CalibratedParameter("pump_delivery_efficiency", True, 0.10, 0.003, "1",
                        "volume reaching the die / volume the pump's flow meter reports"),
    CalibratedParameter("dry_porosity_ref", True, 0.10, 0.002, "1",
                        "drying meta-model: dried porosity at the reference wet loading"),
    CalibratedParameter("compaction_resistance_ref_N_mm", True, 0.10, 0.003, "N/mm",
                        "calender compaction resistance gamma_c at the reference roll temperature and loading"),
    CalibratedParameter("compaction_resistance_loading_exp", False, 0.50, 0.01, "1",
                        "k in gamma_c = gamma_c_ref (m_dry / m_ref) ** k (0 in the literature chain)"),
)
NAMES: tuple[str, ...] = tuple(p.name for p in PARAMETERS)
# defaults the process chain has no field for
EXTRA_DEFAULTS: dict[str, float] = {"pump_delivery_efficiency": 1.0, "compaction_resistance_loading_exp": 0.0}


def defaults(electrode: str) -> dict[str, float]:
    """The literature values (process-chain parameter set) of the calibrated parameters: version 0."""
    return dict(_defaults(electrode))


@cache
def _defaults(electrode: str) -> dict[str, float]:
    base = pc.PARAMETER_SETS[electrode]
    return {p.name: float(EXTRA_DEFAULTS[p.name] if p.name in EXTRA_DEFAULTS else getattr(base, p.name))
            for p in PARAMETERS}


@cache
def reference_loading_mg_cm2(electrode: str) -> float:
    """m_ref of gamma_c's loading dependence: the electrode's nominal dry loading (as the simulator's plant)."""
    return float(pc.run_chain(electrode=electrode)["drying"]["dry_mass_loading_mg_cm2"])


def to_coords(electrode: str, values: Mapping[str, float]) -> np.ndarray:
    d = _defaults(electrode)
    return np.array([np.log(values[p.name] / d[p.name]) if p.log else values[p.name] for p in PARAMETERS])


def from_coords(electrode: str, theta: np.ndarray) -> dict[str, np.ndarray]:
    """Coordinates (..., n) -> {name: array(...)}: vectorised so the filter's sigma points go through in one call."""
    d = _defaults(electrode)
    theta = np.asarray(theta, dtype=float)
    return {p.name: (d[p.name] * np.exp(theta[..., i]) if p.log else theta[..., i])
            for i, p in enumerate(PARAMETERS)}


def evaluate(electrode: str, inputs: Mapping[str, Any], values: Mapping[str, Any],
             m_ref_mg_cm2: float | None = None) -> dict[str, np.ndarray]:
    """The process chain (``step.output`` names) at ``inputs`` with the calibrated ``values`` (arrays broadcast).

    ``inputs`` are what the line reports: the pump flow is the flow meter's reading (the delivery efficiency turns it
    into the flow at the die); an input the caller gives explicitly (e.g. a measured solid content) wins over the
    calibrated value of the same name.
    """
    x = {k: np.asarray(v, dtype=float) for k, v in inputs.items()}
    base = pc.PARAMETER_SETS[electrode]
    eta = np.asarray(values["pump_delivery_efficiency"], dtype=float)
    flow = x.get("pump_flow_rate_cm3_h", np.asarray(base.pump_flow_rate_cm3_h))
    x["pump_flow_rate_cm3_h"] = flow * eta
    for name in ("solid_content", "rho_active_g_cm3", "dry_porosity_ref"):
        if name not in inputs:
            x[name] = np.asarray(values[name], dtype=float)
    # gamma_c's loading dependence needs the dry loading first (eq. 8-12, cheap): then the chain in one call
    get = lambda n: x.get(n, np.asarray(getattr(base, n), dtype=float))  # noqa: E731
    v_s = pc.solids_specific_volume_cm3_g(get("w_active"), get("w_conductive"), get("w_binder"),
                                          get("rho_active_g_cm3"), get("rho_conductive_g_cm3"),
                                          get("rho_binder_g_cm3"))
    h_wet = pc.wet_film_thickness_um(x["pump_flow_rate_cm3_h"], get("web_speed_m_min"), get("coating_width_mm"))
    m_dry = pc.dry_mass_loading_mg_cm2(
        pc.wet_mass_loading_mg_cm2(pc.slurry_density_g_cm3(v_s, get("solid_content"), get("rho_solvent_g_cm3")),
                                   h_wet), get("solid_content"))
    m_ref = reference_loading_mg_cm2(electrode) if m_ref_mg_cm2 is None else m_ref_mg_cm2
    gamma_ref = x.get("compaction_resistance_ref_N_mm", np.asarray(values["compaction_resistance_ref_N_mm"]))
    x["compaction_resistance_ref_N_mm"] = pc.compaction_resistance_at_loading_N_mm(
        gamma_ref, m_dry, m_ref, np.asarray(values["compaction_resistance_loading_exp"], dtype=float))
    return pc.flatten(pc.run_chain(x, electrode))
