"""Sparkplug B decoding throughput: metrics per second through the connector, against the library alone, in one run.

Prints one JSON object. The payloads are what an edge node with one device of ``METRICS`` metrics sends: DDATA by
alias only, every metric with its own timestamp (doubles, as gauges are), ``PAYLOADS`` messages with consecutive
seq. Three paths over the same bytes, each timed as the median of ``ROUNDS`` passes (CPU time of this process):

- ``protobuf_parse``: the library's generated protobuf class alone (``Payload.FromString``): the floor;
- ``library_decode``: ``pysparkplug.DData.decode(raw, birth=dbirth)``: aliases and datatypes resolved, values
  converted: the baseline;
- ``connector``: ``SparkplugConnector.handle`` (topic parse, seq check, decode as above, mapping to the twin's
  station / signal / unit and one ``Sample`` per metric), as the paho thread runs it; no broker is involved.

``connector_vs_library`` is the connector's rate over the baseline's (the cost of seq tracking and building Samples).

Run: ``.venv/bin/python -m pytest -s tests/bench/bench_sparkplug.py --override-ini addopts=``
(env: ``BENCH_PAYLOADS``, ``BENCH_METRICS``, ``BENCH_ROUNDS``).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable

from pysparkplug import DataType, DBirth, DData, Metric, NBirth
from pysparkplug import _protobuf as sparkplug_pb

from connectors.records import Sample
from connectors.sparkplug import SparkplugConnector, SparkplugSource

PAYLOADS = int(os.environ.get("BENCH_PAYLOADS", "2000"))
METRICS = int(os.environ.get("BENCH_METRICS", "20"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
GROUP, EDGE, DEVICE = "Plant1", "Edge01", "Coater01"
T0_MS = 1_790_000_000_000


def _births() -> tuple[bytes, bytes, DBirth]:
    nbirth = NBirth(timestamp=T0_MS, seq=0, metrics=(
        Metric(timestamp=T0_MS, name="bdSeq", datatype=DataType.INT64, value=0),
        Metric(timestamp=T0_MS, name="Node Control/Rebirth", datatype=DataType.BOOLEAN, value=False)))
    dbirth = DBirth(timestamp=T0_MS, seq=1, metrics=tuple(
        Metric(timestamp=T0_MS, name=f"Monitoring/Gauge{i:02d}", datatype=DataType.DOUBLE, value=0.0, alias=i + 1)
        for i in range(METRICS)))
    return nbirth.encode(), dbirth.encode(), dbirth


def _payloads() -> list[bytes]:
    out = []
    for k in range(PAYLOADS):
        t = T0_MS + 10 * (k + 1)
        out.append(DData(timestamp=t, seq=(k + 2) % 256, metrics=tuple(
            Metric(timestamp=t - 1, name=None, datatype=DataType.DOUBLE, value=100.0 + k * 0.01 + i, alias=i + 1)
            for i in range(METRICS))).encode())
    return out


def _timed(fn: Callable[[], int]) -> tuple[float, int]:
    t0 = time.process_time()
    n = fn()
    return time.process_time() - t0, n


def test_sparkplug_decode_rate() -> None:
    nbirth_raw, dbirth_raw, dbirth = _births()
    payloads = _payloads()
    cfg = SparkplugSource(group_id=GROUP, signals=[
        {"match": f"{EDGE}/{DEVICE}/Monitoring/*", "station": "Coating/Cathode", "signal": "{1}", "unit": "um"}])
    conn = SparkplugConnector(cfg, "PL1", lambda records, ack: None)  # never started: no broker, handle() only
    topic = f"spBv1.0/{GROUP}/DDATA/{EDGE}/{DEVICE}"

    def protobuf_parse() -> int:
        return sum(len(sparkplug_pb.Payload.FromString(raw).metrics) for raw in payloads)

    def library_decode() -> int:
        return sum(len(DData.decode(raw, birth=dbirth).metrics) for raw in payloads)

    def connector() -> int:
        now = time.time_ns()
        conn.handle(f"spBv1.0/{GROUP}/NBIRTH/{EDGE}", nbirth_raw, now)
        conn.handle(f"spBv1.0/{GROUP}/DBIRTH/{EDGE}/{DEVICE}", dbirth_raw, now)
        n = 0
        for raw in payloads:
            records = conn.handle(topic, raw, now)
            n += len(records)
        assert all(isinstance(r, Sample) for r in records) and records[0].station == "Coating/Cathode"
        return n

    paths = {"protobuf_parse": protobuf_parse, "library_decode": library_decode, "connector": connector}
    rates: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(ROUNDS):
        for name, fn in paths.items():
            secs, n = _timed(fn)
            assert n == PAYLOADS * METRICS, (name, n)
            rates[name].append(n / secs)
    st = conn.status()
    assert st.seq_gaps == 0 and st.rebirth_requests == 0 and st.rejected == 0
    med = {k: statistics.median(v) for k, v in rates.items()}
    out = {
        "bench": "sparkplug_decode",
        "payloads": PAYLOADS, "metrics_per_payload": METRICS, "rounds": ROUNDS,
        "metrics_per_s": {k: round(v) for k, v in med.items()},
        "metrics_per_s_all_rounds": {k: [round(x) for x in v] for k, v in rates.items()},
        "connector_vs_library": round(med["connector"] / med["library_decode"], 3),
        "python": platform.python_version(),
    }
    print(json.dumps(out, indent=2))
