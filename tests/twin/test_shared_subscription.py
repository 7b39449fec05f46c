"""MQTT 5 shared subscriptions on a real Mosquitto: two twin instances split one line's cycler traffic.

Each instance subscribes to ``$share/twin/pilotline/<line>/formation/+/telemetry`` (the k8s manifests configure the
same group name); the broker hands each message to exactly one member of the group. The test proves each instance
gets part of the traffic, none gets a message twice, and together they get all of it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

N_MESSAGES = 2000


class Member:
    def __init__(self, host: str, port: int, name: str, topic: str) -> None:
        self.received: list[int] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        self.client.connect(host, port, keepalive=30, clean_start=True, properties=props)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.received.append(json.loads(msg.payload)["seq"])

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_two_instances_split_cycler_traffic_none_twice_nothing_lost(mosquitto) -> None:  # type: ignore[no-untyped-def]
    line = "L" + uuid.uuid4().hex[:6].upper()
    shared = f"$share/twin/pilotline/{line}/formation/+/telemetry"
    a = Member(mosquitto.host, mosquitto.port, f"twin-a-{line}", shared)
    b = Member(mosquitto.host, mosquitto.port, f"twin-b-{line}", shared)
    try:
        assert a.subscribed.wait(10) and b.subscribed.wait(10)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"cycler-{line}", protocol=mqtt.MQTTv5)
        pub.connect(mosquitto.host, mosquitto.port)
        pub.loop_start()
        infos = []
        for seq in range(1, N_MESSAGES + 1):
            ch = f"CH-{seq % 8 + 1:02d}"
            payload = json.dumps({"seq": seq, "channel": ch, "voltage_V": 3.7})
            infos.append(pub.publish(f"pilotline/{line}/formation/{ch}/telemetry", payload, qos=1))
        for info in infos:
            info.wait_for_publish(10)
        deadline = time.monotonic() + 20
        while len(a.received) + len(b.received) < N_MESSAGES and time.monotonic() < deadline:
            time.sleep(0.05)
        pub.loop_stop()
        pub.disconnect()
    finally:
        a.close()
        b.close()
    got_a, got_b = set(a.received), set(b.received)
    assert len(a.received) == len(got_a) and len(b.received) == len(got_b), "a member got a message twice"
    assert not got_a & got_b, "a message went to both members of the share group"
    assert got_a | got_b == set(range(1, N_MESSAGES + 1)), "messages were lost"
    assert len(got_a) > N_MESSAGES * 0.2 and len(got_b) > N_MESSAGES * 0.2, (len(got_a), len(got_b))
