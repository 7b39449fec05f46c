"""Cell line: dry room, assembly (cutting, stacking, packaging), electrolyte filling and formation cyclers.

Reference pouch cell (docs/simulator.md): sheets of 60 mm (slit-coil width) x 100 mm along the web, single-sided as
coated, 20 cathode + 21 anode sheets per cell, so a cell takes 2.0 m of a cathode coil and 2.1 m of an anode coil. The
formation result follows from the structure of the very roll stretch the sheets were cut from (areal capacity x
area x 20 facing pairs), the residual moisture of the coils and the dry-room dew point, so quality links are real.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import models.process_chain as pc

from .dynamics import SIGMA, Noise
from .scenario import DriftConfig, LineConfig
from .spec import channel_name
from .trace import IdCounter, TraceLog, inp
from .web_lane import Coil, ElectrodeLane, lot_id

SHEET_LENGTH_M = 0.100
SHEET_AREA_CM2 = 6.0 * 10.0
CATHODE_SHEETS = 20
ANODE_SHEETS = 21
SEPARATOR_LAYERS = 41
SEPARATOR_THICKNESS_UM = 20.0
SEPARATOR_POROSITY = 0.45
ELECTROLYTE_DENSITY_G_CM3 = 1.25
ELECTROLYTE_EXCESS = 1.2
FIRST_CYCLE_EFFICIENCY = 0.88   # graphite SEI formation loss, typical 85-92 %
DCIR_REF_MOHM = 25.0            # at the nominal structure, assumption for this cell size
DEW_POINT_C = -45.0
DRY_ROOM_C = 21.0
TELEMETRY_SCHEMA = "pilotline.cycler.telemetry.v1"
RESULT_SCHEMA = "pilotline.cycler.result.v1"


def _nominal_structure(electrode: str) -> dict[str, float]:
    r = pc.flatten(pc.run_chain(electrode=electrode))
    return {k: float(v) for k, v in r.items()}


NOMINAL = {"Cathode": _nominal_structure("cathode"), "Anode": _nominal_structure("anode")}


@dataclass
class CellRecord:
    number: int
    cell_id: str
    stack_id: str
    cathode: dict[str, float]
    anode: dict[str, float]
    moisture_ppm: float
    dew_point_C: float
    ready_s: float = 0.0
    electrolyte_g: float = 0.0


def sheet_structure(lane: ElectrodeLane, coil: Coil, a: float, b: float) -> dict[str, float]:
    """Mean structure of the stretch [a, b] m of the coil's coated roll, from the plant's true profiles."""
    roll, p = coil.roll, lane.p
    m = roll.mean_over(roll.pos_m, roll.m_dry_mg_cm2, a, b)
    h = roll.mean_over(roll.cal_pos_m, roll.cal_thickness_um, a, b)
    eps = roll.mean_over(roll.cal_pos_m, roll.cal_porosity, a, b)
    return {"mass_loading_mg_cm2": m, "thickness_um": h, "porosity": eps,
            "areal_capacity_mAh_cm2": m * p.w_active * p.specific_capacity_mAh_g * 1e-3}


def cell_performance(c: dict[str, float], a: dict[str, float], moisture_ppm: float, dew_point_C: float
                     ) -> dict[str, float]:
    """Expected (noise-free) formation result of a cell with these sheets."""
    cap = CATHODE_SHEETS * SHEET_AREA_CM2 * min(c["areal_capacity_mAh_cm2"], a["areal_capacity_mAh_cm2"]) / 1000.0
    n_p = a["areal_capacity_mAh_cm2"] / c["areal_capacity_mAh_cm2"]
    ce = FIRST_CYCLE_EFFICIENCY - 0.03 * max(0.0, (moisture_ppm - 300.0) / 500.0) \
        - 0.01 * max(0.0, (dew_point_C + 40.0) / 10.0) - 0.2 * max(0.0, 1.0 - n_p)
    nc, na = NOMINAL["Cathode"], NOMINAL["Anode"]
    r = DCIR_REF_MOHM * 0.5 * (c["thickness_um"] / nc["calendering.calendered_thickness_um"]
                               * (nc["calendering.calendered_porosity"] / c["porosity"]) ** 1.5
                               + a["thickness_um"] / na["calendering.calendered_thickness_um"]
                               * (na["calendering.calendered_porosity"] / a["porosity"]) ** 1.5)
    return {"charge_capacity_Ah": cap, "coulombic_efficiency": ce, "discharge_capacity_Ah": cap * ce,
            "dcir_mOhm": r, "np_ratio": n_p}


def _nominal_sheets(lane: str) -> dict[str, float]:
    n = NOMINAL[lane]
    return {"mass_loading_mg_cm2": n["drying.dry_mass_loading_mg_cm2"],
            "thickness_um": n["calendering.calendered_thickness_um"],
            "porosity": n["calendering.calendered_porosity"],
            "areal_capacity_mAh_cm2": n["calendering.areal_capacity_mAh_cm2"]}


NOMINAL_CELL = cell_performance(_nominal_sheets("Cathode"), _nominal_sheets("Anode"), 200.0, DEW_POINT_C)


def electrolyte_mass_g(c: dict[str, float], a: dict[str, float]) -> float:
    pores_cm3 = (CATHODE_SHEETS * SHEET_AREA_CM2 * c["thickness_um"] * 1e-4 * c["porosity"]
                 + ANODE_SHEETS * SHEET_AREA_CM2 * a["thickness_um"] * 1e-4 * a["porosity"]
                 + SEPARATOR_LAYERS * SHEET_AREA_CM2 * SEPARATOR_THICKNESS_UM * 1e-4 * SEPARATOR_POROSITY)
    return pores_cm3 * ELECTROLYTE_DENSITY_G_CM3 * ELECTROLYTE_EXCESS


class CellLine:
    """Dry room + assembly + filling; hands filled cells to the formation."""

    def __init__(self, line: LineConfig, drift: DriftConfig, noise: Noise, ids: IdCounter, trace: TraceLog,
                 lanes: dict[str, ElectrodeLane]) -> None:
        self.line, self.drift, self.noise, self.ids, self.trace, self.lanes = line, drift, noise, ids, trace, lanes
        self.dew_point_C = DEW_POINT_C
        self.next_assembly_s = line.cell_interval_s
        self.filling: deque[CellRecord] = deque()
        self.filled: deque[CellRecord] = deque()
        self.stack_count = 0
        self.last: dict[str, str] = {}
        self.last_fill: tuple[str, float] | None = None
        self.need_m = {"Cathode": CATHODE_SHEETS * SHEET_LENGTH_M, "Anode": ANODE_SHEETS * SHEET_LENGTH_M}

    def step(self, dt_s: float, t_s: float) -> dict[str, Any]:
        n = self.noise
        self.dew_point_C += self.drift.dew_point_per_h * dt_s / 3600.0
        out: dict[str, Any] = {
            "DryRoom.DewPoint": n.abs(self.dew_point_C, SIGMA["DewPoint_K"]),
            "DryRoom.Temperature": n.abs(DRY_ROOM_C, SIGMA["temperature_K"]),
            "Assembly.StackCount": self.stack_count,
        }
        e_fill = n.abs(0.0, SIGMA["ElectrolyteMass_g"])
        if t_s >= self.next_assembly_s:
            self.next_assembly_s += self.line.cell_interval_s
            self._assemble(t_s)
        while self.filling and self.filling[0].ready_s <= t_s:
            self._fill(self.filling.popleft(), t_s, e_fill)
        for lane, key in (("Cathode", "Assembly.CathodeCoilId"), ("Anode", "Assembly.AnodeCoilId")):
            coils = self.lanes[lane].coils
            out[key] = coils[0].id if coils else ""
        for k, v in self.last.items():
            out[k] = v
        if self.last_fill:
            out["Filling.CellId"], out["Filling.ElectrolyteMass"] = self.last_fill
        return out

    def _take(self, lane: str, t_s: float) -> tuple[Coil, float, float] | None:
        """Cut one cell's sheets from the lane's current coil; exhausted coils are consumed."""
        coils = self.lanes[lane].coils
        need = self.need_m[lane]
        while coils and coils[0].length_m - coils[0].next_from_m < need - 1e-9:
            gone = coils.popleft()
            self.trace.emit("consumed", gone.id, "SlitCoil", "Assembly", "Assembly", "Cutter")
        if not coils:
            return None
        coil = coils[0]
        a = coil.next_from_m
        return coil, a, a + need

    def _assemble(self, t_s: float) -> None:
        cath, anod = self._take("Cathode", t_s), self._take("Anode", t_s)
        if cath is None or anod is None:
            return  # starved: no post-dried coil of one electrode yet
        n = self.ids.next("CELL")
        c_coil, ca, cb = cath
        a_coil, aa, ab = anod
        c_coil.next_from_m, a_coil.next_from_m = cb, ab
        es_c, es_a = f"ES-C-{n:06d}", f"ES-A-{n:06d}"
        stk, cell = f"STK-{n:06d}", f"CELL-{n:06d}"
        c_struct = sheet_structure(self.lanes["Cathode"], c_coil, ca, cb)
        a_struct = sheet_structure(self.lanes["Anode"], a_coil, aa, ab)
        step = self.line.cell_interval_s
        for es, coil, a, b, count, st in ((es_c, c_coil, ca, cb, CATHODE_SHEETS, c_struct),
                                          (es_a, a_coil, aa, ab, ANODE_SHEETS, a_struct)):
            self.trace.emit("created", es, "ElectrodeSheet", "Assembly", "Assembly", "Cutter", start_s=step,
                            inputs=[inp(coil.id, "SlitCoil", a, b)],
                            parameters={"sheet_length_mm": SHEET_LENGTH_M * 1000, "sheet_width_mm": 60.0},
                            properties={"sheet_count": count, "single_sided": True,
                                        "mass_loading_mg_cm2_mean": st["mass_loading_mg_cm2"],
                                        "coated_roll_id": coil.roll.id})
        self.trace.emit("created", stk, "CellStack", "Assembly", "Assembly", "Stacker", start_s=step,
                        inputs=[inp(es_c, "ElectrodeSheet"), inp(es_a, "ElectrodeSheet"),
                                inp(lot_id("SEP"), "RawMaterialLot")],
                        parameters={"dew_point_C": self.dew_point_C},
                        properties={"cathode_sheets": CATHODE_SHEETS, "anode_sheets": ANODE_SHEETS,
                                    "separator_layers": SEPARATOR_LAYERS})
        self.trace.emit("consumed", es_c, "ElectrodeSheet", "Assembly", "Assembly", "Stacker")
        self.trace.emit("consumed", es_a, "ElectrodeSheet", "Assembly", "Assembly", "Stacker")
        self.stack_count += 1
        moisture = 0.5 * (c_coil.moisture_ppm + a_coil.moisture_ppm)
        self.filling.append(CellRecord(n, cell, stk, c_struct, a_struct, moisture, self.dew_point_C,
                                       ready_s=t_s + self.line.filling_duration_s))
        self.last = {"Assembly.CellId": cell, "Assembly.StackId": stk, "Assembly.CathodeSheetsId": es_c,
                     "Assembly.AnodeSheetsId": es_a}

    def _fill(self, rec: CellRecord, t_s: float, e_fill: float) -> None:
        target = electrolyte_mass_g(rec.cathode, rec.anode)
        rec.electrolyte_g = target * (1.0 + 0.005 * float(self.noise.rng.standard_normal()) * self.noise.scale)
        self.trace.emit("created", rec.cell_id, "Cell", "Filling", "Filling", "Filler",
                        start_s=self.line.filling_duration_s,
                        inputs=[inp(rec.stack_id, "CellStack"), inp(lot_id("ELY"), "RawMaterialLot")],
                        parameters={"electrolyte_target_g": target},
                        properties={"electrolyte_mass_g": rec.electrolyte_g, "format": "pouch"})
        self.trace.emit("consumed", rec.stack_id, "CellStack", "Filling", "Filling", "Filler")
        self.last_fill = (rec.cell_id, rec.electrolyte_g + e_fill)
        self.filled.append(rec)


@dataclass
class Channel:
    name: str
    cell: CellRecord | None = None
    run_id: str = ""
    start_s: float = 0.0
    next_telemetry_s: float = 0.0
    expected: dict[str, float] = field(default_factory=dict)
    seq: int = 0
    fault_until_s: float = -1.0


class Formation:
    """Cycler channels: charge (first 50 % of the formation time), rest (10 %), discharge (40 %).

    Currents follow from the cell's capacity and the (scenario-set) formation duration, so a time-compressed
    formation shows proportionally higher currents; voltage is a smooth OCV(SOC) plus I x DCIR.
    """

    def __init__(self, line: LineConfig, noise: Noise, ids: IdCounter, trace: TraceLog, cells: CellLine,
                 line_id: str, clock_iso: Any) -> None:
        self.line, self.noise, self.ids, self.trace, self.cells = line, noise, ids, trace, cells
        self.line_id = line_id
        self.clock_iso = clock_iso
        self.channels = [Channel(channel_name(i)) for i in range(1, line.cycler_channels + 1)]
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.bad_channels: set[str] = set()

    def channel(self, name: str) -> Channel:
        for ch in self.channels:
            if ch.name == name:
                return ch
        raise ValueError(f"unknown cycler channel {name!r}; channels are {[c.name for c in self.channels]}")

    def fail(self, name: str, until_s: float, t_s: float) -> None:
        ch = self.channel(name)
        ch.fault_until_s = until_s
        if ch.cell is not None:
            self._finish(ch, t_s, aborted=True)

    def _publish(self, ch: Channel, kind: str, payload: dict[str, Any]) -> None:
        ch.seq += 1
        body = {"schema": TELEMETRY_SCHEMA if kind == "telemetry" else RESULT_SCHEMA, "seq": ch.seq,
                "line": self.line_id, "channel": ch.name, "time": self.clock_iso(), **payload}
        self.messages.append((f"pilotline/{self.line_id}/formation/{ch.name}/{kind}", body))

    def step(self, dt_s: float, t_s: float) -> dict[str, Any]:
        out: dict[str, Any] = {"Formation.ChannelCount": len(self.channels)}
        self.bad_channels = set()
        for ch in self.channels:
            if ch.fault_until_s > t_s:
                self.bad_channels.add(ch.name)
                out[f"Formation.{ch.name}.Step"] = "fault"
                continue
            if ch.cell is None and self.cells.filled:
                self._start(ch, self.cells.filled.popleft(), t_s)
            self._channel_values(ch, t_s, out)
        return out

    def _start(self, ch: Channel, cell: CellRecord, t_s: float) -> None:
        ch.cell = cell
        ch.run_id = f"FR-{self.ids.next('FR'):06d}"
        ch.start_s = t_s
        ch.next_telemetry_s = t_s
        exp = cell_performance(cell.cathode, cell.anode, cell.moisture_ppm, cell.dew_point_C)
        rng, s = self.noise.rng, self.noise.scale
        exp["charge_capacity_Ah"] *= 1.0 + 0.005 * float(rng.standard_normal()) * s
        exp["coulombic_efficiency"] *= 1.0 + 0.002 * float(rng.standard_normal()) * s
        exp["discharge_capacity_Ah"] = exp["charge_capacity_Ah"] * exp["coulombic_efficiency"]
        exp["dcir_mOhm"] *= 1.0 + 0.01 * float(rng.standard_normal()) * s
        ch.expected = exp

    def _state(self, ch: Channel, t_s: float) -> tuple[str, float, float, float]:
        """(step, current_A, capacity_Ah in step, soc) at time t."""
        d = self.line.formation_duration_s
        x = (t_s - ch.start_s) / d
        qc, qd = ch.expected["charge_capacity_Ah"], ch.expected["discharge_capacity_Ah"]
        if x < 0.5:
            i = qc / (0.5 * d / 3600.0)
            q = qc * x / 0.5
            return "charge", i, q, q / qc
        if x < 0.6:
            return "rest", 0.0, 0.0, 1.0
        i = -qd / (0.4 * d / 3600.0)
        q = qd * min((x - 0.6) / 0.4, 1.0)
        return "discharge", i, q, 1.0 - q / qc

    def _channel_values(self, ch: Channel, t_s: float, out: dict[str, Any]) -> None:
        n = self.noise
        e_v = n.abs(0.0, SIGMA["Voltage_V"])
        e_i = n.rel(1.0, SIGMA["Current_rel"])
        e_t = n.abs(0.0, SIGMA["CellTemperature_K"])
        f = f"Formation.{ch.name}"
        if ch.cell is None:
            out.update({f"{f}.CellId": "", f"{f}.FormationRunId": "", f"{f}.Step": "idle",
                        f"{f}.Current": 0.0, f"{f}.Capacity": 0.0, f"{f}.Temperature": DRY_ROOM_C + e_t})
            return
        step, i, q, soc = self._state(ch, t_s)
        r_ohm = ch.expected["dcir_mOhm"] / 1000.0
        v = 3.0 + 1.2 * max(min(soc, 1.0), 0.0) ** 0.8 + i * r_ohm + e_v
        temp = DRY_ROOM_C + 2.0 + 0.5 * abs(i) * 1.0 + e_t
        i_meas = i * e_i
        out.update({f"{f}.CellId": ch.cell.cell_id, f"{f}.FormationRunId": ch.run_id, f"{f}.Step": step,
                    f"{f}.Voltage": v, f"{f}.Current": i_meas, f"{f}.Capacity": q, f"{f}.Temperature": temp})
        if t_s >= ch.next_telemetry_s:
            ch.next_telemetry_s += self.line.telemetry_interval_s
            self._publish(ch, "telemetry", {
                "cell_id": ch.cell.cell_id, "formation_run_id": ch.run_id, "step": step,
                "voltage_V": round(v, 5), "current_A": round(i_meas, 5), "capacity_Ah": round(q, 5),
                "temperature_C": round(temp, 3)})
        if t_s - ch.start_s >= self.line.formation_duration_s:
            self._finish(ch, t_s, aborted=False)

    def _finish(self, ch: Channel, t_s: float, aborted: bool) -> None:
        cell, e = ch.cell, ch.expected
        assert cell is not None
        nominal = NOMINAL_CELL
        if aborted:
            step, _, q, _ = self._state(ch, t_s)
            charge = q if step == "charge" else e["charge_capacity_Ah"]
            result = {"charge_capacity_Ah": round(charge, 5), "discharge_capacity_Ah": 0.0,
                      "coulombic_efficiency": 0.0, "dcir_mOhm": None, "passed": False, "aborted": True,
                      "reason": "cycler channel fault"}
        else:
            passed = (e["discharge_capacity_Ah"] >= 0.95 * nominal["discharge_capacity_Ah"]
                      and e["coulombic_efficiency"] >= 0.85 and e["dcir_mOhm"] <= 1.2 * nominal["dcir_mOhm"])
            result = {"charge_capacity_Ah": round(e["charge_capacity_Ah"], 5),
                      "discharge_capacity_Ah": round(e["discharge_capacity_Ah"], 5),
                      "coulombic_efficiency": round(e["coulombic_efficiency"], 5),
                      "dcir_mOhm": round(e["dcir_mOhm"], 4), "passed": bool(passed), "aborted": False}
        self._publish(ch, "result", {"cell_id": cell.cell_id, "formation_run_id": ch.run_id, **result})
        self.trace.emit("created", ch.run_id, "FormationRun", "Formation", "Formation", ch.name,
                        start_s=t_s - ch.start_s, inputs=[inp(cell.cell_id, "Cell")],
                        parameters={"channel": ch.name, "formation_duration_s": self.line.formation_duration_s},
                        properties={k: v for k, v in result.items() if k != "reason"})
        ch.cell = None
        ch.run_id = ""

