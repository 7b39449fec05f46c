"""A synthetic plant history of trace events that follows the traceability schema of docs/traceability.md exactly.

Used by the genealogy tests (until and beside a real simulator recording) and by tests/bench/bench_genealogy.py.
It keeps its own record of what went into what (`Truth`) so tests can compare the graph's answers with it.
Geometry: coated rolls of `roll_length_m`, segments every `segment_m`, two slit coils per calendered roll, each cell
takes one `pitch_m` stretch of a cathode coil and of an anode coil.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Truth:
    upstream: dict[str, set[str]] = field(default_factory=dict)  # cell -> every upstream ID (not segments)
    sheet_stretch: dict[str, tuple[str, str, float, float]] = field(default_factory=dict)  # sheet -> (coil, roll, f, t)
    cell_sheets: dict[str, tuple[str, str]] = field(default_factory=dict)  # cell -> (cathode sheet, anode sheet)
    batch_stretch: dict[str, list[tuple[str, float, float]]] = field(default_factory=dict)  # SB -> [(roll, f, t)]
    roll_of: dict[str, str] = field(default_factory=dict)  # CR/CAL/SC -> coated roll
    dew_point: dict[str, float] = field(default_factory=dict)  # cell -> max dew point summary (degC)
    parents: dict[str, set[str]] = field(default_factory=dict)  # child -> direct inputs


@dataclass
class PlantHistory:
    cells: int = 50
    line: str = "PL1"
    roll_length_m: float = 20.0
    segment_m: float = 5.0
    pitch_m: float = 0.5
    batches_per_roll: int = 2
    seed: int = 7
    keep_truth: bool = True
    segments_before_roll: bool = False
    rich: bool = True
    truth: Truth = field(default_factory=Truth)

    def __post_init__(self) -> None:
        self._seq = 0
        self._rng = random.Random(self.seed)
        self._t = T0
        self._counters: dict[str, int] = {}

    # ------------------------------------------------------------------ helpers
    def _next(self, name: str) -> int:
        self._counters[name] = self._counters.get(name, 0) + 1
        return self._counters[name]

    def _event(self, kind: str, entity_id: str, entity_type: str, step: str | None, station: str | None,
               equipment: str | None, inputs: list[dict[str, Any]], minutes: float,
               parameters: dict[str, Any] | None = None, properties: dict[str, Any] | None = None) -> dict[str, Any]:
        self._seq += 1
        start = self._t
        self._t = self._t + timedelta(minutes=minutes)
        event: dict[str, Any] = {
            "schema": "pilotline.trace.v1", "seq": self._seq, "line": self.line, "time": iso(self._t),
            "kind": kind, "id": entity_id, "type": entity_type,
        }
        if step is not None:
            event["step"] = step
        if station is not None:
            event["station"] = station
        if equipment is not None:
            event["equipment"] = equipment
        event["start"], event["end"] = iso(start), iso(self._t)
        event["inputs"] = inputs
        event["parameters"] = parameters or {}
        event["properties"] = properties or {}
        if self.keep_truth and kind == "created":
            self.truth.parents[entity_id] = {i["id"] for i in inputs}
        return event

    def _lot(self, mat: str) -> dict[str, Any]:
        return {"id": f"LOT-{mat}-{self._rng.randint(1, 3):04d}", "type": "RawMaterialLot"}

    # ------------------------------------------------------------------ the chain of one electrode polarity
    def _electrode_roll(self, pol: str) -> Iterator[dict[str, Any]]:
        """Mixing -> coating (+ segments) -> calendering -> slitting -> post-drying; leaves two coils in self._coils."""
        mats = ("NMC", "CB", "PVDF", "NMP") if pol == "C" else ("GR", "CMC", "SBR", "H2O")
        foil = "AL" if pol == "C" else "CU"
        n_roll = self._next(f"CR-{pol}")
        roll = f"CR-{pol}-{n_roll:06d}"
        batches = []
        share = self.roll_length_m / self.batches_per_roll
        for b in range(self.batches_per_roll):
            sb = f"SB-{pol}-{self._next(f'SB-{pol}'):06d}"
            batches.append((sb, b * share, (b + 1) * share))
            params = {"solid_content": 0.70, "mixer_speed_rpm": 1500.0} if self.rich else {}
            yield self._event("created", sb, "SlurryBatch", "Mixing", f"Mixing/{'Cathode' if pol == 'C' else 'Anode'}",
                              f"Mixer-{pol}", [self._lot(m) for m in mats], 30, params,
                              {"viscosity_Pa_s_mean": 4.1} if self.rich else {})
        coat_inputs = [{"id": sb, "type": "SlurryBatch", "from_m": f, "to_m": t} for sb, f, t in batches]
        coat_inputs.append(self._lot(foil))
        segments = []
        n_seg = int(round(self.roll_length_m / self.segment_m))
        for k in range(n_seg):
            f, t = k * self.segment_m, (k + 1) * self.segment_m
            props = {"mass_loading_mg_cm2_mean": round(14.3 + self._rng.gauss(0, 0.1), 3)}
            if self.rich:
                props["thickness_um_mean"] = round(76 + self._rng.gauss(0, 0.5), 2)
            segments.append((f"SEG-{pol}-{n_roll:06d}-{k + 1:03d}", f, t, props))
        roll_event = self._event(
            "created", roll, "CoatedRoll", "Coating", f"Coating/{'Cathode' if pol == 'C' else 'Anode'}",
            f"SlotDieCoater-{pol}", coat_inputs, 60,
            {"pump_flow_rate_cm3_h": 696.0, "web_speed_m_min": 1.0} if self.rich else {"web_speed_m_min": 1.0},
            {"length_m": self.roll_length_m, "mass_loading_mg_cm2_mean": 14.31})
        seg_events = [self._event("created", sid, "RollSegment", "Coating",
                                  f"Coating/{'Cathode' if pol == 'C' else 'Anode'}", f"SlotDieCoater-{pol}",
                                  [{"id": roll, "type": "CoatedRoll", "from_m": f, "to_m": t}], 0.5, {}, props)
                      for sid, f, t, props in segments]
        if self.segments_before_roll:
            yield from seg_events
            yield roll_event
        else:
            yield roll_event
            yield from seg_events
        if self.keep_truth:
            for sb, f, t in batches:
                self.truth.batch_stretch.setdefault(sb, []).append((roll, f, t))
            self.truth.roll_of[roll] = roll
        cal = f"CAL-{pol}-{n_roll:06d}"
        yield self._event("created", cal, "CalenderedRoll", "Calendering", "Calendering", f"Calender-{pol}",
                          [{"id": roll, "type": "CoatedRoll"}], 30,
                          {"line_load_N_mm": 84.0, "roll_temperature_C": 25.0},
                          {"calendered_thickness_um_mean": 61.2, "porosity_mean": 0.32} if self.rich else {})
        coils = []
        for k in (1, 2):
            sc = f"SC-{pol}-{n_roll:06d}-{k}"
            coils.append(sc)
            yield self._event("created", sc, "SlitCoil", "Slitting", "Slitting", f"Slitter-{pol}",
                              [{"id": cal, "type": "CalenderedRoll"}], 10,
                              {"slit_width_mm": 100.0} if self.rich else {})
            yield self._event("processed", sc, "SlitCoil", "PostDrying", "PostDrying", "VacuumOven-1", [], 120,
                              {"temperature_C": 120.0} if self.rich else {},
                              {"residual_moisture_ppm": 180.0} if self.rich else {})
            if self.keep_truth:
                self.truth.roll_of[sc] = roll
        if self.keep_truth:
            self.truth.roll_of[cal] = roll
        self._coils[pol] = [(c, 0.0) for c in coils]

    def _take(self, pol: str) -> Iterator[dict[str, Any]]:
        """Make sure a coil of this polarity has one more pitch left (making a new roll when needed)."""
        while not self._coils.get(pol) or self._coils[pol][0][1] + self.pitch_m > self.roll_length_m + 1e-9:
            if self._coils.get(pol):
                self._coils[pol].pop(0)
            if not self._coils.get(pol):
                yield from self._electrode_roll(pol)

    def events(self) -> Iterator[dict[str, Any]]:
        self._coils: dict[str, list[tuple[str, float]]] = {}
        for n in range(1, self.cells + 1):
            sheets = {}
            for pol in ("C", "A"):
                yield from self._take(pol)
                coil, pos = self._coils[pol][0]
                self._coils[pol][0] = (coil, pos + self.pitch_m)
                sheet = f"ES-{pol}-{n:06d}"
                sheets[pol] = sheet
                f, t = round(pos, 6), round(pos + self.pitch_m, 6)
                yield self._event("created", sheet, "ElectrodeSheet", "Assembly", "Assembly/Cutting", "Notcher-1",
                                  [{"id": coil, "type": "SlitCoil", "from_m": f, "to_m": t}], 0.2,
                                  {"sheet_count": 20.0} if self.rich else {})
                if self.keep_truth:
                    self.truth.sheet_stretch[sheet] = (coil, self.truth.roll_of[coil], f, t)
            stack = f"STK-{n:06d}"
            yield self._event("created", stack, "CellStack", "Assembly", "Assembly/Stacking", "Stacker-1",
                              [{"id": sheets["C"], "type": "ElectrodeSheet"},
                               {"id": sheets["A"], "type": "ElectrodeSheet"}, self._lot("SEP")], 0.5)
            cell = f"CELL-{n:06d}"
            dew = round(-45.0 + self._rng.gauss(0, 3.0), 2)
            yield self._event("created", cell, "Cell", "Assembly", "Assembly/Packaging", "PouchSealer-1",
                              [{"id": stack, "type": "CellStack"}, self._lot("ELY")], 0.5,
                              {"electrolyte_mass_g": 4.2} if self.rich else {}, {"dew_point_C_max": dew})
            yield self._event("created", f"FR-{n:06d}", "FormationRun", "Formation", "Formation",
                              f"CH-{n % 16 + 1:02d}",
                              [{"id": cell, "type": "Cell"}], 1.0, {"charge_current_A": 0.1} if self.rich else {},
                              {"discharge_capacity_Ah": round(2.0 + self._rng.gauss(0, 0.02), 4),
                               "initial_coulombic_efficiency": 0.88})
            if self.keep_truth:
                self.truth.cell_sheets[cell] = (sheets["C"], sheets["A"])
                self.truth.dew_point[cell] = dew
                self.truth.upstream[cell] = self._closure(cell)

    def _closure(self, entity: str) -> set[str]:
        seen = {entity}
        todo = [entity]
        while todo:
            for parent in self.truth.parents.get(todo.pop(), ()):
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return seen
