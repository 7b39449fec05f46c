"""Reference pouch-cell format: the passive components that turn two electrode coatings into a cell.

PyBaMM computes neither masses nor volumes (its "electrode density" is a thermal parameter, research/models.md 1.2),
so cell-level Wh/kg and Wh/L need this bill of components. The simulator builds cells in the same format, so a
cell predicted here and a cell "made" on the simulated line are the same object.

Format (stated once, used everywhere; the simulator's cell line builds exactly this):
- 20 cathode sheets and 21 anode sheets of 100 mm x 60 mm, single-sided as coated (a 60 mm slit coil cut every
  100 mm), on 15 um aluminium / 10 um copper foil => 20 facing cathode/anode pairs of 60 cm2 = 1200 cm2 of active
  area per cell; the 21st anode face is unpaired (counted in mass and electrolyte, not in capacity);
- separator: 20 um polyolefin, porosity 0.45, 104 mm x 64 mm, 41 layers;
- electrolyte: 1 M LiPF6 in carbonates, 1.25 g/cm3, fills all pores of coatings and separator with 10 % excess;
- pouch: aluminium laminate 153 um, 1.7 g/cm3, two faces of 116 mm x 76 mm (3 mm seals at the sides, 10 mm tab seal);
- tabs: aluminium (positive) and nickel-plated copper (negative), 1.2 g together.
Single-sided stacking wastes foil (Wh/kg is lower than a double-sided production cell); it is the pilot-line
format of this project. Every number is a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class PouchFormat:
    """Geometry and passive-component data of the reference pouch cell (units in the names)."""

    cathode_sheets: int = 20
    anode_sheets: int = 21
    unit_layers: int = 20
    cathode_length_mm: float = 100.0
    cathode_width_mm: float = 60.0
    anode_length_mm: float = 100.0
    anode_width_mm: float = 60.0
    anode_coated_faces: int = 21
    al_foil_thickness_um: float = 15.0
    cu_foil_thickness_um: float = 10.0
    al_density_g_cm3: float = 2.70
    cu_density_g_cm3: float = 8.96
    separator_thickness_um: float = 20.0
    separator_porosity: float = 0.45
    separator_density_g_cm3: float = 0.95  # polyolefin skeleton
    separator_length_mm: float = 104.0
    separator_width_mm: float = 64.0
    separator_layers: int = 41
    electrolyte_density_g_cm3: float = 1.25
    electrolyte_excess: float = 1.10
    pouch_thickness_um: float = 153.0
    pouch_density_g_cm3: float = 1.7
    pouch_length_mm: float = 116.0
    pouch_width_mm: float = 76.0
    tabs_mass_g: float = 1.2
    # Outer body used for Wh/L: the stack footprint plus seals; thickness = stack + 2 pouch walls.
    body_length_mm: float = 116.0
    body_width_mm: float = 70.0

    @property
    def cathode_area_cm2(self) -> float:
        """Coated cathode area facing an anode: the electrochemically active area of the cell."""
        return self.unit_layers * self.cathode_length_mm * self.cathode_width_mm / 100.0

    @property
    def anode_area_cm2(self) -> float:
        return self.anode_coated_faces * self.anode_length_mm * self.anode_width_mm / 100.0

    @property
    def unit_layer_area_m2(self) -> float:
        return self.cathode_length_mm * self.cathode_width_mm * 1e-6


REFERENCE_POUCH = PouchFormat()

# What a production plant would build from the same electrodes: double-sided coating, 20 cathode sheets and 21 anode
# sheets (19 double-sided + 2 outer single-sided, 1 mm overhang), 40 facing pairs = 2400 cm2, 16 um separator.
# Used for the gigafactory cost figure only: single-sided pilot stacks waste foil, separator and pouch per kWh.
PRODUCTION_POUCH = PouchFormat(unit_layers=40, anode_length_mm=102.0, anode_width_mm=62.0, anode_coated_faces=40,
                               separator_thickness_um=16.0, separator_layers=42)


def _a(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def cell_mass_and_volume(
    cathode_loading_mg_cm2: ArrayLike,
    cathode_thickness_um: ArrayLike,
    cathode_porosity: ArrayLike,
    anode_loading_mg_cm2: ArrayLike,
    anode_thickness_um: ArrayLike,
    anode_porosity: ArrayLike,
    fmt: PouchFormat = REFERENCE_POUCH,
) -> dict[str, FloatArray]:
    """Component masses (g) and cell volume (cm3) of the reference pouch: the denominators of Wh/kg and Wh/L.

    Mass is conserved by construction: the cell mass is the sum of the listed components and nothing else.
    """
    a_c = fmt.cathode_area_cm2
    a_a = fmt.anode_area_cm2
    cathode_coating_g = _a(cathode_loading_mg_cm2) * 1e-3 * a_c
    anode_coating_g = _a(anode_loading_mg_cm2) * 1e-3 * a_a
    cathode_sheet_cm2 = fmt.cathode_length_mm * fmt.cathode_width_mm / 100.0
    anode_sheet_cm2 = fmt.anode_length_mm * fmt.anode_width_mm / 100.0
    al_g = fmt.cathode_sheets * cathode_sheet_cm2 * fmt.al_foil_thickness_um * 1e-4 * fmt.al_density_g_cm3
    cu_g = fmt.anode_sheets * anode_sheet_cm2 * fmt.cu_foil_thickness_um * 1e-4 * fmt.cu_density_g_cm3
    sep_cm2 = fmt.separator_layers * fmt.separator_length_mm * fmt.separator_width_mm / 100.0
    sep_cm3 = sep_cm2 * fmt.separator_thickness_um * 1e-4
    separator_g = sep_cm3 * (1.0 - fmt.separator_porosity) * fmt.separator_density_g_cm3
    pore_cm3 = (
        _a(cathode_porosity) * _a(cathode_thickness_um) * 1e-4 * a_c
        + _a(anode_porosity) * _a(anode_thickness_um) * 1e-4 * a_a
        + fmt.separator_porosity * sep_cm3
    )
    electrolyte_g = pore_cm3 * fmt.electrolyte_excess * fmt.electrolyte_density_g_cm3
    electrolyte_cm3 = pore_cm3 * fmt.electrolyte_excess
    pouch_g = (2 * fmt.pouch_length_mm * fmt.pouch_width_mm / 100.0 * fmt.pouch_thickness_um * 1e-4
               * fmt.pouch_density_g_cm3)
    stack_thickness_um = (
        fmt.unit_layers * _a(cathode_thickness_um) + fmt.anode_coated_faces * _a(anode_thickness_um)
        + fmt.cathode_sheets * fmt.al_foil_thickness_um
        + fmt.anode_sheets * fmt.cu_foil_thickness_um
        + fmt.separator_layers * fmt.separator_thickness_um
    )
    cell_thickness_mm = stack_thickness_um * 1e-3 + 2 * fmt.pouch_thickness_um * 1e-3
    volume_cm3 = fmt.body_length_mm * fmt.body_width_mm * cell_thickness_mm * 1e-3
    total_g = (
        cathode_coating_g + anode_coating_g + al_g + cu_g + separator_g + electrolyte_g + pouch_g + fmt.tabs_mass_g
    )
    shape = np.broadcast(total_g, volume_cm3).shape
    return {
        "cathode_coating_g": np.broadcast_to(cathode_coating_g, shape),
        "anode_coating_g": np.broadcast_to(anode_coating_g, shape),
        "al_foil_g": np.full(shape, al_g),
        "cu_foil_g": np.full(shape, cu_g),
        "separator_g": np.full(shape, separator_g),
        "separator_m2": np.full(shape, sep_cm2 * 1e-4),
        "al_foil_m2": np.full(shape, fmt.cathode_sheets * cathode_sheet_cm2 * 1e-4),
        "cu_foil_m2": np.full(shape, fmt.anode_sheets * anode_sheet_cm2 * 1e-4),
        "electrolyte_g": np.broadcast_to(electrolyte_g, shape),
        "electrolyte_cm3": np.broadcast_to(electrolyte_cm3, shape),
        "pouch_and_tabs_g": np.full(shape, pouch_g + fmt.tabs_mass_g),
        "cell_mass_g": np.broadcast_to(total_g, shape),
        "cell_thickness_mm": np.broadcast_to(cell_thickness_mm, shape),
        "cell_volume_cm3": np.broadcast_to(volume_cm3, shape),
    }
