"""One electrode lane of the web process: mixing, slot-die coating, drying, calendering, slitting, post-drying.

The structure at the coating head is the process chain of seed 001 (eq. 8-16, ``models.process_chain``); what the
gauges see is that structure carried downstream on the web, so every gauge lags the die by distance / web speed.
Distances (m from the die): wet laser caliper 0.5; dryer 2 zones x 3 m; dry laser caliper and beta gauge 7.0;
winder 7.5. The calender processes completed coated rolls first-in first-out at the coater's current web speed
(it runs synchronised with the coater, one roll behind); its caliper sits 0.5 m after the nip.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import models.process_chain as pc

from .dynamics import SIGMA, TAU_S, FirstOrder, Noise
from .scenario import DriftConfig, LineConfig
from .trace import IdCounter, TraceLog, inp, lane_letter

WET_CALIPER_M = 0.5
BETA_GAUGE_M = 7.0
DRY_CALIPER_M = 7.0
WINDER_M = 7.5
CALENDER_CALIPER_M = 0.5
SLIT_COILS = 2
SLIT_WIDTH_MM = 60.0

FORMULATION = {
    "Cathode": ("NMC 94 / CB 3 / PVDF 3 wt% in NMP", ("NMC", "CB", "PVDF", "NMP"), "AL"),
    "Anode": ("Graphite 95.5 / CB 1 / CMC-SBR 3.5 wt% in water", ("GR", "CB", "CMC", "SBR", "H2O"), "CU"),
}
INITIAL_MOISTURE_PPM = {"Cathode": 800.0, "Anode": 1500.0}  # after coating and storage in the dry room (assumed)
EQUILIBRIUM_MOISTURE_PPM = {"Cathode": 150.0, "Anode": 300.0}  # CMC binds more water (seed 004, post-drying)
DRYER = {"Zone1Temperature": 90.0, "Zone2Temperature": 110.0, "AirFlow": 600.0}
OVEN_TEMPERATURE_C = 120.0
OVEN_VACUUM_MBAR = 10.0
AMBIENT_MBAR = 1013.0


def lot_id(material: str) -> str:
    return f"LOT-{material}-0001"


@dataclass
class SlurryBatch:
    id: str
    solid_content: float
    slurry_density_g_cm3: float
    volume_left_cm3: float


@dataclass
class CoatedRoll:
    """A coated roll and its structure along its length (arrays in roll positions, m)."""

    id: str
    number: int
    lane: str
    start_S_m: float
    start_s: float
    length_m: float = 0.0
    pos_m: list[float] = field(default_factory=list)
    m_dry_mg_cm2: list[float] = field(default_factory=list)
    eps_dry: list[float] = field(default_factory=list)
    beta_pos_m: list[float] = field(default_factory=list)
    beta_mg_cm2: list[float] = field(default_factory=list)
    cal_pos_m: list[float] = field(default_factory=list)
    cal_thickness_um: list[float] = field(default_factory=list)
    cal_porosity: list[float] = field(default_factory=list)
    batches: list[list[Any]] = field(default_factory=list)  # [batch id, from_m, to_m]
    sums: dict[str, float] = field(default_factory=dict)
    n: int = 0
    wet_um: list[float] = field(default_factory=list)
    dry_um: list[float] = field(default_factory=list)

    def add_param(self, name: str, value: float) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + value

    def mean_param(self, name: str) -> float:
        return self.sums.get(name, 0.0) / max(self.n, 1)

    def interp(self, xs: Any, ys: Any, x: float) -> float:
        if len(xs) == 0:
            return math.nan
        if isinstance(xs, np.ndarray):
            return float(np.interp(x, xs, ys))
        return float(_interp(x, xs, ys))

    def mean_over(self, xs: Any, ys: Any, a: float, b: float) -> float:
        """Mean of a profile over [a, b] (the sheets of a cell)."""
        if len(xs) == 0:
            return math.nan
        if isinstance(xs, np.ndarray):
            lo, hi = int(np.searchsorted(xs, a, "left")), int(np.searchsorted(xs, b, "right"))
            if hi > lo:
                return float(np.mean(ys[lo:hi]))
        else:
            lo, hi = bisect.bisect_left(xs, a), bisect.bisect_right(xs, b)
            if hi > lo:
                return sum(ys[lo:hi]) / (hi - lo)
        return self.interp(xs, ys, 0.5 * (a + b))

    def compact(self, step_m: float = 0.05) -> None:
        """Once calendered, keep only what the cell line needs, on a 5 cm grid (sheets are 10 cm): a finished roll
        then costs ~50 kB instead of MBs, so coils waiting for assembly do not grow the process without bound."""
        grid = np.arange(0.0, self.length_m + step_m / 2, step_m)
        for xs_name, ys_names in (("pos_m", ("m_dry_mg_cm2", "eps_dry")),
                                  ("cal_pos_m", ("cal_thickness_um", "cal_porosity")),
                                  ("beta_pos_m", ("beta_mg_cm2",))):
            xs = np.asarray(getattr(self, xs_name), dtype=np.float64)
            for name in ys_names:
                ys = np.asarray(getattr(self, name), dtype=np.float64)
                setattr(self, name, np.interp(grid, xs, ys) if len(xs) else np.empty(0))
            setattr(self, xs_name, grid if len(xs) else np.empty(0))
        self.wet_um, self.dry_um = [], []


def _interp(x: float, xs: list[float], ys: list[float]) -> float:
    i = bisect.bisect_left(xs, x)
    if i <= 0:
        return ys[0]
    if i >= len(xs):
        return ys[-1]
    x0, x1 = xs[i - 1], xs[i]
    if x1 == x0:
        return ys[i]
    w = (x - x0) / (x1 - x0)
    return ys[i - 1] + w * (ys[i] - ys[i - 1])


@dataclass
class Coil:
    """A slit coil; positions are coated-roll positions (calender elongation neglected, docs/simulator.md)."""

    id: str
    lane: str
    roll: CoatedRoll
    length_m: float
    next_from_m: float = 0.0
    moisture_ppm: float = 0.0


class ElectrodeLane:
    """The web process of one electrode; ``step`` advances it and returns the gauge readings by node path."""

    def __init__(
        self,
        lane: str,
        line: LineConfig,
        drift: DriftConfig,
        noise: Noise,
        batch_variation: float,
        ids: IdCounter,
        trace: TraceLog,
        profile_points: int = 0,
        profile_array: bool = False,
        plant: Mapping[str, float] | None = None,
    ) -> None:
        self.lane = lane
        self.L = lane_letter(lane)
        # the plant's true parameters: the process-chain defaults unless the scenario's ``plant`` section says
        # otherwise (model-plant mismatch, simulator/scenario.py PLANT_PARAMETERS)
        true: dict[str, Any] = dict(plant or {})
        self.delivery_efficiency = float(true.pop("pump_delivery_efficiency", 1.0))
        self.gamma_loading_exp = float(true.pop("compaction_resistance_loading_exp", 0.0))
        nominal = pc.PARAMETER_SETS[lane.lower()]
        self.gamma_ref_loading_mg_cm2 = float(pc.run_chain(electrode=lane.lower())["drying"]["dry_mass_loading_mg_cm2"])
        self.p = dataclasses.replace(nominal, **true) if true else nominal
        self.line = line
        self.drift = drift
        self.noise = noise
        self.batch_variation = batch_variation
        self.ids = ids
        self.trace = trace
        self.profile_points = profile_points
        self.profile_array = profile_array
        p = self.p
        self.v_s = float(pc.solids_specific_volume_cm3_g(p.w_active, p.w_conductive, p.w_binder,
                                                          p.rho_active_g_cm3, p.rho_conductive_g_cm3,
                                                          p.rho_binder_g_cm3))
        self.rho_solids = 1.0 / self.v_s
        self.act = {
            "PumpFlowRate": FirstOrder(p.pump_flow_rate_cm3_h, p.pump_flow_rate_cm3_h, TAU_S["PumpFlowRate"]),
            "WebSpeed": FirstOrder(p.web_speed_m_min, p.web_speed_m_min, TAU_S["WebSpeed"]),
            "LineLoad": FirstOrder(p.line_load_N_mm, p.line_load_N_mm, TAU_S["LineLoad"]),
            "RollTemperature": FirstOrder(p.roll_temperature_C, p.roll_temperature_C, TAU_S["RollTemperature"]),
            "OvenTemperature": FirstOrder(OVEN_TEMPERATURE_C, OVEN_TEMPERATURE_C, TAU_S["OvenTemperature"]),
            **{k: FirstOrder(v, v, TAU_S[k]) for k, v in DRYER.items()},
        }
        self.station = {st: f"{st}.{lane}" for st in ("Mixing", "Coating", "Drying", "Calendering", "Slitting",
                                                      "PostDrying")}
        self.pump_wear = 0.0
        self.compaction_factor = 1.0
        self.batch_number = 0
        self.batch: SlurryBatch = self._new_batch(t_s=0.0)
        self.S_m = 0.0
        self.hist_S: deque[float] = deque()
        self.hist: deque[tuple[float, ...]] = deque()  # (S, h_wet, m_wet, m_dry, h_dry, roll_no, pos)
        self.rolls: dict[int, CoatedRoll] = {}
        self.roll = self._new_roll(0.0, 0.0)
        self.to_wind: deque[CoatedRoll] = deque([self.roll])
        self.cal_queue: deque[CoatedRoll] = deque()
        self.cal_roll: CoatedRoll | None = None
        self.cal_pos_m = 0.0
        self.cal_id = ""
        self.cal_start_s = 0.0
        self.last_slit: tuple[str, str] = ("", "")
        self.oven_queue: deque[list[Coil]] = deque()
        self.oven: list[Coil] = []
        self.oven_start_s = 0.0
        self.oven_moisture = 0.0
        self.vacuum_mbar = AMBIENT_MBAR
        self.coils: deque[Coil] = deque()  # post-dried, ready for assembly

    # ---------------------------------------------------------------------------------------------------------------
    @property
    def formulation(self) -> str:
        return FORMULATION[self.lane][0]

    def set_setpoint(self, item: str, value: float) -> None:
        self.act[item].setpoint = float(value)

    def setpoint(self, item: str) -> float:
        return self.act[item].setpoint

    def _new_batch(self, t_s: float) -> SlurryBatch:
        self.batch_number += 1
        bid = f"SB-{self.L}-{self.batch_number:06d}"
        drift = self.drift.solid_content_per_batch * (self.batch_number - 1)
        # batch-to-batch variation is process variation, not instrument noise: scaled by batch_variation only
        x = self.p.solid_content + drift + float(self.noise.rng.standard_normal()) * SIGMA["SolidContent_abs"] \
            * self.batch_variation
        x = min(max(x, 0.05), 0.95)
        rho = float(pc.slurry_density_g_cm3(self.v_s, x, self.p.rho_solvent_g_cm3))
        batch = SlurryBatch(bid, x, rho, self.line.slurry_batch_volume_l * 1000.0)
        mats = FORMULATION[self.lane][1]
        self.trace.emit("created", bid, "SlurryBatch", "Mixing", f"Mixing/{self.lane}", f"Mixer-{self.L}",
                        start_s=self.line.mixing_duration_s,
                        inputs=[inp(lot_id(m), "RawMaterialLot") for m in mats],
                        parameters={"solid_content": x, "w_active": self.p.w_active,
                                    "w_conductive": self.p.w_conductive, "w_binder": self.p.w_binder},
                        properties={"slurry_density_g_cm3": rho, "volume_l": self.line.slurry_batch_volume_l,
                                    "formulation": self.formulation})
        return batch

    def _new_roll(self, S_m: float, t_s: float) -> CoatedRoll:
        n = self.ids.next(f"CR-{self.L}")
        roll = CoatedRoll(f"CR-{self.L}-{n:06d}", n, self.lane, S_m, t_s)
        self.rolls[n] = roll
        return roll

    # ---------------------------------------------------------------------------------------------------------------
    def step(self, dt_s: float, t_s: float) -> dict[str, Any]:
        """Advance dt_s; returns {node path: value} of everything measured this step (gauges without web: omitted)."""
        out: dict[str, Any] = {}
        hours = dt_s / 3600.0
        self.pump_wear += self.drift.pump_wear_per_h * hours
        self.compaction_factor *= 1.0 + self.drift.compaction_resistance_per_h * hours
        for a in self.act.values():
            a.step(dt_s)
        self._coat(dt_s, t_s, out)
        self._gauges(t_s, out)
        self._calender(dt_s, t_s, out)
        self._post_dry(dt_s, t_s, out)
        return out

    def _coat(self, dt_s: float, t_s: float, out: dict[str, Any]) -> None:
        p = self.p
        q = max(self.act["PumpFlowRate"].value * (1.0 - self.pump_wear), 0.0)  # what the flow meter reads
        q_die = q * self.delivery_efficiency  # what reaches the die (slip / leakage the meter does not see)
        v = max(self.act["WebSpeed"].value, 1e-6)
        # slurry consumption; a new batch from the mixer when the tank runs dry (mixing is done ahead of time)
        self.batch.volume_left_cm3 -= q_die * dt_s / 3600.0
        if self.batch.volume_left_cm3 <= 0.0:
            old = self.batch
            self.trace.emit("consumed", old.id, "SlurryBatch", "Coating", f"Coating/{self.lane}",
                            f"SlotDieCoater-{self.L}")
            self.batch = self._new_batch(t_s)
        h_wet = float(pc.wet_film_thickness_um(q_die, v, p.coating_width_mm))
        m_wet = float(pc.wet_mass_loading_mg_cm2(self.batch.slurry_density_g_cm3, h_wet))
        m_dry = float(pc.dry_mass_loading_mg_cm2(m_wet, self.batch.solid_content))
        eps = float(pc.dry_porosity(m_wet, p.dry_porosity_ref, p.dry_porosity_ref_wet_loading_mg_cm2,
                                    p.dry_porosity_exp_per_mg_cm2))
        h_dry = float(pc.coating_thickness_um(m_dry, self.rho_solids, eps))
        self.S_m += v * dt_s / 60.0
        pos = self.S_m - self.roll.start_S_m
        if pos >= self.line.roll_length_m:
            self.roll.length_m = self.line.roll_length_m
            start_S = self.roll.start_S_m + self.line.roll_length_m
            self.roll = self._new_roll(start_S, t_s)
            self.to_wind.append(self.roll)
            pos = self.S_m - start_S
        roll = self.roll
        roll.pos_m.append(pos)
        roll.m_dry_mg_cm2.append(m_dry)
        roll.eps_dry.append(eps)
        roll.n += 1
        for name, value in (("pump_flow_rate_cm3_h", q), ("web_speed_m_min", v),
                            ("zone1_temperature_C", self.act["Zone1Temperature"].value),
                            ("zone2_temperature_C", self.act["Zone2Temperature"].value),
                            ("air_flow_m3_h", self.act["AirFlow"].value)):
            roll.add_param(name, value)
        if roll.batches and roll.batches[-1][0] == self.batch.id:
            roll.batches[-1][2] = pos
        else:
            roll.batches.append([self.batch.id, max(pos - v * dt_s / 60.0, 0.0), pos])
        self.hist_S.append(self.S_m)
        self.hist.append((self.S_m, h_wet, m_wet, m_dry, h_dry, float(roll.number), pos))
        while len(self.hist_S) > 2 and self.hist_S[1] < self.S_m - WINDER_M - 1.0:
            self.hist_S.popleft()
            self.hist.popleft()
        n = self.noise
        c, m = self.station["Coating"], self.station["Mixing"]
        out[f"{m}.BatchId"] = self.batch.id
        out[f"{m}.Formulation"] = self.formulation
        out[f"{m}.SolidContent"] = self.batch.solid_content * 100.0
        out[f"{m}.SlurryDensity"] = self.batch.slurry_density_g_cm3
        out[f"{m}.BatchRemainingVolume"] = max(self.batch.volume_left_cm3, 0.0) / 1000.0
        out[f"{c}.PumpFlowRate"] = n.rel(q, SIGMA["PumpFlowRate_rel"])
        out[f"{c}.WebSpeed"] = n.rel(v, SIGMA["WebSpeed_rel"])
        out[f"{c}.CoatingWidth"] = p.coating_width_mm
        out[f"{c}.RollId"] = roll.id
        out[f"{c}.RollPosition"] = pos
        out[f"{c}.SlurryBatchId"] = self.batch.id
        d = self.station["Drying"]
        for item in DRYER:
            sigma = SIGMA["AirFlow_rel"] if item == "AirFlow" else None
            a = self.act[item].value
            out[f"{d}.{item}"] = n.rel(a, sigma) if sigma else n.abs(a, SIGMA["temperature_K"])
        for item in ("PumpFlowRate", "WebSpeed"):
            out[f"{c}.{item}Setpoint"] = self.act[item].setpoint
        for item in DRYER:
            out[f"{d}.{item}Setpoint"] = self.act[item].setpoint

    def _at(self, S: float) -> tuple[float, ...] | None:
        """History entry interpolated at cumulative web position S (None before the web got there)."""
        if not self.hist_S or S < 0 or S > self.hist_S[-1]:
            return None
        i = bisect.bisect_left(self.hist_S, S)
        if i <= 0:
            return self.hist[0]
        a, b = self.hist[i - 1], self.hist[i]
        w = (S - a[0]) / (b[0] - a[0]) if b[0] > a[0] else 1.0
        vals = tuple(a[k] + w * (b[k] - a[k]) for k in range(5))
        # roll identity and position from the entry at or after S (material coated after the previous sample)
        return (*vals, b[5], b[6] - (b[0] - S))

    def _gauges(self, t_s: float, out: dict[str, Any]) -> None:
        n = self.noise
        c, d = self.station["Coating"], self.station["Drying"]
        wet = self._at(self.S_m - WET_CALIPER_M)
        # draw noise every step in a fixed order, whether or not the web has reached the gauge (determinism)
        e_wet = n.abs(0.0, SIGMA["WetFilmThickness_um"])
        e_dry = n.abs(0.0, SIGMA["DryFilmThickness_um"])
        e_beta = n.rel(1.0, SIGMA["MassLoading_rel"])
        if wet is not None:
            h = wet[1] + e_wet
            out[f"{c}.WetFilmThickness"] = h
            # eq. 11 with the density of the slurry that stretch was coated with (wet[2] / wet[1] = rho_slurry / 10)
            out[f"{c}.WetMassLoading"] = h * wet[2] / wet[1] if wet[1] > 0 else math.nan
        beta = self._at(self.S_m - BETA_GAUGE_M)
        if beta is not None:
            m_meas = beta[3] * e_beta
            h_meas = beta[4] + e_dry
            roll = self.rolls[int(beta[5])]
            pos = max(beta[6], 0.0)
            roll.beta_pos_m.append(pos)
            roll.beta_mg_cm2.append(m_meas)
            roll.wet_um.append(beta[1])
            roll.dry_um.append(h_meas)
            out[f"{d}.MassLoading"] = m_meas
            out[f"{d}.DryFilmThickness"] = h_meas
            density = 10.0 * m_meas / h_meas if h_meas > 0 else math.nan
            out[f"{d}.CoatingDensity"] = density
            out[f"{d}.Porosity"] = (1.0 - density / self.rho_solids) * 100.0
            out[f"{d}.RollId"] = roll.id
            out[f"{d}.RollPosition"] = pos
            if self.profile_points:
                # cross-web tracks: a gentle edge-to-centre profile (-1 % at the edges) plus the gauge's own noise
                k = self.profile_points
                xi = (np.arange(k) + 0.5) / k - 0.5
                draws = n.rng.standard_normal(k) * SIGMA["MassLoading_rel"] * n.scale
                track = (beta[3] * (1.0 - 0.04 * xi * xi) * (1.0 + draws)).tolist()
                if self.profile_array:
                    out[f"{d}.MassLoadingProfile"] = track
                else:
                    for i, v in enumerate(track):
                        out[f"{d}.MassLoadingProfile.P{i:03d}"] = v
        # winder: a roll is complete when its end has passed the last gauge
        while self.to_wind and self.to_wind[0].length_m > 0 and \
                self.S_m - WINDER_M >= self.to_wind[0].start_S_m + self.to_wind[0].length_m:
            self._roll_done(self.to_wind.popleft(), t_s)

    def _roll_done(self, roll: CoatedRoll, t_s: float) -> None:
        lane = self.lane
        inputs = [inp(b, "SlurryBatch", f, min(to, roll.length_m)) for b, f, to in roll.batches]
        inputs.append(inp(lot_id(FORMULATION[lane][2]), "RawMaterialLot"))
        beta = roll.beta_mg_cm2
        mean = sum(beta) / len(beta) if beta else math.nan
        self.trace.emit(
            "created", roll.id, "CoatedRoll", "Coating", f"Coating/{lane}", f"SlotDieCoater-{self.L}",
            start_s=t_s - roll.start_s, inputs=inputs,
            parameters={k: roll.mean_param(k) for k in roll.sums} | {"coating_width_mm": self.p.coating_width_mm},
            properties={"length_m": roll.length_m, "mass_loading_mg_cm2_mean": mean,
                        "wet_film_thickness_um_mean": _mean(roll.wet_um),
                        "dry_film_thickness_um_mean": _mean(roll.dry_um)},
        )
        seg_len = self.line.segment_length_m
        k, a = 0, 0.0
        while a < roll.length_m - 1e-9:
            k += 1
            b = min(a + seg_len, roll.length_m)
            seg = f"SEG-{self.L}-{roll.number:06d}-{k:03d}"
            self.trace.emit("created", seg, "RollSegment", "Coating", f"Coating/{lane}", f"SlotDieCoater-{self.L}",
                            start_s=t_s - roll.start_s, inputs=[inp(roll.id, "CoatedRoll", a, b)],
                            properties={"length_m": b - a,
                                        "mass_loading_mg_cm2_mean": roll.mean_over(roll.beta_pos_m, beta, a, b)})
            a = b
        self.cal_queue.append(roll)
        self.rolls.pop(roll.number, None)  # past the last gauge: only the calender and the coils refer to it now

    # ---------------------------------------------------------------------------------------------------------------
    def gamma_c_N_mm(self, dry_loading_mg_cm2: float | None = None) -> float:
        """Compaction resistance now (drift, roll temperature) at a dry loading (its mass-loading dependence; the
        nominal loading when None)."""
        p = self.p
        gamma = float(pc.compaction_resistance_N_mm(
            p.compaction_resistance_ref_N_mm * self.compaction_factor, self.act["RollTemperature"].value,
            p.roll_temperature_ref_C, p.compaction_resistance_temp_coeff_per_K))
        if dry_loading_mg_cm2 is None or self.gamma_loading_exp == 0.0:
            return gamma
        return float(pc.compaction_resistance_at_loading_N_mm(gamma, dry_loading_mg_cm2, self.gamma_ref_loading_mg_cm2,
                                                              self.gamma_loading_exp))

    def _calender(self, dt_s: float, t_s: float, out: dict[str, Any]) -> None:
        n = self.noise
        k = self.station["Calendering"]
        load = self.act["LineLoad"].value
        temp = self.act["RollTemperature"].value
        out[f"{k}.LineLoad"] = n.abs(load, SIGMA["LineLoad_N_mm"])
        out[f"{k}.RollTemperature"] = n.abs(temp, SIGMA["temperature_K"])
        out[f"{k}.LineLoadSetpoint"] = self.act["LineLoad"].setpoint
        out[f"{k}.RollTemperatureSetpoint"] = self.act["RollTemperature"].setpoint
        e_cal = n.abs(0.0, SIGMA["CalenderedThickness_um"])
        if self.cal_roll is None and self.cal_queue:
            self.cal_roll = self.cal_queue.popleft()
            self.cal_pos_m = 0.0
            self.cal_id = f"CAL-{self.L}-{self.cal_roll.number:06d}"
            self.cal_start_s = t_s
        roll = self.cal_roll
        if roll is None:
            out[f"{k}.State"] = "idle"
            return
        out[f"{k}.State"] = "running"
        self.cal_pos_m += max(self.act["WebSpeed"].value, 0.0) * dt_s / 60.0
        p = self.p
        if self.cal_pos_m <= roll.length_m:
            x = self.cal_pos_m
            eps_dry = roll.interp(roll.pos_m, roll.eps_dry, x)
            m_dry = roll.interp(roll.pos_m, roll.m_dry_mg_cm2, x)
            eps = float(pc.calendered_porosity(eps_dry, p.min_porosity, load, self.gamma_c_N_mm(m_dry)))
            roll.cal_pos_m.append(x)
            roll.cal_porosity.append(eps)
            roll.cal_thickness_um.append(float(pc.coating_thickness_um(m_dry, self.rho_solids, eps)))
            roll.add_param("line_load_N_mm", load)
            roll.add_param("roll_temperature_C", temp)
        xc = self.cal_pos_m - CALENDER_CALIPER_M
        if 0.0 <= xc <= roll.length_m and roll.cal_pos_m:
            h = roll.interp(roll.cal_pos_m, roll.cal_thickness_um, xc) + e_cal
            m_beta = roll.interp(roll.beta_pos_m, roll.beta_mg_cm2, xc)
            density = 10.0 * m_beta / h if h > 0 else math.nan
            porosity = 1.0 - density / self.rho_solids
            out[f"{k}.CalenderedThickness"] = h
            out[f"{k}.CoatingDensity"] = density
            out[f"{k}.Porosity"] = porosity * 100.0
            out[f"{k}.ActiveVolumeFraction"] = float(pc.solid_volume_fraction(
                porosity, p.w_active, p.rho_active_g_cm3, self.v_s))
            out[f"{k}.RollPosition"] = xc
        out[f"{k}.RollId"] = self.cal_id
        out[f"{k}.SourceRollId"] = roll.id
        if xc > roll.length_m:
            self._calendered(roll, t_s)
            self.cal_roll = None

    def _calendered(self, roll: CoatedRoll, t_s: float) -> None:
        lane, L = self.lane, self.L
        cal_n = max(len(roll.cal_pos_m), 1)
        self.trace.emit(
            "created", self.cal_id, "CalenderedRoll", "Calendering", f"Calendering/{lane}", f"Calender-{L}",
            start_s=t_s - self.cal_start_s, inputs=[inp(roll.id, "CoatedRoll")],
            parameters={"line_load_N_mm": roll.sums.get("line_load_N_mm", 0.0) / cal_n,
                        "roll_temperature_C": roll.sums.get("roll_temperature_C", 0.0) / cal_n},
            properties={"length_m": roll.length_m, "calendered_thickness_um_mean": _mean(roll.cal_thickness_um),
                        "porosity_mean": _mean(roll.cal_porosity)},
        )
        self.trace.emit("consumed", roll.id, "CoatedRoll", "Calendering", f"Calendering/{lane}", f"Calender-{L}")
        roll.compact()
        coils = [Coil(f"SC-{L}-{roll.number:06d}-{i}", lane, roll, roll.length_m,
                      moisture_ppm=INITIAL_MOISTURE_PPM[lane]) for i in range(1, SLIT_COILS + 1)]
        for coil in coils:
            self.trace.emit("created", coil.id, "SlitCoil", "Slitting", f"Slitting/{lane}", f"Slitter-{L}",
                            inputs=[inp(self.cal_id, "CalenderedRoll", 0.0, roll.length_m)],
                            parameters={"slit_width_mm": SLIT_WIDTH_MM},
                            properties={"length_m": roll.length_m, "width_mm": SLIT_WIDTH_MM})
        self.trace.emit("consumed", self.cal_id, "CalenderedRoll", "Slitting", f"Slitting/{lane}", f"Slitter-{L}")
        self.last_slit = (self.cal_id, ",".join(c.id for c in coils))
        self.oven_queue.append(coils)

    def _post_dry(self, dt_s: float, t_s: float, out: dict[str, Any]) -> None:
        n = self.noise
        s, pdry = self.station["Slitting"], self.station["PostDrying"]
        if self.last_slit[0]:
            out[f"{s}.SourceRollId"], out[f"{s}.CoilIds"] = self.last_slit
            out[f"{s}.SlitWidth"] = SLIT_WIDTH_MM
        temp = self.act["OvenTemperature"].value
        out[f"{pdry}.OvenTemperature"] = n.abs(temp, SIGMA["temperature_K"])
        out[f"{pdry}.OvenTemperatureSetpoint"] = self.act["OvenTemperature"].setpoint
        target = OVEN_VACUUM_MBAR if self.oven else AMBIENT_MBAR
        self.vacuum_mbar += (target - self.vacuum_mbar) * (1.0 - math.exp(-dt_s / 60.0))
        out[f"{pdry}.Vacuum"] = max(n.abs(self.vacuum_mbar, SIGMA["Vacuum_mbar"]), 0.0)
        if not self.oven and self.oven_queue:
            self.oven = self.oven_queue.popleft()
            self.oven_start_s = t_s
            self.oven_moisture = self.oven[0].moisture_ppm
            self._oven_sums = [0.0, 0.0, 0]
        if not self.oven:
            out[f"{pdry}.State"] = "idle"
            out[f"{pdry}.CoilIds"] = ""
            return
        self.oven_moisture = float(pc.post_drying_moisture_ppm(
            self.oven_moisture, temp, dt_s / 3600.0, EQUILIBRIUM_MOISTURE_PPM[self.lane]))
        self._oven_sums[0] += temp
        self._oven_sums[1] += self.vacuum_mbar
        self._oven_sums[2] += 1
        out[f"{pdry}.State"] = "drying"
        out[f"{pdry}.CoilIds"] = ",".join(c.id for c in self.oven)
        out[f"{pdry}.ResidualMoisture"] = self.oven_moisture
        if t_s - self.oven_start_s >= self.line.post_drying_duration_s:
            k = max(self._oven_sums[2], 1)
            for coil in self.oven:
                coil.moisture_ppm = self.oven_moisture
                self.trace.emit("processed", coil.id, "SlitCoil", "PostDrying", f"PostDrying/{self.lane}",
                                f"VacuumOven-{self.L}", start_s=t_s - self.oven_start_s,
                                parameters={"oven_temperature_C": self._oven_sums[0] / k,
                                            "vacuum_mbar": self._oven_sums[1] / k,
                                            "duration_h": (t_s - self.oven_start_s) / 3600.0},
                                properties={"residual_moisture_ppm": self.oven_moisture})
                self.coils.append(coil)
            self.oven = []


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan
