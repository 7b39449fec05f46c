"""Sparkplug B (Eclipse Sparkplug 3.0) host application: one group's edge nodes and devices -> ``Sample`` records.

Payloads are decoded with **pysparkplug 0.6.1** (pinned in pyproject.toml, ``[tool.pilotline] no-deps``): the
maintained Python implementation of Sparkplug B (Apache-2.0, releases through 2025, protobuf 5+ generated code, typed),
whose ``NBirth`` / ``DData`` ... classes decode the protobuf payload, resolve aliases and datatypes against the birth
they are given and convert every scalar and array datatype of the spec. Only its payload classes are used: its own MQTT
client is written for paho-mqtt 1.x (it declares ``paho-mqtt<2``, hence ``--no-deps``), while every MQTT client of the
twin is made by ``connectors.mqtt.paho_client`` (auth, TLS, reconnect backoff) on paho 2. The alternatives on the
index were older or pinned to paho 1.6.1 and protobuf 3 (mqtt-spb-wrapper) or unmaintained single releases.

What a host must do, and why it is done here:

- NBIRTH / DBIRTH carry every metric's name, alias and datatype; NDATA / DDATA usually carry only aliases, so the
  births are kept per edge node and device and decode the data that follows. Where a metric lands in the twin
  (``signals`` rules over ``<edge_node>/<device or ->/<metric name>``) is resolved once per birth, not per value.
- ``seq`` (0-255, wrapping) runs over all of an edge node's messages but NDEATH; a gap means lost messages (QoS 0
  data, a broker or twin restart), an alias no birth defined means the maps are stale: either way the host asks the
  edge node for a rebirth (NCMD ``Node Control/Rebirth`` = true), at most once per ``rebirth_throttle_s`` per node.
- NDEATH / DDEATH make every known metric of that node / device a bad sample (NaN, quality bad) at the death time, so
  live state and SPC see the signal go bad instead of holding its last value. An NDEATH whose ``bdSeq`` is not the
  current birth's is the will of an earlier session (it can arrive after the new NBIRTH) and is ignored.
- As primary host (``host_id`` set) the twin publishes the retained Sparkplug 3.0 STATE message, with a will saying
  offline, so edge nodes configured for that host publish only while the twin listens.

A payload that does not decode, data of an unknown alias or of a node with no birth become ``Rejected`` records
(the quarantine keeps the raw payload); an unmapped metric with ``unmapped: ignore`` is dropped and counted. The
paho network thread does the decoding and calls the sink, as ``connectors.mqtt.MqttConnector`` does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt
from pysparkplug import DataType, DBirth, DData, DDeath, Metric, NBirth, NCmd, NData, NDeath
from pysparkplug import _protobuf as sparkplug_pb  # the library's generated Sparkplug B protobuf classes

from connectors.mapping import resolve
from connectors.mqtt import Ack, Sink, _PahoLink, paho_client
from connectors.records import Rejected, Sample, TraceEvent, ns_to_iso
from connectors.sparkplug.settings import SparkplugSource

log = logging.getLogger(__name__)

NAMESPACE = "spBv1.0"
REBIRTH_METRIC = "Node Control/Rebirth"
_NS_PER_MS = 1_000_000
_DERIVE_BAD = re.compile(r"[^A-Za-z0-9_.]")


@dataclass
class SparkplugStatus:
    """Counts since start; ``connected`` is the broker link's state now."""

    connected: bool = False
    births: int = 0  # NBIRTH + DBIRTH taken
    deaths: int = 0  # NDEATH (current bdSeq) + DDEATH taken
    stale_deaths: int = 0  # NDEATHs of an earlier session (bdSeq not the current birth's), ignored
    rebirth_requests: int = 0  # NCMD Node Control/Rebirth published
    seq_gaps: int = 0
    unknown_aliases: int = 0  # data messages with an alias (or name) no birth defined
    messages: int = 0
    samples: int = 0
    unmapped: int = 0  # metric values dropped: no rule maps them and unmapped is ignore
    unsupported: int = 0  # metric values of a datatype a Sample cannot hold (bytes, files, string arrays ...)
    rejected: int = 0
    reconnects: int = 0
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class _Target:
    """Where one metric's values land."""

    station: str
    signal: str
    unit: str
    source: str


@dataclass
class _Born:
    """One NBIRTH or DBIRTH: the library's birth decodes the data that follows; ``targets`` says where each metric
    lands (None: dropped, unmapped)."""

    birth: NBirth | DBirth
    targets: dict[str, _Target | None]


@dataclass
class _Node:
    """An edge node as last born: its bdSeq, the last seq seen, its own and its devices' births."""

    bd_seq: int | None
    seq: int | None
    own: _Born | None
    devices: dict[str, _Born] = field(default_factory=dict)


def _is_protocol_metric(name: str) -> bool:
    """bdSeq and the control metrics are Sparkplug's own, not measurements."""
    return name == "bdSeq" or name.startswith(("Node Control/", "Device Control/"))


class SparkplugConnector(_PahoLink):
    """``SparkplugConnector(cfg, line, sink)``; ``await start()`` / ``await stop()``; ``status()``."""

    def __init__(self, cfg: SparkplugSource, line: str, sink: Sink) -> None:
        self.source_cfg = cfg
        self.line = line
        self.sink = sink
        self.group = cfg.group_id
        self._stats = SparkplugStatus()
        self._nodes: dict[str, _Node] = {}
        self._rebirth_at: dict[str, float] = {}  # edge node -> monotonic time of the last request
        self._edge_filter = frozenset(cfg.edge_nodes)
        self._device_filter = frozenset(cfg.devices)
        self._state_topic = f"{NAMESPACE}/STATE/{cfg.host_id}" if cfg.host_id else ""
        self._state_ts_ms = 0
        self._stopping = False
        self._lock = threading.Lock()  # paho's thread handles messages; tests and benches may call handle() too
        super().__init__(cfg.mqtt, paho_client(cfg.mqtt, client_id=cfg.mqtt.client_id, clean_session=True,
                                               manual_ack=True))
        self._client.on_message = self._on_message

    # -- lifecycle -----------------------------------------------------------------------------------------------------
    async def start(self) -> None:  # type: ignore[override]
        """Non-blocking: paho's network thread connects (and reconnects) on its own."""
        self._stopping = False
        self._set_will()
        super().start()

    async def stop(self) -> None:  # type: ignore[override]
        """As primary host, say offline first (retained), then disconnect."""
        await asyncio.to_thread(self._stop_sync)

    def _stop_sync(self) -> None:
        self._stopping = True
        if self._state_topic and self.state.connected:
            info = self._client.publish(self._state_topic, self._state_payload(False), qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError) as exc:  # not queued / connection gone: the will says it instead
                log.warning("Sparkplug STATE offline not published: %s", exc)
        super().stop()

    def status(self) -> SparkplugStatus:
        self._stats.connected = self.state.connected
        self._stats.reconnects = self.state.reconnects
        self._stats.last_error = self.state.last_error
        return self._stats

    # -- the MQTT session ----------------------------------------------------------------------------------------------
    def _state_payload(self, online: bool) -> str:
        return json.dumps({"online": online, "timestamp": self._state_ts_ms})

    def _set_will(self) -> None:
        """Sparkplug 3.0: the will and the online message of one session carry the same timestamp."""
        if not self._state_topic:
            return
        self._state_ts_ms = time.time_ns() // _NS_PER_MS
        self._client.will_set(self._state_topic, self._state_payload(False), qos=1, retain=True)

    def _topics(self) -> list[str]:
        if self._edge_filter:
            return [f"{NAMESPACE}/{self.group}/+/{e}/#" for e in sorted(self._edge_filter)]
        return [f"{NAMESPACE}/{self.group}/#"]

    def _connected(self, client: mqtt.Client, flags: Any) -> None:
        # order from the spec: own STATE first (to see a stale offline), then the group, then say online
        subs = ([(self._state_topic, 1)] if self._state_topic else []) + [(t, 1) for t in self._topics()]
        log.info("Sparkplug host connected to %s:%d; subscribing %s", self.host, self.port, [t for t, _ in subs])
        client.subscribe(subs)
        if self._state_topic:
            client.publish(self._state_topic, self._state_payload(True), qos=1, retain=True)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        super()._on_disconnect(client, userdata, flags, reason_code, properties)
        if not self._stopping:
            self._set_will()  # the next connection is a new session with a new timestamp

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.time_ns()
        self.state.messages += 1
        self.state.last_message_ns = now
        try:
            records = self.handle(msg.topic, bytes(msg.payload), now)
        except Exception as exc:  # noqa: BLE001 - a bug here must not kill paho's network thread
            log.exception("Sparkplug message on %s not handled", msg.topic)
            records = [self._reject("sparkplug_error", f"{type(exc).__name__}: {exc}", msg.topic,
                                    bytes(msg.payload), now)]
        ack: Ack | None = None
        if msg.qos > 0:
            mid, qos = msg.mid, msg.qos

            def ack() -> None:
                client.ack(mid, qos)

        if records:
            self.sink(records, ack)
        elif ack is not None:
            ack()

    # -- decoding ------------------------------------------------------------------------------------------------------
    def handle(self, topic: str, raw: bytes, now_ns: int) -> list[Sample | TraceEvent | Rejected]:
        """One message -> its records; updates the birth maps and sequence state, may request a rebirth."""
        with self._lock:
            self._stats.messages += 1
            parts = topic.split("/")
            if len(parts) == 3 and parts[1] == "STATE":
                self._on_state(topic, raw)
                return []
            if len(parts) not in (4, 5) or parts[0] != NAMESPACE or parts[1] != self.group:
                return [self._reject("sparkplug_topic", "not spBv1.0/<group>/<type>/<edge_node>[/<device>]", topic,
                                     raw, now_ns)]
            kind, edge = parts[2], parts[3]
            device = parts[4] if len(parts) == 5 else None
            if self._edge_filter and edge not in self._edge_filter:
                return []
            if kind in ("NCMD", "DCMD"):
                return []  # commands: ours or another host's
            try:
                if kind == "NBIRTH":
                    return self._nbirth(topic, edge, raw, now_ns)
                if kind == "NDEATH":
                    return self._ndeath(edge, raw, now_ns)
                if device is None:
                    if kind == "NDATA":
                        return self._data(topic, edge, None, raw, now_ns)
                elif kind == "DBIRTH":
                    return self._dbirth(topic, edge, device, raw, now_ns)
                elif kind == "DDATA":
                    return self._data(topic, edge, device, raw, now_ns)
                elif kind == "DDEATH":
                    return self._ddeath(edge, device, raw, now_ns)
            except Exception as exc:  # noqa: BLE001 - protobuf, missing fields, datatypes: all are a bad payload
                return [self._reject("sparkplug_decode", f"{kind} does not decode: {type(exc).__name__}: {exc}",
                                     topic, raw, now_ns)]
            return [self._reject("sparkplug_topic", f"unknown message type {kind!r}", topic, raw, now_ns)]

    def _reject(self, reason: str, detail: str, topic: str, raw: bytes, now_ns: int) -> Rejected:
        self._stats.rejected += 1
        return Rejected(reason, detail, topic, raw, now_ns)

    def _on_state(self, topic: str, raw: bytes) -> None:
        """Our own STATE said offline (an old session's will, retained) while we are online: say online again."""
        if topic != self._state_topic or self._stopping or not self.state.connected:
            return
        try:
            online = bool(json.loads(raw).get("online"))
        except (ValueError, AttributeError):
            online = False
        if not online:
            self._client.publish(self._state_topic, self._state_payload(True), qos=1, retain=True)

    def _seq(self, node: _Node | None, edge: str, seq: int) -> None:
        if node is None:
            return
        if node.seq is not None and seq != (node.seq + 1) % 256:
            self._stats.seq_gaps += 1
            self._rebirth(edge, f"seq {seq} after {node.seq}")
        node.seq = seq

    def _rebirth(self, edge: str, why: str) -> None:
        """NCMD Node Control/Rebirth = true, at most once per rebirth_throttle_s per edge node."""
        now = time.monotonic()
        last = self._rebirth_at.get(edge)
        if last is not None and now - last < self.source_cfg.rebirth_throttle_s:
            return
        self._rebirth_at[edge] = now
        self._stats.rebirth_requests += 1
        log.info("Sparkplug: rebirth request to %s/%s (%s)", self.group, edge, why)
        cmd = NCmd(timestamp=time.time_ns() // _NS_PER_MS,
                   metrics=(Metric(timestamp=None, name=REBIRTH_METRIC, datatype=DataType.BOOLEAN, value=True),))
        self._client.publish(f"{NAMESPACE}/{self.group}/NCMD/{edge}", cmd.encode(include_dtypes=True), qos=0)

    def _targets(self, birth: NBirth | DBirth, edge: str, device: str | None) -> dict[str, _Target | None]:
        return {m.name: self._target(edge, device, m.name) for m in birth.metrics
                if m.name is not None and not _is_protocol_metric(m.name)}

    def _target(self, edge: str, device: str | None, name: str) -> _Target | None:
        path = f"{edge}/{device or '-'}/{name}"
        source = f"{NAMESPACE}/{self.group}/{path}"
        mapped = resolve(self.source_cfg.signals, path)
        if mapped is not None:
            return _Target(mapped.station, mapped.signal, mapped.unit, source)
        if self.source_cfg.unmapped == "derive":
            station = _DERIVE_BAD.sub("_", edge) + (f"/{_DERIVE_BAD.sub('_', device)}" if device else "")
            return _Target(station, _DERIVE_BAD.sub("_", name.replace("/", ".")), "", source)
        return None

    def _nbirth(self, topic: str, edge: str, raw: bytes, now_ns: int) -> list[Sample | TraceEvent | Rejected]:
        birth = NBirth.decode(raw)
        bd_seq = next((int(m.value) for m in birth.metrics if m.name == "bdSeq" and isinstance(m.value, int)), None)
        born = _Born(birth, self._targets(birth, edge, None))
        # a new NBIRTH invalidates the devices' births of the previous one: they are born again after it
        self._nodes[edge] = _Node(bd_seq=bd_seq, seq=birth.seq, own=born)
        self._stats.births += 1
        return self._samples(born, birth.metrics, birth.timestamp, now_ns)

    def _dbirth(self, topic: str, edge: str, device: str, raw: bytes,
                now_ns: int) -> list[Sample | TraceEvent | Rejected]:
        birth = DBirth.decode(raw)
        node = self._nodes.get(edge)
        self._seq(node, edge, birth.seq)
        if node is None:  # no NBIRTH seen (we started after it): take the device, and ask for the node's births
            node = self._nodes[edge] = _Node(bd_seq=None, seq=birth.seq, own=None)
            self._rebirth(edge, "DBIRTH without NBIRTH")
        if self._device_filter and device not in self._device_filter:
            return []
        born = node.devices[device] = _Born(birth, self._targets(birth, edge, device))
        self._stats.births += 1
        return self._samples(born, birth.metrics, birth.timestamp, now_ns)

    def _data(self, topic: str, edge: str, device: str | None, raw: bytes,
              now_ns: int) -> list[Sample | TraceEvent | Rejected]:
        cls = NData if device is None else DData
        node = self._nodes.get(edge)
        born = None if node is None else node.own if device is None else node.devices.get(device)
        if born is None:
            # aliases mean nothing without the birth (we started after it, or missed it): keep the raw payload
            seq = self._raw_seq(raw)  # garbage raises here: a decode error, not a missing birth
            if seq is not None:
                self._seq(node, edge, seq)
            if device is not None and self._device_filter and device not in self._device_filter:
                return []
            self._rebirth(edge, f"data of {device or 'the node'} before its birth")
            return [self._reject("sparkplug_no_birth", f"{topic}: no birth seen for {edge}/{device or '-'}; "
                                 "rebirth requested", topic, raw, now_ns)]
        try:
            payload = cls.decode(raw, birth=born.birth)
        except KeyError as exc:  # an alias the birth does not define, or a name without a datatype
            assert node is not None
            self._stats.unknown_aliases += 1
            seq = self._raw_seq(raw)
            if seq is not None:
                self._seq(node, edge, seq)
            self._rebirth(edge, f"unknown alias or metric {exc}")
            return [self._reject("sparkplug_unknown_alias", f"{topic}: alias or metric {exc} is not in the birth; "
                                 "rebirth requested", topic, raw, now_ns)]
        self._seq(node, edge, payload.seq)
        if device is not None and self._device_filter and device not in self._device_filter:
            return []
        return self._samples(born, payload.metrics, payload.timestamp, now_ns, edge, device)

    @staticmethod
    def _raw_seq(raw: bytes) -> int | None:
        """The seq of a payload whose metrics did not resolve (it still counts for the sequence)."""
        pb = sparkplug_pb.Payload.FromString(raw)
        return int(pb.seq) if pb.HasField("seq") else None

    def _samples(self, born: _Born, metrics: Sequence[Metric], payload_ts_ms: int | None, now_ns: int,
                 edge: str = "", device: str | None = None) -> list[Sample | TraceEvent | Rejected]:
        out: list[Sample | TraceEvent | Rejected] = []
        default_ns = payload_ts_ms * _NS_PER_MS if payload_ts_ms else now_ns
        targets = born.targets
        for m in metrics:
            name = m.name
            if name is None or _is_protocol_metric(name):
                continue
            if name in targets:
                target = targets[name]
            else:  # a named metric the birth did not list: map it now, once
                self._stats.unknown_aliases += 1
                target = targets[name] = self._target(edge, device, name)
            if target is None:
                self._stats.unmapped += 1
                continue
            t_ns = m.timestamp * _NS_PER_MS if m.timestamp else default_ns
            value = m.value
            if value is None or m.is_null:
                out.append(Sample(t_ns, self.line, target.station, target.signal, math.nan, target.unit, "bad",
                                  target.source, {}, now_ns))
            elif isinstance(value, bool | int | float | str):
                out.append(Sample(t_ns, self.line, target.station, target.signal, value, target.unit, "good",
                                  target.source, {}, now_ns))
            elif isinstance(value, datetime):
                out.append(Sample(t_ns, self.line, target.station, target.signal,
                                  ns_to_iso(int(value.timestamp() * 1e6) * 1000), target.unit, "good", target.source,
                                  {}, now_ns))
            elif isinstance(value, tuple) and value and all(
                    isinstance(x, int | float) and not isinstance(x, bool) for x in value):
                # a numeric array: element i is the series "<signal>.P<iii>", as the OPC UA connector does
                numbers = [x for x in value if isinstance(x, int | float)]
                out.extend(Sample(t_ns, self.line, target.station, f"{target.signal}.P{i:03d}", x, target.unit,
                                  "good", target.source, {}, now_ns) for i, x in enumerate(numbers))
            else:
                self._stats.unsupported += 1
        self._stats.samples += len(out)
        return out

    def _bad(self, borns: Sequence[_Born], t_ns: int, now_ns: int) -> list[Sample | TraceEvent | Rejected]:
        """Every known metric of these births: NaN, quality bad, at ``t_ns``."""
        out: list[Sample | TraceEvent | Rejected] = []
        for born in borns:
            for target in born.targets.values():
                if target is not None:
                    out.append(Sample(t_ns, self.line, target.station, target.signal, math.nan, target.unit, "bad",
                                      target.source, {}, now_ns))
        self._stats.samples += len(out)
        return out

    def _ndeath(self, edge: str, raw: bytes, now_ns: int) -> list[Sample | TraceEvent | Rejected]:
        death = NDeath.decode(raw)
        value = death.bd_seq_metric.value
        bd_seq = int(value) if isinstance(value, int) else None
        node = self._nodes.get(edge)
        if node is None or (node.bd_seq is not None and bd_seq is not None and bd_seq != node.bd_seq):
            self._stats.stale_deaths += 1
            log.info("Sparkplug: NDEATH of %s/%s with bdSeq %s ignored (current birth: %s)", self.group, edge,
                     bd_seq, None if node is None else node.bd_seq)
            return []
        del self._nodes[edge]
        self._stats.deaths += 1
        # an NDEATH is usually the will, registered at connect time: its timestamp is not when the node died
        borns = ([node.own] if node.own is not None else []) + list(node.devices.values())
        return self._bad(borns, now_ns, now_ns)

    def _ddeath(self, edge: str, device: str, raw: bytes, now_ns: int) -> list[Sample | TraceEvent | Rejected]:
        death = DDeath.decode(raw)
        node = self._nodes.get(edge)
        self._seq(node, edge, death.seq)
        born = None if node is None else node.devices.pop(device, None)
        if born is None:
            return []
        self._stats.deaths += 1
        return self._bad([born], death.timestamp * _NS_PER_MS if death.timestamp else now_ns, now_ns)
