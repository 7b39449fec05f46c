"""Genealogy restart benchmark: how long reopening a large persistent store takes before it serves and ingests.

Run (prints one JSON document):
    .venv/bin/python tests/bench/bench_genealogy_restart.py --cells 20000 --store /tmp/genealogy-20k
    # size from GENEALOGY_BENCH_CELLS:
    .venv/bin/python -m pytest -q -s tests/bench/bench_genealogy_restart.py --override-ini addopts=

The store is built once from the synthetic plant history of tests/bench/bench_genealogy.py (kept at --store so that
later runs reopen it without rebuilding; building 100 000 cells takes several minutes). Then, per run, in a fresh
process-local sequence: open the store (the constructor), answer one genealogy lookup of an existing cell, place one
new event that refers to existing entities (a formation run of an existing cell; flush), and wait until the in-memory
ID index is complete. Baseline in the same run: the time of the full index query alone (what the constructor used to
wait for), measured on the same store.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
for extra in (REPO, REPO / "tests" / "ontology"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from synthetic import T0, PlantHistory, iso  # noqa: E402

from ontology.store import GenealogyStore, StoreConfig  # noqa: E402


def build(path: Path, cells: int, backlog: int = 20_000) -> dict[str, Any]:
    history = PlantHistory(cells=cells, roll_length_m=200.0, segment_m=10.0, pitch_m=0.5, keep_truth=False, seed=1)
    t0 = time.perf_counter()
    events = 0
    with GenealogyStore(StoreConfig(path=path)) as store:
        for event in history.events():
            store.add_event(event)
            events += 1
            if events % 1000 == 0:
                while store._queue.qsize() > backlog:
                    time.sleep(0.01)
        assert store.flush(timeout=24 * 3600)
    (path / "bench-events.json").write_text(json.dumps({"cells": cells, "events": events}))
    return {"cells": cells, "events": events, "build_s": round(time.perf_counter() - t0, 1)}


def reopen(path: Path, cells: int, events: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    store = GenealogyStore(StoreConfig(path=path))
    constructed = time.perf_counter() - t0
    out: dict[str, Any] = {"constructor_s": round(constructed, 3)}
    try:
        state = getattr(store, "index_state", lambda: "complete")()
        out["index_state_after_constructor"] = state
        t1 = time.perf_counter()
        cell = f"CELL-{cells // 2:06d}"
        answer = store.genealogy(cell)
        out["first_genealogy_s"] = round(time.perf_counter() - t1, 3)
        out["first_genealogy_entities"] = len(answer["entities"])
        t2 = time.perf_counter()
        store.add_event({"schema": "pilotline.trace.v1", "seq": events + 1, "line": "PL1", "time": iso(T0),
                         "kind": "processed", "id": f"CELL-{cells:06d}", "type": "Cell", "step": "Inspection",
                         "station": "Inspection", "inputs": [], "parameters": {}, "properties": {"ocv_V": 3.61}})
        assert store.flush(timeout=600)
        out["first_event_placed_s"] = round(time.perf_counter() - t2, 3)
        out["since_open_to_serving_and_ingesting_s"] = round(time.perf_counter() - t0, 3)
        status = store.status()
        out["first_event_quarantined"] = status["quarantined_now"]
        wait = getattr(store, "wait_index", None)
        if wait is not None:
            assert wait(timeout=3600)
        out["index_complete_s"] = round(time.perf_counter() - t0, 3)
        out["entities"] = store.status()["entities"]
        out["missing_seq"] = store.status()["lines"].get("PL1", {}).get("missing_seq")
        t3 = time.perf_counter()
        rows = store._select("index")
        out["baseline_full_index_query_s"] = round(time.perf_counter() - t3, 3)
        out["baseline_index_rows"] = len(rows)
    finally:
        store.close()
    return out


def benchmark(cells: int, store_dir: Path | None) -> dict[str, Any]:
    path = store_dir or Path(tempfile.mkdtemp(prefix="bench-genealogy-restart-"))
    result: dict[str, Any] = {"target": "serving and ingesting within 5 s of start at 100 000 cells",
                              "machine": {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()}}
    meta = path / "bench-events.json"
    if meta.exists() and json.loads(meta.read_text())["cells"] == cells:
        result["build"] = {"reused": str(path), **json.loads(meta.read_text())}
    else:
        result["build"] = build(path, cells)
    events = json.loads(meta.read_text())["events"]
    result["reopen"] = reopen(path, cells, events)
    result["reopen_again"] = reopen(path, cells, events + 1)
    return result


def test_genealogy_restart_benchmark(tmp_path: Path) -> None:
    cells = int(os.environ.get("GENEALOGY_BENCH_CELLS", "5000"))
    out = benchmark(cells, tmp_path / "store")
    print(json.dumps(out, indent=2))
    assert out["reopen"]["first_event_quarantined"] == 0
    assert out["reopen"]["first_genealogy_entities"] > 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=20_000)
    parser.add_argument("--store", type=Path, default=None, help="keep the built store here and reuse it")
    args = parser.parse_args()
    print(json.dumps(benchmark(args.cells, args.store), indent=2))


if __name__ == "__main__":
    main()
