"""The MES: ``pilotline.trace.v1`` events for the whole genealogy, each checked by the contract's parser."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np

from contract.trace import SCHEMA, parse_trace_event
from models import process_chain as pc
from tests.lines.vendor_line.physics import CoatedRoll, P


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")




RAW_LOTS: Final = {"cathode": ("NMC", "CB", "PVDF", "NMP"), "anode": ("GR", "CB", "CMC", "SBR", "H2O")}
SHEET_AREA_CM2: Final = 30.0  # 50 mm x 60 mm
LAYERS_PER_CELL: Final = 20
FIRST_CYCLE_EFFICIENCY: Final = 0.88


def inp(id_: str, type_: str, from_m: float | None = None, to_m: float | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"id": id_, "type": type_}
    if from_m is not None and to_m is not None:
        item["from_m"], item["to_m"] = round(from_m, 4), round(to_m, 4)
    return item


class Mes:
    """Books trace events; every one is checked by the contract's parser before it leaves.

    Materials are booked when a product that used them is booked (lots and a slurry batch with the first coated
    roll that used it, the anode materials with the first cell), as an MES posts an order's consumption when the
    order completes: a subscriber that joins before the first roll is finished sees the whole genealogy."""

    def __init__(self, line: str, publish: Callable[[dict[str, Any]], None], record: Path | None,
                 rng: np.random.Generator, cells_per_roll: int, channels: int) -> None:
        self.line = line
        self.publish = publish
        self.record = record
        self.rng = rng
        self.cells_per_roll, self.channels = cells_per_roll, channels
        self.seq = 0
        self.booked: set[str] = set()
        self.cell_number = 0
        self.anode_m = 0.0
        self.batch_start: dict[str, datetime] = {}

    def emit(self, kind: str, id_: str, type_: str, step: str, station: str, equipment: str, t: datetime, *,
             start: datetime | None = None, inputs: Iterable[dict[str, Any]] = (),
             parameters: dict[str, Any] | None = None, properties: dict[str, Any] | None = None) -> None:
        self.seq += 1
        event: dict[str, Any] = {"schema": SCHEMA, "seq": self.seq, "line": self.line, "time": iso(t),
                                 "kind": kind, "id": id_, "type": type_, "step": step, "station": station,
                                 "equipment": equipment, "start": iso(start) if start else None,
                                 "end": iso(t) if start else None, "inputs": list(inputs),
                                 "parameters": parameters or {}, "properties": properties or {}}
        parse_trace_event(event)  # a producer bug must fail loudly here, not in the twin's quarantine
        if kind == "created":
            self.booked.add(id_)
        if self.record is not None:
            with self.record.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(event, separators=(",", ":")) + "\n")
        self.publish(event)

    def _lots(self, electrode: str, t: datetime) -> list[dict[str, Any]]:
        out = []
        for mat in (*RAW_LOTS[electrode], "AL" if electrode == "cathode" else "CU"):
            lot = f"LOT-{mat}-0001"
            if lot not in self.booked:
                self.emit("created", lot, "RawMaterialLot", "Receiving", "Warehouse", "GoodsReceipt", t,
                          properties={"material": mat})
            out.append(inp(lot, "RawMaterialLot"))
        return out

    def _batch(self, batch_id: str, electrode: str, t: datetime) -> None:
        if batch_id in self.booked:
            return
        lots = [i for i in self._lots(electrode, t) if not i["id"].startswith(("LOT-AL", "LOT-CU"))]
        lane = "Cathode" if electrode == "cathode" else "Anode"
        self.emit("created", batch_id, "SlurryBatch", "Mixing", f"Mixing/{lane}", f"Mixer_{lane[0]}",
                  t, start=self.batch_start.get(batch_id, t), inputs=lots,
                  parameters={"solid_content": P.solid_content if electrode == "cathode"
                              else pc.ANODE_GRAPHITE.solid_content})

    def roll_coated(self, roll: CoatedRoll, t: datetime) -> None:
        for batch_id, _, _ in roll.batches:
            self._batch(batch_id, "cathode", t)
        n = max(roll.sums["n"], 1.0)
        foil = self._lots("cathode", t)[-1]
        self.emit("created", roll.id, "CoatedRoll", "Coating", "Coating/Cathode", "SlotDieCoater_01", t,
                  start=roll.start,
                  inputs=[inp(b, "SlurryBatch", a, z) for b, a, z in roll.batches if z > a] + [foil],
                  parameters={"pump_flow_rate_cm3_h": roll.sums["pump"] / n,
                              "web_speed_m_min": roll.sums["speed"] / n, "coating_width_mm": P.coating_width_mm},
                  properties={"length_m": roll.length_m, "mass_loading_mg_cm2_mean": roll.mean_m_dry(),
                              "areal_weight_g_m2_mean": roll.mean_m_dry() * 10.0})

    def calender_started(self, roll: CoatedRoll, t: datetime) -> None:
        """The calender has no roll ID node: this event is how the line says which roll it unwinds."""
        self.emit("consumed", roll.id, "CoatedRoll", "Calendering", "Calendering/Cathode", "Calender_02", t,
                  parameters={"unwind_start_m": 0.0})

    def _anode(self, t: datetime) -> None:
        """The anode coater is not connected to the twin; the MES still books its roll (10 km, enough for all)."""
        if "CAL-A-000001" in self.booked:
            return
        self._batch("SB-A-000001", "anode", t)
        self.emit("created", "CR-A-000001", "CoatedRoll", "Coating", "Coating/Anode", "AnodeCoater_03", t,
                  inputs=[inp("SB-A-000001", "SlurryBatch", 0.0, 10000.0), self._lots("anode", t)[-1]],
                  properties={"length_m": 10000.0})
        self.emit("created", "CAL-A-000001", "CalenderedRoll", "Calendering", "Calendering/Anode", "AnodeCalender_04",
                  t, inputs=[inp("CR-A-000001", "CoatedRoll")], properties={"length_m": 10000.0})

    def calendered(self, roll: CoatedRoll, start: datetime, t: datetime, means: dict[str, float]) -> None:
        cal = f"CAL-C-{roll.number:06d}"
        self.emit("created", cal, "CalenderedRoll", "Calendering", "Calendering/Cathode", "Calender_02", t,
                  start=start, inputs=[inp(roll.id, "CoatedRoll", 0.0, roll.length_m)],
                  parameters={"line_load_N_mm": means["line_load_N_mm"], "roll_temperature_C": P.roll_temperature_C},
                  properties={"length_m": roll.length_m, "calendered_thickness_um_mean": means["thickness_um"],
                              "porosity_mean": means["porosity"]})
        self._anode(t)
        stretch = roll.length_m / self.cells_per_roll
        anode_stretch = LAYERS_PER_CELL * 0.05
        for k in range(self.cells_per_roll):
            self.cell_number += 1
            n = self.cell_number
            a, b = k * stretch, (k + 1) * stretch
            aa, ab = self.anode_m, self.anode_m + anode_stretch
            self.anode_m = ab
            es_c, es_a, stk, cell = f"ES-C-{n:06d}", f"ES-A-{n:06d}", f"STK-{n:06d}", f"CELL-{n:06d}"
            m_dry = roll.mean_m_dry(a, b)
            self.emit("created", es_c, "ElectrodeSheet", "Assembly", "Assembly", "NotchCutter_05", t,
                      inputs=[inp(cal, "CalenderedRoll", a, b)],
                      properties={"sheet_count": LAYERS_PER_CELL, "mass_loading_mg_cm2_mean": m_dry,
                                  "coated_roll_id": roll.id})
            self.emit("created", es_a, "ElectrodeSheet", "Assembly", "Assembly", "NotchCutter_05", t,
                      inputs=[inp("CAL-A-000001", "CalenderedRoll", aa, ab)],
                      properties={"sheet_count": LAYERS_PER_CELL + 1})
            self.emit("created", stk, "CellStack", "Assembly", "Assembly", "Stacker_06", t,
                      inputs=[inp(es_c, "ElectrodeSheet"), inp(es_a, "ElectrodeSheet")])
            self.emit("consumed", es_c, "ElectrodeSheet", "Assembly", "Assembly", "Stacker_06", t)
            self.emit("consumed", es_a, "ElectrodeSheet", "Assembly", "Assembly", "Stacker_06", t)
            self.emit("created", cell, "Cell", "Filling", "Filling", "Filler_07", t, inputs=[inp(stk, "CellStack")],
                      properties={"format": "pouch"})
            self.emit("consumed", stk, "CellStack", "Filling", "Filling", "Filler_07", t)
            areal_mAh_cm2 = m_dry * P.w_active * P.specific_capacity_mAh_g * 1e-3
            capacity = areal_mAh_cm2 * SHEET_AREA_CM2 * LAYERS_PER_CELL * 1e-3 * FIRST_CYCLE_EFFICIENCY
            capacity *= 1.0 + float(self.rng.normal(0.0, 0.004))
            channel = f"CH-{(n - 1) % self.channels + 1:02d}"
            self.emit("created", f"FR-{n:06d}", "FormationRun", "Formation", f"Formation/{channel}",
                      f"Cycler_{channel}", t, inputs=[inp(cell, "Cell")], parameters={"channel": channel},
                      properties={"discharge_capacity_Ah": round(capacity, 5), "passed": True})

