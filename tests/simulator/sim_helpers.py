"""Shared helpers for the simulator tests: scenario files, an in-process plant, record reading, OPC UA clients."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from simulator.plant import Plant
from simulator.scenario import parse_scenario
from simulator.spec import NAMESPACE_URI

START = datetime(2026, 1, 1, tzinfo=UTC)
START_ISO = "2026-01-01T00:00:00Z"

QUIET_LINE: dict[str, Any] = {
    "noise_scale": 0.0,
    "batch_variation": 0.0,
    "line": {"roll_length_m": 5, "segment_length_m": 5, "cell_interval_s": 30, "filling_duration_s": 30,
             "cycler_channels": 2, "formation_duration_s": 600, "telemetry_interval_s": 30,
             "post_drying_duration_s": 300},
}


def write_scenario(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def quiet(**overrides: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(QUIET_LINE))
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return data


def plant(data: dict[str, Any] | None = None, seed: int = 0) -> Plant:
    return Plant(parse_scenario(data if data is not None else quiet()), seed, "PL1", START)


def run(p: Plant, seconds: float, dt: float = 1.0) -> dict[str, tuple[Any, str]]:
    """Step and return the last value/status of every path seen."""
    last: dict[str, tuple[Any, str]] = {}
    for _ in range(int(round(seconds / dt))):
        last.update(p.step(dt))
    return last


def read_record(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


async def ns_index(client: Any) -> int:
    return int(await client.get_namespace_index(NAMESPACE_URI))
