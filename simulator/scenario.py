"""Scenario files: line sizes, noise, drifts and a timed script of setpoint steps and faults.

A scenario is YAML (format in docs/simulator.md). Unknown keys are an error, not a silent default, because a typo in a
test scenario would otherwise run the nominal line and pass for the wrong reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

FAULT_KINDS = ("dropout", "stuck", "spike", "nan", "cycler_channel", "server_restart")
ACTIONS = ("set", "fault")


class ScenarioError(ValueError):
    """The scenario file is malformed; the message says which key and what is expected."""


@dataclass(frozen=True)
class LineConfig:
    roll_length_m: float = 100.0
    segment_length_m: float = 10.0
    slurry_batch_volume_l: float = 5.0
    mixing_duration_s: float = 3600.0
    cell_interval_s: float = 600.0
    filling_duration_s: float = 60.0
    cycler_channels: int = 16  # 16 channels x 9600 s formation absorb one cell every 600 s
    formation_duration_s: float = 9600.0
    telemetry_interval_s: float = 60.0
    post_drying_duration_s: float = 14400.0
    remote_setpoints_enabled: bool = False


@dataclass(frozen=True)
class DriftConfig:
    """Slow disturbances: solid content per new batch (absolute mass fraction), pump wear and compaction resistance
    (fractions per simulated hour; positive wear means the pump delivers less than it is told)."""

    solid_content_per_batch: float = 0.0
    pump_wear_per_h: float = 0.0
    compaction_resistance_per_h: float = 0.0
    dew_point_per_h: float = 0.0


# The plant's true parameters a scenario may set per electrode (``plant: {cathode: {...}, anode: {...}}``), so that
# model-plant mismatch can be tested: the twin's models keep the process-chain defaults, the simulated line does not.
# Process-chain names (models.process_chain.ElectrodeParameters) plus two the chain has no field for:
# pump_delivery_efficiency (volume reaching the die / volume the pump's meter reports: slip and leakage the flow meter
# does not see, so only the wet-film caliper and the beta gauge reveal it) and compaction_resistance_loading_exp
# (gamma_c = gamma_c_ref * (m_dry / m_ref) ** k, m_ref the electrode's nominal dry loading).
# Value ranges: (low, high) open at fractions' and positives' ends, checked at load time.
PLANT_PARAMETERS: dict[str, tuple[float, float]] = {
    "solid_content": (0.0, 1.0),
    "rho_active_g_cm3": (0.0, 20.0),
    "rho_conductive_g_cm3": (0.0, 20.0),
    "rho_binder_g_cm3": (0.0, 20.0),
    "rho_solvent_g_cm3": (0.0, 20.0),
    "pump_delivery_efficiency": (0.0, 1.5),
    "dry_porosity_ref": (0.0, 1.0),
    "dry_porosity_exp_per_mg_cm2": (-1.0, 1.0),
    "min_porosity": (0.0, 1.0),
    "compaction_resistance_ref_N_mm": (0.0, 10000.0),
    "compaction_resistance_temp_coeff_per_K": (-1.0, 1.0),
    "compaction_resistance_loading_exp": (-5.0, 5.0),
    "particle_radius_um": (0.0, 1000.0),
    "specific_capacity_mAh_g": (0.0, 5000.0),
}
PLANT_ELECTRODES = ("cathode", "anode")


@dataclass(frozen=True)
class Event:
    at_s: float
    action: str
    node: str | None = None
    value: float | bool | None = None
    fault: str | None = None
    duration_s: float = 0.0
    magnitude: float = 1.3
    channel: str | None = None


@dataclass(frozen=True)
class Scenario:
    name: str = "default"
    description: str = ""
    noise_scale: float = 1.0
    batch_variation: float = 1.0
    line: LineConfig = field(default_factory=LineConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    setpoints: dict[str, float] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    # true plant parameters per electrode that differ from the process-chain defaults (PLANT_PARAMETERS)
    plant: dict[str, dict[str, float]] = field(default_factory=dict)


def _build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ScenarioError(f"{where} must be a mapping, got {type(data).__name__}")
    names = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(names)}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        default = getattr(cls(), key) if key != "at_s" and key != "action" else None
        kwargs[key] = _coerce(value, default, f"{where}.{key}")
    return cls(**kwargs)


def _coerce(value: Any, default: Any, where: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ScenarioError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ScenarioError(f"{where} must be a number, got {value!r}")
        if value != value or value in (float("inf"), float("-inf")):
            raise ScenarioError(f"{where} must be finite, got {value!r}")
        return type(default)(value)
    return value


def _event(data: Any, i: int) -> Event:
    where = f"events[{i}]"
    if not isinstance(data, dict):
        raise ScenarioError(f"{where} must be a mapping")
    for key in ("at_s", "action"):
        if key not in data:
            raise ScenarioError(f"{where} needs '{key}'")
    if not isinstance(data["at_s"], (int, float)) or data["at_s"] < 0:
        raise ScenarioError(f"{where}.at_s must be a number >= 0 (simulated seconds from start)")
    if data["action"] not in ACTIONS:
        raise ScenarioError(f"{where}.action must be one of {ACTIONS}, got {data['action']!r}")
    names = {f.name for f in fields(Event)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(names)}")
    ev = Event(**{k: v for k, v in data.items()})
    if ev.action == "set" and (ev.node is None or ev.value is None):
        raise ScenarioError(f"{where}: action 'set' needs 'node' (a ...Setpoint path) and 'value'")
    if ev.action == "fault":
        if ev.fault not in FAULT_KINDS:
            raise ScenarioError(f"{where}.fault must be one of {FAULT_KINDS}, got {ev.fault!r}")
        if ev.fault in ("dropout", "stuck", "spike", "nan") and not ev.node:
            raise ScenarioError(f"{where}: fault {ev.fault!r} needs 'node' (an analog measurement path)")
        if ev.fault == "cycler_channel" and not ev.channel:
            raise ScenarioError(f"{where}: fault 'cycler_channel' needs 'channel' (e.g. CH-02)")
        if ev.fault != "spike" and ev.duration_s <= 0:
            raise ScenarioError(f"{where}: fault {ev.fault!r} needs duration_s > 0")
    return ev


def _plant(data: Any) -> dict[str, dict[str, float]]:
    """``plant:`` -> {electrode: {parameter: value}}; every key and value checked (a typo must not run the nominal
    plant and pass a mismatch test for the wrong reason)."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ScenarioError("plant must map an electrode (cathode, anode) to {parameter: value}")
    out: dict[str, dict[str, float]] = {}
    for electrode, params in data.items():
        if electrode not in PLANT_ELECTRODES:
            raise ScenarioError(f"plant.{electrode}: unknown electrode; valid: {list(PLANT_ELECTRODES)}")
        if not isinstance(params, dict):
            raise ScenarioError(f"plant.{electrode} must be a mapping of parameter: value")
        unknown = sorted(set(params) - set(PLANT_PARAMETERS))
        if unknown:
            raise ScenarioError(f"plant.{electrode}: unknown parameter(s) {unknown}; valid: {sorted(PLANT_PARAMETERS)}")
        checked: dict[str, float] = {}
        for name, value in params.items():
            where = f"plant.{electrode}.{name}"
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
                    or value in (float("inf"), float("-inf")):
                raise ScenarioError(f"{where} must be a finite number, got {value!r}")
            lo, hi = PLANT_PARAMETERS[name]
            if not lo < value < hi:
                raise ScenarioError(f"{where} = {value} must lie strictly between {lo} and {hi}")
            checked[name] = float(value)
        out[str(electrode)] = checked
    return out


def parse_scenario(data: Any) -> Scenario:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError("a scenario must be a YAML mapping")
    known = {f.name for f in fields(Scenario)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ScenarioError(f"unknown top-level key(s) {unknown}; valid keys: {sorted(known)}")
    line = _build(LineConfig, data.get("line"), "line")
    if line.roll_length_m <= 0 or line.segment_length_m <= 0 or line.slurry_batch_volume_l <= 0:
        raise ScenarioError("line.roll_length_m, segment_length_m and slurry_batch_volume_l must be > 0")
    if not 1 <= line.cycler_channels <= 99:
        raise ScenarioError("line.cycler_channels must be 1..99")
    for key in ("cell_interval_s", "filling_duration_s", "formation_duration_s", "telemetry_interval_s",
                "post_drying_duration_s", "mixing_duration_s"):
        if getattr(line, key) <= 0:
            raise ScenarioError(f"line.{key} must be > 0")
    drift = _build(DriftConfig, data.get("drift"), "drift")
    setpoints = data.get("setpoints") or {}
    if not isinstance(setpoints, dict) or not all(isinstance(v, (int, float)) for v in setpoints.values()):
        raise ScenarioError("setpoints must map ...Setpoint paths to numbers")
    events = data.get("events") or []
    if not isinstance(events, list):
        raise ScenarioError("events must be a list")
    parsed = tuple(sorted((_event(e, i) for i, e in enumerate(events)), key=lambda e: e.at_s))
    noise = data.get("noise_scale", 1.0)
    variation = data.get("batch_variation", 1.0)
    for key, v in (("noise_scale", noise), ("batch_variation", variation)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ScenarioError(f"{key} must be a number >= 0")
    return Scenario(
        name=str(data.get("name", "default")), description=str(data.get("description", "")),
        noise_scale=float(noise), batch_variation=float(variation), line=line, drift=drift,
        setpoints={str(k): float(v) for k, v in setpoints.items()}, events=parsed,
        plant=_plant(data.get("plant")),
    )


def load_scenario(path: str | Path | None) -> Scenario:
    if path is None:
        return Scenario()
    p = Path(path)
    if not p.is_file():
        raise ScenarioError(f"scenario file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{p} is not valid YAML: {exc}") from exc
    return parse_scenario(data)


# -- the scenario family (issue 15): random scenarios from documented ranges -------------------------------------------
@dataclass(frozen=True)
class FamilyRanges:
    """Ranges of every drift and disturbance the simulator supports, for ``draw_scenario``. Pairs are (low, high),
    drawn uniformly; ``*_abs`` ranges are magnitudes with a random sign. ``plant_offsets_abs``: the cathode plant's
    true parameters off the literature values the twin's models keep (model-plant mismatch, ``plant:``), each by a
    fraction drawn from the range with a random sign. What the simulator cannot vary yet, and the family therefore
    leaves out: the coating width (a constant of the lane, not a setpoint)."""

    duration_s: float = 3.0 * 3600.0
    noise_scale: tuple[float, float] = (0.5, 2.0)           # gauge and actuator noise, x the instruments' sigmas
    batch_variation: tuple[float, float] = (0.0, 2.0)       # batch-to-batch solid content, x 0.2 %-points
    slurry_batch_volume_l: tuple[float, float] = (0.3, 1.2)  # a batch lasts 26-100 min at the nominal pump flow
    roll_length_m: tuple[float, float] = (20.0, 60.0)
    solid_content_per_batch_abs: tuple[float, float] = (0.002, 0.008)  # mass fraction per batch, either sign
    pump_wear_per_h: tuple[float, float] = (0.0, 0.05)      # the pump delivers this fraction less per hour
    compaction_resistance_per_h_abs: tuple[float, float] = (0.02, 0.08)  # fraction per hour, either sign
    dew_point_per_h: tuple[float, float] = (0.0, 3.0)       # K per hour
    speed_steps: tuple[int, int] = (0, 2)                   # web-speed steps at the HMI (count)
    speed_step_at_s: tuple[float, float] = (1800.0, 9000.0)
    speed_m_min: tuple[float, float] = (0.8, 1.25)          # new web speed of each step
    dropouts: tuple[int, int] = (0, 2)                      # gauge dropouts (count)
    dropout_at_s: tuple[float, float] = (1200.0, 9600.0)
    dropout_s: tuple[float, float] = (20.0, 120.0)
    dropout_nodes: tuple[str, ...] = ("Drying.Cathode.MassLoading", "Calendering.Cathode.CoatingDensity")
    plant_offsets_abs: dict[str, tuple[float, float]] = field(default_factory=lambda: {
        "solid_content": (0.0, 0.03), "rho_active_g_cm3": (0.0, 0.03), "dry_porosity_ref": (0.0, 0.05),
        "compaction_resistance_ref_N_mm": (0.0, 0.10)})
    pump_delivery_efficiency: tuple[float, float] = (0.92, 1.0)  # slip the flow meter does not see


def draw_scenario(seed: int, ranges: FamilyRanges | None = None) -> Scenario:
    """One scenario of the family, the same for the same seed (numpy's Generator, drawn in a fixed order)."""
    import numpy as np

    r = ranges or FamilyRanges()
    rng = np.random.default_rng(seed)

    def u(lo_hi: tuple[float, float]) -> float:
        return float(rng.uniform(*lo_hi))

    def signed(lo_hi: tuple[float, float]) -> float:
        return float(rng.choice([-1.0, 1.0])) * u(lo_hi)

    noise, variation = u(r.noise_scale), u(r.batch_variation)
    line = LineConfig(roll_length_m=round(u(r.roll_length_m), 1), segment_length_m=5.0,
                      slurry_batch_volume_l=round(u(r.slurry_batch_volume_l), 3), cell_interval_s=600.0,
                      cycler_channels=4, formation_duration_s=1800.0, post_drying_duration_s=1800.0,
                      remote_setpoints_enabled=True)
    drift = DriftConfig(solid_content_per_batch=signed(r.solid_content_per_batch_abs),
                        pump_wear_per_h=u(r.pump_wear_per_h),
                        compaction_resistance_per_h=signed(r.compaction_resistance_per_h_abs),
                        dew_point_per_h=u(r.dew_point_per_h))
    events = [Event(at_s=round(u(r.speed_step_at_s)), action="set", node="Coating.Cathode.WebSpeedSetpoint",
                    value=round(u(r.speed_m_min), 3))
              for _ in range(int(rng.integers(r.speed_steps[0], r.speed_steps[1] + 1)))]
    events += [Event(at_s=round(u(r.dropout_at_s)), action="fault", fault="dropout",
                     node=str(rng.choice(list(r.dropout_nodes))), duration_s=round(u(r.dropout_s)))
               for _ in range(int(rng.integers(r.dropouts[0], r.dropouts[1] + 1)))]
    # drawn last, so that the seeds' earlier draws (and the scenarios recorded before the plant offsets) stay the same
    from models import process_chain as pc

    nominal = pc.PARAMETER_SETS["cathode"]
    plant: dict[str, float] = {name: round(float(getattr(nominal, name)) * (1.0 + signed(lo_hi)), 5)
                               for name, lo_hi in sorted(r.plant_offsets_abs.items())}
    plant["pump_delivery_efficiency"] = round(u(r.pump_delivery_efficiency), 4)
    desc = (f"family seed {seed}: solid content {drift.solid_content_per_batch:+.4f}/batch of "
            f"{line.slurry_batch_volume_l} l, pump wear {drift.pump_wear_per_h:.3f}/h, compaction "
            f"{drift.compaction_resistance_per_h:+.3f}/h, dew point {drift.dew_point_per_h:+.2f} K/h, "
            f"noise x{noise:.2f}, batch variation x{variation:.2f}, "
            f"{sum(e.action == 'set' for e in events)} speed step(s), "
            f"{sum(e.action == 'fault' for e in events)} dropout(s), cathode plant "
            + ", ".join(f"{k} {v:g}" for k, v in plant.items()))
    return Scenario(name=f"family-{seed}", description=desc, noise_scale=noise, batch_variation=variation,
                    line=line, drift=drift, events=tuple(sorted(events, key=lambda e: e.at_s)),
                    plant={"cathode": plant})
