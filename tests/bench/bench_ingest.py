"""Ingest throughput and latency: simulator -> OPC UA -> ingest -> confirmed InfluxDB writes, on this machine.

Prints one JSON object. Three measurements in the same run, same simulator load (``--speed 60 --tick 5
--profile-points 1000 --profile-array``: two 1000-element gauge tracks per step plus ~170 scalar nodes):

- ``naive``: the baseline the issue names — an asyncua subscription handler that writes every value straight to
  InfluxDB (one blocking ``/write`` per value, in its own process, ended after the window);
- ``ingest_1``: one ``python -m twin ingest`` process (validation, fsync'ed spool, gzip batches of 5000);
- ``ingest_2``: two simulators (lines PL1, PL2) and two ingest processes into the same influxd.

Rates are confirmed InfluxDB writes per second over a 15 s window after 5 s of warm-up. Latency is source to stored:
the samples are stamped with the OPC UA *server* timestamp (``opcua.timestamp: server``: the simulator's source
timestamps are simulated time, 60x faster than the wall clock) and the pipeline measures confirm time minus that.
Zero loss: after the simulator stops and the spool drains, stored == received (array elements counted as values)
and InfluxDB's own count agrees. The machine's load average is printed: other jobs share its 2 cores.

Run: ``.venv/bin/python -m pytest -s tests/bench/bench_ingest.py --override-ini addopts=`` (or ``make bench``).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from deploy.localstack import Influxd, Simulator
from tests.ingest.conftest import IngestProcess, influx_rows, ingest_config

SIM_ARGS = ["--security", "none", "--speed", "60", "--tick", "5", "--profile-points", "1000", "--profile-array"]
WARMUP_S, WINDOW_S = 5.0, 15.0


def _influx_count(url: str, db: str) -> int:
    rows = influx_rows(url, db, 'SELECT count("value") FROM /.*/')
    rows += influx_rows(url, db, 'SELECT count("bad") FROM /.*/')
    rows += influx_rows(url, db, 'SELECT count("value_str") FROM /.*/')
    rows += influx_rows(url, db, 'SELECT count("value_bool") FROM /.*/')
    return sum(int(v) for r in rows for k, v in r.items() if k == "count" and v)


def _measure_ingest(tmp: Path, influx: Influxd, n: int) -> dict[str, Any]:
    sims = [Simulator(tmp / f"sim{n}_{i}", None, [*SIM_ARGS, "--line-id", f"PL{i + 1}"]) for i in range(n)]
    procs: list[IngestProcess] = []
    try:
        for i, sim in enumerate(sims):
            d = tmp / f"ingest{n}_{i}"
            d.mkdir(parents=True)
            cfg = ingest_config(d, influx_url=influx.url, database=f"bench{n}", opcua_endpoint=sim.endpoint,
                                mqtt_url=None, client_id=f"bench{n}{i}", line={"id": f"PL{i + 1}"},
                                opcua={"timestamp": "server", "queue_size": 1000},
                                spool={"fsync": "always"}, influx={"batch_size": 5000, "flush_interval_s": 0.2})
            procs.append(IngestProcess(d / "proc", cfg).start())  # type: ignore[arg-type]
        for sim in sims:
            sim.start()
        time.sleep(WARMUP_S)
        s0 = [p.status() for p in procs]
        t0 = time.monotonic()
        time.sleep(WINDOW_S)
        s1 = [p.status() for p in procs]
        dt = time.monotonic() - t0
        for sim in sims:
            sim.stop()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            st = [p.status() for p in procs]
            if all(s["spool"]["depth_lines"] == 0 and s["inbox_records"] == 0 for s in st):
                break
            time.sleep(0.5)
        time.sleep(1.0)
        final = [p.status() for p in procs]
    finally:
        for p in procs:
            p.stop()
        for sim in sims:
            sim.stop()
    stored = sum(s["counts"]["stored"] for s in final)
    received = sum(s["opcua"]["samples"] for s in final)
    in_db = _influx_count(influx.url, f"bench{n}")
    return {
        "processes": n,
        "values_per_s": round(sum(b["counts"]["stored"] - a["counts"]["stored"] for a, b in zip(s0, s1,
                                                                                                strict=True)) / dt),
        "received_per_s": round(sum(b["opcua"]["samples"] - a["opcua"]["samples"] for a, b in zip(s0, s1,
                                                                                                  strict=True)) / dt),
        "latency_ms_p50": [round(s["latency_ms"]["p50"], 1) for s in s1],
        "latency_ms_p99": [round(s["latency_ms"]["p99"], 1) for s in s1],
        "received_total": received, "stored_total": stored, "in_influxdb": in_db,
        "rejected": sum(s["counts"]["rejected"] for s in final),
        "dropped": sum(s["counts"]["dropped_queue_full"] + s["spool"]["dropped_lines"] for s in final),
        "zero_loss": stored == received and in_db == stored,
    }


async def _naive_client(endpoint: str, influx_url: str) -> dict[str, Any]:
    """asyncua handler -> one InfluxDB write per value, as a first script would do it (runs in its own process)."""
    from asyncua import Client, ua

    from simulator.spec import line_specs

    http = httpx.Client(timeout=30)
    http.post(f"{influx_url}/query", data={"q": 'CREATE DATABASE "naive"'})
    done: list[tuple[float, float]] = []  # (monotonic completion time, latency ms)

    class Handler:
        def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
            # the usual first script: a plain handler, one blocking write per value
            dv = data.monitored_item.Value
            ts = dv.ServerTimestamp or dv.SourceTimestamp
            t_ns = int(ts.timestamp() * 1e9) if ts else time.time_ns()
            name = str(node.nodeid.Identifier)
            values = val if isinstance(val, list) else [val]
            for i, v in enumerate(values):
                if not isinstance(v, float | int) or isinstance(v, bool):
                    continue
                line = f"naive,signal={name.replace(' ', '_')}.{i} value={float(v)!r} {t_ns + i}"
                r = http.post(f"{influx_url}/write", params={"db": "naive", "precision": "ns"}, content=line)
                if r.status_code == 204:
                    done.append((time.monotonic(), (time.time_ns() - t_ns) / 1e6))

    client = Client(endpoint, timeout=30)
    await client.connect()
    ns = await client.get_namespace_index("urn:pilotline:simulator")
    nodes = [client.get_node(ua.NodeId(s.node_id, ns)) for s in line_specs(16, 1000, True)]
    sub = await client.create_subscription(100, Handler())
    await sub.subscribe_data_change(nodes)
    t0 = time.monotonic() + WARMUP_S

    def finish() -> None:  # on a timer thread: the blocked event loop would not wake up in time
        window = sorted(lat for t, lat in list(done) if t0 <= t < t0 + WINDOW_S)
        print(json.dumps({
            "processes": 1, "values_per_s": round(len(window) / WINDOW_S),
            "latency_ms_p50": round(statistics.median(window), 1) if window else None,
            "latency_ms_p99": round(window[int(0.99 * (len(window) - 1))], 1) if window else None,
            "note": "one blocking /write per value in the subscription handler; the backlog (and latency) grows",
        }), flush=True)
        os._exit(0)

    import threading

    threading.Timer(WARMUP_S + WINDOW_S + 0.5, finish).start()
    await asyncio.sleep(3600)
    return {}


def _naive(tmp: Path, influx: Influxd) -> dict[str, Any]:
    import subprocess
    import sys

    sim = Simulator(tmp / "sim_naive", None, SIM_ARGS).start()
    try:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        out = subprocess.run([sys.executable, __file__, sim.endpoint, influx.url], capture_output=True, text=True,
                             timeout=WARMUP_S + WINDOW_S + 120, env=env)
    finally:
        sim.stop()
    if out.returncode != 0:
        raise RuntimeError(f"naive baseline failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_bench_ingest(tmp_path: Path) -> None:
    influx = Influxd(tmp_path / "influxd")
    influx.start()
    try:
        load0 = os.getloadavg()[0]
        naive = _naive(tmp_path, influx)
        one = _measure_ingest(tmp_path, influx, 1)
        two = _measure_ingest(tmp_path, influx, 2)
    finally:
        influx.stop()
    out = {
        "benchmark": "ingest: simulator -> OPC UA -> confirmed InfluxDB writes",
        "load": " ".join(SIM_ARGS), "cpu_count": os.cpu_count(), "loadavg_1min_before": round(load0, 2),
        "loadavg_1min_after": round(os.getloadavg()[0], 2), "window_s": WINDOW_S,
        "naive_baseline": naive, "ingest_1_process": one, "ingest_2_processes": two,
        "ratio_ingest_1_vs_naive": round(one["values_per_s"] / max(naive["values_per_s"], 1), 1),
        "scaling_2_vs_1": round(two["values_per_s"] / max(one["values_per_s"], 1), 2),
    }
    print(json.dumps(out, indent=2))
    assert one["zero_loss"] and two["zero_loss"], out


if __name__ == "__main__":  # the naive baseline's own process: print, then leave without waiting for its backlog
    import sys

    asyncio.run(_naive_client(sys.argv[1], sys.argv[2]))  # prints its result and exits from a timer
