"""Dashboard benchmark: page load and the slowest API call the pages make, with a large genealogy store and a week of
line data, against the naive reads in the same run.

Run (prints one JSON document):
    .venv/bin/python tests/bench/bench_dashboard.py --cells 100000 --store /tmp/genealogy-100k
    # size from DASHBOARD_BENCH_CELLS (default 100 000):
    .venv/bin/python -m pytest -q -s tests/bench/bench_dashboard.py --override-ini addopts=

Set-up: a real influxd with a week of the simulator line's gauges at 0.1 Hz (mass loading with 8 cross-web tracks,
pump flow, web speed, calendered density, dew point; a coated roll every 2 h with its position, and its RollSegment
trace events) plus the twin's setpoint writes in ``twin_audit``; the synthetic plant history of
tests/bench/bench_genealogy.py with ``--cells`` cells in a persistent genealogy store (kept at --store so later runs
reuse it; building 100 000 cells takes several minutes); then ``python -m twin run`` on both (no line connected).
Measured: each call the pages make (median and max of 5), each page's load in headless Chromium at 1366x768 (goto to
its content drawn) and the slowest call the browser saw. Baseline: the naive reads of the same week (the raw rows of
one gauge from InfluxDB, and GET /api/history, which stops at http.max_history_points).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
for extra in (REPO, REPO / "tests" / "ontology", REPO / "tests" / "bench"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from bench_genealogy_restart import build  # noqa: E402

from connectors.records import Sample, TraceEvent  # noqa: E402
from deploy.localstack import Influxd, Twin, free_port  # noqa: E402
from twin.store.lineproto import sample_line, trace_event_line  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
DAY_NS = 86_400 * 10**9
STEP_S = 10
ROLL_S = 7200
WEB_M_MIN = 1.0


def _post(url: str, body: bytes) -> None:
    req = urllib.request.Request(url, data=body, method="POST")
    with urllib.request.urlopen(req, timeout=120) as r:  # noqa: S310 - loopback
        r.read()


def write_week(influx_url: str, db: str, end_ns: int, days: float) -> dict[str, Any]:
    """A week of the line's gauges and the twin's writes, in batches of 5 000 lines."""
    _post(f"{influx_url}/query", f"q=CREATE DATABASE {db}".encode())
    start_ns = end_ns - int(days * DAY_NS)
    rng = random.Random(1)
    lines: list[str] = []
    n = 0
    t0 = time.perf_counter()

    def flush(force: bool = False) -> None:
        nonlocal lines, n
        if lines and (force or len(lines) >= 5000):
            _post(f"{influx_url}/write?db={db}&precision=ns", "\n".join(lines).encode())
            n += len(lines)
            lines = []

    seq = 0
    for t in range(start_ns, end_ns, STEP_S * 10**9):
        k = (t - start_ns) // (ROLL_S * 10**9)
        roll = f"CR-C-{k + 1:06d}"
        pos = ((t - start_ns) / 1e9 % ROLL_S) * WEB_M_MIN / 60.0
        trace = {"roll_id": roll, "roll_position_m": pos}
        ml = 14.31 + 0.15 * rng.gauss(0, 1) + 0.2 * (k % 5 == 3)
        values = [("Drying/Cathode", "MassLoading", ml, "mg/cm2", trace),
                  ("Coating/Cathode", "PumpFlowRate", 700 + rng.gauss(0, 2), "cm3/h", {}),
                  ("Coating/Cathode", "WebSpeed", WEB_M_MIN + rng.gauss(0, 0.01), "m/min", {}),
                  ("Calendering/Cathode", "CoatingDensity", 2.96 + rng.gauss(0, 0.02), "g/cm3", {}),
                  ("DryRoom", "DewPoint", -45 + rng.gauss(0, 1), "Cel", {})]
        values += [("Drying/Cathode", f"MassLoadingProfile.P{i:03d}", ml * (1 - 0.04 * ((i - 3.5) / 3.5) ** 2),
                    "mg/cm2", trace) for i in range(8)]
        for station, signal, v, unit, tr in values:
            lines.append(sample_line(Sample(t, "PL1", station, signal, float(v), unit, "good", "bench", dict(tr))))
        if (t - start_ns) // 10**9 % ROLL_S == ROLL_S - STEP_S:  # the roll is complete: its segments
            for j in range(12):
                seq += 1
                ev = TraceEvent.from_json({
                    "schema": "pilotline.trace.v1", "seq": 10_000_000 + seq, "line": "PL1",
                    "time": _iso(t + 10**9), "kind": "created", "id": f"SEG-C-{k + 1:06d}-{j + 1:03d}",
                    "type": "RollSegment", "step": "Coating", "station": "Coating/Cathode",
                    "inputs": [{"id": roll, "type": "CoatedRoll", "from_m": j * 10.0, "to_m": (j + 1) * 10.0}]})
                lines.append(trace_event_line(ev))
        flush()
    for i in range(50):  # the twin's setpoint writes over the week
        t = start_ns + int((i + 0.5) * (end_ns - start_ns) / 50)
        lines.append(f'twin_audit,line=PL1,action=write,loop=Cathode audit_id={i + 1}i,who="olga",why="bench",'
                     f'target="PilotLine/Coating/Cathode/PumpFlowRateSetpoint",before=700.0,after=710.0 {t}')
    flush(force=True)
    return {"points": n, "write_s": round(time.perf_counter() - t0, 1), "start_ns": start_ns, "end_ns": end_ns}


def _iso(ns: int) -> str:
    from connectors.records import ns_to_iso

    return ns_to_iso(ns)


def _get(url: str, token: str) -> tuple[float, int, int]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=120) as r:  # noqa: S310 - loopback
            body = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        body, status = e.read(), e.code
    return (time.perf_counter() - t0) * 1000, status, len(body)


def mid_roll(week: dict[str, Any]) -> str:
    """A complete roll in the middle of the week."""
    return f"CR-C-{(week['end_ns'] - week['start_ns']) // (ROLL_S * 10**9) // 2 + 1:06d}"


def calls(base: str, token: str, week: dict[str, Any], cells: int) -> dict[str, Any]:
    s, e = week["start_ns"], week["end_ns"]
    cell = f"CELL-{cells // 2:06d}"
    paths = {
        "config": "/api/config", "whoami": "/api/whoami", "openapi": "/openapi.json", "state": "/api/state",
        "trend_week_2_signals": f"/api/trend?signal=Drying/Cathode/MassLoading&signal=Coating/Cathode/PumpFlowRate"
                                f"&start={s}&end={e}&points=600",
        "rolls_week": f"/api/rolls?signal=Drying/Cathode/MassLoading&end={e}&limit=50",
        "rollmap2d_8_tracks": f"/api/rollmap2d?signal=Drying/Cathode/MassLoadingProfile&roll={mid_roll(week)}",
        "genealogy_cell": f"/api/genealogy/{cell}",
        "downstream_roll": "/api/genealogy/CR-C-000001/downstream",
    }
    baseline = {"history_week_raw_capped": f"/api/history?signal=Drying/Cathode/MassLoading&start={s}&end={e}"
                                           "&limit=10000"}
    out: dict[str, Any] = {}
    for name, path in {**paths, **baseline}.items():
        runs = [_get(base + path, token) for _ in range(5)]
        ms = [r[0] for r in runs]
        out[name] = {"median_ms": round(statistics.median(ms), 1), "max_ms": round(max(ms), 1),
                     "status": runs[-1][1], "bytes": runs[-1][2], "baseline": name in baseline}
    return out


async def naive_raw_week(influx_url: str, db: str, week: dict[str, Any]) -> dict[str, Any]:
    """Every raw row of one gauge over the week, read straight from InfluxDB (what a page would need unaggregated)."""
    from twin.store.query import InfluxQuery

    async with InfluxQuery(influx_url, db, timeout_s=300) as q:
        t0 = time.perf_counter()
        rows = await q.signal_history("Drying/Cathode", "MassLoading", week["start_ns"], week["end_ns"], line="PL1",
                                      limit=10_000_000)
        return {"rows": len(rows), "ms": round((time.perf_counter() - t0) * 1000, 1)}


def pages(base: str, token: str, cells: int, week: dict[str, Any]) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    cell = f"CELL-{cells // 2:06d}"
    targets = {
        "line": ("#/line", "#flow .unit"),
        "trends_week": ("#/trends", "svg.trend path.mean"),
        "rollmap": (f"#/rollmap/{mid_roll(week)}", "#rm-overlay g.segment"),
        "genealogy_cell": (f"#/genealogy/{cell}", "#genealogy-graph a.node"),
        "record_cell": (f"#/record/{cell}", "#record .rec-section"),
    }
    out: dict[str, Any] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto(base + "/")
            page.evaluate("t => localStorage.setItem('twin.token', t)", token)
            for name, (frag, selector) in targets.items():
                page.goto("about:blank")  # each page a fresh load, as a bookmark opens it
                t0 = time.perf_counter()
                page.goto(base + "/" + frag)
                if name == "trends_week":
                    page.wait_for_selector("#trend-signals option", timeout=120_000)
                    page.click("[data-range='604800']")
                page.wait_for_selector(selector, timeout=120_000)
                load = (time.perf_counter() - t0) * 1000
                timings = page.evaluate("window.twinTimings")
                slowest = max(timings, key=lambda t: t[1]) if timings else None
                out[name] = {"load_ms": round(load, 1),
                             "slowest_call": [slowest[0], round(slowest[1], 1), slowest[2]] if slowest else None,
                             "calls": len(timings)}
        finally:
            browser.close()
    return out


def benchmark(cells: int, store: Path | None, days: float = 7.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp_s:
        tmp = Path(tmp_s)
        store = store or tmp / "genealogy"
        out: dict[str, Any] = {"cells": cells, "days": days}
        if not (store / "bench-events.json").exists():
            out["genealogy_build"] = build(store, cells)
        influxd = Influxd(tmp / "influxd")
        influxd.start()
        try:
            db = "bench_dashboard"
            # the line's clock: the synthetic history's week ends now (the trend and roll pages end at the line clock)
            week = write_week(influxd.url, db, time.time_ns(), days)
            out["influx"] = {"points": week["points"], "write_s": week["write_s"]}
            port = free_port()
            cfg = {"line": {"id": "PL1"}, "influx": {"url": influxd.url, "database": db},
                   "spool": {"dir": str(tmp / "spool"), "fsync": "never"}, "quarantine": {"dir": str(tmp / "q")},
                   "opcua": {"endpoint": f"opc.tcp://127.0.0.1:{free_port()}"}, "mqtt": {"enabled": False},
                   "service": {"http": {"port": port}, "auth": {"token_file": str(tmp / "tokens.json")},
                               "genealogy": {"store_path": str(store)}}}
            import yaml

            (tmp / "twin.yaml").write_text(yaml.safe_dump(cfg))
            token = subprocess.run([sys.executable, "-m", "twin", "token", "create", "--role", "viewer", "--name",
                                    "bench", "--config", str(tmp / "twin.yaml")], cwd=REPO, capture_output=True,
                                   text=True, check=True).stdout.strip()
            twin = Twin(tmp / "twin", port, ["--config", str(tmp / "twin.yaml")])
            twin.start()
            try:
                out["naive_raw_week_from_influxdb"] = asyncio.run(naive_raw_week(influxd.url, db, week))
                out["calls"] = calls(twin.url, token, week, cells)
                out["pages"] = pages(twin.url, token, cells, week)
            finally:
                twin.stop()
        finally:
            influxd.stop()
        dash = {k: v for k, v in out["calls"].items() if not v["baseline"]}
        out["slowest_dashboard_call"] = max(dash.items(), key=lambda kv: kv[1]["max_ms"])[0]
        out["slowest_page"] = max(out["pages"].items(), key=lambda kv: kv[1]["load_ms"])[0]
        return out


def test_dashboard_benchmark() -> None:
    cells = int(os.environ.get("DASHBOARD_BENCH_CELLS", "100000"))
    store = os.environ.get("DASHBOARD_BENCH_STORE")
    result = benchmark(cells, Path(store) if store else None)
    print(json.dumps(result, indent=1))
    assert all(v["status"] == 200 for v in result["calls"].values()), result["calls"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=100_000)
    ap.add_argument("--store", type=Path, default=None, help="genealogy store dir (built there once, then reused)")
    ap.add_argument("--days", type=float, default=7.0)
    args = ap.parse_args()
    print(json.dumps(benchmark(args.cells, args.store, args.days), indent=1))


if __name__ == "__main__":
    main()
