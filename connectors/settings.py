"""Connector settings as pydantic models: the ``opcua``, ``mqtt`` and ``validation`` sections of the twin's config.

They live here, not in ``twin/config.py``, because connectors must not import the twin; the twin's ``Config``
embeds them. Option names follow Telegraf's ``inputs.opcua_listener`` / ``inputs.mqtt_consumer`` where one exists.
Every option is documented once, in its ``Field(description=...)``: the commented samples
(``config/ingest.example.yaml``, ``connectors/opcua/sample.yaml``, ``deploy/lines/sample.yaml``) are generated from
these models (``connectors/sample_config.py``), which refuse an option without a description.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connectors.units import EXTRA_UCUM, UNECE_TO_UCUM


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DeadbandConfig(_Model):
    """A data-change filter the server applies before it queues a value (OPC UA DataChangeFilter)."""

    type: Literal["none", "absolute", "percent"] = Field(
        default="none", description="none | absolute | percent: percent of the node's EURange, so only for nodes "
                                    "that have one; applied to analog values only, never to the trace ID variables")
    value: float = Field(default=0.0, ge=0, description="The deadband: in the node's unit (absolute) or in % "
                                                        "(percent)")


class SignalRule(_Model):
    """One mapping rule of a line description's ``signals:`` list."""

    match: str = Field(description='Glob over the item\'s path (e.g. "Machines/SlotDieCoater_01/Monitoring/*", '
                                   '"**/Temperature"), or an exact NodeId ("ns=2;i=1017", '
                                   '"nsu=urn:vendor:coater;i=1017")')
    station: str = Field(description='The twin\'s station (and lane) the item belongs to, e.g. "Coating/Cathode", '
                                     '"DryRoom", "Formation/CH-01"')
    signal: str = Field(default="{name}", description='The twin\'s signal name; "{name}" = the last path element, '
                                                      '"{1}" = what the first wildcard matched')
    unit: str = Field(default="", description="UCUM unit; empty = what the source says (OPC UA EngineeringUnits, the "
                                              "payload's unit field)")
    min: float | None = Field(default=None, description="Lowest physically possible value; null = the source's "
                                                        "EURange low, else the twin's range for the signal name")
    max: float | None = Field(default=None, description="Highest physically possible value; null = the source's "
                                                        "EURange high, else the twin's range for the signal name")
    deadband: DeadbandConfig | None = Field(default=None, description="OPC UA data-change filter; null = the "
                                                                      "source's default")
    sampling_interval_ms: float | None = Field(default=None, ge=0, description="OPC UA sampling interval; null = "
                                                                                 "the source's default")
    ignore: bool = Field(default=False, description="Matching items are not subscribed (noise, diagnostics)")

    @field_validator("match")
    @classmethod
    def _match(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("match must not be empty")
        return v.strip()

    @model_validator(mode="after")
    def _range(self) -> SignalRule:
        if self.min is not None and self.max is not None and not self.min < self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        return self

    @property
    def is_node_id(self) -> bool:
        return self.match.startswith(("ns=", "nsu=", "i=", "s=", "g=", "b="))


class EventTrace(_Model):
    """A trace event that sets a station's trace context: for a machine with no ID node, the MES says which roll it
    unwinds (``consumed`` at ``Calendering/Cathode``), and from that instant the station's samples carry that ID."""

    station: str = Field(description='The event\'s station, e.g. "Calendering/Cathode"')
    kinds: list[Literal["created", "consumed", "processed"]] = Field(
        default=["consumed"], description="Event kinds that set it (the event's id is the value)")
    types: list[str] = Field(default=[], description='Entity types that set it, e.g. ["CoatedRoll"]; empty = any')
    key: Literal["slurry_batch_id", "roll_id", "source_roll_id", "segment_id", "sheet_id", "stack_id", "cell_id",
                 "formation_run_id"] = Field(description="The trace key it sets")
    stations: list[str] = Field(default=[], description="Stations whose samples it tags; empty = station")


class OpcuaNode(_Model):
    """One explicitly configured node (Telegraf ``[[inputs.opcua_listener.nodes]]``)."""

    name: str = Field(description="The signal name in InfluxDB")
    identifier: str = Field(description='e.g. "Coater01.Monitoring.PumpFlow", or a full node id '
                                        '"ns=2;s=..."')
    identifier_type: Literal["s", "i", "g", "b"] = Field(
        default="s", description="s (string) | i (numeric) | g (GUID) | b (opaque): how identifier is read")
    namespace: str = Field(default="", description="Namespace URI (preferred) or index; empty = the group's, else "
                                                   "opcua.namespace_uri")
    station: str = Field(default="", description='e.g. "Coating/Cathode"; empty = derived from the identifier')
    unit: str = Field(default="", description="UCUM unit; empty = the node's EngineeringUnits")
    default_tags: dict[str, str] = Field(default={}, description="Extra tags on this node's samples")
    sampling_interval_ms: float | None = Field(default=None, description="null = the group's, else "
                                                                         "opcua.sampling_interval_ms")
    deadband: DeadbandConfig | None = Field(default=None, description="null = the group's, else opcua.deadband")


class OpcuaNodeGroup(_Model):
    """Nodes sharing a namespace, sampling interval, deadband and tags
    (Telegraf ``[[inputs.opcua_listener.group]]``)."""

    name: str = Field(default="", description="A label for readers of the file (not used by the connector)")
    namespace: str = Field(default="", description="Namespace URI or index of the group's nodes; empty = "
                                                   "opcua.namespace_uri")
    sampling_interval_ms: float | None = Field(default=None, description="null = opcua.sampling_interval_ms")
    queue_size: int | None = Field(default=None, ge=0, description="Monitored-item queue of the group's nodes on "
                                                                   "the server; null = opcua.queue_size")
    deadband: DeadbandConfig | None = Field(default=None, description="null = opcua.deadband")
    default_tags: dict[str, str] = Field(default={}, description="Extra tags on the group's samples")
    nodes: list[OpcuaNode] = Field(default=[], description="The group's nodes")


class OpcuaDiscovery(_Model):
    """Subscribe to the variables under ``browse_path`` (slash separated browse names below Objects)."""

    enabled: bool = Field(default=True, description="Subscribe to every variable below browse_path (AnalogItems "
                                                    "with their EngineeringUnits as unit and their EURange)")
    browse_path: str = Field(
        default="", description="Browse names below Objects, separated by / (a name may carry its namespace index, "
                                "\"3:Machines\"); empty = all of Objects except the Server object. Names derived for "
                                "items no signals rule maps are the browse names below the path's first element")
    trace_variables: bool = Field(
        default=True, description="Follow the ID variables that trace_names lists as the trace context of the "
                                  "samples of their station")


class TraceNode(_Model):
    """A node whose value is a traceability ID (or the roll position) for one or more stations.

    The ID a gauge's sample needs is often read elsewhere: on another machine, another server, or upstream of the
    gauge along the web. ``stations`` says whose samples it tags; ``offset_m`` says how far downstream of where the
    ID is read a station's gauge sits: its samples get the IDs that were current when the web under the gauge passed
    the reader (found from the roll-position history of the station)."""

    node: str = Field(description='Browse path below Objects ("Machines/SlotDieCoater_01/Identification/'
                                  'CurrentRollID"), or a NodeId ("ns=2;i=1017", "nsu=urn:vendor:coater;i=1017")')
    key: Literal["slurry_batch_id", "roll_id", "roll_position_m", "source_roll_id", "segment_id", "sheet_id",
                 "stack_id", "cell_id", "formation_run_id"] = Field(
        description="The trace key it sets: roll_id, roll_position_m, slurry_batch_id, source_roll_id, segment_id, "
                    "sheet_id, stack_id, cell_id or formation_run_id")
    stations: list[str] = Field(min_length=1, description='Stations whose samples it tags, e.g. ["Coating/Cathode", '
                                                          '"Drying/Cathode"]; on any server of the line')
    offset_m: dict[str, float] = Field(
        default={}, description="Per station: metres along the web from where the ID is read to the station's "
                                "gauge (0 when not listed)")
    source: str = Field(default="", description="Name of the OPC UA source (server) that has the node; empty = any "
                                                "server of the line on which it resolves")
    integrate_speed: bool = Field(
        default=False, description="key roll_position_m only: the node is the web speed (m/min) and the position is "
                                   "its integral over time, restarting at 0 whenever the stations' roll_id changes "
                                   "(for lines without a position counter)")

    @model_validator(mode="after")
    def _check(self) -> TraceNode:
        if self.integrate_speed and self.key != "roll_position_m":
            raise ValueError("integrate_speed applies to key roll_position_m only")
        unknown = sorted(set(self.offset_m) - set(self.stations))
        if unknown:
            raise ValueError(f"offset_m names stations not in stations: {unknown}")
        if any(v < 0 for v in self.offset_m.values()):
            raise ValueError("offset_m must be >= 0 (the gauge sits downstream of the reader)")
        return self


class OpcuaConfig(_Model):
    enabled: bool = Field(default=True, description="Run the OPC UA connector")
    name: str = Field(default="opcua", pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,31}$",
                      description="The source's name (status, alarms, state files, setpoint routing)")
    endpoint: str = Field(default="opc.tcp://127.0.0.1:4840", description="The server's endpoint URL")
    namespace_uri: str = Field(
        default="",
        description="The line's namespace; node ids are re-resolved through it on every (re)connection. Empty = the "
                    "first namespace after the server's own (index 2)")
    security_policy: Literal["None", "Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"] = Field(
        default="None", description="None | Basic256Sha256 | Aes128Sha256RsaOaep | Aes256Sha256RsaPss")
    security_mode: Literal["None", "Sign", "SignAndEncrypt"] = Field(
        default="None", description="None | Sign | SignAndEncrypt (None only together with security_policy None)")
    certificate: Path = Field(
        default=Path("var/pki/client_cert.der"),
        description="Client certificate; created (self-signed) with the key when absent and security is on")
    private_key: Path = Field(default=Path("var/pki/client_key.pem"),
                              description="The client certificate's private key")
    trusted_server_certificates: list[Path] = Field(
        default=[], description="DER/PEM files of the server certificates to trust; empty = trust the one presented")
    auth_method: Literal["anonymous", "username"] = Field(default="anonymous", description="anonymous | username")
    username: str = Field(default="", description="User name for auth_method username")
    password: str = Field(default="", description="Password for auth_method username")
    connect_timeout_s: float = Field(default=5.0, gt=0,
                                     description="Timeout of connect (and of setting up security), s")
    request_timeout_s: float = Field(
        default=5.0, gt=0, description="Timeout of every other OPC UA call, s: a hung server never hangs ingest")
    session_timeout_s: float = Field(
        default=60.0, gt=0, description="The server keeps our session (and its subscription's queued values) this "
                                        "long after a cut or a crash, s")
    subscription_interval_ms: float = Field(default=100.0, gt=0,
                                            description="Publishing interval of the subscription, ms")
    sampling_interval_ms: float = Field(
        default=0.0, ge=0, description="Sampling interval of every node, ms; 0 = as fast as the server samples")
    queue_size: int = Field(
        default=1000, ge=0, description="Monitored-item queue on the server, per node: what survives a disconnect")
    discard_oldest: bool = Field(
        default=True, description="When a node's queue is full, the server drops the oldest value (false: the newest)")
    deadband: DeadbandConfig = Field(default_factory=DeadbandConfig,
                                     description="Default deadband of the analog nodes")
    timestamp: Literal["source", "server", "received"] = Field(
        default="source", description="source | server | received: which time a sample carries (source falls back "
                                      "to the server's, then to the receive time)")
    default_tags: dict[str, str] = Field(
        default={}, description="Extra tags on every OPC UA sample (keep them low-cardinality)")
    nodes: list[OpcuaNode] = Field(default=[], description="Explicit nodes, in addition to discovery")
    groups: list[OpcuaNodeGroup] = Field(
        default=[], description="Node groups sharing namespace, sampling, deadband and tags")
    discovery: OpcuaDiscovery = Field(default_factory=OpcuaDiscovery, description="Browse-based discovery")
    signals: list[SignalRule] = Field(
        default=[], description="Mapping rules, first match wins: a discovered item's browse path below Objects (or "
                                "its NodeId) -> the twin's station, signal, unit, range (connectors/mapping.py)")
    unmapped: Literal["derive", "ignore"] = Field(
        default="derive", description="Discovered items no signals rule maps: derive (station and signal from the "
                                      "browse names) | ignore (not subscribed)")
    trace_names: dict[str, str] = Field(
        default={}, description="Browse name of an ID variable -> trace key, for lines that keep each station's IDs "
                                "beside its signals (RollId: roll_id): such a variable tags its own station's samples")
    trace: list[TraceNode] = Field(default=[], description="ID nodes and the stations they tag (any server of the "
                                                           "line; see TraceNode)")
    grant_node: str = Field(
        default="", description="Boolean node by which the line grants remote setpoints on this server (browse path "
                                "or NodeId); empty = the server has none (writes are then gated by the twin's control "
                                "mode alone)")
    trace_events: bool = Field(default=True,
                               description="Subscribe to TraceEventType events, if the server defines that type")
    event_root: str = Field(default="", description="Object whose events are followed; empty = discovery.browse_path's "
                                                    "first element, else Server")
    reconnect_initial_s: float = Field(
        default=0.2, gt=0, description="First reconnect delay, s; doubled after every failed attempt up to "
                                       "reconnect_max_s")
    reconnect_max_s: float = Field(default=5.0, gt=0, description="Longest reconnect delay, s")
    watchdog_interval_s: float = Field(
        default=1.0, gt=0, description="How often the session is probed (a ServerStatus read with a timeout) and "
                                       "the subscription state saved, s")
    stale_after_s: float = Field(
        default=5.0, gt=0, description="No publish response (data or keep-alive) for this long = tear down and "
                                       "reconnect, s")
    trace_history_s: float = Field(
        default=120.0, gt=0,
        description="How much of the trace-ID history (RollId, RollPosition ...) is kept before the oldest sample "
                    "that can still arrive (held or not yet acknowledged), in seconds of the line's clock: covers "
                    "values that reach us later than others of the same instant (slow sampling). The initial value "
                    "of a node unchanged for longer, re-delivered by a new subscription, is recognised and not "
                    "stored again.")
    trace_history_max_entries: int = Field(
        default=100_000, ge=2,
        description="Upper bound of the history per station and trace key, whatever the times say (the oldest "
                    "entries go first); the history is saved with the subscription state.")
    history_backfill: bool = Field(
        default=True,
        description="After a new subscription (the server restarted, or ours expired), read each historized node's "
                    "values between its last stored one and the new subscription's first with HistoryRead "
                    "(connectors/opcua/backfill.py); nodes without history access are left alone")
    history_backfill_max_values: int = Field(
        default=100_000, ge=1,
        description="At most this many values read back per node and backfill (the oldest of the gap first)")

    @model_validator(mode="after")
    def _check_security(self) -> OpcuaConfig:
        if (self.security_policy == "None") != (self.security_mode == "None"):
            raise ValueError("opcua.security_policy and opcua.security_mode must both be None or both be set "
                             "(e.g. Basic256Sha256 + SignAndEncrypt)")
        if self.auth_method == "username" and not self.username:
            raise ValueError("opcua.auth_method is username but opcua.username is empty")
        return self


class MqttTls(_Model):
    enabled: bool = Field(default=False, description="Connect with TLS (also implied by an mqtts:// or ssl:// url)")
    ca_file: Path | None = Field(default=None, description="CA certificate(s) (PEM) the broker's certificate is "
                                                           "checked against; null = the system's trusted CAs")
    cert_file: Path | None = Field(default=None, description="Client certificate (PEM), for brokers that "
                                                             "authenticate clients by certificate; null = none")
    key_file: Path | None = Field(default=None, description="The client certificate's private key (PEM)")
    insecure_skip_verify: bool = Field(default=False, description="Accept any broker certificate and host name "
                                                                  "(tests only: it lets anyone in the middle read "
                                                                  "and write)")


class JsonValue(_Model):
    """One value of a JSON device message."""

    path: str = Field(description='Dotted JSON path of the value in the message, e.g. "dewpoint.value" (list items '
                                  'by index: "tracks.3")')
    unit: str = Field(default="", description="The value's unit (UCUM, or a device spelling such as degC); empty = "
                                              "unit_path's")
    unit_path: str = Field(default="", description="Dotted JSON path of the unit text in the message; empty = unit")


class MqttJsonTopic(_Model):
    """A device that publishes its own JSON (not the twin's topic scheme): which members are values, time, unit, IDs.

    Each value is mapped like an OPC UA node: the item path ``<topic>/<value path>`` goes through ``signals``
    (first match wins). A value nothing maps is quarantined (reason ``unmapped``), not dropped: it may be a device
    the description has not caught up with."""

    topic: str = Field(description='MQTT topic filter (+ and # wildcards), e.g. "plant1/dryroom/+"')
    values: list[JsonValue] = Field(min_length=1, description="The message's values")
    time_path: str = Field(default="", description="Dotted JSON path of the sample time: RFC 3339 text or an epoch "
                                                   "number (time_unit); empty = the receive time (quality uncertain)")
    time_unit: Literal["s", "ms", "us", "ns"] = Field(default="ms", description="Unit of a numeric time")
    ids: dict[str, str] = Field(default={}, description="Trace key -> dotted JSON path of an ID the message carries "
                                                       "(e.g. cell_id: meta.cell); they tag its samples")
    signals: list[SignalRule] = Field(default=[], description="Mapping rules over <topic>/<value path>")


class MqttConfig(_Model):
    enabled: bool = Field(default=True, description="Run the MQTT connector")
    url: str = Field(default="mqtt://127.0.0.1:1883", description="The broker: mqtt://host:port, or mqtts://host:port "
                                                                  "for TLS (port 8883 when not given)")
    client_id: str = Field(default="pilotline-twin-ingest", description=(
        "Fixed client id: the broker keeps the persistent session under it (the recommendation publisher uses "
        "<client_id>-pub)"))
    clean_session: bool = Field(default=False, description=(
        "false = persistent session: the broker keeps QoS 1 messages while we are away and hands them over on "
        "reconnect"))
    qos: Literal[0, 1, 2] = Field(default=1, description="QoS of the subscriptions (1 = at least once: a message is "
                                                         "acknowledged only once it is spooled)")
    keepalive_s: int = Field(30, ge=5, description="MQTT keep-alive, s: the broker drops a silent client after 1.5 "
                                                   "times this")
    topics: list[str] = Field(default=[
        "pilotline/+/formation/+/telemetry",
        "pilotline/+/formation/+/result",
        "pilotline/+/trace",
    ], description="Topic filters in the twin's own scheme: cycler telemetry and results JSON, trace events "
                   "(pilotline.trace.v1)")
    username: str = Field(default="", description="User name; empty = connect without one")
    password: str = Field(default="", description="Password of username")
    tls: MqttTls = Field(default=MqttTls(), description="TLS to the broker")
    max_inflight: int = Field(100, ge=1, description="QoS 1/2 messages in flight at once (what bounds MQTT's share of "
                                                     "the ingest queue)")
    reconnect_min_s: float = Field(0.2, gt=0, description="First reconnect delay, s (paho counts whole seconds, at "
                                                          "least 1); doubled up to reconnect_max_s")
    reconnect_max_s: float = Field(5.0, gt=0, description="Longest reconnect delay, s")
    devices: list[MqttJsonTopic] = Field(default=[], description="Devices that publish their own JSON (field maps)")
    trace_topics: list[str] = Field(
        default=[], description="Further topic filters carrying pilotline.trace.v1 events (an MES that publishes "
                                "under its own names), besides pilotline/<line>/trace")

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
    min: float | None = Field(default=None, description="Lowest physically possible value; below it a sample is "
                                                        "quarantined (out_of_range); null = no lower bound")
    max: float | None = Field(default=None, description="Highest physically possible value; null = no upper bound")
    unit: str | None = Field(default=None, description="When set, a sample of this signal in another unit is "
                                                       "quarantined (UCUM code); null = any known unit")


class ValidationConfig(_Model):
    """Per-signal physical ranges (key ``Signal`` or ``Station/Signal``; the longer key wins) and known units."""

    ranges: dict[str, SignalRange] = Field(default={
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
    }, description="Physical range (and unit) per signal, keyed Signal, Station/Signal or Station/Lane/Signal (the "
                   "longer key wins); a non-bad sample outside its range is quarantined. A line description's ranges "
                   "are merged over these")
    units: list[str] = Field(default=sorted({*UNECE_TO_UCUM.values(), *EXTRA_UCUM}), description=(
        "UCUM unit codes a sample may carry (OPC UA EngineeringUnits, UNECE codes, are converted to these first)"))
    reject_unknown_units: bool = Field(default=True, description="Quarantine a sample whose unit is not in units "
                                                                 "(reason unit); false = accept any unit text")
    id_pattern: str = Field(default=r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)+$", description=(
        "Regular expression every traceability ID (roll, batch, cell ...) a sample carries must match in full; a "
        "sample with a malformed ID is quarantined (reason trace_id)"))
    max_future_s: float = Field(default=300.0, description=(
        "A sample stamped further ahead of this machine's clock than this, s, is quarantined (a source clock "
        "fault); raise it when a simulator runs faster than real time"))
