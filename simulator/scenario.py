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
