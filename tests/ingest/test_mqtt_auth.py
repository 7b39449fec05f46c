"""MQTT with user name and password on a real mosquitto that refuses anonymous clients."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from connectors.mqtt import MqttConnector
from connectors.records import Sample
from connectors.settings import MqttConfig


async def test_user_password_and_refusal(tmp_path: Path, mosquitto_factory: Any) -> None:
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw), "twin", "s3cret"], check=True)
    subprocess.run(["mosquitto_passwd", "-b", str(pw), "cycler", "c1"], check=True)
    broker = mosquitto_factory(extra_config=f"allow_anonymous false\npassword_file {pw}\n")
    got: list[Any] = []
    good = MqttConnector(MqttConfig(url=broker.url, client_id="auth-good", username="twin", password="s3cret",
                                    topics=["pilotline/+/formation/+/telemetry"]),
                         lambda recs, ack: (got.extend(recs), ack() if ack else None))
    bad = MqttConnector(MqttConfig(url=broker.url, client_id="auth-bad", username="twin", password="wrong"),
                        lambda recs, ack: None)
    good.start()
    bad.start()
    try:
        for _ in range(100):
            if good.state.connected and bad.state.last_error:
                break
            await asyncio.sleep(0.05)
        assert good.state.connected
        assert not bad.state.connected and "refused" in bad.state.last_error, bad.state
        await asyncio.sleep(0.3)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="auth-pub")
        pub.username_pw_set("cycler", "c1")
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        msg = {"seq": 1, "time": "2026-11-20T10:00:00Z", "channel": "CH-01", "voltage_V": 3.7}
        pub.publish("pilotline/PL1/formation/CH-01/telemetry", json.dumps(msg), qos=1).wait_for_publish(5)
        pub.loop_stop()
        pub.disconnect()
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        good.stop()
        bad.stop()
    assert [(s.signal, s.value) for s in got if isinstance(s, Sample)] == [("Voltage", 3.7)]
