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

from connectors.codecs import decode_message
from connectors.records import Rejected, Sample, TraceEvent
from connectors.settings import MqttConfig

log = logging.getLogger(__name__)

Ack = Callable[[], None]
Sink = Callable[[Sequence[Sample | TraceEvent | Rejected], Ack | None], None]


@dataclass
class MqttState:
    connected: bool = False
    connects: int = 0
    reconnects: int = 0
    messages: int = 0
    rejected: int = 0
    last_message_ns: int = 0
    last_error: str = ""


class MqttConnector:
    def __init__(self, cfg: MqttConfig, sink: Sink) -> None:
        self.cfg = cfg
        self.sink = sink
        self.state = MqttState()
        u = urlparse(cfg.url)
        self.host = u.hostname or "127.0.0.1"
        self.tls = cfg.tls.enabled or u.scheme in ("mqtts", "ssl")
        self.port = u.port or (8883 if self.tls else 1883)
        self._client = self._make_client()
        self._started = False
        self._lock = threading.Lock()

    def _make_client(self) -> mqtt.Client:
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.cfg.client_id, clean_session=self.cfg.clean_session,
            protocol=mqtt.MQTTv311, manual_ack=True,
        )
        c.max_inflight_messages_set(self.cfg.max_inflight)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(min_delay=max(1, int(self.cfg.reconnect_min_s)), max_delay=max(1, int(self.cfg.reconnect_max_s)))
        if self.cfg.username:
            c.username_pw_set(self.cfg.username, self.cfg.password or None)
        if self.tls:
            t = self.cfg.tls
            c.tls_set(
                ca_certs=str(t.ca_file) if t.ca_file else None,
                certfile=str(t.cert_file) if t.cert_file else None,
                keyfile=str(t.key_file) if t.key_file else None,
                cert_reqs=ssl.CERT_NONE if t.insecure_skip_verify else ssl.CERT_REQUIRED,
            )
            if t.insecure_skip_verify:
                c.tls_insecure_set(True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        return c

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
        session = getattr(flags, "session_present", False)
        log.info("MQTT connected to %s:%d (session present: %s); subscribing %s", self.host, self.port, session,
                 self.cfg.topics)
        client.subscribe([(t, self.cfg.qos) for t in self.cfg.topics])

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        was_connected, self.state.connected = self.state.connected, False
        if self._started and was_connected:  # a refused connect keeps its own, clearer error
            self.state.last_error = f"disconnected: {reason_code}"
            log.warning("MQTT disconnected (%s); paho reconnects with backoff", reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.time_ns()
        self.state.messages += 1
        self.state.last_message_ns = now
        try:
            result = decode_message(msg.topic, bytes(msg.payload), now)
        except Exception as exc:  # noqa: BLE001 - a codec bug must not kill the network thread
            result = Rejected("codec_error", f"{type(exc).__name__}: {exc}", msg.topic, bytes(msg.payload), now)
        records = [result] if isinstance(result, Rejected) else result
        if isinstance(result, Rejected):
            self.state.rejected += 1
        ack: Ack | None = None
        if msg.qos > 0:
            mid, qos = msg.mid, msg.qos
            ack = lambda: client.ack(mid, qos)  # noqa: E731 - a closure per message is the point
        self.sink(records, ack)
