"""MQTT publisher (paho-mqtt 2): QoS 1, fixed client id, persistent session, no loss across a broker restart.

paho keeps QoS 1 messages it could not deliver (``max_queued_messages_set(0)`` = unbounded) and re-sends the
in-flight ones after a reconnect because the session is persistent (``clean_session=False``); the broker keeps its
side in its persistence file. ``connect_async`` + ``loop_start`` let the simulator start before the broker does.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

log = logging.getLogger("simulator.mqtt")


def parse_mqtt_url(url: str) -> tuple[str, int, bool, str | None, str | None]:
    u = urlparse(url)
    if u.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"--mqtt-url must look like mqtt://host:1883 (or mqtts://), got {url!r}")
    tls = u.scheme in ("mqtts", "ssl")
    return u.hostname or "127.0.0.1", u.port or (8883 if tls else 1883), tls, u.username, u.password


class MqttOut:
    def __init__(self, url: str, client_id: str) -> None:
        host, port, tls, user, password = parse_mqtt_url(url)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                                  protocol=mqtt.MQTTv311)
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(100)
        self.client.reconnect_delay_set(min_delay=1, max_delay=5)
        if tls:
            self.client.tls_set()
        if user:
            self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.connect_async(host, port, keepalive=30)
        self.client.loop_start()
        self.published = 0

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        log.info("MQTT connected (%s)", reason)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        log.warning("MQTT disconnected (%s); paho queues QoS 1 messages until it reconnects", reason)

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        info = self.client.publish(topic, json.dumps(payload, separators=(",", ":")), qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN, mqtt.MQTT_ERR_QUEUE_SIZE):
            log.error("MQTT publish to %s failed with rc=%s", topic, info.rc)
        self.published += 1

    def pending(self) -> int:
        """Messages paho still holds (queued or unacknowledged)."""
        return len(getattr(self.client, "_out_messages", {}))

    def close(self, flush_timeout_s: float = 5.0) -> None:
        import time

        deadline = time.monotonic() + flush_timeout_s
        while self.pending() and time.monotonic() < deadline and self.client.is_connected():
            time.sleep(0.05)
        self.client.disconnect()
        self.client.loop_stop()
