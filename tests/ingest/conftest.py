"""Ingest test helpers: the ingest process as a real managed process, its config, the simulator's record, and
read-back of what InfluxDB holds."""

from __future__ import annotations

import asyncio
import bisect
import json
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from deploy.localstack import PythonService

HERE = Path(__file__).resolve().parent
FAST_LINE = HERE / "line_fast.yaml"


class IngestProcess(PythonService):
    """``python -m twin ingest --config FILE``; ``port`` serves ``/status``."""

    name = "ingest"
    start_timeout_s = 30.0

    def __init__(self, data_dir: Path, config: Path, port: int | None = None) -> None:
        super().__init__(data_dir, port)
        self.config = config

    def command(self) -> list[str]:
        return [sys.executable, "-m", "twin", "ingest", "--config", str(self.config), "--log-level", "INFO"]

    def env(self) -> dict[str, str]:
        env = super().env()
        env["PILOTLINE__INGEST__HTTP_PORT"] = str(self.port)
        return env

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/status", timeout=5) as r:  # noqa: S310
            return json.loads(r.read())

    def ready(self) -> bool:
        try:
            self.status()
            return True
        except OSError:
            return False


def ingest_config(tmp: Path, *, influx_url: str, database: str, opcua_endpoint: str | None, mqtt_url: str | None,
                  client_id: str, **overrides: Any) -> Path:
    cfg: dict[str, Any] = {
        "line": {"id": "PL1"},
        "influx": {"url": influx_url, "database": database, "batch_size": 5000, "flush_interval_s": 0.2,
                   "retry_initial_s": 0.2, "retry_max_s": 1.0, "timeout_s": 5},
        "spool": {"dir": str(tmp / "spool"), "fsync": "always"},
        "quarantine": {"dir": str(tmp / "quarantine")},
        "opcua": {"enabled": opcua_endpoint is not None, "endpoint": opcua_endpoint or "opc.tcp://127.0.0.1:1",
                  "reconnect_initial_s": 0.2, "reconnect_max_s": 1.0, "watchdog_interval_s": 0.5,
                  "stale_after_s": 3.0, "request_timeout_s": 3.0, "connect_timeout_s": 3.0},
        "mqtt": {"enabled": mqtt_url is not None, "url": mqtt_url or "mqtt://127.0.0.1:1", "client_id": client_id,
                 "reconnect_min_s": 1, "reconnect_max_s": 1},
        # the simulator runs faster than real time, so its source timestamps run ahead of the wall clock
        "validation": {"max_future_s": 10 * 365 * 86400.0},
        "ingest": {"stats_interval_s": 5.0},
    }
    for key, value in overrides.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    path = tmp / "ingest.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


# ------------------------------------------------------------------------------------------------------------------
# the simulator's record (--record): what was published, independent of ingest
# ------------------------------------------------------------------------------------------------------------------
@dataclass
class Record:
    opcua: dict[str, list[tuple[int, Any, str]]] = field(default_factory=lambda: defaultdict(list))  # path -> values
    mqtt: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    trace: list[dict[str, Any]] = field(default_factory=list)
    server_events: list[tuple[int, str]] = field(default_factory=list)


def read_record(path: Path) -> Record:
    rec = Record()
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        src: str = r["source"]
        if src.startswith("opcua:ns="):
            path_ = src.split(";s=", 1)[1].removeprefix("PilotLine.")
            rec.opcua[path_].append((int(r["t_ns"]), r["value"], r["status"]))
        elif src.startswith("mqtt:"):
            topic = src[5:]
            if topic.endswith("/trace"):
                rec.trace.append(r["value"])
            else:
                rec.mqtt.append((topic, r["value"]))
        elif src.startswith("sim:"):
            rec.server_events.append((int(r["t_ns"]), str(r["value"])))
    return rec


def station_signal(path: str) -> tuple[str, str, str]:
    """``Coating.Cathode.PumpFlowRate`` -> (measurement, lane, signal), as the connector maps browse paths."""
    parts = path.split(".")
    if len(parts) == 1:
        return "Line", "", parts[0]
    if len(parts) == 2:
        return parts[0], "", parts[1]
    return parts[0], parts[1], ".".join(parts[2:])


class IdTimeline:
    """Which value an ID variable had at a time, from the record (the test's own, independent trace context)."""

    def __init__(self, values: list[tuple[int, Any, str]]) -> None:
        pts = sorted((t, v) for t, v, _ in values)
        self.times = [t for t, _ in pts]
        self.values = [v for _, v in pts]

    def at(self, t: int) -> Any:
        i = bisect.bisect_right(self.times, t)
        v = self.values[i - 1] if i else None
        return v if v not in ("", None) else None


# ------------------------------------------------------------------------------------------------------------------
# InfluxDB read-back (plain InfluxQL over HTTP: the test does not trust the code under test to read)
# ------------------------------------------------------------------------------------------------------------------
def influx_rows(url: str, database: str, statement: str) -> list[dict[str, Any]]:
    r = httpx.post(f"{url}/query", data={"q": statement, "db": database, "epoch": "ns"}, timeout=120)
    r.raise_for_status()
    rows: list[dict[str, Any]] = []
    for res in r.json().get("results", []):
        assert "error" not in res, res
        for s in res.get("series", []):
            for values in s["values"]:
                row = dict(zip(s["columns"], values, strict=True))
                row.update(s.get("tags", {}))
                row["_measurement"] = s["name"]
                rows.append(row)
    return rows


def wait_until(pred: Any, timeout_s: float, interval_s: float = 0.2, what: str = "condition") -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if pred():
            return time.monotonic() - t0
        time.sleep(interval_s)
    raise AssertionError(f"{what} not reached within {timeout_s} s")


async def until(pred: Any, timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    """``wait_until`` for async tests: polls without blocking the event loop the code under test runs on."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        await asyncio.sleep(interval_s)
    raise AssertionError(f"{what} not reached within {timeout_s} s")


@pytest.fixture
def ingest_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[IngestProcess] = []

    def make(config: Path, port: int | None = None) -> IngestProcess:
        p = IngestProcess(tmp_path / f"ingest{len(started)}", config, port)
        started.append(p)
        return p.start()  # type: ignore[return-value]

    yield make
    for p in started:
        try:
            p.stop()
        except Exception:  # noqa: BLE001
            p.kill()
