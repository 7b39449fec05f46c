"""The process layer every integration test stands on: real servers start, answer, die and come back."""

from __future__ import annotations

import json
import socket
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from deploy.localstack import Influxd, Mosquitto, port_open


def _influx_query(url: str, q: str) -> dict:
    data = urllib.parse.urlencode({"q": q}).encode()
    with urllib.request.urlopen(f"{url}/query", data=data, timeout=5) as resp:  # noqa: S310 - loopback
        return json.loads(resp.read())


def _influx_write(url: str, db: str, lines: str) -> int:
    req = urllib.request.Request(f"{url}/write?db={db}&precision=ns", data=lines.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback
        return int(resp.status)


def test_influxd_survives_kill_with_data(influxd_factory) -> None:  # type: ignore[no-untyped-def]
    server: Influxd = influxd_factory()
    _influx_query(server.url, "CREATE DATABASE t")
    assert _influx_write(server.url, "t", "m,station=coating v=1.5 1700000000000000000") == 204
    server.kill()
    assert not port_open(server.port)
    server.start()
    rows = _influx_query(server.url, "SELECT v FROM t..m")["results"][0]["series"][0]["values"]
    assert rows == [["2023-11-14T22:13:20Z", 1.5]]


def test_mosquitto_keeps_qos1_session_across_restart(mosquitto_factory) -> None:  # type: ignore[no-untyped-def]
    import paho.mqtt.client as mqtt

    broker: Mosquitto = mosquitto_factory()
    received: list[bytes] = []

    def make_sub() -> mqtt.Client:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fixture-sub", clean_session=False)
        c.on_message = lambda cl, ud, msg: received.append(msg.payload)
        c.connect(broker.host, broker.port)
        c.subscribe("t/#", qos=1)
        return c

    sub = make_sub()
    sub.loop_start()
    import time

    time.sleep(0.3)
    sub.loop_stop()
    sub.disconnect()  # offline, session persists: messages queue on the broker

    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fixture-pub")
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    infos = [pub.publish("t/x", f"m{i}".encode(), qos=1) for i in range(20)]
    for info in infos:
        info.wait_for_publish(5)
    pub.loop_stop()
    pub.disconnect()
    time.sleep(1.5)  # autosave_interval 1 s; a clean stop saves too
    broker.restart()

    sub = make_sub()
    sub.loop_start()
    deadline = time.monotonic() + 10
    while len(received) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    sub.loop_stop()
    sub.disconnect()
    assert received == [f"m{i}".encode() for i in range(20)]


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(RuntimeError, match="already in use"):
            Influxd(tmp_path, port).start()
