"""MQTT connector (paho-mqtt 2, callback API v2): QoS 1, persistent session, manual acknowledgement.

The PUBACK for a message is sent only when the sink calls its ``ack`` — i.e. once the records are in the durable
spool — so a crash of the twin between receipt and spool leaves the message with the broker, which sends it again
(persistent session, fixed client id). Subscriptions are renewed in every ``on_connect`` (paho #375, #871), and paho's
own reconnect loop with bounded backoff (``reconnect_delay_set``) brings the connection back after a broker restart.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from connectors.codecs import decode_message, decode_trace
from connectors.jsondevice import decode_device
from connectors.records import Rejected, Sample, TraceEvent
from connectors.settings import MqttConfig

log = logging.getLogger(__name__)

Ack = Callable[[], None]
Sink = Callable[[Sequence[Sample | TraceEvent | Rejected], Ack | None], None]


def paho_client(cfg: MqttConfig, *, client_id: str, clean_session: bool, manual_ack: bool = False) -> mqtt.Client:
    """A paho client set up from ``cfg`` the one way: auth, TLS (CA, client certificate), reconnect backoff, in-flight
    window. Every MQTT client of the twin is made here, so none of them can ignore a security or reconnect setting."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session,
                    protocol=mqtt.MQTTv311, manual_ack=manual_ack)
    c.max_inflight_messages_set(cfg.max_inflight)
    c.max_queued_messages_set(0)
    c.reconnect_delay_set(min_delay=max(1, int(cfg.reconnect_min_s)), max_delay=max(1, int(cfg.reconnect_max_s)))
    if cfg.username:
        c.username_pw_set(cfg.username, cfg.password or None)
    if cfg.tls.enabled or urlparse(cfg.url).scheme in ("mqtts", "ssl"):
        t = cfg.tls
        c.tls_set(
            ca_certs=str(t.ca_file) if t.ca_file else None,
            certfile=str(t.cert_file) if t.cert_file else None,
            keyfile=str(t.key_file) if t.key_file else None,
            cert_reqs=ssl.CERT_NONE if t.insecure_skip_verify else ssl.CERT_REQUIRED,
        )
        if t.insecure_skip_verify:
            c.tls_insecure_set(True)
    return c


def broker_address(cfg: MqttConfig) -> tuple[str, int]:
    u = urlparse(cfg.url)
    tls = cfg.tls.enabled or u.scheme in ("mqtts", "ssl")
    return u.hostname or "127.0.0.1", u.port or (8883 if tls else 1883)


@dataclass
class MqttState:
    connected: bool = False
    connects: int = 0
    reconnects: int = 0
    messages: int = 0
    rejected: int = 0
    last_message_ns: int = 0
    last_error: str = ""


class _PahoLink:
    """A paho client's life: connect and reconnect in paho's network thread, connection state, a clean stop. The
    connector and the publisher differ only in the client they make and what they do once connected."""

    def __init__(self, cfg: MqttConfig, client: mqtt.Client) -> None:
        self.cfg = cfg
        self.state = MqttState()
        self.host, self.port = broker_address(cfg)
        self._client = client
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Non-blocking: the first connection (and every reconnection) happens in paho's network thread."""
        if self._started:
            return
        self._started = True
        self._client.connect_async(self.host, self.port, keepalive=self.cfg.keepalive_s)
        self._client.loop_start()

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self._client.disconnect()
        self._client.loop_stop()
        self.state.connected = False

    # -- paho callbacks (network thread) -------------------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self.state.last_error = f"connect refused: {reason_code}"
            log.error("MQTT %s:%d refused the connection: %s", self.host, self.port, reason_code)
            return
        self.state.connected = True
        self.state.connects += 1
        if self.state.connects > 1:
            self.state.reconnects += 1
        self._connected(client, flags)

    def _connected(self, client: mqtt.Client, flags: Any) -> None:
        """What to do on every (re)connection."""

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        was_connected, self.state.connected = self.state.connected, False
        if self._started and was_connected:  # a refused connect keeps its own, clearer error
            self.state.last_error = f"disconnected: {reason_code}"
            log.warning("MQTT disconnected (%s); paho reconnects with backoff", reason_code)


class MqttConnector(_PahoLink):
    """The twin's own topics (``pilotline/<line>/...``), devices' own JSON (``mqtt.devices``) and further trace-event
    topics (``mqtt.trace_topics``), on one session. ``line``: the line id of JSON device samples."""

    def __init__(self, cfg: MqttConfig, sink: Sink, line: str = "") -> None:
        super().__init__(cfg, paho_client(cfg, client_id=cfg.client_id, clean_session=cfg.clean_session,
                                          manual_ack=True))
        self.sink = sink
        self.line = line
        self._client.on_message = self._on_message
        self._lock = threading.Lock()

    def _connected(self, client: mqtt.Client, flags: Any) -> None:
        session = getattr(flags, "session_present", False)
        log.info("MQTT connected to %s:%d (session present: %s); subscribing %s", self.host, self.port, session,
                 self.cfg.topics)
        topics = dict.fromkeys([*self.cfg.topics, *(j.topic for j in self.cfg.devices), *self.cfg.trace_topics])
        if topics:  # a line may use the broker for Sparkplug B or publishing only
            client.subscribe([(t, int(self.cfg.qos)) for t in topics])

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.time_ns()
        self.state.messages += 1
        self.state.last_message_ns = now
        try:
            result = self._decode(msg.topic, bytes(msg.payload), now)
        except Exception as exc:  # noqa: BLE001 - a codec bug must not kill the network thread
            result = Rejected("codec_error", f"{type(exc).__name__}: {exc}", msg.topic, bytes(msg.payload), now)
        records = [result] if isinstance(result, Rejected) else result
        self.state.rejected += sum(1 for r in records if isinstance(r, Rejected))
        ack: Ack | None = None
        if msg.qos > 0:
            mid, qos = msg.mid, msg.qos

            def ack() -> None:  # a closure per message is the point
                client.ack(mid, qos)

        self.sink(records, ack)


    def _decode(self, topic: str, raw: bytes, now: int) -> list[Sample | TraceEvent | Rejected] | Rejected:
        """A device's JSON topic first, then a trace-event topic, else the twin's own scheme."""
        for spec in self.cfg.devices:
            if mqtt.topic_matches_sub(spec.topic, topic):
                return list(decode_device(spec, topic, raw, self.line, now))
        for sub in self.cfg.trace_topics:
            if mqtt.topic_matches_sub(sub, topic):
                event = decode_trace(topic, raw, now)
                return event if isinstance(event, Rejected) else [event]
        decoded = decode_message(topic, raw, now)
        return decoded if isinstance(decoded, Rejected) else list(decoded)


class MqttPublisher(_PahoLink):
    """Publishes the twin's own messages (recommendations) with the connector's settings: same broker, auth, TLS and
    reconnect backoff, a client id of its own (``<client_id>-pub``) and a clean session, since it subscribes to
    nothing. paho keeps QoS 1 messages published while the broker is away and sends them on reconnect."""

    def __init__(self, cfg: MqttConfig) -> None:
        super().__init__(cfg, paho_client(cfg, client_id=f"{cfg.client_id}-pub", clean_session=True))
        # bounded: past 1000 messages waiting for the broker, publish() says False and counts the proposal rejected
        self._client.max_queued_messages_set(1000)

    def publish(self, topic: str, payload: str, qos: int = 1) -> bool:
        """False when paho could not queue the message (its bounded queue is full); never raises or blocks."""
        info = self._client.publish(topic, payload, qos=qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
            self.state.rejected += 1
            return False
        self.state.messages += 1
        return True
