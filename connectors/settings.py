"""Connector settings as pydantic models: the ``opcua``, ``mqtt`` and ``validation`` sections of the twin's config.

They live here, not in ``twin/config.py``, because connectors must not import the twin; the twin's ``Config``
embeds them. Option names follow Telegraf's ``inputs.opcua_listener`` / ``inputs.mqtt_consumer`` where one exists.
Every option is documented with its default in ``config/ingest.example.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connectors.units import EXTRA_UCUM, UNECE_TO_UCUM


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DeadbandConfig(_Model):
    type: Literal["none", "absolute", "percent"] = "none"
    value: float = Field(0.0, ge=0)


class OpcuaNode(_Model):
    """One explicitly configured node (Telegraf ``[[inputs.opcua_listener.nodes]]``)."""

    name: str  # the signal name in InfluxDB
    identifier: str  # e.g. "PilotLine.Coating.Cathode.PumpFlowRate" or a full "ns=2;s=..." node id
    identifier_type: Literal["s", "i", "g", "b"] = "s"
    namespace: str = ""  # namespace URI (preferred) or index; empty = the group's / the line's namespace
    station: str = ""  # e.g. "Coating/Cathode"; empty = derived from the identifier
    unit: str = ""  # empty = the node's EngineeringUnits
    default_tags: dict[str, str] = {}
    sampling_interval_ms: float | None = None
    deadband: DeadbandConfig | None = None


class OpcuaNodeGroup(_Model):
    name: str = ""
    namespace: str = ""
    sampling_interval_ms: float | None = None
    queue_size: int | None = None
    deadband: DeadbandConfig | None = None
    default_tags: dict[str, str] = {}
    nodes: list[OpcuaNode] = []


class OpcuaDiscovery(_Model):
    """Subscribe to every AnalogItem under ``browse_path`` (slash separated browse names below Objects)."""

    enabled: bool = True
    browse_path: str = "PilotLine"
    trace_variables: bool = True  # follow RollId, RollPosition, SlurryBatchId, CellId ... String variables


class OpcuaConfig(_Model):
    enabled: bool = True
    endpoint: str = "opc.tcp://127.0.0.1:4840"
    namespace_uri: str = "urn:pilotline:simulator"
    security_policy: Literal["None", "Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"] = "None"
    security_mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: Path = Path("var/pki/client_cert.der")  # created with the key when absent and security is on
    private_key: Path = Path("var/pki/client_key.pem")
    trusted_server_certificates: list[Path] = []
    auth_method: Literal["anonymous", "username"] = "anonymous"
    username: str = ""
    password: str = ""
    connect_timeout_s: float = Field(5.0, gt=0)
    request_timeout_s: float = Field(5.0, gt=0)
    session_timeout_s: float = Field(60.0, gt=0)
    subscription_interval_ms: float = Field(100.0, gt=0)
    sampling_interval_ms: float = Field(0.0, ge=0)
    queue_size: int = Field(1000, ge=0)
    discard_oldest: bool = True
    deadband: DeadbandConfig = DeadbandConfig()
    timestamp: Literal["source", "server", "received"] = "source"
    default_tags: dict[str, str] = {}
    nodes: list[OpcuaNode] = []
    groups: list[OpcuaNodeGroup] = []
    discovery: OpcuaDiscovery = OpcuaDiscovery()
    trace_events: bool = True  # subscribe to TraceEventType events on the PilotLine object
    reconnect_initial_s: float = Field(0.2, gt=0)
    reconnect_max_s: float = Field(5.0, gt=0)
    watchdog_interval_s: float = Field(1.0, gt=0)
    stale_after_s: float = Field(5.0, gt=0)  # no data and no keepalive this long = reconnect
    trace_history_s: float = Field(
        120.0, gt=0,
        description="How much of the trace-ID history (RollId, RollPosition ...) is kept before the oldest sample "
                    "that can still arrive (held or not yet acknowledged), in seconds of the line's clock: covers "
                    "values that reach us later than others of the same instant (slow sampling). The initial value "
                    "of a node unchanged for longer, re-delivered by a new subscription, is recognised and not "
                    "stored again.")
    trace_history_max_entries: int = Field(
        100_000, ge=2,
        description="Upper bound of the history per station and trace key, whatever the times say (the oldest "
                    "entries go first); the history is saved with the subscription state.")

    @model_validator(mode="after")
    def _check_security(self) -> OpcuaConfig:
        if (self.security_policy == "None") != (self.security_mode == "None"):
            raise ValueError("opcua.security_policy and opcua.security_mode must both be None or both be set "
                             "(e.g. Basic256Sha256 + SignAndEncrypt)")
        if self.auth_method == "username" and not self.username:
            raise ValueError("opcua.auth_method is username but opcua.username is empty")
        return self


class MqttTls(_Model):
    enabled: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure_skip_verify: bool = False


class MqttConfig(_Model):
    enabled: bool = True
    url: str = "mqtt://127.0.0.1:1883"
    client_id: str = "pilotline-twin-ingest"
    clean_session: bool = False  # persistent session: the broker keeps QoS 1 messages while we are away
    qos: Literal[0, 1, 2] = 1
    keepalive_s: int = Field(30, ge=5)
    topics: list[str] = [
        "pilotline/+/formation/+/telemetry",
        "pilotline/+/formation/+/result",
        "pilotline/+/trace",
    ]
    username: str = ""
    password: str = ""
    tls: MqttTls = MqttTls()
    max_inflight: int = Field(100, ge=1)
    reconnect_min_s: float = Field(0.2, gt=0)
    reconnect_max_s: float = Field(5.0, gt=0)
    sparkplug: bool = False  # spBv1.0/# decoding: not available (no maintained library we pin); see README

    @field_validator("qos", mode="before")
    @classmethod
    def _qos(cls, v: Any) -> Any:
        return int(v) if isinstance(v, str) and v.strip().isdigit() else v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("mqtt://", "mqtts://", "tcp://", "ssl://")):
            raise ValueError(f"mqtt.url {v!r} must start with mqtt:// or mqtts://")
        return v


class SignalRange(_Model):
    min: float | None = None
    max: float | None = None
    unit: str | None = None  # when set, a sample of this signal with another unit is quarantined


class ValidationConfig(_Model):
    """Per-signal physical ranges (key ``Signal`` or ``Station/Signal``; the longer key wins) and known units."""

    ranges: dict[str, SignalRange] = {
        "WetFilmThickness": SignalRange(min=0, max=2000, unit="um"),
        "DryFilmThickness": SignalRange(min=0, max=1000, unit="um"),
        "FilmThickness": SignalRange(min=0, max=1000, unit="um"),
        "MassLoading": SignalRange(min=0, max=200, unit="mg/cm2"),
        "PumpFlowRate": SignalRange(min=0, max=100_000, unit="cm3/h"),
        "WebSpeed": SignalRange(min=0, max=200, unit="m/min"),
        "DewPoint": SignalRange(min=-100, max=30, unit="Cel"),
        "Voltage": SignalRange(min=-1, max=6, unit="V"),
        "Temperature": SignalRange(min=-60, max=400, unit="Cel"),
        "Porosity": SignalRange(min=0, max=100, unit="%"),
        "Current": SignalRange(min=-1000, max=1000, unit="A"),
        "LineLoad": SignalRange(min=0, max=10_000, unit="N/mm"),
    }
    units: list[str] = sorted({*UNECE_TO_UCUM.values(), *EXTRA_UCUM})
    reject_unknown_units: bool = True
    id_pattern: str = r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)+$"
    max_future_s: float = 300.0  # samples stamped further ahead than this are quarantined (clock fault)
