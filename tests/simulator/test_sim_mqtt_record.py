"""MQTT cyclers and trace events with a real mosquitto, the record file, determinism and fault visibility."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from tests.simulator.sim_helpers import START, START_ISO, quiet, read_record, write_scenario

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "simulator" / "scenarios"

pytestmark = pytest.mark.timeout(150)


def run_sim(tmp: Path, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m simulator ... --duration`` to completion (a real process on a free port)."""
    from deploy.localstack import free_port

    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "simulator", "--port", str(free_port()), "--data-dir", str(tmp / "data"),
           "--security", "none", *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


class Collector:
    """A persistent-session QoS 1 subscriber, as the twin's MQTT connector would be."""

    def __init__(self, host: str, port: int, client_id: str, topic: str = "pilotline/#") -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.topic = topic
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(self.topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, r, p: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()
        assert self.subscribed.wait(10), "subscription not acknowledged"

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.lock:
            self.messages.append((msg.topic, json.loads(msg.payload)))

    def wait_for(self, n: int, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(self.messages) < n:
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def assert_contiguous(messages: list[tuple[str, dict[str, Any]]]) -> dict[str, int]:
    """seq per channel (telemetry + results together) and per line (trace) run 1..N without gaps or repeats."""
    seqs: dict[str, list[int]] = defaultdict(list)
    for topic, body in messages:
        key = f"trace:{body['line']}" if topic.endswith("/trace") else f"channel:{body['channel']}"
        seqs[key].append(body["seq"])
    for key, s in seqs.items():
        assert sorted(set(s)) == list(range(1, max(s) + 1)), f"{key}: gaps in {sorted(set(s))[:50]}"
    return {k: max(v) for k, v in seqs.items()}


def test_different_seed_gives_a_different_run() -> None:
    from tests.simulator.sim_helpers import plant, run

    a = run(plant(quiet(noise_scale=1.0), seed=1), 30)
    b = run(plant(quiet(noise_scale=1.0), seed=2), 30)
    assert a["Coating.Cathode.PumpFlowRate"] != b["Coating.Cathode.PumpFlowRate"]


def test_same_seed_same_record(tmp_path: Path, mosquitto: Any) -> None:
    sc = write_scenario(tmp_path / "sc.yaml", quiet(noise_scale=1.0, events=[
        {"at_s": 100, "action": "set", "node": "Coating.Cathode.PumpFlowRateSetpoint", "value": 720.0},
        {"at_s": 150, "action": "fault", "fault": "dropout", "node": "Coating.Cathode.WetFilmThickness",
         "duration_s": 30}]))
    records = []
    for i, seed in enumerate((7, 7)):
        rec = tmp_path / f"rec{i}.jsonl"
        run_sim(tmp_path / f"run{i}", "--scenario", str(sc), "--seed", str(seed), "--speed", "2000",
                "--duration", "300", "--start-time", START_ISO, "--mqtt-url", mosquitto.url, "--line-id", f"DET{i}",
                "--record", str(rec))
        text = rec.read_text(encoding="utf-8").replace(f"DET{i}", "DET")
        records.append(text)
    assert len(records[0].splitlines()) > 2_000
    assert records[0] == records[1], "same seed and scenario must give the same record"
    sources = {json.loads(line)["source"].split(":")[0] for line in records[0].splitlines()}
    assert sources == {"opcua", "opcua-event", "mqtt"}


def test_every_fault_type_is_visible_downstream(tmp_path: Path, mosquitto: Any) -> None:
    sub = Collector(mosquitto.host, mosquitto.port, "test-faults", "pilotline/FLT/#")
    rec = tmp_path / "rec.jsonl"
    try:
        run_sim(tmp_path, "--scenario", str(SCENARIOS / "faults.yaml"), "--speed", "1000", "--tick", "2",
                "--duration", "2100",
                "--start-time", START_ISO, "--mqtt-url", mosquitto.url, "--line-id", "FLT", "--record", str(rec))
        records = read_record(rec)
        mqtt_records = [r for r in records if r["source"].startswith("mqtt:")]
        sub.wait_for(len(mqtt_records))
    finally:
        sub.close()
    t0 = int(START.timestamp()) * 1_000_000_000

    def series(path: str) -> list[tuple[float, Any, str]]:
        src = f"opcua:ns=2;s=PilotLine.{path}"
        return [((r["t_ns"] - t0) / 1e9, r["value"], r["status"]) for r in records if r["source"] == src]

    # dropout: bad status and no value for the duration, then good values again
    ml = series("Drying.Cathode.MassLoading")
    assert [(t, v) for t, v, s in ml if s == "BadNoCommunication"] == [(600.0, None)]
    assert any(s == "Good" and 600 < t < 660 for t, v, s in ml) is False
    assert any(s == "Good" and t >= 660 for t, v, s in ml)
    # stuck: one last value at the start, then silence (no data change) until it recovers
    wet = [t for t, v, s in series("Coating.Cathode.WetFilmThickness")]
    assert not [t for t in wet if 700 < t < 760]
    assert len([t for t in wet if 640 <= t < 700]) == 30 and any(t >= 760 for t in wet)  # one per 2 s tick
    # NaN: "NaN" with status Good (the device's own fault; ingest must quarantine it), published once as a change
    dew = series("DryRoom.DewPoint")
    assert [t for t, v, s in dew if v == "NaN"] == [800.0]
    assert [s for t, v, s in dew if v == "NaN"] == ["Good"]
    assert not [t for t, v, s in dew if 800 < t < 830]
    assert isinstance(next(v for t, v, s in dew if t >= 830), float)
    assert not [t for t, v, s in ml if t % 2]  # every value at a tick: --tick 2
    # spike: a single sample 1.5x its neighbours
    cal = series("Calendering.Cathode.CalenderedThickness")
    spikes = [(t, v) for t, v, s in cal if v > 60]
    assert len(spikes) == 1 and spikes[0][0] == 1000.0 and spikes[0][1] == pytest.approx(1.5 * 48.4, rel=0.03)
    # cycler channel: the run on CH-01 ends with an aborted result and its values go BadDeviceFailure
    results = [b for t, b in sub.messages if t == "pilotline/FLT/formation/CH-01/result"]
    assert any(b["aborted"] and not b["passed"] for b in results)
    assert {s for t, v, s in series("Formation.CH-01.Voltage") if 1700 <= t < 2000} == {"BadDeviceFailure"}
    assert any(s == "Good" for t, v, s in series("Formation.CH-02.Voltage") if 1700 <= t < 2000)
    # server restart: down and up marks, nothing published over OPC UA in between
    marks = [(r["t_ns"] - t0) / 1e9 for r in records if r["source"] == "sim:opcua-server"]
    assert marks == [1500.0, 1620.0]
    assert not [r for r in records if r["source"].startswith("opcua") and 1500e9 < r["t_ns"] - t0 < 1620e9]
    # MQTT: everything the simulator recorded arrived, in contiguous sequences
    assert len(sub.messages) == len(mqtt_records)
    maxima = assert_contiguous(sub.messages)
    assert maxima["trace:FLT"] > 100 and maxima["channel:CH-01"] > 3


def test_mqtt_loses_nothing_across_a_broker_restart(tmp_path: Path, mosquitto_factory: Any,
                                                    simulator_factory: Any) -> None:
    broker = mosquitto_factory()
    sub = Collector(broker.host, broker.port, "test-broker-restart", "pilotline/BRK/#")
    rec = tmp_path / "rec.jsonl"
    sc = write_scenario(tmp_path / "sc.yaml", quiet(noise_scale=1.0, line={
        "telemetry_interval_s": 5, "cycler_channels": 4, "formation_duration_s": 300, "cell_interval_s": 20}))
    sim = simulator_factory(args=["--security", "none", "--scenario", str(sc), "--speed", "400", "--mqtt-url",
                                  broker.url, "--line-id", "BRK", "--record", str(rec)])
    try:
        sub.wait_for(60, timeout_s=30)
        assert len(sub.messages) >= 60
        broker.stop()  # clean broker restart: it saves its persistence file
        time.sleep(1.5)  # the simulator keeps publishing into paho's queue meanwhile
        broker.start()
        sub.wait_for(len(sub.messages) + 60, timeout_s=30)
        sim.stop()
        expected = [r for r in read_record(rec) if r["source"].startswith("mqtt:")]
        sub.wait_for(len(expected), timeout_s=20)
    finally:
        sub.close()
    got = {(t, b["seq"], b.get("channel", "")) for t, b in sub.messages}
    want = {(r["source"][5:], r["value"]["seq"], r["value"].get("channel", "")) for r in expected}
    assert want <= got, f"lost {len(want - got)} of {len(want)} messages, e.g. {sorted(want - got)[:5]}"
    assert_contiguous(sub.messages)
