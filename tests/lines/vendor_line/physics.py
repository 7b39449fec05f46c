"""Coater and calender physics on ``models.process_chain`` (seed 001 eq. 10-15, cathode parameter set), with
actuator lags, transport delays to the gauges and noise."""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import numpy as np

from models import process_chain as pc
from tests.lines.vendor_line.address_space import CALIPER_OFFSET_M, GAUGE_OFFSET_M

P: Final = pc.CATHODE_PROZELL
V_S: Final = float(pc.solids_specific_volume_cm3_g(P.w_active, P.w_conductive, P.w_binder, P.rho_active_g_cm3,
                                                   P.rho_conductive_g_cm3, P.rho_binder_g_cm3))
RHO_SOLIDS: Final = float(pc.solids_density_g_cm3(V_S))
RHO_SLURRY: Final = float(pc.slurry_density_g_cm3(V_S, P.solid_content, P.rho_solvent_g_cm3))
FOIL_UM: Final = 15.0  # aluminium current collector (the roll gap closes on coating + foil)
SPRINGBACK: Final = 0.04  # the coating springs back ~4 % after the nip: the gap is a little below the thickness
TAU_S: Final = {"pump": 4.0, "speed": 6.0, "load": 3.0}  # first-order actuator time constants (line seconds)
SIGMA: Final = {"pump_rel": 0.003, "wet_um": 0.8, "areal_g_m2": 0.6, "speed_rel": 0.002, "temp_C": 0.3,
                "load_N_mm": 0.4, "gap_um": 0.5, "thickness_um": 0.4, "density_rel": 0.003}
DRYER_C: Final = (80.0, 100.0, 110.0)


def lag(actual: float, target: float, dt_s: float, tau_s: float) -> float:
    return target + (actual - target) * math.exp(-dt_s / tau_s)


def coat(pump_cm3_h: float, speed_m_min: float) -> tuple[float, float, float]:
    """(wet film um, dry loading mg/cm2, dried porosity) of the pre-metered slot die, seed 001 eq. 10-12."""
    h_wet = float(pc.wet_film_thickness_um(pump_cm3_h, speed_m_min, P.coating_width_mm))
    m_wet = float(pc.wet_mass_loading_mg_cm2(RHO_SLURRY, h_wet))
    m_dry = float(pc.dry_mass_loading_mg_cm2(m_wet, P.solid_content))
    eps = float(pc.dry_porosity(m_wet, P.dry_porosity_ref, P.dry_porosity_ref_wet_loading_mg_cm2,
                                P.dry_porosity_exp_per_mg_cm2))
    return h_wet, m_dry, eps


class TransportDelay:
    """What a gauge ``offset_m`` downstream sees: the entry pushed when the web was ``offset_m`` metres back."""

    def __init__(self, initial: Any) -> None:
        self.entries: deque[tuple[float, Any]] = deque()
        self.initial = initial

    def push(self, web_m: float, value: Any) -> None:
        self.entries.append((web_m, value))

    def at(self, web_m: float) -> Any:
        e = self.entries
        while len(e) > 1 and e[1][0] <= web_m:
            e.popleft()
        return e[0][1] if e and e[0][0] <= web_m else self.initial


@dataclass
class CoatedRoll:
    number: int
    id: str
    start: datetime
    length_m: float = 0.0
    die_end_web_m: float | None = None  # web metre at which its tail left the die
    batches: list[list[Any]] = field(default_factory=list)  # [batch id, from_m, to_m]
    pos_m: list[float] = field(default_factory=list)  # at the gauge: roll position -> dry loading, porosity
    m_dry: list[float] = field(default_factory=list)
    eps_dry: list[float] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=lambda: {"pump": 0.0, "speed": 0.0, "n": 0.0})

    def at(self, x_m: float) -> tuple[float, float]:
        i = max(0, min(bisect.bisect_right(self.pos_m, x_m) - 1, len(self.pos_m) - 1))
        return (self.m_dry[i], self.eps_dry[i]) if self.pos_m else (math.nan, math.nan)

    def mean_m_dry(self, a: float = 0.0, b: float = math.inf) -> float:
        vals = [m for x, m in zip(self.pos_m, self.m_dry, strict=True) if a <= x <= b]
        return float(np.mean(vals)) if vals else float(np.mean(self.m_dry)) if self.m_dry else math.nan


@dataclass
class GaugeEntry:
    roll: CoatedRoll | None
    roll_pos_m: float
    m_dry: float
    eps_dry: float


class Coater:
    """Slot die, dryer, beta gauge. The pump setpoint reaches the gauge after GAUGE_OFFSET_M of web."""

    def __init__(self, rng: np.random.Generator, noise: float, roll_length_m: float, batch_length_m: float,
                 start: datetime, on_roll_done: Callable[[CoatedRoll, datetime], None], *, first_roll: int = 1,
                 first_batch: int = 1) -> None:
        self.rng, self.noise = rng, noise
        self.roll_length_m, self.batch_length_m = roll_length_m, batch_length_m
        self.on_roll_done = on_roll_done
        self.sp = {"Control/PumpFlowSetpoint": P.pump_flow_rate_cm3_h, "Control/WebSpeedSetpoint": P.web_speed_m_min}
        self.pump, self.speed = P.pump_flow_rate_cm3_h, P.web_speed_m_min
        self.web_m = 0.0
        self.roll = CoatedRoll(first_roll, f"CR-C-{first_roll:06d}", start)
        self.roll_pos_m = 0.0
        self.batch_number, self.batch_used_m = first_batch, 0.0
        self.roll.batches.append([self.batch_id, 0.0, 0.0])
        self.open_rolls: list[CoatedRoll] = [self.roll]
        _, m0, e0 = coat(self.pump, self.speed)
        self.gauge = TransportDelay(GaugeEntry(None, 0.0, m0, e0))  # leader: the line was threaded and running
        self.batch_started: dict[str, datetime] = {self.batch_id: start}

    @property
    def batch_id(self) -> str:
        return f"SB-C-{self.batch_number:06d}"

    def _n(self, sigma: float) -> float:
        return float(self.rng.normal(0.0, sigma * self.noise)) if self.noise > 0 else 0.0

    def step(self, dt_s: float, t: datetime) -> dict[str, Any]:
        self.pump = lag(self.pump, self.sp["Control/PumpFlowSetpoint"], dt_s, TAU_S["pump"])
        self.speed = lag(self.speed, self.sp["Control/WebSpeedSetpoint"], dt_s, TAU_S["speed"])
        advance = self.speed * dt_s / 60.0
        self.web_m += advance
        self.roll_pos_m += advance
        self.batch_used_m += advance
        roll = self.roll
        roll.batches[-1][2] = self.roll_pos_m
        if self.batch_used_m >= self.batch_length_m:  # the next slurry batch feeds the die
            self.batch_number += 1
            self.batch_used_m -= self.batch_length_m
            self.batch_started[self.batch_id] = t
            roll.batches.append([self.batch_id, self.roll_pos_m, self.roll_pos_m])
        if self.roll_pos_m >= self.roll_length_m:  # splice: the next roll starts at the die
            over = self.roll_pos_m - self.roll_length_m
            roll.batches[-1][2] = roll.length_m = self.roll_length_m
            roll.die_end_web_m = self.web_m - over
            n = roll.number + 1
            self.roll = CoatedRoll(n, f"CR-C-{n:06d}", t)
            self.roll.batches.append([self.batch_id, 0.0, over])
            self.open_rolls.append(self.roll)
            self.roll_pos_m = over
            roll = self.roll
        roll.sums["pump"] += self.pump
        roll.sums["speed"] += self.speed
        roll.sums["n"] += 1
        h_wet, m_dry, eps = coat(self.pump, self.speed)
        self.gauge.push(self.web_m, GaugeEntry(roll, self.roll_pos_m, m_dry, eps))
        seen: GaugeEntry = self.gauge.at(self.web_m - GAUGE_OFFSET_M)
        if seen.roll is not None:
            seen.roll.pos_m.append(seen.roll_pos_m)
            seen.roll.m_dry.append(seen.m_dry)
            seen.roll.eps_dry.append(seen.eps_dry)
        while self.open_rolls and self.open_rolls[0].die_end_web_m is not None \
                and self.web_m - GAUGE_OFFSET_M >= self.open_rolls[0].die_end_web_m:
            self.on_roll_done(self.open_rolls.pop(0), t)  # its tail passed the gauge: rewound and complete
        return {
            "Monitoring/WebSpeed": self.speed * (1.0 + self._n(SIGMA["speed_rel"])),
            "Monitoring/PumpFlowActual": self.pump * (1.0 + self._n(SIGMA["pump_rel"])),
            "Monitoring/WetFilmThickness": h_wet + self._n(SIGMA["wet_um"]),
            "Monitoring/DryerZone1Temp": DRYER_C[0] + self._n(SIGMA["temp_C"]),
            "Monitoring/DryerZone2Temp": DRYER_C[1] + self._n(SIGMA["temp_C"]),
            "Monitoring/DryerZone3Temp": DRYER_C[2] + self._n(SIGMA["temp_C"]),
            "Monitoring/BetaGauge/ArealWeight": seen.m_dry * 10.0 + self._n(SIGMA["areal_g_m2"]),  # mg/cm2 -> g/m2
            "Monitoring/CurrentRollID": roll.id,
            "Monitoring/RollPosition": self.roll_pos_m,
            "Monitoring/SlurryBatchID": self.batch_id,
        }


class Calender:
    """Unwinds the coater's finished rolls in order; density vs line load by seed 001 eq. 15 (Heckel-type)."""

    def __init__(self, rng: np.random.Generator, noise: float, speed_m_min: float,
                 on_start: Callable[[CoatedRoll, datetime], None],
                 on_done: Callable[[CoatedRoll, datetime, datetime, dict[str, float]], None]) -> None:
        self.rng, self.noise = rng, noise
        self.speed_m_min = speed_m_min
        self.on_start, self.on_done = on_start, on_done
        self.sp = {"Control/LineLoadSetpoint": P.line_load_N_mm}
        self.load = P.line_load_N_mm
        self.temp_C = P.roll_temperature_C
        self.queue: deque[CoatedRoll] = deque()
        self.roll: CoatedRoll | None = None
        self.pos_m = 0.0
        self.web_m = 0.0
        self.start: datetime | None = None
        self.caliper = TransportDelay(None)
        self.sums = {"load": 0.0, "h": 0.0, "eps": 0.0, "n": 0.0}

    def _n(self, sigma: float) -> float:
        return float(self.rng.normal(0.0, sigma * self.noise)) if self.noise > 0 else 0.0

    def step(self, dt_s: float, t: datetime) -> dict[str, Any]:
        self.load = lag(self.load, self.sp["Control/LineLoadSetpoint"], dt_s, TAU_S["load"])
        out: dict[str, Any] = {"Monitoring/LineLoad": self.load + self._n(SIGMA["load_N_mm"]),
                               "Monitoring/RollTemperature": self.temp_C + self._n(SIGMA["temp_C"])}
        if self.roll is None and self.queue:
            self.roll, self.pos_m, self.start = self.queue.popleft(), 0.0, t
            self.sums = dict.fromkeys(self.sums, 0.0)
            self.on_start(self.roll, t)
        roll = self.roll
        if roll is None:
            out["Monitoring/WebSpeed"] = 0.0
            return out
        advance = self.speed_m_min * dt_s / 60.0
        self.pos_m += advance
        self.web_m += advance
        out["Monitoring/WebSpeed"] = self.speed_m_min * (1.0 + self._n(SIGMA["speed_rel"]))
        gamma_c = float(pc.compaction_resistance_N_mm(P.compaction_resistance_ref_N_mm, self.temp_C,
                                                      P.roll_temperature_ref_C,
                                                      P.compaction_resistance_temp_coeff_per_K))
        if self.pos_m <= roll.length_m:
            m_dry, eps_dry = roll.at(self.pos_m)
            eps = float(pc.calendered_porosity(eps_dry, P.min_porosity, self.load, gamma_c))
            h = float(pc.coating_thickness_um(m_dry, RHO_SOLIDS, eps))
            self.caliper.push(self.web_m, (h, float(pc.coating_density_g_cm3(m_dry, h))))
            out["Monitoring/RollGap"] = (h + FOIL_UM) * (1.0 - SPRINGBACK) + self._n(SIGMA["gap_um"])
            for k, v in (("load", self.load), ("h", h), ("eps", eps), ("n", 1.0)):
                self.sums[k] += v
        seen = self.caliper.at(self.web_m - CALIPER_OFFSET_M)
        if seen is not None:
            h, rho = seen
            out["Monitoring/Thickness"] = h + self._n(SIGMA["thickness_um"])
            out["Monitoring/Density"] = rho * (1.0 + self._n(SIGMA["density_rel"]))
        if self.pos_m > roll.length_m + CALIPER_OFFSET_M:
            n = max(self.sums["n"], 1.0)
            assert self.start is not None
            self.on_done(roll, self.start, t, {"line_load_N_mm": self.sums["load"] / n,
                                               "thickness_um": self.sums["h"] / n, "porosity": self.sums["eps"] / n})
            self.roll = None
        return out

