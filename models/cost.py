"""Bottom-up cost per good cell (seed 000, "Modeling Economics"), vectorised.

C_cell = materials + processing + utilities + labour + depreciation  (seed 000)

- materials: component masses / areas of the reference pouch x prices, each divided by its BatPaC-style step yield
  (scrap) and by the cell yield Y (material is spent on every *attempted* cell, seed 000);
- processing: consumables + maintenance as a fraction of equipment capital per year;
- utilities: electrode drying energy from ``solvent_evaporated_g_m2`` (process chain) x specific drying energy of the
  solvent, dry-room dehumidification power that doubles every ``dew_point_doubling_K`` the dew point falls below the
  reference, formation energy (charge/discharge cycles at cycler efficiency), and the stations' base load;
- labour: operators per unit and shift x shifts x hours x wage;
- depreciation: capital x capital recovery factor CRF = r (1 + r)^n / ((1 + r)^n - 1);
- annual fixed costs are divided by good cells per year = T_line x OEE x hours x Y with the bottleneck
  T_line = min_i T_i over stations (parallel units, batch sizes, formation channels; seed 000).
OEE here is availability x performance; the quality factor is the yield Y (kept separate so it is not counted twice).
$/kWh uses the C/3 energy; LCOS = C_cell / (eta_rt x E_u x N_cyc x mean retention) (seed 000, with O&M and residual
value set to 0 and 0.9 mean capacity retention between 100 % and 80 %).

Prices: Argonne "Estimated Cost of EV Batteries 2019-2024" (Knehr, Kubal, Ahmed 2024, BatPaC 5.1) as transcribed in
research/models.md 3.1 [secondary]: NMC811 22 $/kg, graphite 9.50 $/kg, electrolyte 14 $/L, separator 1.00 $/m2,
Al foil 0.40 $/m2, Cu foil 1.20 $/m2, PVDF 15 $/kg, NMP 3.10 $/kg. Step yields: BatPaC-style defaults in
BattModels/BatteryCost (research/models.md 3.2). Carbon black, CMC/SBR, pouch+tabs, energy price and every plant
number are our assumptions (marked ``assumption``); plant parameters are data in ``PILOT_LINE`` and ``GIGAFACTORY``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Prices:
    cathode_active_usd_kg: float = 22.0  # NMC811 2024, ANL/BatPaC 5.1 (also used for the ProZell NMC)
    graphite_usd_kg: float = 9.50
    carbon_black_usd_kg: float = 7.0  # assumption
    pvdf_usd_kg: float = 15.0
    cmc_sbr_usd_kg: float = 8.0  # assumption
    nmp_usd_kg: float = 3.10
    nmp_recovery: float = 0.995  # NMP is condensed and recycled in production lines (assumption, BatPaC-style)
    electrolyte_usd_L: float = 14.0
    separator_usd_m2: float = 1.00
    al_foil_usd_m2: float = 0.40
    cu_foil_usd_m2: float = 1.20
    pouch_and_tabs_usd_cell: float = 0.30  # assumption: laminate ~2 $/m2 + tabs with sealant
    electricity_usd_kWh: float = 0.10  # assumption, industrial tariff


@dataclass(frozen=True)
class StepYields:
    """Material utilisation per step (BatPaC-style defaults, BattModels/BatteryCost)."""

    electrode: float = 0.922
    current_collector: float = 0.902
    separator: float = 0.98
    electrolyte: float = 0.94


@dataclass(frozen=True)
class Station:
    """A production step. ``kind`` says how its rate is computed (cells/h per unit):

    area: ``rate`` = usable fraction of the coated web; cells/h = web m2/h x rate / coated face m2 per cell
    calender: ``rate`` = web speed m/min of the calender, width = the coater's
    batch: ``rate`` = batch size in cells, ``hours`` = batch time
    cycle: ``rate`` = seconds per cell
    channels: ``rate`` = cells in parallel per unit, ``hours`` = process time (formation, ageing)
    slurry: ``rate`` = batch volume L, ``hours`` = batch time (cells per batch from slurry volume per cell)
    """

    name: str
    kind: str
    rate: float
    units: int
    capex_usd_per_unit: float
    operators_per_unit_shift: float
    power_kW_per_unit: float  # base load while running (process heat of drying and formation is counted apart)
    hours: float = 1.0
    electrode: str = ""  # "cathode" / "anode" for electrode-specific stations


@dataclass(frozen=True)
class Plant:
    name: str
    stations: tuple[Station, ...]
    operating_hours_per_year: float
    shifts: int
    shift_hours: float
    days_per_year: float
    labour_usd_h: float
    dry_room_m2: float
    dry_room_capex_usd_m2: float
    dry_room_kW_per_m2_ref: float  # dehumidification + HVAC at the reference dew point
    dry_room_dew_point_ref_C: float
    dew_point_doubling_K: float  # power doubles for every this many K the dew point falls
    building_m2: float
    building_capex_usd_m2: float
    equipment_life_years: float
    building_life_years: float
    discount_rate: float
    maintenance_fraction_per_year: float
    drying_kWh_per_kg: Mapping[str, float] = field(default_factory=lambda: {"cathode": 10.0, "anode": 2.0})
    formation_cycles: float = 1.5
    cycler_efficiency: float = 0.85
    source: str = ""


def _st(*args: object, **kw: object) -> Station:
    return Station(*args, **kw)  # type: ignore[arg-type]


# A pilot line sized around one 125 mm slot-die coater per electrode (seed 001 Table A1 geometry): ~55 cells/h,
# the coaters being the bottleneck over the design space.
# Capital figures are assumptions of machine-builder order of magnitude (research/models.md 3.2 has no pilot data).
PILOT_LINE = Plant(
    name="pilot",
    stations=(
        _st("mixing_cathode", "slurry", 30.0, 1, 300e3, 0.5, 15.0, hours=2.0, electrode="cathode"),
        _st("mixing_anode", "slurry", 30.0, 1, 250e3, 0.5, 15.0, hours=2.0, electrode="anode"),
        _st("coating_drying_cathode", "area", 0.9, 1, 2.5e6, 1.0, 40.0, electrode="cathode"),
        _st("coating_drying_anode", "area", 0.9, 1, 2.0e6, 1.0, 30.0, electrode="anode"),
        _st("calendering", "calender", 5.0, 1, 1.0e6, 1.0, 40.0),
        _st("slitting", "cycle", 20.0, 1, 0.3e6, 0.5, 5.0),
        _st("vacuum_drying", "batch", 1200.0, 1, 0.2e6, 0.25, 20.0, hours=12.0),
        _st("stacking", "cycle", 92.0, 2, 0.8e6, 0.5, 10.0),
        _st("tab_welding_packaging", "cycle", 60.0, 2, 1.0e6, 0.5, 15.0),
        _st("filling_sealing", "cycle", 90.0, 2, 0.4e6, 0.5, 10.0),
        _st("formation", "channels", 1536.0, 1, 1536 * 1.5e3, 1.0, 10.0, hours=20.0),
        _st("ageing", "channels", 40000.0, 1, 0.5e6, 0.5, 5.0, hours=14 * 24.0),
        _st("end_of_line_test", "cycle", 45.0, 1, 0.3e6, 0.5, 5.0),
    ),
    operating_hours_per_year=3680.0,  # 2 shifts x 8 h x 230 days
    shifts=2,
    shift_hours=8.0,
    days_per_year=230.0,
    labour_usd_h=45.0,
    dry_room_m2=200.0,
    dry_room_capex_usd_m2=5000.0,
    dry_room_kW_per_m2_ref=0.3,
    dry_room_dew_point_ref_C=-40.0,
    dew_point_doubling_K=15.0,
    building_m2=1500.0,
    building_capex_usd_m2=3000.0,  # BatPaC-style 3000 $/m2 (research/models.md 3.2)
    equipment_life_years=10.0,
    building_life_years=20.0,
    discount_rate=0.08,
    maintenance_fraction_per_year=0.05,
    source="assumptions of this project; structure after seed 000 and BatPaC-style tables (research/models.md 3.2)",
)

# A gigafactory for the same cell: 80 m/min x 1.3 m coaters (pass these as web speed / width) and parallel units
# sized for ~68 000 cells/h of the double-sided PRODUCTION_POUCH (~8 GWh/yr), 3 shifts, 330 days. Capital ~ 50 M$/GWh
# of equipment incl. dry room (batterydesign.net ~36 M$/GWh equipment [weak], formation + ageing ~1/3 of it,
# research/models.md 3.2); labour 25 $/h.
GIGAFACTORY = Plant(
    name="gigafactory",
    stations=(
        _st("mixing_cathode", "slurry", 2000.0, 3, 4.0e6, 1.0, 150.0, hours=3.0, electrode="cathode"),
        _st("mixing_anode", "slurry", 2000.0, 3, 3.5e6, 1.0, 150.0, hours=3.0, electrode="anode"),
        _st("coating_drying_cathode", "area", 0.92, 3, 18e6, 2.0, 300.0, electrode="cathode"),
        _st("coating_drying_anode", "area", 0.92, 3, 15e6, 2.0, 200.0, electrode="anode"),
        _st("calendering", "calender", 80.0, 3, 5.0e6, 1.0, 300.0),
        _st("slitting", "cycle", 0.1, 3, 2.0e6, 1.0, 50.0),
        _st("vacuum_drying", "batch", 50000.0, 18, 1.0e6, 0.2, 100.0, hours=12.0),
        _st("stacking", "cycle", 1.2, 25, 2.0e6, 0.3, 30.0),
        _st("tab_welding_packaging", "cycle", 0.5, 10, 3.0e6, 0.3, 30.0),
        _st("filling_sealing", "cycle", 0.5, 10, 2.5e6, 0.3, 30.0),
        _st("formation", "channels", 10000.0, 150, 10000 * 50.0, 0.3, 20.0, hours=20.0),
        _st("ageing", "channels", 200000.0, 130, 0.3e6, 0.2, 2.0, hours=14 * 24.0),
        _st("end_of_line_test", "cycle", 0.5, 10, 1.0e6, 0.2, 10.0),
    ),
    operating_hours_per_year=7920.0,
    shifts=3,
    shift_hours=8.0,
    days_per_year=330.0,
    labour_usd_h=25.0,
    dry_room_m2=15000.0,
    dry_room_capex_usd_m2=3000.0,
    dry_room_kW_per_m2_ref=0.3,
    dry_room_dew_point_ref_C=-40.0,
    dew_point_doubling_K=15.0,
    building_m2=120000.0,
    building_capex_usd_m2=1500.0,
    equipment_life_years=10.0,
    building_life_years=20.0,
    discount_rate=0.08,
    maintenance_fraction_per_year=0.04,
    source="assumptions of this project, sized like BatPaC-style plants (research/models.md 3.1-3.2)",
)

PLANTS: dict[str, Plant] = {"pilot": PILOT_LINE, "gigafactory": GIGAFACTORY}
DEFAULT_PRICES = Prices()
DEFAULT_STEP_YIELDS = StepYields()


def capital_recovery_factor(rate: float, years: float) -> float:
    """CRF = r (1 + r)^n / ((1 + r)^n - 1): annuity that repays capital with interest (seed 000)."""
    if rate == 0:
        return 1.0 / years
    g = (1.0 + rate) ** years
    return rate * g / (g - 1.0)


def _a(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


@dataclass(frozen=True)
class CellBill:
    """Per-cell quantities the cost model needs (arrays allowed). Masses in g, areas in m2, energies in Wh."""

    cathode_coating_g: ArrayLike
    anode_coating_g: ArrayLike
    cathode_w_active: ArrayLike
    cathode_w_conductive: ArrayLike
    cathode_w_binder: ArrayLike
    anode_w_active: ArrayLike
    anode_w_conductive: ArrayLike
    anode_w_binder: ArrayLike
    cathode_solid_content: ArrayLike
    anode_solid_content: ArrayLike
    cathode_slurry_density_g_cm3: ArrayLike
    anode_slurry_density_g_cm3: ArrayLike
    cathode_solvent_evaporated_g_m2: ArrayLike
    anode_solvent_evaporated_g_m2: ArrayLike
    cathode_coated_m2: float
    anode_coated_m2: float
    electrolyte_cm3: ArrayLike
    separator_m2: float
    al_foil_m2: float
    cu_foil_m2: float
    energy_Wh: ArrayLike  # rated (C/3)


def station_rates_cells_h(
    plant: Plant,
    bill: CellBill,
    web_speed_m_min: Mapping[str, ArrayLike],
    coating_width_mm: Mapping[str, ArrayLike],
) -> dict[str, FloatArray]:
    """Rated throughput T_i of every station in cells/h (units x per-unit rate), before OEE."""
    rates: dict[str, FloatArray] = {}
    coated = {"cathode": bill.cathode_coated_m2, "anode": bill.anode_coated_m2}
    slurry_cm3 = {
        "cathode": _a(bill.cathode_coating_g) / _a(bill.cathode_solid_content) / _a(bill.cathode_slurry_density_g_cm3),
        "anode": _a(bill.anode_coating_g) / _a(bill.anode_solid_content) / _a(bill.anode_slurry_density_g_cm3),
    }
    web_m2_per_cell = 0.5 * (coated["cathode"] + coated["anode"])  # double-sided webs
    for s in plant.stations:
        if s.kind == "area":
            web_m2_h = _a(web_speed_m_min[s.electrode]) * 60.0 * _a(coating_width_mm[s.electrode]) * 1e-3
            per_unit = web_m2_h * s.rate / coated[s.electrode]
        elif s.kind == "calender":
            width_m = 0.5 * (_a(coating_width_mm["cathode"]) + _a(coating_width_mm["anode"])) * 1e-3
            per_unit = s.rate * 60.0 * width_m / web_m2_per_cell
        elif s.kind == "slurry":
            per_unit = s.rate * 1e3 / slurry_cm3[s.electrode] / s.hours
        elif s.kind == "batch":
            per_unit = np.asarray(s.rate / s.hours)
        elif s.kind == "cycle":
            per_unit = np.asarray(3600.0 / s.rate)
        elif s.kind == "channels":
            per_unit = np.asarray(s.rate / s.hours)
        else:
            raise ValueError(f"station {s.name}: unknown kind {s.kind!r}")
        rates[s.name] = s.units * _a(per_unit)
    return rates


def cell_cost(
    bill: CellBill,
    web_speed_m_min: Mapping[str, ArrayLike],
    coating_width_mm: Mapping[str, ArrayLike],
    cell_yield: ArrayLike,
    oee: ArrayLike,
    dew_point_C: ArrayLike,
    cycles_to_80: ArrayLike | None = None,
    round_trip_efficiency: float = 0.95,
    plant: Plant = PILOT_LINE,
    prices: Prices = DEFAULT_PRICES,
    step_yields: StepYields = DEFAULT_STEP_YIELDS,
) -> dict[str, FloatArray]:
    """Cost breakdown per good cell, $/kWh, LCOS, throughput and the bottleneck station."""
    y = _a(cell_yield)
    if np.any((y <= 0) | (y > 1)) or np.any((_a(oee) <= 0) | (_a(oee) > 1)):
        raise ValueError("cell_yield and oee must lie in (0, 1]")
    # --- materials per attempted cell ($)
    cg, ag = _a(bill.cathode_coating_g) * 1e-3, _a(bill.anode_coating_g) * 1e-3  # kg
    cathode_usd = cg * (_a(bill.cathode_w_active) * prices.cathode_active_usd_kg
                        + _a(bill.cathode_w_conductive) * prices.carbon_black_usd_kg
                        + _a(bill.cathode_w_binder) * prices.pvdf_usd_kg)
    anode_usd = ag * (_a(bill.anode_w_active) * prices.graphite_usd_kg
                      + _a(bill.anode_w_conductive) * prices.carbon_black_usd_kg
                      + _a(bill.anode_w_binder) * prices.cmc_sbr_usd_kg)
    nmp_kg = cg * (1.0 / _a(bill.cathode_solid_content) - 1.0)
    solvent_usd = nmp_kg * (1.0 - prices.nmp_recovery) * prices.nmp_usd_kg
    electrodes_usd = (cathode_usd + anode_usd + solvent_usd) / step_yields.electrode
    collectors_usd = ((bill.al_foil_m2 * prices.al_foil_usd_m2 + bill.cu_foil_m2 * prices.cu_foil_usd_m2)
                      / step_yields.current_collector)
    separator_usd = bill.separator_m2 * prices.separator_usd_m2 / step_yields.separator
    electrolyte_usd = _a(bill.electrolyte_cm3) * 1e-3 * prices.electrolyte_usd_L / step_yields.electrolyte
    materials_attempted = (electrodes_usd + collectors_usd + separator_usd + electrolyte_usd
                           + prices.pouch_and_tabs_usd_cell)
    # --- throughput
    rates = station_rates_cells_h(plant, bill, web_speed_m_min, coating_width_mm)
    names = list(rates)
    stacked = np.stack(np.broadcast_arrays(*[rates[n] for n in names]))
    t_line = stacked.min(axis=0)  # seed 000: T_line = min_i T_i
    bottleneck = stacked.argmin(axis=0)
    good_cells_year = t_line * _a(oee) * plant.operating_hours_per_year * y
    # --- capital, labour, fixed energy
    equipment = (sum(s.units * s.capex_usd_per_unit for s in plant.stations)
                 + plant.dry_room_m2 * plant.dry_room_capex_usd_m2)
    building = plant.building_m2 * plant.building_capex_usd_m2
    depreciation_year = (equipment * capital_recovery_factor(plant.discount_rate, plant.equipment_life_years)
                         + building * capital_recovery_factor(plant.discount_rate, plant.building_life_years))
    processing_year = equipment * plant.maintenance_fraction_per_year
    operators = sum(s.units * s.operators_per_unit_shift for s in plant.stations)
    labour_year = operators * plant.shifts * plant.shift_hours * plant.days_per_year * plant.labour_usd_h
    dry_room_kW = plant.dry_room_m2 * plant.dry_room_kW_per_m2_ref * 2.0 ** (
        (plant.dry_room_dew_point_ref_C - _a(dew_point_C)) / plant.dew_point_doubling_K)
    dry_room_kWh_year = dry_room_kW * 8760.0  # the dry room is held dry around the clock
    base_kWh_year = (sum(s.units * s.power_kW_per_unit for s in plant.stations) * plant.operating_hours_per_year
                     * _a(oee))
    # --- variable energy per attempted cell
    drying_kWh = (_a(bill.cathode_solvent_evaporated_g_m2) * bill.cathode_coated_m2 * plant.drying_kWh_per_kg["cathode"]
                  + _a(bill.anode_solvent_evaporated_g_m2) * bill.anode_coated_m2 * plant.drying_kWh_per_kg["anode"]
                  ) * 1e-3 / step_yields.electrode
    formation_kWh = plant.formation_cycles * _a(bill.energy_Wh) * 1e-3 / plant.cycler_efficiency
    utilities_cell = ((drying_kWh + formation_kWh) * prices.electricity_usd_kWh) / y + (
        (dry_room_kWh_year + base_kWh_year) * prices.electricity_usd_kWh) / good_cells_year
    materials = materials_attempted / y
    processing = processing_year / good_cells_year
    labour = labour_year / good_cells_year
    depreciation = depreciation_year / good_cells_year
    total = materials + processing + utilities_cell + labour + depreciation
    kwh = _a(bill.energy_Wh) * 1e-3
    out = {
        "materials_usd_per_cell": materials,
        "processing_usd_per_cell": processing,
        "utilities_usd_per_cell": utilities_cell,
        "labour_usd_per_cell": labour,
        "depreciation_usd_per_cell": depreciation,
        "cost_usd_per_cell": total,
        "cost_usd_per_kWh": total / kwh,
        "line_throughput_cells_h": t_line,
        "bottleneck_index": bottleneck.astype(np.float64),
        "good_cells_per_year": good_cells_year,
        "annual_GWh": good_cells_year * kwh * 1e-6,
        "drying_kWh_per_cell": drying_kWh,
        "dry_room_kWh_per_cell": dry_room_kWh_year / good_cells_year,
        "energy_kWh_per_kWh_cell": ((drying_kWh + formation_kWh) / y
                                    + (dry_room_kWh_year + base_kWh_year) / good_cells_year) / kwh,
        "capex_usd": np.full(np.shape(total), equipment + building),
    }
    if cycles_to_80 is not None:
        delivered_kWh = round_trip_efficiency * kwh * _a(cycles_to_80) * 0.9
        out["lcos_usd_per_kWh"] = total / delivered_kWh
    return out


def station_names(plant: Plant = PILOT_LINE) -> list[str]:
    return [s.name for s in plant.stations]


def with_overrides(plant: Plant, **changes: object) -> Plant:
    """A copy of a plant with some fields changed (e.g. ``dry_room_m2``) for what-if studies."""
    return replace(plant, **changes)  # type: ignore[arg-type]
