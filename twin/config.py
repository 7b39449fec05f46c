"""One YAML file plus environment overrides, checked by pydantic; every default runs on one machine unedited.

Environment overrides: ``PILOTLINE__<SECTION>__<KEY>[__<KEY>...]=value`` (case-insensitive keys, ``__`` nests), e.g.
``PILOTLINE__INFLUX__URL=http://db:8086`` or ``PILOTLINE__OPCUA__ENDPOINT=opc.tcp://plc:4840``. A value that looks
like JSON (``[...]``, ``{...}``) is parsed as JSON; anything else is handed to pydantic as a string, which converts
``"2"`` to an int where an int is expected. Environment wins over the file. Unknown keys are an error (a typo in a
config file must not be silently ignored). The commented example with every option is
``config/ingest.example.yaml``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from connectors.settings import (
    DeadbandConfig,
    MqttConfig,
    MqttTls,
    OpcuaConfig,
    OpcuaDiscovery,
    OpcuaNode,
    OpcuaNodeGroup,
    SignalRange,
    ValidationConfig,
)
from twin.service_settings import ServiceSettings

__all__ = [
    "Config", "ConfigError", "DeadbandConfig", "InfluxConfig", "IngestConfig", "LineConfig", "MqttConfig", "MqttTls",
    "OpcuaConfig", "OpcuaDiscovery", "OpcuaNode", "OpcuaNodeGroup", "QuarantineConfig", "SignalRange", "SpoolConfig",
    "ValidationConfig", "env_overrides", "load_config",
]

ENV_PREFIX = "PILOTLINE__"


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which key and how to fix it."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


# ------------------------------------------------------------------------------------------------------------------
class LineConfig(_Model):
    id: str = "PL1"
    name: str = "Pilot line 1"


class InfluxConfig(_Model):
    """Where samples go. ``version: 1`` uses ``/write`` + ``/query`` (InfluxDB 1.x); ``2`` uses influxdb-client."""

    version: Literal[1, 2] = 1
    url: str = "http://127.0.0.1:8086"
    database: str = "pilotline"  # v1
    retention_policy: str = ""  # v1, empty = the database's default
    username: str = ""  # v1, when auth is enabled
    password: str = ""
    create_database: bool = True  # v1: CREATE DATABASE on start (idempotent)
    bucket: str = "pilotline"  # v2
    org: str = "pilotline"  # v2
    token: str = ""  # v2
    batch_size: int = Field(5000, ge=1, le=100_000)
    flush_interval_s: float = Field(0.5, gt=0, le=60)
    gzip: bool = True
    timeout_s: float = Field(10.0, gt=0)
    retry_initial_s: float = Field(0.5, gt=0)
    retry_max_s: float = Field(10.0, gt=0)

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> Any:
        return int(v) if isinstance(v, str) and v.strip().isdigit() else v


class SpoolConfig(_Model):
    """The durable on-disk queue in front of the database (see twin/store/spool.py for the format)."""

    dir: Path = Path("var/spool")
    fsync: Literal["always", "interval", "never"] = "always"
    fsync_interval_s: float = Field(1.0, gt=0)
    commit_interval_s: float = Field(0.2, ge=0, le=5, description=(
        "group commit: the records that arrive from every source within this window are appended as one write with "
        "one fsync, and acknowledged to their sources after it (so this is also the most an acknowledgement waits "
        "for its turn); a backlog of 1000 records is appended at once; 0 = append as soon as records arrive"))
    segment_bytes: int = Field(8 * 1024 * 1024, ge=4096, description=(
        "a segment file is closed and a new one opened past this size; capped at max_bytes / 4, and batches are "
        "cut into frames no larger than a segment"))
    max_bytes: int = Field(2 * 1024 * 1024 * 1024, ge=65536, description=(
        "budget for bytes the database has not confirmed (confirmed bytes never count); the files take at most "
        "this plus one segment"))
    when_full: Literal["drop_oldest", "reject_new", "block"] = Field("block", description=(
        "block: hold records back and resume once the database confirms some (a full filesystem does the same); "
        "drop_oldest: delete the oldest unsent segment (counted); reject_new: refuse new records (counted)"))
    min_free_bytes: int = Field(1024 * 1024, ge=0, description=(
        "the spool stops appending (and holds back, like a full filesystem) when fewer than this many bytes would "
        "stay free on its filesystem, so the cursor and the connectors' state files beside it can still be written"))


class QuarantineConfig(_Model):
    dir: Path = Path("var/quarantine")
    max_bytes: int = Field(256 * 1024 * 1024, ge=4096)  # all files together stay within this (rotation, oldest dropped)
    keep_raw_bytes: int = Field(65536, ge=64)  # a raw payload is truncated to this many bytes


class IngestConfig(_Model):
    queue_max: int = Field(200_000, ge=1000, description=(
        "records in memory between the connectors and the spool, for every source: beyond it OPC UA records are "
        "held back unacknowledged (the server keeps them), records no source can resend are dropped oldest first "
        "(counted, ingest_queue_full alarm); MQTT is bounded by the broker's in-flight window"))
    stats_interval_s: float = Field(10.0, gt=0)
    http_port: int | None = None  # serve /metrics (Prometheus) and /status while `python -m twin ingest` runs
    # OPC UA samples reach the subscribers (live state, recommender) as soon as they arrive instead of after the
    # trace-ID hold and the spool; false = subscribers see exactly what was stored, in the order it was stored
    live_dispatch: bool = True


class Config(_Model):
    line: LineConfig = LineConfig()
    influx: InfluxConfig = InfluxConfig()
    spool: SpoolConfig = SpoolConfig()
    opcua: OpcuaConfig = OpcuaConfig()
    mqtt: MqttConfig = MqttConfig()
    validation: ValidationConfig = ValidationConfig()
    quarantine: QuarantineConfig = QuarantineConfig()
    ingest: IngestConfig = IngestConfig()
    service: ServiceSettings = ServiceSettings()  # the twin service's own section (twin/service_settings.py)


# ------------------------------------------------------------------------------------------------------------------
def _parse_env_value(raw: str) -> Any:
    text = raw.strip()
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"environment value {raw!r} looks like JSON but is not: {exc}") from None
    return raw


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``PILOTLINE__A__B=v`` -> ``{"a": {"b": "v"}}``."""
    out: dict[str, Any] = {}
    for key, raw in (os.environ if environ is None else environ).items():
        if not key.upper().startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in key[len(ENV_PREFIX):].split("__") if p]
        if not parts:
            continue
        node = out
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"environment {key} nests below a key that another variable sets to a value")
            node = nxt
        node[parts[-1]] = _parse_env_value(raw)
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(merged.get(k), Mapping):
            merged[k] = _merge(dict(merged[k]), v)
        else:
            merged[k] = v
    return merged


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (optional: no file means all defaults), apply the environment, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist; copy config/ingest.example.yaml and edit it")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping of sections (line:, influx:, ...)")
        data = loaded
    data = _merge(data, env_overrides(environ))
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid configuration ({path or 'defaults'} + environment): {problems}") from None
