"""The Sparkplug B host (connectors/sparkplug) against a real edge node process (tests/ingest/sparkplug_edge.py, written
with pysparkplug and raw paho, not with the project's code) through a real mosquitto.

The edge node prints what it published (``DATA n=.. payload_ts=.. metric_ts=..``) and what it received (``REBIRTH``,
``STATE ...``); the tests compare the Samples the connector delivered with that, and drive the edge node's faults
(a skipped seq, an unknown alias, deaths, garbage) through its stdin. Restarts are real: mosquitto and the edge node
process are SIGKILLed and started again.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pysparkplug import DataType, DBirth, DData, Metric, NBirth, NDeath

from connectors.records import Rejected, Sample, TraceEvent
from connectors.sparkplug import SparkplugConnector, SparkplugSource
from deploy.localstack import Mosquitto
from tests.ingest.conftest import until

EDGE = Path(__file__).resolve().parent / "sparkplug_edge.py"
DEVICE_SIGNALS = {"WetFilmThickness", "WebSpeed", "Running", "RecipeName", "Counter.Messages"}
RULES: list[dict[str, Any]] = [
    {"match": "E1/Coater01/Monitoring/WetFilmThickness", "station": "Coating/Cathode", "unit": "um"},
    {"match": "E1/Coater01/Monitoring/WebSpeed", "station": "Coating/Cathode", "unit": "m/min"},
    {"match": "E1/Coater01/Status/*", "station": "Coating/Cathode"},
    {"match": "E1/Coater01/Recipe/Name", "station": "Coating/Cathode", "signal": "RecipeName"},
    {"match": "E1/Coater01/Counters/**", "station": "Coating/Cathode", "signal": "Counter.{1}"},
    {"match": "E1/-/Temperature", "station": "DryRoom", "unit": "Cel"},
    # E1/Coater01/Diagnostics/Noise: no rule, unmapped = ignore
]


class Edge:
    """The edge node process: stdin commands, stdout events collected by a reader thread."""

    def __init__(self, broker: str, group: str, state_file: Path, primary_host: str | None = None) -> None:
        cmd = [sys.executable, str(EDGE), "--broker", broker, "--group", group, "--node", "E1",
               "--state-file", str(state_file), "--interval-ms", "40"]
        if primary_host:
            cmd += ["--primary-host", primary_host]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, text=True,
                                     start_new_session=True)
        self.lines: list[str] = []
        self._cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cv:
                self.lines.append(line.strip())
                self._cv.notify_all()

    def mark(self) -> int:
        with self._cv:
            return len(self.lines)

    async def wait(self, pattern: str, after: int = 0, timeout_s: float = 20.0) -> re.Match[str]:
        rx = re.compile(pattern)
        found: list[re.Match[str]] = []

        def seen() -> bool:
            with self._cv:
                for line in self.lines[after:]:
                    m = rx.match(line)
                    if m:
                        found.append(m)
                        return True
            return False

        await until(seen, timeout_s, f"edge node line {pattern!r} (last: {self.lines[-5:]})")
        return found[0]

    def count(self, pattern: str, after: int = 0) -> int:
        rx = re.compile(pattern)
        with self._cv:
            return sum(1 for line in self.lines[after:] if rx.match(line))

    async def command(self, cmd: str) -> None:
        after = self.mark()
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        await self.wait(f"DONE {cmd}$", after)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


class Collected:
    """The sink: records as delivered, every ack called at once (as the spool would once they are durable)."""

    def __init__(self) -> None:
        self.records: list[Sample | TraceEvent | Rejected] = []
        self.lock = threading.Lock()

    def __call__(self, records: Sequence[Sample | TraceEvent | Rejected], ack: Callable[[], None] | None) -> None:
        with self.lock:
            self.records.extend(records)
        if ack is not None:
            ack()

    def samples(self, after: int = 0, **match: Any) -> list[Sample]:
        with self.lock:
            recs = self.records[after:]
        return [r for r in recs if isinstance(r, Sample) and all(getattr(r, k) == v for k, v in match.items())]

    def rejected(self, reason: str) -> list[Rejected]:
        with self.lock:
            return [r for r in self.records if isinstance(r, Rejected) and r.reason == reason]

    def mark(self) -> int:
        with self.lock:
            return len(self.records)


@pytest.fixture
def edges(tmp_path: Path) -> Iterator[list[Edge]]:
    started: list[Edge] = []
    yield started
    for e in started:
        e.kill()


def source(url: str, group: str, **kw: Any) -> SparkplugSource:
    return SparkplugSource(mqtt={"url": url, "reconnect_min_s": 1, "reconnect_max_s": 1}, group_id=group,
                           signals=RULES, **kw)


async def data_lands(edge: Edge, got: Collected) -> int:
    """The next DDATA the edge node publishes arrives as Samples; returns its n."""
    m = await edge.wait(r"DATA n=(\d+) seq=\d+ payload_ts=(\d+) metric_ts=(\d+)$", edge.mark())
    n, metric_ts = int(m.group(1)), int(m.group(3))
    # at the metric's own timestamp, not the payload's (which is 7 ms later)
    await until(lambda: got.samples(signal="Counter.Messages", value=n, time_ns=metric_ts * 1_000_000), 20,
                f"sample of DDATA n={n}")
    return n


async def test_births_data_aliases_gaps_and_deaths(mosquitto: Mosquitto, edges: list[Edge], tmp_path: Path) -> None:
    group, host = f"G{uuid.uuid4().hex[:8]}", f"twin{uuid.uuid4().hex[:6]}"
    got = Collected()
    conn = SparkplugConnector(source(mosquitto.url, group, host_id=host, rebirth_throttle_s=0), "PL9", got)
    await conn.start()
    try:
        edge = Edge(f"{mosquitto.host}:{mosquitto.port}", group, tmp_path / "bdseq", primary_host=host)
        edges.append(edge)
        # the edge node waits for our STATE online (primary host), then is born
        await edge.wait(r"STATE online=True")
        await edge.wait(r"BIRTH bdseq=0$")
        n = await data_lands(edge, got)

        # births: the node metric (payload timestamp: it has none of its own) and the device's, mapped
        st = conn.status()
        assert st.connected and st.births == 2 and st.rebirth_requests == 0 and st.seq_gaps == 0
        (t0,) = got.samples(station="DryRoom", signal="Temperature", value=21.5)
        assert t0.unit == "Cel" and t0.line == "PL9" and t0.quality == "good"
        assert t0.source == f"spBv1.0/{group}/E1/-/Temperature"
        # data by alias only: every mapped metric of DDATA n, with the rule's station, signal and unit
        (counter,) = got.samples(signal="Counter.Messages", value=n)
        row = {s.signal: s for s in got.samples() if s.station == "Coating/Cathode" and s.time_ns == counter.time_ns}
        assert set(row) == DEVICE_SIGNALS
        assert row["WetFilmThickness"].value == 100.0 + (n % 50) * 0.5 and row["WetFilmThickness"].unit == "um"
        assert row["WebSpeed"].value == 12.5 and row["WebSpeed"].unit == "m/min"
        assert row["Running"].value is True and row["RecipeName"].value == "NMC811-A"
        # the unmapped metric is dropped and counted; Sparkplug's own metrics are never samples
        assert conn.status().unmapped > 0
        assert not [s for s in got.samples() if s.signal in ("Noise", "bdSeq") or "Control" in s.signal]
        # NDATA: the node metric by alias, at the payload's timestamp
        m = await edge.wait(r"NDATA n=(\d+) payload_ts=(\d+)$")
        k, payload_ts = int(m.group(1)), int(m.group(2))
        await until(lambda: got.samples(station="DryRoom", value=20.0 + k), 10, "NDATA sample")
        assert got.samples(station="DryRoom", value=20.0 + k)[0].time_ns == payload_ts * 1_000_000

        # a skipped seq: the host asks for a rebirth, the edge node answers, data goes on
        mark = edge.mark()
        await edge.command("skip_seq")
        await edge.wait(r"REBIRTH$", mark)
        await until(lambda: conn.status().births == 4, 10, "births answering the rebirth request")
        st = conn.status()
        assert st.seq_gaps == 1 and st.rebirth_requests == 1
        await data_lands(edge, got)

        # an alias no birth defined: the message is quarantined whole, a rebirth requested
        mark = edge.mark()
        await edge.command("bad_alias")
        await edge.wait(r"REBIRTH$", mark)
        st = conn.status()
        assert st.unknown_aliases == 1 and st.rebirth_requests == 2 and st.seq_gaps == 1
        (bad,) = got.rejected("sparkplug_unknown_alias")
        assert "999" in bad.detail and bad.source == f"spBv1.0/{group}/DDATA/E1/Coater01"
        await data_lands(edge, got)

        # garbage on the DDATA topic: Rejected with the raw bytes, ingest goes on
        await edge.command("garbage")
        await until(lambda: got.rejected("sparkplug_decode"), 10, "garbage rejected")
        (junk,) = got.rejected("sparkplug_decode")
        assert junk.raw == b"\xff\x00not a protobuf\xff" and "DDATA does not decode" in junk.detail
        await data_lands(edge, got)

        # an NDEATH of an earlier session (bdSeq of the previous connection) changes nothing
        mark_rec = got.mark()
        await edge.command("stale_ndeath")
        await until(lambda: conn.status().stale_deaths == 1, 10, "stale NDEATH seen")
        assert not [s for s in got.samples(mark_rec) if s.quality == "bad"]
        await data_lands(edge, got)

        # DDEATH: the device's mapped signals go bad (NaN, quality bad) at the death's time
        mark_rec = got.mark()
        await edge.command("ddeath")
        await until(lambda: len(got.samples(mark_rec, quality="bad")) == len(DEVICE_SIGNALS), 10, "DDEATH bad")
        dead = got.samples(mark_rec, quality="bad")
        assert {s.signal for s in dead} == DEVICE_SIGNALS and all(math.isnan(float(s.value)) for s in dead)
        assert {s.station for s in dead} == {"Coating/Cathode"}
        await edge.command("dbirth")
        await data_lands(edge, got)

        # NDEATH: the node's and its devices' signals go bad
        mark_rec = got.mark()
        await edge.command("ndeath")
        await until(lambda: len(got.samples(mark_rec, quality="bad")) == len(DEVICE_SIGNALS) + 1, 10, "NDEATH bad")
        assert {(s.station, s.signal) for s in got.samples(mark_rec, quality="bad")} == {
            ("DryRoom", "Temperature"), *(("Coating/Cathode", x) for x in DEVICE_SIGNALS)}
        assert conn.status().deaths == 2
        assert conn.status().rejected == 2
    finally:
        mark = edges[0].mark() if edges else 0
        await conn.stop()
    # a clean stop says offline (retained), which the edge node sees
    await edges[0].wait(r"STATE online=False", mark)


async def test_rebirth_requests_are_throttled_per_edge_node(mosquitto: Mosquitto, edges: list[Edge],
                                                            tmp_path: Path) -> None:
    group, host = f"G{uuid.uuid4().hex[:8]}", f"twin{uuid.uuid4().hex[:6]}"
    got = Collected()
    conn = SparkplugConnector(source(mosquitto.url, group, host_id=host, rebirth_throttle_s=3600), "PL9", got)
    await conn.start()
    try:
        # the edge node is born once our STATE says online, i.e. after we subscribed: we see its births
        edge = Edge(f"{mosquitto.host}:{mosquitto.port}", group, tmp_path / "bdseq", primary_host=host)
        edges.append(edge)
        await data_lands(edge, got)
        assert conn.status().rebirth_requests == 0
        await edge.command("skip_seq")
        await until(lambda: conn.status().seq_gaps == 1, 10, "first gap")
        await edge.command("skip_seq")
        await until(lambda: conn.status().seq_gaps == 2, 10, "second gap")
        assert conn.status().rebirth_requests == 1  # the second gap fell within rebirth_throttle_s
        await data_lands(edge, got)
    finally:
        await conn.stop()


async def test_host_started_after_the_edge_node_asks_for_births(mosquitto: Mosquitto, edges: list[Edge],
                                                                 tmp_path: Path) -> None:
    """Data by alias from a node born before the twin listened: quarantined, a rebirth requested, then mapped."""
    group = f"G{uuid.uuid4().hex[:8]}"
    edge = Edge(f"{mosquitto.host}:{mosquitto.port}", group, tmp_path / "bdseq")
    edges.append(edge)
    await edge.wait(r"BIRTH bdseq=0$")
    # once the broker relayed a DDATA, it has processed the births before it (one connection keeps its order): the
    # host subscribing now sees data only
    relayed = threading.Event()
    observer = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"observer-{group}")
    observer.on_connect = lambda c, *_: c.subscribe(f"spBv1.0/{group}/DDATA/#")
    observer.on_message = lambda *_: relayed.set()
    observer.connect(mosquitto.host, mosquitto.port)
    observer.loop_start()
    try:
        await until(relayed.is_set, 20, "a DDATA relayed by the broker")
    finally:
        observer.disconnect()
        observer.loop_stop()
    got = Collected()
    conn = SparkplugConnector(source(mosquitto.url, group), "PL9", got)
    mark = edge.mark()
    await conn.start()
    try:
        await edge.wait(r"REBIRTH$", mark)
        await data_lands(edge, got)
        no_birth = got.rejected("sparkplug_no_birth")
        assert no_birth and all(r.source.startswith(f"spBv1.0/{group}/") for r in no_birth), conn.status()
        assert conn.status().rebirth_requests >= 1 and conn.status().births == 2
    finally:
        await conn.stop()


async def test_broker_restart_and_edge_node_restart(mosquitto_factory: Callable[..., Mosquitto], edges: list[Edge],
                                                    tmp_path: Path) -> None:
    broker = mosquitto_factory()
    group, host = f"G{uuid.uuid4().hex[:8]}", f"twin{uuid.uuid4().hex[:6]}"
    got = Collected()
    conn = SparkplugConnector(source(broker.url, group, host_id=host), "PL9", got)
    await conn.start()
    addr = f"{broker.host}:{broker.port}"
    try:
        edge = Edge(addr, group, tmp_path / "bdseq", primary_host=host)
        edges.append(edge)
        await edge.wait(r"BIRTH bdseq=0$")
        n_before = await data_lands(edge, got)

        # the broker dies (SIGKILL) and comes back on the same port: both sides reconnect, the edge node is born
        # again with the next bdSeq once our STATE says online again, and data flows
        broker.kill()
        mark = edge.mark()
        broker.start()
        await edge.wait(r"BIRTH bdseq=1$", mark, timeout_s=30)
        n_after = await data_lands(edge, got)
        assert n_after > n_before
        assert conn.status().reconnects >= 1 and conn.status().connected

        # the edge node process dies: its will (NDEATH, bdSeq 1) marks its signals bad
        mark_rec = got.mark()
        edge.kill()
        await until(lambda: len(got.samples(mark_rec, quality="bad")) == len(DEVICE_SIGNALS) + 1, 20,
                    "NDEATH (will) bad samples")
        deaths = conn.status().deaths

        # started again: a new bdSeq, births, data flows again
        edge2 = Edge(addr, group, tmp_path / "bdseq", primary_host=host)
        edges.append(edge2)
        await edge2.wait(r"BIRTH bdseq=2$")
        mark_rec = got.mark()
        await data_lands(edge2, got)
        assert got.samples(mark_rec, station="Coating/Cathode", signal="WetFilmThickness", quality="good")
        assert conn.status().deaths == deaths and conn.status().stale_deaths == 0
    finally:
        await conn.stop()


def test_settings_reject_bad_ids_and_unknown_keys() -> None:
    with pytest.raises(ValueError, match="group_id"):
        SparkplugSource(group_id="a/b")
    with pytest.raises(ValueError, match="extra"):
        SparkplugSource(group_id="G", edge_node=["E1"])  # type: ignore[call-arg]
    assert SparkplugSource(group_id="G").mqtt.client_id == "pilotline-twin-spb-G"
    assert SparkplugSource(group_id="G", mqtt={"client_id": "mine"}).mqtt.client_id == "mine"


async def test_a_stale_offline_state_of_ours_is_answered_with_online(mosquitto: Mosquitto) -> None:
    """A retained offline STATE for our host id (an old session's will arriving late) must not stand while we run."""
    group, host = f"G{uuid.uuid4().hex[:8]}", f"twin{uuid.uuid4().hex[:6]}"
    topic = f"spBv1.0/STATE/{host}"
    conn = SparkplugConnector(source(mosquitto.url, group, host_id=host), "PL9", Collected())
    states: list[dict[str, Any]] = []
    observer = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"observer-{group}")
    observer.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    observer.on_message = lambda _c, _u, msg: states.append(json.loads(msg.payload))
    observer.connect(mosquitto.host, mosquitto.port)
    observer.loop_start()
    await conn.start()
    try:
        await until(lambda: any(s["online"] for s in states), 20, "STATE online")
        ts = next(s["timestamp"] for s in states if s["online"])
        observer.publish(topic, json.dumps({"online": False, "timestamp": ts - 1000}), qos=1, retain=True)
        await until(lambda: len(states) >= 3 and states[-1]["online"], 20, "STATE online again")
        assert states[-1]["timestamp"] == ts  # the session's own timestamp, as its will carries
    finally:
        await conn.stop()
        observer.disconnect()
        observer.loop_stop()
    # the clean stop: offline, same timestamp
    assert states[-1] == {"online": False, "timestamp": ts}


def _birth_payloads(bd_seq: int) -> tuple[bytes, bytes, bytes, bytes]:
    t = 1_790_000_000_000
    nbirth = NBirth(timestamp=t, seq=0, metrics=(
        Metric(timestamp=t, name="bdSeq", datatype=DataType.INT64, value=bd_seq),
        Metric(timestamp=t, name="Line Speed/Actual", datatype=DataType.FLOAT, value=3.5, alias=7)))
    dbirth = DBirth(timestamp=t, seq=1, metrics=(
        Metric(timestamp=t, name="Dew Point", datatype=DataType.DOUBLE, value=-40.0, alias=8),))
    ddata = DData(timestamp=t + 10, seq=2, metrics=(
        Metric(timestamp=None, name=None, datatype=DataType.DOUBLE, value=-41.0, alias=8),))
    ndeath = NDeath(timestamp=None, bd_seq_metric=Metric(timestamp=None, name="bdSeq", datatype=DataType.INT64,
                                                         value=bd_seq))
    return nbirth.encode(), dbirth.encode(), ddata.encode(), ndeath.encode()


def test_filters_and_derived_names_on_decoded_payloads() -> None:
    """Without a broker: payloads made with pysparkplug, straight into the connector's message handler."""
    cfg = SparkplugSource(group_id="G", edge_nodes=["Edge-1"], devices=["DR1"], unmapped="derive")
    conn = SparkplugConnector(cfg, "PL9", Collected())
    nb, db, dd, death = _birth_payloads(3)
    out = conn.handle("spBv1.0/G/NBIRTH/Edge-1", nb, 1)
    assert [(s.station, s.signal, s.value) for s in out if isinstance(s, Sample)] == [
        ("Edge_1", "Line_Speed.Actual", 3.5)]
    out = conn.handle("spBv1.0/G/DBIRTH/Edge-1/DR1", db, 1)
    assert [(s.station, s.signal, s.value) for s in out if isinstance(s, Sample)] == [
        ("Edge_1/DR1", "Dew_Point", -40.0)]
    out = conn.handle("spBv1.0/G/DDATA/Edge-1/DR1", dd, 1)
    assert [(s.signal, s.value, s.time_ns) for s in out if isinstance(s, Sample)] == [
        ("Dew_Point", -41.0, 1_790_000_000_010 * 1_000_000)]  # no metric timestamp: the payload's
    # another device and another edge node are not read
    assert conn.handle("spBv1.0/G/DBIRTH/Edge-1/DR2", _birth_payloads(3)[1], 1) == []
    assert conn.handle("spBv1.0/G/NBIRTH/Edge-2", nb, 1) == []
    assert conn.status().births == 2
    # the NDEATH of this session marks both births' metrics bad at its receive time
    bad = conn.handle("spBv1.0/G/NDEATH/Edge-1", death, 99)
    assert {(s.signal, s.quality, s.time_ns) for s in bad if isinstance(s, Sample)} == {
        ("Line_Speed.Actual", "bad", 99), ("Dew_Point", "bad", 99)}
    # a topic outside the group's scheme is a Rejected
    (r,) = conn.handle("spBv1.0/G/NBIRTH", nb, 1)
    assert isinstance(r, Rejected) and r.reason == "sparkplug_topic"
