"""CPU cost of one ingest process at a pilot line's rate and idle, this tree against a baseline commit, in one run.

Issue 11 (cost): at ~550 values/s one ``python -m twin ingest`` spent 8.9 % of a core (Node-RED: 5.3 %), most of it
a fixed cost. This benchmark measures, for the code in this tree (``new``) and for the code of a baseline commit
(``base``, checked out with ``git worktree add /tmp/ingest-baseline 5716333``; run with its own directory as cwd and
PYTHONPATH, on the same interpreter):

- ``cpu_pct``: user + system CPU of the ingest process (all its threads, ``/proc/PID/stat``) over the window, in % of
  one core;
- ``values_per_s``: values the OPC UA connector received (``/status`` opcua.samples) and ``stored_per_s``: values
  InfluxDB confirmed, over the same window;
- ``fsyncs_per_s``: fsync + fdatasync calls of the process (it runs under ``strace -f --seccomp-bpf``, which stops
  it for those two calls only, base and new alike);
- ``ctx_switches_per_s``: voluntary + involuntary context switches of all its threads (wake-ups);

at two loads from the real simulator over OPC UA into a real influxd: ``idle`` (connected and subscribed, the
simulator stepping once every 1000 s: 0 values/s; the fixed cost) and ``line`` (``--speed 10.7 --tick 1``: 10.7
steps a second, ~51 changed values each, ~550 values/s, as many OPC UA publishes a second).
``per_value_us`` = (line - idle CPU) / line rate.

Noise: the machine's 2 cores are shared, so both processes run *at the same time*, against the same simulator, in
the same window (paired samples: whatever else runs hits both), the start order alternating round by round
(A B, B A, ...); figures are medians over ``BENCH_ROUNDS`` rounds (default 3).

Run: ``.venv/bin/python -m pytest -s tests/bench/bench_ingest_cpu.py --override-ini addopts=``
(env: ``BENCH_BASELINE=/tmp/ingest-baseline``, ``BENCH_ROUNDS``, ``BENCH_WINDOW_S``, ``BENCH_WARMUP_S``).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.localstack import Influxd, Simulator
from tests.ingest.conftest import IngestProcess

BASELINE = Path(os.environ.get("BENCH_BASELINE", "/tmp/ingest-baseline"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
WARMUP_S = float(os.environ.get("BENCH_WARMUP_S", "15"))
WINDOW_S = float(os.environ.get("BENCH_WINDOW_S", "40"))
SIM_COMMON = ["--security", "none", "--tick", "1"]
LOADS: dict[str, list[str]] = {
    "idle": [*SIM_COMMON, "--speed", "0.001"],  # one step at start, the next after 1000 s: connected, no values
    "line": [*SIM_COMMON, "--speed", "10.7"],  # 10.7 steps a second of ~51 changed values: ~550 values/s
}
CLK_TCK = os.sysconf("SC_CLK_TCK")
STRACE = shutil.which("strace")


class TracedIngest(IngestProcess):
    """The ingest process under ``strace`` (fsyncs only), from this tree or from ``code_dir``'s checkout."""

    def __init__(self, data_dir: Path, config: Path, code_dir: Path | None) -> None:
        super().__init__(data_dir, config)
        self.code_dir = code_dir

    def command(self) -> list[str]:
        cmd = super().command()
        if self.code_dir is not None:  # ``python -m`` puts the cwd first on sys.path: run from the checkout
            cmd = ["env", "-C", str(self.code_dir), *cmd]
        if STRACE:
            cmd = [STRACE, "-f", "--seccomp-bpf", "-qq", "-e", "trace=fsync,fdatasync", "-e", "signal=none",
                   "-ttt", "-o", str(self.data_dir / "fsync.trace"), *cmd]
        return cmd

    def env(self) -> dict[str, str]:
        env = super().env()
        if self.code_dir is not None:
            env["PYTHONPATH"] = str(self.code_dir)
        return env

    @property
    def python_pid(self) -> int:
        """The interpreter's pid (strace's child when traced; ``env -C`` execs in place)."""
        assert self.proc is not None
        if not STRACE:
            return self.proc.pid
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return int(children[0])

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.python_pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15), all threads

    def ctx_switches(self) -> int:
        total = 0
        for task in Path(f"/proc/{self.python_pid}/task").iterdir():
            try:
                for line in (task / "status").read_text().splitlines():
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
            except OSError:  # a thread ended meanwhile
                continue
        return total

    def fsyncs_between(self, t0: float, t1: float) -> int | None:
        path = self.data_dir / "fsync.trace"
        if not STRACE or not path.exists():
            return None
        n = 0
        for line in path.read_text().splitlines():
            parts = line.split(None, 2)
            if len(parts) == 3 and parts[2].startswith(("fsync(", "fdatasync(")) and t0 <= float(parts[1]) < t1:
                n += 1
        return n


def _config(d: Path, influx_url: str, database: str, endpoint: str) -> Path:
    """Production defaults (fsync always, batch 5000, default flush interval, watchdog and stats), loopback servers."""
    cfg = {
        "line": {"id": "PL1"},
        "influx": {"url": influx_url, "database": database},
        "spool": {"dir": str(d / "spool"), "fsync": "always"},
        "quarantine": {"dir": str(d / "quarantine")},
        "opcua": {"enabled": True, "endpoint": endpoint},
        "mqtt": {"enabled": False},
        # the simulator's source timestamps may run ahead of the wall clock
        "validation": {"max_future_s": 10 * 365 * 86400.0},
    }
    path = d / "ingest.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _snapshot(p: TracedIngest) -> dict[str, Any]:
    st = p.status()
    return {"t": time.time(), "mono": time.monotonic(), "cpu_s": p.cpu_s(), "ctx": p.ctx_switches(),
            "samples": st["opcua"]["samples"], "stored": st["counts"]["stored"]}


def _one_round(tmp: Path, influx: Influxd, load: str, rnd: int) -> dict[str, dict[str, Any]]:
    sim = Simulator(tmp / f"sim_{load}_{rnd}", None, LOADS[load])
    procs: dict[str, TracedIngest] = {}
    order = ["base", "new"] if rnd % 2 == 0 else ["new", "base"]
    try:
        sim.start()
        for which in order:
            d = tmp / f"{which}_{load}_{rnd}"
            d.mkdir(parents=True)
            cfg = _config(d, influx.url, f"cpu_{which}_{load}_{rnd}", sim.endpoint)
            procs[which] = TracedIngest(d / "proc", cfg, BASELINE if which == "base" else None)
            procs[which].start()
        time.sleep(WARMUP_S)
        s0 = {k: _snapshot(p) for k, p in procs.items()}
        time.sleep(WINDOW_S)
        s1 = {k: _snapshot(p) for k, p in procs.items()}
    finally:
        for p in procs.values():
            p.stop()
        sim.stop()
    out: dict[str, dict[str, Any]] = {}
    for k, p in procs.items():
        a, b = s0[k], s1[k]
        dt = b["mono"] - a["mono"]
        fs = p.fsyncs_between(a["t"], b["t"])
        out[k] = {
            "cpu_pct": 100 * (b["cpu_s"] - a["cpu_s"]) / dt,
            "values_per_s": (b["samples"] - a["samples"]) / dt,
            "stored_per_s": (b["stored"] - a["stored"]) / dt,
            "fsyncs_per_s": None if fs is None else fs / dt,
            "ctx_switches_per_s": (b["ctx"] - a["ctx"]) / dt,
        }
    return out


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if r[key] is not None]
    return round(statistics.median(vals), 2) if vals else None


def test_bench_ingest_cpu(tmp_path: Path) -> None:
    if not (BASELINE / "twin" / "ingest.py").exists():
        pytest.skip(f"no baseline checkout at {BASELINE}: git worktree add {BASELINE} <commit>")
    base_commit = subprocess.run(["git", "-C", str(BASELINE), "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True, check=False).stdout.strip()
    influx = Influxd(tmp_path / "influxd")
    influx.start()
    rounds: dict[str, dict[str, list[dict[str, Any]]]] = {load: {"base": [], "new": []} for load in LOADS}
    load0 = os.getloadavg()[0]
    try:
        for rnd in range(ROUNDS):
            for load in LOADS:
                for k, row in _one_round(tmp_path, influx, load, rnd).items():
                    rounds[load][k].append(row)
    finally:
        influx.stop()
    summary: dict[str, Any] = {}
    for k in ("base", "new"):
        med = {load: {m: _median(rounds[load][k], m) for m in rounds[load][k][0]} for load in LOADS}
        idle, line = med["idle"], med["line"]
        per_value = None
        if line["values_per_s"]:
            per_value = round(((line["cpu_pct"] or 0) - (idle["cpu_pct"] or 0)) / 100 / line["values_per_s"] * 1e6, 1)
        summary[k] = {"idle": idle, "line": line, "fixed_cost_pct_of_core": idle["cpu_pct"],
                      "per_value_us": per_value}
    out = {
        "benchmark": "ingest CPU: one `python -m twin ingest`, real simulator over OPC UA -> real influxd",
        "baseline": f"{BASELINE} @ {base_commit}", "new": "this tree", "loads": {k: " ".join(v) for k, v in
                                                                                  LOADS.items()},
        "rounds": ROUNDS, "warmup_s": WARMUP_S, "window_s": WINDOW_S, "cpu_count": os.cpu_count(),
        "loadavg_1min_before": round(load0, 2), "loadavg_1min_after": round(os.getloadavg()[0], 2),
        "median": summary, "per_round": rounds, "python": sys.version.split()[0],
    }
    print(json.dumps(out, indent=2))
    for k in ("base", "new"):  # both really ran at the line's rate and kept up with it
        line_rows = rounds["line"][k]
        assert all(r["values_per_s"] > 100 for r in line_rows), out
