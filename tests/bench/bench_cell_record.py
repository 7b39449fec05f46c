"""Cell record and dataset export benchmark at 100 000 cells (prints one JSON document).

Run:
    .venv/bin/python tests/bench/bench_cell_record.py --cells 100000
    CELL_RECORD_BENCH_CELLS=2000 .venv/bin/python -m pytest -q -s tests/bench/bench_cell_record.py \
        --override-ini addopts=

The plant is tests/ontology/synthetic.py's history (200 m coated rolls, 0.5 m per cell, 800 cells per roll, about 5.3
trace events per cell) in the persistent Oxigraph store, built as tests/bench/bench_genealogy.py builds it, and a real
influxd holding the process data those materials were made with (tests/quality/linedata.py: coater, beta gauge and
calender every metre of every roll, mixing viscosity every minute, the dry room's dew point every 5 min).

Measured in the same run:
- cell record latency (``QualityService.record``: the genealogy answer, then two InfluxDB requests; what the API's
  worker thread runs) for random cells: p50 / p99 / max, and the split genealogy vs the rest;
- dataset export rate (cells / s) for a selection of consecutive cells (as "the cells of these rolls" is), with the
  export (one read per roll, windows batched) against the naive loop (a full record per cell), on the same cells.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
for extra in (REPO, REPO / "tests" / "ontology"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from synthetic import PlantHistory  # noqa: E402

from deploy.localstack import Influxd  # noqa: E402
from ontology.store import GenealogyStore, StoreConfig  # noqa: E402
from tests.quality.linedata import line_data  # noqa: E402
from twin.quality.influx import InfluxReader  # noqa: E402
from twin.quality.service import QualityService  # noqa: E402


def pct(samples: list[float]) -> dict[str, float]:
    xs = sorted(samples)
    return {"n": len(xs), "p50_ms": round(statistics.median(xs), 2),
            "p99_ms": round(xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))], 2), "max_ms": round(xs[-1], 2)}


def build(cells: int, tmp: Path, influx: InfluxReader, backlog: int = 20_000) -> dict[str, Any]:
    history = PlantHistory(cells=cells, roll_length_m=200.0, segment_m=10.0, pitch_m=0.5, keep_truth=False, seed=1)
    store = GenealogyStore(StoreConfig(path=tmp / "genealogy"))
    t0 = time.perf_counter()
    events: list[dict[str, Any]] = []
    for event in history.events():
        store.add_event(event)
        events.append(event)
        if len(events) % 1000 == 0:
            while store._queue.qsize() > backlog:
                time.sleep(0.01)
    assert store.flush(timeout=24 * 3600)
    build_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    batch: list[str] = []
    points = 0
    for line in line_data(events, step_m=1.0, dew_every_s=300.0, formation_every_s=None):
        batch.append(line)
        if len(batch) >= 20_000:
            influx.write(("\n".join(batch) + "\n").encode())
            points += len(batch)
            batch = []
    if batch:
        influx.write(("\n".join(batch) + "\n").encode())
        points += len(batch)
    store.close()
    return {"cells": cells, "events": len(events), "genealogy_build_s": round(build_s, 1),
            "influx_points": points, "influx_write_s": round(time.perf_counter() - t1, 1)}


def benchmark(cells: int, samples: int, export_cells: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-cell-record-"))
    server = Influxd(tmp / "influxd")
    server.start()
    try:
        db = f"bench_{uuid.uuid4().hex[:8]}"
        influx = InfluxReader(server.url, db, timeout_s=30.0)
        influx.query([f'CREATE DATABASE "{db}"'])
        out: dict[str, Any] = {"bench": "cell_record", "build": build(cells, tmp, influx)}
        store = GenealogyStore(StoreConfig(path=tmp / "genealogy"))
        store.wait_index(600)
        q = QualityService(store, influx, {}, "PL1")
        rng = random.Random(3)
        ids = [f"CELL-{rng.randint(1, cells):06d}" for _ in range(samples)]
        q.record(ids[0])  # warm: first query compiles, first connection
        total, genealogy = [], []
        for cid in ids:
            t0 = time.perf_counter()
            g = store.genealogy(cid)
            t1 = time.perf_counter()
            q.records.record(cid, genealogy=g)
            t2 = time.perf_counter()
            total.append((t2 - t0) * 1000)
            genealogy.append((t1 - t0) * 1000)
        out["cell_record"] = {**pct(total), "genealogy_part": pct(genealogy), "target_p99_ms": 200,
                              "influx_requests_per_record": 2}
        start = rng.randint(1, max(1, cells - export_cells))
        sel = [f"CELL-{i:06d}" for i in range(start, start + export_cells)]
        r0 = influx.requests
        t0 = time.perf_counter()
        rows = q.dataset(sel)
        export_s = time.perf_counter() - t0
        export_requests = influx.requests - r0
        r0 = influx.requests
        t0 = time.perf_counter()
        naive = [(c, q.record(c)["features"]) for c in sel]
        naive_s = time.perf_counter() - t0
        naive_requests = influx.requests - r0
        same = all(set(a[1]) == set(b[1]) for a, b in zip(rows, naive, strict=True))
        out["dataset_export"] = {
            "cells": len(sel), "features_per_cell": round(sum(len(f) for _, f in rows) / len(rows), 1),
            "export_cells_per_s": round(len(sel) / export_s, 1), "export_influx_requests": export_requests,
            "naive_per_cell_loop_cells_per_s": round(len(sel) / naive_s, 1),
            "naive_influx_requests": naive_requests, "speedup": round(naive_s / export_s, 2),
            "same_feature_columns": same}
        q.close()
        store.close()
        return out
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_cell_record_benchmark() -> None:
    cells = int(os.environ.get("CELL_RECORD_BENCH_CELLS", "2000"))
    result = benchmark(cells, samples=50, export_cells=min(400, cells))
    print(json.dumps(result, indent=2))
    assert result["dataset_export"]["same_feature_columns"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=300, help="random cells whose record is timed")
    parser.add_argument("--export-cells", type=int, default=1000, help="consecutive cells exported both ways")
    args = parser.parse_args()
    print(json.dumps(benchmark(args.cells, args.samples, args.export_cells), indent=2))


if __name__ == "__main__":
    main()
