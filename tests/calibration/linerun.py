"""The simulator's plant stepped in-process (simulated time, no servers, no waits) feeding the twin's calibration.

Used by tests/calibration/test_calibration.py and tests/bench/bench_calibration.py. Every coated roll the line
finishes is first *predicted* by the twin's plant model as it stands (one step ahead: the record has not been
learnt from yet), then handed to the calibration; calendered rolls likewise. The errors are those of the twin's
predictions of the roll's mean beta-gauge loading and mean calendered density (loading / calendered thickness).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from contract.records import TraceEvent
from simulator.dynamics import SIGMA
from simulator.plant import Plant
from simulator.scenario import parse_scenario
from twin.alarms import AlarmManager
from twin.audit import AuditLog
from twin.calibration import CalibratedModel, Calibration
from twin.config import SIMULATOR_LINE
from twin.line import load_line
from twin.plant_model import PhysicsModel
from twin.service_settings import CalibrationSettings, ControlSettings

# 5-15 % away from the literature parameter set (models.process_chain), both electrodes
MISMATCH: dict[str, dict[str, float]] = {
    "cathode": {"solid_content": 0.66, "rho_active_g_cm3": 4.45, "pump_delivery_efficiency": 0.93,
                "dry_porosity_ref": 0.48, "compaction_resistance_ref_N_mm": 145.0,
                "compaction_resistance_loading_exp": 0.3},
    "anode": {"solid_content": 0.46, "rho_active_g_cm3": 2.15, "pump_delivery_efficiency": 1.06,
              "dry_porosity_ref": 0.45, "compaction_resistance_ref_N_mm": 50.0},
}
ROLL_M = 20.0
ROLL_S = ROLL_M * 60.0  # at the nominal 1 m/min


def control_settings() -> ControlSettings:
    desc = load_line(SIMULATOR_LINE)
    return ControlSettings.model_validate({"products": {k: v.model_dump() for k, v in desc.products.items()},
                                           "product": desc.product})


def scenario(rolls: int, plant: dict[str, dict[str, float]] | None = None, excite: bool = True,
             batch_variation: float = 1.0) -> dict[str, Any]:
    """Rolls of 20 m; every few rolls the recipe moves (pump flow +-4 %, line load +-15 N/mm) as a line's product
    mix would, which is what lets loading-dependent parameters be told apart."""
    events = []
    if excite:
        pumps = {"Cathode": 696.0, "Anode": 812.0}
        loads = {"Cathode": 84.0, "Anode": 35.0}
        pattern = [(1.0, 0.0), (1.04, 12.0), (0.96, -12.0), (1.0, 15.0), (1.03, -8.0), (0.97, 8.0)]
        for i in range(1, rolls + 1):
            f, dl = pattern[(i // 3) % len(pattern)]
            for lane in ("Cathode", "Anode"):
                scale = 1.0 if lane == "Cathode" else 0.4
                events.append({"at_s": i * ROLL_S, "action": "set", "node": f"Coating.{lane}.PumpFlowRateSetpoint",
                               "value": round(pumps[lane] * f, 2)})
                events.append({"at_s": i * ROLL_S, "action": "set", "node": f"Calendering.{lane}.LineLoadSetpoint",
                               "value": round(loads[lane] + dl * scale, 2)})
    return {"name": "mismatch", "batch_variation": batch_variation,
            "line": {"roll_length_m": ROLL_M, "segment_length_m": 10.0},
            "plant": plant if plant is not None else MISMATCH, "events": events}


@dataclass
class RollError:
    electrode: str
    roll: str
    kind: str               # "loading" (coated roll) or "density" (calendered roll)
    predicted: float
    measured: float
    gauge_sigma: float      # one reading's noise of that gauge at this value
    version: int            # accepted calibration version the prediction was made with

    @property
    def error_in_sigma(self) -> float:
        return abs(self.predicted - self.measured) / self.gauge_sigma


@dataclass
class Run:
    calibration: Calibration
    model: CalibratedModel
    errors: list[RollError] = field(default_factory=list)
    sim_s: float = 0.0


def run(rolls: int, calibrate: bool = True, plant: dict[str, dict[str, float]] | None = None,
        dt_s: float = 2.0, seed: int = 7, settings: CalibrationSettings | None = None,
        batch_variation: float = 1.0) -> Run:
    sc = parse_scenario(scenario(rolls, plant, batch_variation=batch_variation))
    line = Plant(sc, seed=seed, line_id="LINE-SIM", start_time=datetime(2026, 1, 1, tzinfo=UTC))
    control = control_settings()
    cfg = settings or CalibrationSettings(state_file=None, enabled=calibrate)
    cal = Calibration(cfg, "LINE-SIM", control, AuditLog(), AlarmManager())
    model = CalibratedModel(PhysicsModel(), cal)
    out = Run(cal, model)
    coated: dict[str, tuple[str, dict[str, float], float]] = {}
    until = (rolls + 1.5) * ROLL_S
    while line.t_s < until:
        line.step(dt_s)
        for raw in line.trace.drain():
            ev = TraceEvent.from_json(raw)
            if ev.kind != "created" or ev.type not in ("CoatedRoll", "CalenderedRoll"):
                continue
            electrode = cal.electrode_of(ev.station)
            if electrode is None:
                continue
            version = cal.get(electrode).accepted
            if ev.type == "CoatedRoll":
                inputs = {k: float(ev.parameters[k]) for k in ("pump_flow_rate_cm3_h", "web_speed_m_min",
                                                               "coating_width_mm")}
                m = float(ev.properties["mass_loading_mg_cm2_mean"])
                pred = float(model.evaluate(electrode, inputs).outputs["drying.dry_mass_loading_mg_cm2"])
                coated[ev.id] = (electrode, inputs, m)
                out.errors.append(RollError(electrode, ev.id, "loading", pred, m,
                                            SIGMA["MassLoading_rel"] * m, version))
            else:
                src = ev.inputs[0].id
                if src in coated:
                    _, inputs, m = coated.pop(src)
                    inputs = {**inputs, "line_load_N_mm": float(ev.parameters["line_load_N_mm"]),
                              "roll_temperature_C": float(ev.parameters["roll_temperature_C"])}
                    h = float(ev.properties["calendered_thickness_um_mean"])
                    rho = 10.0 * m / h
                    pred = float(model.evaluate(electrode, inputs).outputs["calendering.calendered_density_g_cm3"])
                    # density = 10 m / h from two gauges: relative noises add in quadrature
                    sigma = rho * math.hypot(SIGMA["MassLoading_rel"], SIGMA["CalenderedThickness_um"] / h)
                    out.errors.append(RollError(electrode, src, "density", pred, rho, sigma, version))
            if calibrate:
                cal.on_event(ev)
    out.sim_s = line.t_s
    return out


def rolls_to_converge(errors: list[RollError], electrode: str, kind: str, within_sigma: float = 1.0) -> int | None:
    """The first roll (1-based, of that electrode and kind) from which every prediction is within the gauge noise."""
    seq = [e for e in errors if e.electrode == electrode and e.kind == kind]
    for i in range(len(seq)):
        if all(e.error_in_sigma <= within_sigma for e in seq[i:]):
            return i + 1 if i < len(seq) else None
    return None
