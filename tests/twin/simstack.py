"""Helpers for tests that run the twin service in-process against the real simulator, influxd and mosquitto."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from deploy.localstack import REPO, Influxd, Simulator
from twin.config import Config, load_config

DRIFT = REPO / "simulator" / "scenarios" / "drift.yaml"


def start_time_in_past(hours: float = 12.0) -> str:
    """Accelerated simulated time must stay behind the wall clock (validation refuses samples from the future)."""
    t = datetime.now(UTC).replace(microsecond=0, second=0) - timedelta(hours=hours)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def sim_args(speed: float, seed: int, start: str, scenario: Path = DRIFT, tick: float = 1.0,
             mqtt_url: str | None = None) -> list[str]:
    args = ["--security", "none", "--speed", str(speed), "--tick", str(tick), "--seed", str(seed),
            "--scenario", str(scenario), "--start-time", start]
    if mqtt_url:
        args += ["--mqtt-url", mqtt_url]
    return args


CATHODE_NODES = [
    ("MassLoading", "Drying.Cathode.MassLoading", "Drying/Cathode"),
    ("CoatingDensity", "Calendering.Cathode.CoatingDensity", "Calendering/Cathode"),
    ("PumpFlowRate", "Coating.Cathode.PumpFlowRate", "Coating/Cathode"),
    ("PumpFlowRateSetpoint", "Coating.Cathode.PumpFlowRateSetpoint", "Coating/Cathode"),
    ("WebSpeed", "Coating.Cathode.WebSpeed", "Coating/Cathode"),
    ("WebSpeedSetpoint", "Coating.Cathode.WebSpeedSetpoint", "Coating/Cathode"),
    ("CoatingWidth", "Coating.Cathode.CoatingWidth", "Coating/Cathode"),
    ("SolidContent", "Mixing.Cathode.SolidContent", "Mixing/Cathode"),
    ("LineLoad", "Calendering.Cathode.LineLoad", "Calendering/Cathode"),
    ("LineLoadSetpoint", "Calendering.Cathode.LineLoadSetpoint", "Calendering/Cathode"),
    ("RollTemperature", "Calendering.Cathode.RollTemperature", "Calendering/Cathode"),
    ("RemoteSetpointsEnabled", "RemoteSetpointsEnabled", "Line"),
]


def twin_config(tmp: Path, influx: Influxd, sim: Simulator, *, database: str | None = None, http_port: int = 0,
                cathode_only: bool = False, mqtt_url: str | None = None, extra: dict[str, str] | None = None) -> Config:
    """A twin configuration on the given servers; ``cathode_only`` subscribes only the cathode loop's nodes
    (Telegraf-style explicit nodes) and controls only the cathode lane, so long runs stay light on 2 cores."""
    password = (sim.data_dir / "operator-password").read_text().strip()
    env = {
        "PILOTLINE__INFLUX__URL": influx.url,
        "PILOTLINE__INFLUX__DATABASE": database or f"t_{uuid.uuid4().hex[:10]}",
        "PILOTLINE__INFLUX__FLUSH_INTERVAL_S": "0.2",
        "PILOTLINE__SPOOL__DIR": str(tmp / "spool"),
        "PILOTLINE__SPOOL__FSYNC": "never",
        "PILOTLINE__QUARANTINE__DIR": str(tmp / "quarantine"),
        "PILOTLINE__OPCUA__ENDPOINT": sim.endpoint,
        "PILOTLINE__OPCUA__AUTH_METHOD": "username",
        "PILOTLINE__OPCUA__USERNAME": "operator",
        "PILOTLINE__OPCUA__PASSWORD": password,
        "PILOTLINE__OPCUA__CERTIFICATE": str(tmp / "pki" / "cert.der"),
        "PILOTLINE__OPCUA__PRIVATE_KEY": str(tmp / "pki" / "key.pem"),
        "PILOTLINE__MQTT__ENABLED": "true" if mqtt_url else "false",
        "PILOTLINE__SERVICE__AUTH__TOKEN_FILE": str(tmp / "tokens.json"),
        "PILOTLINE__SERVICE__HTTP__PORT": str(http_port),
        "PILOTLINE__SERVICE__CONTROL__INTERVAL_S": "1.0",
        "PILOTLINE__SERVICE__GENEALOGY__ENABLED": "false",
    }
    if mqtt_url:
        env["PILOTLINE__MQTT__URL"] = mqtt_url
        env["PILOTLINE__MQTT__CLIENT_ID"] = f"twin-{uuid.uuid4().hex[:8]}"
    cfg = load_config(None, {**env, **(extra or {})})
    if cathode_only:
        from connectors.settings import OpcuaNode

        cfg.opcua.discovery.enabled = False
        cfg.opcua.trace_events = False
        cfg.opcua.nodes = [OpcuaNode(name=n, identifier=f"PilotLine.{i}", station=s) for n, i, s in CATHODE_NODES]
        product = cfg.service.control.active
        product.loops = {k: v for k, v in product.loops.items() if v.electrode == "cathode"}
    return cfg


async def wait_for(pred: Any, timeout_s: float, what: str, step_s: float = 0.2) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(step_s)
