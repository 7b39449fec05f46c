"""A Sparkplug B edge node as a separate process, written with pysparkplug's payload classes and raw paho-mqtt 2 (not
with the project's code): the other side of tests/ingest/test_sparkplug.py.

It publishes NBIRTH (bdSeq, Node Control/Rebirth, a node metric with a payload timestamp only) and a DBIRTH of device
``Coater01``, then every ``--interval-ms`` a DDATA by alias only (metric timestamps set) and every 5th time an NDATA.
It answers NCMD Node Control/Rebirth with new births. ``bdSeq`` is kept in ``--state-file`` and goes up by one for every
MQTT connection (a restart of this process included), as the spec says; the NDEATH will carries it.

With ``--primary-host`` it publishes births only once that host's STATE says online.

Commands on stdin, one per line: ``skip_seq`` (the next message jumps one seq), ``bad_alias`` (a DDATA with an alias no
birth defined), ``ddeath``, ``dbirth``, ``ndeath`` (an explicit NDEATH, data stops), ``stale_ndeath`` (an NDEATH with
the previous bdSeq), ``garbage`` (bytes that are no protobuf on the DDATA topic), ``pause`` / ``resume`` (the data
loop). Events on stdout, one per line: ``CONNECTED bdseq=N``, ``BIRTH bdseq=N``, ``REBIRTH``, ``STATE online=...``,
``DATA n=N seq=S payload_ts=T metric_ts=M``, ``DONE <command>``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pysparkplug import DataType, DBirth, DData, DDeath, Metric, NBirth, NCmd, NData, NDeath

DEVICE = "Coater01"
# device metrics: name, alias, datatype
DEVICE_METRICS = [
    ("Monitoring/WetFilmThickness", 1, DataType.DOUBLE),
    ("Monitoring/WebSpeed", 2, DataType.FLOAT),
    ("Status/Running", 3, DataType.BOOLEAN),
    ("Recipe/Name", 4, DataType.STRING),
    ("Counters/Messages", 5, DataType.INT64),
    ("Diagnostics/Noise", 6, DataType.DOUBLE),
]
NODE_METRIC = ("Temperature", 100, DataType.DOUBLE)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Edge:
    def __init__(self, args: argparse.Namespace) -> None:
        self.a = args
        self.base = f"spBv1.0/{args.group}"
        self.lock = threading.RLock()
        self.seq = 0
        self.n = 0
        self.born = False
        self.device_alive = False
        self.paused = False
        self.host_online = args.primary_host is None
        self.state_file = Path(args.state_file)
        self.bdseq = (int(self.state_file.read_text()) + 1) % 256 if self.state_file.exists() else 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"edge-{args.group}-{args.node}",
                                  clean_session=True)
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self.on_connect
        self.client.on_disconnect = self.on_disconnect
        self.client.on_message = self.on_message
        self.set_will()

    # -- session ---------------------------------------------------------------------------------------------------
    def set_will(self) -> None:
        self.state_file.write_text(str(self.bdseq))
        self.client.will_set(f"{self.base}/NDEATH/{self.a.node}", self.ndeath_payload(self.bdseq), qos=1)

    def ndeath_payload(self, bdseq: int) -> bytes:
        return NDeath(timestamp=now_ms(), bd_seq_metric=Metric(
            timestamp=None, name="bdSeq", datatype=DataType.INT64, value=bdseq)).encode()

    def on_connect(self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object) -> None:
        out(f"CONNECTED bdseq={self.bdseq}")
        subs = [(f"{self.base}/NCMD/{self.a.node}", 0)]
        if self.a.primary_host:
            subs.append((f"spBv1.0/STATE/{self.a.primary_host}", 1))
        client.subscribe(subs)
        if self.host_online:
            self.births()

    def on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object) -> None:
        with self.lock:
            self.born = False
            self.device_alive = False
            self.bdseq = (self.bdseq + 1) % 256  # a new MQTT session is a new birth/death sequence
            if self.a.primary_host:
                self.host_online = False
            self.set_will()

    def on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.startswith("spBv1.0/STATE/"):
            state = json.loads(msg.payload)
            out(f"STATE online={state['online']} timestamp={state['timestamp']}")
            with self.lock:
                was, self.host_online = self.host_online, bool(state["online"])
                if self.host_online and not was:
                    self.births()
            return
        cmd = NCmd.decode(msg.payload)
        if any(m.name == "Node Control/Rebirth" and m.value is True for m in cmd.metrics):
            out("REBIRTH")
            self.births()

    # -- messages --------------------------------------------------------------------------------------------------
    def next_seq(self) -> int:
        s = self.seq
        self.seq = (self.seq + 1) % 256
        return s

    def births(self) -> None:
        with self.lock:
            self.seq = 0
            t = now_ms()
            nb = NBirth(timestamp=t, seq=self.next_seq(), metrics=(
                Metric(timestamp=t, name="bdSeq", datatype=DataType.INT64, value=self.bdseq),
                Metric(timestamp=t, name="Node Control/Rebirth", datatype=DataType.BOOLEAN, value=False),
                Metric(timestamp=None, name=NODE_METRIC[0], datatype=NODE_METRIC[2], value=21.5,
                       alias=NODE_METRIC[1]),
            ))
            self.client.publish(f"{self.base}/NBIRTH/{self.a.node}", nb.encode(), qos=0)
            self.born = True
            self.dbirth()
            out(f"BIRTH bdseq={self.bdseq}")

    def device_values(self, n: int) -> list[object]:
        return [100.0 + (n % 50) * 0.5, 12.5, True, "NMC811-A", n, 0.001 * n]

    def dbirth(self) -> None:
        with self.lock:
            t = now_ms()
            vals = self.device_values(self.n)
            db = DBirth(timestamp=t, seq=self.next_seq(), metrics=tuple(
                Metric(timestamp=t, name=name, datatype=dt, value=v, alias=alias)
                for (name, alias, dt), v in zip(DEVICE_METRICS, vals, strict=True)))
            self.client.publish(f"{self.base}/DBIRTH/{self.a.node}/{DEVICE}", db.encode(), qos=0)
            self.device_alive = True

    def data(self) -> None:
        with self.lock:
            if not (self.born and self.client.is_connected()):
                return
            self.n += 1
            n = self.n
            payload_ts = now_ms()
            metric_ts = payload_ts - 7  # distinct from the payload's, so the test can tell which one a sample took
            if self.device_alive:
                seq = self.next_seq()
                dd = DData(timestamp=payload_ts, seq=seq, metrics=tuple(
                    Metric(timestamp=metric_ts, name=None, datatype=dt, value=v, alias=alias)
                    for (_name, alias, dt), v in zip(DEVICE_METRICS, self.device_values(n), strict=True)))
                self.client.publish(f"{self.base}/DDATA/{self.a.node}/{DEVICE}", dd.encode(), qos=0)
                out(f"DATA n={n} seq={seq} payload_ts={payload_ts} metric_ts={metric_ts}")
            if n % 5 == 0:
                nd = NData(timestamp=payload_ts, seq=self.next_seq(), metrics=(
                    Metric(timestamp=None, name=None, datatype=NODE_METRIC[2], value=20.0 + n, alias=NODE_METRIC[1]),))
                self.client.publish(f"{self.base}/NDATA/{self.a.node}", nd.encode(), qos=0)
                out(f"NDATA n={n} payload_ts={payload_ts}")

    def command(self, cmd: str) -> None:
        with self.lock:
            t = now_ms()
            if cmd == "skip_seq":
                self.next_seq()
            elif cmd == "bad_alias":
                dd = DData(timestamp=t, seq=self.next_seq(), metrics=(
                    Metric(timestamp=t, name=None, datatype=DataType.DOUBLE, value=1.0, alias=999),))
                self.client.publish(f"{self.base}/DDATA/{self.a.node}/{DEVICE}", dd.encode(), qos=0)
            elif cmd == "ddeath":
                self.device_alive = False
                self.client.publish(f"{self.base}/DDEATH/{self.a.node}/{DEVICE}",
                                    DDeath(timestamp=t, seq=self.next_seq()).encode(), qos=0)
            elif cmd == "dbirth":
                self.dbirth()
            elif cmd == "ndeath":
                self.born = False
                self.device_alive = False
                self.client.publish(f"{self.base}/NDEATH/{self.a.node}", self.ndeath_payload(self.bdseq), qos=1)
            elif cmd == "stale_ndeath":
                self.client.publish(f"{self.base}/NDEATH/{self.a.node}",
                                    self.ndeath_payload((self.bdseq - 1) % 256), qos=1)
            elif cmd == "garbage":
                self.client.publish(f"{self.base}/DDATA/{self.a.node}/{DEVICE}", b"\xff\x00not a protobuf\xff",
                                    qos=0)
            elif cmd == "pause":
                self.paused = True
            elif cmd == "resume":
                self.paused = False
            else:
                out(f"UNKNOWN {cmd}")
                return
        out(f"DONE {cmd}")

    def run(self) -> None:
        host, port = self.a.broker.rsplit(":", 1)
        self.client.connect_async(host, int(port), keepalive=5)
        self.client.loop_start()
        threading.Thread(target=self.read_commands, daemon=True).start()
        while True:
            if not self.paused:
                self.data()
            time.sleep(self.a.interval_ms / 1000)

    def read_commands(self) -> None:
        for line in sys.stdin:
            if line.strip():
                self.command(line.strip())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--broker", required=True, help="host:port")
    p.add_argument("--group", required=True)
    p.add_argument("--node", required=True)
    p.add_argument("--state-file", required=True, help="where bdSeq survives a restart of this process")
    p.add_argument("--primary-host", default=None, help="publish only while this host's STATE is online")
    p.add_argument("--interval-ms", type=float, default=50.0)
    Edge(p.parse_args()).run()


if __name__ == "__main__":
    main()
