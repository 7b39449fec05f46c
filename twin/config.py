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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from connectors.settings import (
    DeadbandConfig,
    EventTrace,
    MqttConfig,
    MqttTls,
    OpcuaConfig,
    OpcuaDiscovery,
    OpcuaNode,
    OpcuaNodeGroup,
    SignalRange,
    ValidationConfig,
)
from connectors.sparkplug import SparkplugSource
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
#: The bundled simulator's line: what the twin runs on when no other line is described (``make run``, the tests).
SIMULATOR_LINE = Path(__file__).resolve().parents[1] / "deploy" / "lines" / "simulator.yaml"


class LineConfig(_Model):
    id: str = Field(default="PL1", description="The line's id: the line tag of every sample (the line description's "
                                               "line.id when it gives one)")
    name: str = Field(default="Pilot line 1", description="Shown in the dashboard")
    description: Path | None = Field(
        default=SIMULATOR_LINE, description="The line description (twin/line/, deploy/lines/sample.yaml): sources, "
                                            "signal mapping, trace nodes, setpoints, products. Its sections are the "
                                            "base this file and the environment are merged over; null = none")

    @field_validator("description", mode="before")
    @classmethod
    def _none(cls, v: Any) -> Any:
        return None if isinstance(v, str) and v.strip().lower() in ("", "none", "null") else v


class InfluxConfig(_Model):
    """Where samples go. ``version: 1`` uses ``/write`` + ``/query`` (InfluxDB 1.x); ``2`` uses influxdb-client."""

    version: Literal[1, 2] = Field(default=1, description="1 = InfluxDB 1.x over /write + /query; 2 = InfluxDB "
                                                          "2.x / 3.x through influxdb-client (bucket, org, token)")
    url: str = Field(default="http://127.0.0.1:8086", description="The database's HTTP address")
    database: str = Field(default="pilotline", description="Version 1: the database")
    retention_policy: str = Field(default="", description="Version 1: the retention policy; empty = the database's "
                                                          "default")
    username: str = Field(default="", description="Version 1: user name, when the server has auth-enabled")
    password: str = Field(default="", description="Version 1: the user's password")
    create_database: bool = Field(default=True, description="Version 1: CREATE DATABASE on start (idempotent)")
    bucket: str = Field(default="pilotline", description="Version 2: the bucket")
    org: str = Field(default="pilotline", description="Version 2: the organisation")
    token: str = Field(default="", description="Version 2: an API token with write (and read, for queries) on the "
                                               "bucket")
    batch_size: int = Field(5000, ge=1, le=100_000, description="Lines per write request (InfluxData recommends "
                                                                "~5000)")
    flush_interval_s: float = Field(0.5, gt=0, le=60, description=(
        "At most one write per interval, s (a partial batch waits this long); batch_size waiting lines are written "
        "at once"))
    gzip: bool = Field(default=True, description="Content-Encoding: gzip on writes")
    timeout_s: float = Field(10.0, gt=0, description="Timeout of each HTTP request, s")
    retry_initial_s: float = Field(0.5, gt=0, description="Delay after a failed write, s, doubled up to retry_max_s; "
                                                          "a write is retried until it succeeds (the spool holds it)")
    retry_max_s: float = Field(10.0, gt=0, description="Longest delay between write retries, s")

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> Any:
        return int(v) if isinstance(v, str) and v.strip().isdigit() else v


class SpoolConfig(_Model):
    """The durable on-disk queue in front of the database (see twin/store/spool.py for the format)."""

    dir: Path = Field(default=Path("var/spool"), description="The spool's directory (segments, cursor, and the OPC UA "
                                                              "subscription state beside them)")
    fsync: Literal["always", "interval", "never"] = Field(default="always", description=(
        "always = fsync each appended batch before its sources are acknowledged; interval = at most every "
        "fsync_interval_s (a power cut can lose that much); never = leave it to the OS (a process crash loses "
        "nothing, a power cut may)"))
    fsync_interval_s: float = Field(1.0, gt=0, description="fsync interval, s, for fsync: interval")
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
    dir: Path = Field(default=Path("var/quarantine"), description=(
        "Rejected input as JSON lines, per UTC day and rotated (python -m twin quarantine list|export)"))
    max_bytes: int = Field(256 * 1024 * 1024, ge=4096, description=(
        "All files together stay within this: the active file rotates at max_bytes / 8, the oldest are dropped "
        "(counted per reason in dropped.json), one huge entry is cut down"))
    keep_raw_bytes: int = Field(65536, ge=64, description="A raw payload is kept up to this many bytes")


class IngestConfig(_Model):
    queue_max: int = Field(200_000, ge=1000, description=(
        "records in memory between the connectors and the spool, for every source: beyond it OPC UA records are "
        "held back unacknowledged (the server keeps them), records no source can resend are dropped oldest first "
        "(counted, ingest_queue_full alarm); MQTT is bounded by the broker's in-flight window"))
    stats_interval_s: float = Field(10.0, gt=0, description="How often `python -m twin ingest` logs its stats, s")
    http_port: int | None = Field(default=None, description=(
        "Serve /metrics (Prometheus) and /status on this port while `python -m twin ingest` runs; null = not"))
    live_dispatch: bool = Field(default=True, description=(
        "OPC UA samples reach the subscribers (live state, recommender) as soon as they arrive instead of after the "
        "trace-ID hold and the spool; false = subscribers see exactly what was stored, in the order it was stored"))
    trace_from_events: list[EventTrace] = Field(default=[], description=(
        "Trace events that set a station's trace context (the line description's trace_events): the MES says "
        "which roll a machine without an ID node works on"))


class Config(_Model):
    line: LineConfig = Field(default=LineConfig(), description="The line this twin serves")
    influx: InfluxConfig = Field(default=InfluxConfig(), description="Where samples go (InfluxDB 1.x or 2.x / 3.x)")
    spool: SpoolConfig = Field(default=SpoolConfig(), description=(
        "The durable on-disk queue in front of the database: nothing is lost while it is down"))
    opcua: OpcuaConfig = Field(default=OpcuaConfig(), description=(
        "The line's (first) OPC UA server; every option is also in connectors/opcua/sample.yaml"))
    opcua_servers: list[OpcuaConfig] = Field(default=[], description="Further OPC UA servers of the line (the line "
                                                                     "description's sources after the first)")
    sparkplug: list[SparkplugSource] = Field(default=[], description=(
        "Sparkplug B sources (the line description's sources.sparkplug), each its own host session"))
    mqtt: MqttConfig = Field(default=MqttConfig(), description="The MQTT broker (cyclers, devices' JSON, trace "
                                                               "events)")
    validation: ValidationConfig = Field(default=ValidationConfig(), description=(
        "What a sample must satisfy to be stored; anything else is quarantined with the reason"))
    quarantine: QuarantineConfig = Field(default=QuarantineConfig(), description=(
        "Where rejected input is kept, with its reason"))
    ingest: IngestConfig = Field(default=IngestConfig(), description="The ingest pipeline between the connectors "
                                                                     "and the spool")
    service: ServiceSettings = Field(default=ServiceSettings(), description=(
        "The twin service's own section (twin/service_settings.py): API, live state, predictions, control, "
        "dashboard, genealogy"))

    @model_validator(mode="before")
    @classmethod
    def _line_description(cls, data: Any) -> Any:
        """The line description's sections are the base; what this config (and the environment) says wins."""
        if not isinstance(data, Mapping):
            return data
        line = data.get("line")
        if isinstance(line, LineConfig):
            path: Any = line.description
        elif isinstance(line, Mapping) and "description" in line:
            path = LineConfig.model_validate({"description": line["description"]}).description
        else:
            path = SIMULATOR_LINE
        if path is None:
            return data
        from twin.line.apply import config_sections
        from twin.line.load import LineDescriptionError, load_line

        try:
            desc = load_line(path)
        except LineDescriptionError as exc:
            raise ValueError(str(exc)) from None
        base = config_sections(desc)
        if isinstance(line, LineConfig):
            base.pop("line")
        merged = _merge(base, {k: v for k, v in data.items()})
        if isinstance(merged.get("line"), Mapping):
            merged["line"] = {**merged["line"], "description": path}
        return merged

    @property
    def opcua_all(self) -> list[OpcuaConfig]:
        """Every OPC UA server of the line, the ``opcua`` section first."""
        return [self.opcua, *self.opcua_servers]


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
