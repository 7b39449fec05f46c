"""The whole line: two electrode lanes, the cell line and the formation, stepped in simulated time.

Deterministic by construction: one ``numpy.random.Generator(seed)`` drawn in a fixed order, simulated time
advancing by exactly ``tick`` per step, and scenario events applied at the first step at or after their time. The
same seed and scenario therefore give the same sequence of values, trace events and MQTT messages.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np

from .cell_line import CellLine, Formation
from .dynamics import Noise
from .faults import CHANNEL_FAULT_STATUS, FaultSet
from .scenario import Event, Scenario
from .spec import LANES, NodeSpec, line_specs, specs_by_path
from .trace import IdCounter, TraceLog, iso
from .web_lane import FORMULATION, ElectrodeLane, lot_id

RAW_MATERIALS = sorted({m for _, mats, foil in FORMULATION.values() for m in (*mats, foil)} | {"SEP", "ELY"})


class PlantError(ValueError):
    """A request the plant cannot honour (unknown node, not a setpoint, bad value)."""


class Plant:
    def __init__(self, scenario: Scenario, seed: int, line_id: str, start_time: datetime,
                 profile_points: int = 0, profile_array: bool = False) -> None:
        self.scenario = scenario
        self.line_id = line_id
        self.start_time = start_time
        self.t_s = 0.0
        self.rng = np.random.default_rng(seed)
        self.noise = Noise(self.rng, scenario.noise_scale)
        self.ids = IdCounter()
        self.trace = TraceLog(line_id, self.now)
        line = scenario.line
        self.specs: list[NodeSpec] = line_specs(line.cycler_channels, profile_points, profile_array)
        self.by_path = specs_by_path(self.specs)
        for mat in RAW_MATERIALS:
            self.trace.emit("created", lot_id(mat), "RawMaterialLot", "Receiving", "Warehouse", "GoodsReceipt",
                            properties={"material": mat})
        self.lanes = {lane: ElectrodeLane(lane, line, scenario.drift, self.noise, scenario.batch_variation,
                                          self.ids, self.trace, profile_points, profile_array,
                                          plant=scenario.plant.get(lane.lower())) for lane in LANES}
        self.cells = CellLine(line, scenario.drift, self.noise, self.ids, self.trace, self.lanes)
        self.formation = Formation(line, self.noise, self.ids, self.trace, self.cells, line_id,
                                   lambda: iso(self.now()))
        self.grant = line.remote_setpoints_enabled
        self.faults = FaultSet()
        self.events: list[Event] = list(scenario.events)
        self.server_restarts: list[float] = []
        for path, value in scenario.setpoints.items():
            self.set_setpoint(path, value, settle=True)
        for ev in self.events:
            self._check_event(ev)

    def now(self) -> datetime:
        return self.start_time + timedelta(seconds=self.t_s)

    # -- commands ---------------------------------------------------------------------------------------------------
    def setpoint_spec(self, path: str) -> NodeSpec:
        spec = self.by_path.get(path)
        if spec is None or spec.setpoint_of is None:
            raise PlantError(f"{path!r} is not a setpoint node; setpoints are "
                             f"{[s.path for s in self.specs if s.setpoint_of][:6]}...")
        return spec

    def set_setpoint(self, path: str, value: float, settle: bool = False) -> None:
        """Apply a setpoint; ``settle`` also moves the actual value (a scenario's initial state)."""
        spec = self.setpoint_spec(path)
        v = float(value)
        lo, hi = spec.eu_range or (float("-inf"), float("inf"))
        if not (lo <= v <= hi):
            raise PlantError(f"{path} = {v} is outside its EURange [{lo}, {hi}]")
        station, lane, item = spec.path.split(".")
        actuator = self.lanes[lane].act[item.removesuffix("Setpoint")]
        actuator.setpoint = v
        if settle:
            actuator.value = v

    def setpoint(self, path: str) -> float:
        spec = self.setpoint_spec(path)
        _, lane, item = spec.path.split(".")
        return self.lanes[lane].act[item.removesuffix("Setpoint")].setpoint

    def _check_event(self, ev: Event) -> None:
        if ev.action == "set":
            self.setpoint_spec(str(ev.node))
        elif ev.fault in ("dropout", "stuck", "spike", "nan"):
            spec = self.by_path.get(str(ev.node))
            if spec is None or not spec.analog or spec.writable or spec.array_length:
                raise PlantError(f"fault {ev.fault!r} needs an analog measurement node, got {ev.node!r}")
        elif ev.fault == "cycler_channel":
            self.formation.channel(str(ev.channel))

    def _apply(self, ev: Event) -> None:
        if ev.action == "set":
            self.set_setpoint(str(ev.node), float(ev.value))  # type: ignore[arg-type]
        elif ev.fault == "server_restart":
            self.server_restarts.append(ev.duration_s)
        elif ev.fault == "cycler_channel":
            self.formation.fail(str(ev.channel), self.t_s + ev.duration_s, self.t_s)
        else:
            self.faults.add(str(ev.fault), str(ev.node), self.t_s, ev.duration_s, ev.magnitude)

    # -- time -------------------------------------------------------------------------------------------------------
    def step(self, dt_s: float) -> dict[str, tuple[Any, str]]:
        """Advance by dt_s; returns {path: (value, status name)} of everything measured or changed this step."""
        self.t_s += dt_s
        while self.events and self.events[0].at_s <= self.t_s:
            self._apply(self.events.pop(0))
        values: dict[str, Any] = {"RemoteSetpointsEnabled": self.grant, "LineId": self.line_id,
                                  "SimulatedTime": iso(self.now())}
        for lane in self.lanes.values():
            values.update(lane.step(dt_s, self.t_s))
        values.update(self.cells.step(dt_s, self.t_s))
        values.update(self.formation.step(dt_s, self.t_s))
        out = self.faults.apply(values, self.t_s)
        for ch in self.formation.bad_channels:
            for item in ("Voltage", "Current", "Capacity", "Temperature"):
                out[f"Formation.{ch}.{item}"] = (None, CHANNEL_FAULT_STATUS)
        return out


__all__ = ["Plant", "PlantError"]
