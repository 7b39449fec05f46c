"""A small in-process plant for the recommender's unit tests: the process chain with transport delays and drift.

Not a stand-in for the simulator (the integration test uses the real one over OPC UA): it exists so the estimator
and optimiser can be checked quickly and deterministically, including the delay handling, on the same physics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.process_chain import flatten, run_chain
from twin.alarms import AlarmManager
from twin.live import LiveState
from twin.service_settings import (
    ControlSettings,
    LiveSettings,
    Loop,
    Manipulated,
    MeasuredInput,
    Product,
    Target,
)

SPEED_M_MIN = 1.0
ML_GAUGE_M, CAL_M, DENS_GAUGE_M = 4.0, 8.0, 9.0


def control_settings(**kw: object) -> ControlSettings:
    loop = Loop(
        electrode="cathode",
        targets=[
            Target(signal="Drying/Cathode/MassLoading", output="drying.dry_mass_loading_mg_cm2", target=14.31,
                   tolerance=0.2, gauge_position_m=ML_GAUGE_M),
            Target(signal="Calendering/Cathode/Density", output="calendering.calendered_density_g_cm3", target=2.96,
                   tolerance=0.03, gauge_position_m=DENS_GAUGE_M),
        ],
        manipulated=[
            Manipulated(input="pump_flow_rate_cm3_h", actual_signal="Coating/Cathode/PumpFlowRate",
                        setpoint_node="PilotLine/Coating/Cathode/PumpFlowRateSetpoint", low=500, high=900,
                        max_step=40),
            Manipulated(input="line_load_N_mm", actual_signal="Calendering/Cathode/LineLoad",
                        setpoint_node="PilotLine/Calendering/Cathode/LineLoadSetpoint", low=40, high=140, max_step=8,
                        position_m=CAL_M),
        ],
        measured_inputs=[MeasuredInput(input="web_speed_m_min", signal="Coating/Cathode/WebSpeed")],
        web_speed_signal="Coating/Cathode/WebSpeed",
    )
    return ControlSettings(product="p", products={"p": Product(loops={"Cathode": loop})}, **kw)  # type: ignore[arg-type]


@dataclass
class Plant:
    """Setpoints act at once (history kept per actuator); the gauges see what passed the actuator a delay ago."""

    seed: int = 1
    t_s: float = 0.0
    pump: list[tuple[float, float]] = field(default_factory=lambda: [(-1e9, 696.0)])
    load: list[tuple[float, float]] = field(default_factory=lambda: [(-1e9, 84.0)])
    writes: list[tuple[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    @staticmethod
    def _at(hist: list[tuple[float, float]], t: float) -> float:
        value = hist[0][1]
        for ts, v in hist:
            if ts <= t:
                value = v
        return value

    def solid_content(self, t: float) -> float:
        return 0.70 - 0.04 * min(max(t, 0.0) / 3000.0, 1.0)  # drifts 0.70 -> 0.66 over 3000 s

    def gamma_c(self, t: float) -> float:
        return 129.0 + 25.0 * min(max(t, 0.0) / 3000.0, 1.0)  # compaction resistance drifts up

    def measure(self) -> dict[str, float]:
        v = SPEED_M_MIN / 60.0
        t_ml = self.t_s - ML_GAUGE_M / v
        t_dens_coat = self.t_s - DENS_GAUGE_M / v
        t_dens_cal = self.t_s - (DENS_GAUGE_M - CAL_M) / v
        ml = flatten(run_chain({"pump_flow_rate_cm3_h": self._at(self.pump, t_ml), "web_speed_m_min": SPEED_M_MIN,
                                "solid_content": self.solid_content(t_ml)}))["drying.dry_mass_loading_mg_cm2"]
        dens = flatten(run_chain({
            "pump_flow_rate_cm3_h": self._at(self.pump, t_dens_coat), "web_speed_m_min": SPEED_M_MIN,
            "solid_content": self.solid_content(t_dens_coat), "line_load_N_mm": self._at(self.load, t_dens_cal),
            "compaction_resistance_ref_N_mm": self.gamma_c(t_dens_cal)}))["calendering.calendered_density_g_cm3"]
        return {"Drying/Cathode/MassLoading": float(ml) + self.rng.normal(0, 0.03),
                "Calendering/Cathode/Density": float(dens) + self.rng.normal(0, 0.004)}

    def feed(self, live: LiveState) -> dict[str, float]:
        t_ns = int(self.t_s * 1e9) + 1_700_000_000_000_000_000
        m = self.measure()
        for key, value in m.items():
            live.update(key, value, t_ns, roll="CR-C-000001", position_m=self.t_s * SPEED_M_MIN / 60.0)
        live.update("Coating/Cathode/PumpFlowRate", self._at(self.pump, self.t_s), t_ns)
        live.update("Calendering/Cathode/LineLoad", self._at(self.load, self.t_s), t_ns)
        live.update("Coating/Cathode/WebSpeed", SPEED_M_MIN, t_ns)
        return m

    def run(self, live: LiveState, until_s: float, dt_s: float = 2.0) -> None:
        """Feed the gauges every ``dt_s`` simulated seconds until ``until_s``."""
        while self.t_s < until_s:
            self.feed(live)
            self.t_s += dt_s

    def drifted(self, live: LiveState, until_s: float = 5000.0) -> None:
        """From 3500 s, when solid content has drifted to 0.66 (mass loading low), to ``until_s``."""
        self.t_s = 3500.0
        self.run(live, until_s)

    async def write(self, node: str, value: float) -> tuple[bool, str]:
        self.writes.append((node, value))
        hist = self.pump if "PumpFlowRate" in node else self.load
        hist.append((self.t_s, value))
        return True, "Good"


def new_live() -> LiveState:
    return LiveState(LiveSettings(window_size=3000, specs={}), AlarmManager())
