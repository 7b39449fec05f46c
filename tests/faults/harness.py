"""Run a fault schedule on real processes and check the result against the simulator's record.

Real parts only: Debian's influxd and mosquitto, ``python -m simulator`` (OPC UA + MQTT cyclers, ``--record`` as
ground truth, ``--start-time`` for the line's clock) and either ``python -m twin ingest`` or the whole twin
(``python -m twin run``). Faults are signals to those processes: SIGKILL and restart (database, ingest / twin,
simulator), SIGTERM and restart (broker), SIGSTOP / SIGCONT (a hung simulator whose sockets stay open). A disk-full
spool is a tmpfs of a few MiB mounted under it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

from deploy.localstack import Influxd, Mosquitto, PythonService, Simulator
from tests.faults.checker import Report, Run, Upstream, check_all, stored_trace_events
from tests.faults.schedule import Fault, Schedule
from tests.ingest.conftest import (
    FAST_LINE,
    IngestProcess,
    influx_rows,
    ingest_config,
    read_record,
    wait_until,
)

SPEED, TICK_S = 120, 5  # 24 line steps per wall second: a 60 s run is two line hours
DATABASE = "faults"


# ------------------------------------------------------------------------------------------------------------------
# the full twin as a process
# ------------------------------------------------------------------------------------------------------------------
class TwinProcess(PythonService):
    """``python -m twin run --config FILE``: ingest, live state, control, genealogy and the API in one process."""

    name = "twin"
    start_timeout_s = 120.0

    def __init__(self, data_dir: Path, config: Path, token: str, port: int | None = None) -> None:
        super().__init__(data_dir, port)
        self.config = config
        self.token = token

    def command(self) -> list[str]:
        return [sys.executable, "-m", "twin", "run", "--config", str(self.config)]

    def env(self) -> dict[str, str]:
        env = super().env()
        env["PILOTLINE__SERVICE__HTTP__PORT"] = str(self.port)
        return env

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def metrics(self) -> dict[str, float]:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[name] = float(value)
        return out

    def parts(self) -> dict[str, bool]:
        r = httpx.get(f"{self.url}/ready", timeout=10)
        return dict(r.json().get("parts", {}))

    def upstream_of(self, cell: str, line: str) -> set[str] | None:
        r = httpx.get(f"{self.url}/api/cells/{cell}/genealogy", params={"line": line},
                      headers={"Authorization": f"Bearer {self.token}"}, timeout=60)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return {e["id"] for e in r.json()["entities"]}


def twin_config(tmp: Path, influx: Influxd, mq: Mosquitto, sim: Simulator, sched: Schedule) -> tuple[Path, str]:
    """A twin configuration on these servers, and a viewer token for its API."""
    from twin.auth import TokenStore

    token_file = tmp / "twin" / "tokens.json"
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token = TokenStore(token_file).create("viewer", "faults-viewer")
    cfg: dict[str, Any] = {
        "line": {"id": "PL1"},
        "influx": {"url": influx.url, "database": DATABASE, "flush_interval_s": 0.2, "retry_initial_s": 0.2,
                   "retry_max_s": 1.0, "timeout_s": 5},
        "spool": {"dir": str(tmp / "spool"), "fsync": "always", **sched.spool},
        "quarantine": {"dir": str(tmp / "quarantine")},
        "opcua": {"endpoint": sim.endpoint, "reconnect_initial_s": 0.2, "reconnect_max_s": 1.0,
                  "watchdog_interval_s": 0.5, "stale_after_s": 3.0, "request_timeout_s": 3.0,
                  "connect_timeout_s": 3.0},
        "mqtt": {"url": mq.url, "client_id": "twin-faults", "reconnect_min_s": 1, "reconnect_max_s": 1},
        "validation": {"max_future_s": 10 * 365 * 86400.0},
        "ingest": {"stats_interval_s": 5.0, **sched.ingest},
        "service": {"auth": {"token_file": str(token_file)},
                    "genealogy": {"store_path": str(tmp / "twin" / "genealogy")},
                    "control": {"mode": "advisory"}},
    }
    path = tmp / "twin.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, token


# ------------------------------------------------------------------------------------------------------------------
# records of killed simulators
# ------------------------------------------------------------------------------------------------------------------
def load_record(path: Path) -> Any:
    """``read_record`` after dropping a torn last line (a SIGKILLed simulator can leave half a line)."""
    text = path.read_text() if path.exists() else ""
    lines = text.splitlines()
    while lines:
        try:
            json.loads(lines[-1])
            break
        except json.JSONDecodeError:
            lines.pop()
    clean = path.with_suffix(".clean.jsonl")
    clean.write_text("\n".join(lines) + ("\n" if lines else ""))
    return read_record(clean)


def last_line_time_ns(path: Path) -> int:
    last = 0
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError, KeyError):
            last = max(last, int(json.loads(line)["t_ns"]))
    return last


# ------------------------------------------------------------------------------------------------------------------
# disk full: a tmpfs of a few MiB under the spool
# ------------------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def small_filesystem(directory: Path, size_bytes: int) -> Iterator[str | None]:
    """Mount a tmpfs of ``size_bytes`` on ``directory``; yields None when mounted, else why it could not be."""
    directory.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(directory)],
                       check=False, capture_output=True, text=True)
    if r.returncode != 0:
        yield f"cannot mount a tmpfs (needs root and mount permission): {r.stderr.strip() or r.returncode}"
        return
    try:
        yield None
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False, capture_output=True)


# ------------------------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------------------------
@dataclass
class Result:
    schedule: Schedule
    report: Report
    wall_s: float
    final_status: dict[str, Any]
    log_tail: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (f"{self.schedule.describe()}\nresult after {self.wall_s:.0f} s wall:\n{self.report.summary()}\n"
                f"final status: {json.dumps(self.final_status, default=str)[:1500]}")


class FaultRun:
    """One schedule on fresh servers. ``run()`` applies the faults at their times and returns the checked result."""

    def __init__(self, tmp: Path, sched: Schedule, *, influxd_factory: Any, mosquitto_factory: Any,
                 simulator_factory: Any, ingest_factory: Any, log: Callable[[str], None] = print) -> None:
        self.tmp, self.sched, self.log = tmp, sched, log
        self.influx: Influxd = influxd_factory()
        self.mq: Mosquitto = mosquitto_factory()
        self.simulator_factory = simulator_factory
        self.ingest_factory = ingest_factory
        self.records: list[tuple[Path, str]] = []  # (record file, how its run ended)
        self.sim: Simulator | None = None
        self.twin: TwinProcess | IngestProcess | None = None
        self.t0 = 0.0
        self.hung = False
        self._settle: list[tuple[float, bool]] = []

    # -- processes -----------------------------------------------------------------------------------------------------
    def _sim_args(self, record: Path, start: datetime) -> list[str]:
        # A restarted simulator starts its ID and seq counters from 1 again, which a real line does not: each
        # simulator process is a line of its own (PL1, PL1-R2, ...), so every cell ID stays unique and the genealogy
        # check means something after a restart.
        line = "PL1" if not self.records else f"PL1-R{len(self.records) + 1}"
        return ["--security", "none", "--speed", str(SPEED), "--tick", str(TICK_S), "--mqtt-url", self.mq.url,
                "--scenario", str(FAST_LINE), "--seed", str(self.sched.seed % 1000), "--record", str(record),
                "--line-id", line, "--start-time", start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")]

    def _start_target(self) -> None:
        assert self.sim is not None
        if self.sched.full_twin:
            cfg, token = twin_config(self.tmp, self.influx, self.mq, self.sim, self.sched)
            self.twin = TwinProcess(self.tmp / "twin", cfg, token)
            self.twin.start()
        else:
            cfg = ingest_config(self.tmp, influx_url=self.influx.url, database=DATABASE,
                                opcua_endpoint=self.sim.endpoint, mqtt_url=self.mq.url, client_id="ingest-faults",
                                spool=self.sched.spool, ingest={"stats_interval_s": 5.0, **self.sched.ingest})
            self.twin = self.ingest_factory(cfg)

    def mqtt_connected(self) -> bool:
        if isinstance(self.twin, TwinProcess):
            return bool(self.twin.parts().get("connector:mqtt"))
        assert self.twin is not None
        return bool((self.twin.status().get("mqtt") or {}).get("connected"))

    def opcua_connected(self) -> bool:
        if isinstance(self.twin, TwinProcess):
            return bool(self.twin.parts().get("connector:opcua"))
        assert self.twin is not None
        return bool((self.twin.status().get("opcua") or {}).get("connected"))

    def stored(self) -> float:
        if isinstance(self.twin, TwinProcess):
            return self.twin.metrics().get("twin_ingest_samples", 0.0)
        assert self.twin is not None
        return float(self.twin.status()["counts"]["stored"])

    def drained(self) -> bool:
        if isinstance(self.twin, TwinProcess):
            m = self.twin.metrics()
            return (m.get("twin_spool_depth_records", 1) == 0
                    and m.get('twin_queue_depth{queue="ingest_inbox"}', 0) == 0)
        assert self.twin is not None
        st = self.twin.status()
        return bool(st["spool"]["depth_lines"] == 0 and st["inbox_records"] == 0)

    def settled(self) -> bool:
        """Drained, and nothing new for 3 s: with ``when_full=block`` the pipeline holds frames in memory that are
        neither in the spool nor in the inbox, so an empty spool alone is a moment, not the end."""
        now = (self.stored(), self.drained())
        self._settle.append(now)
        last = self._settle[-4:]
        return len(last) == 4 and all(d for _, d in last) and len({n for n, _ in last}) == 1

    def status(self) -> dict[str, Any]:
        if isinstance(self.twin, TwinProcess):
            return {"metrics": {k: v for k, v in self.twin.metrics().items() if k.startswith(("twin_spool",
                    "twin_queue", "twin_ingest_samples", "twin_quarantined", "twin_connector"))}}
        assert self.twin is not None
        st = self.twin.status()
        return {k: st.get(k) for k in ("counts", "spool", "database", "quarantine", "inbox_records")}

    def _start_sim(self, start: datetime) -> None:
        record = self.tmp / f"record{len(self.records) + 1}.jsonl"
        if self.sim is None:
            self.sim = self.simulator_factory(args=self._sim_args(record, start), start=False)
        else:
            self.sim.args = self._sim_args(record, start)
        self.records.append((record, "stopped"))
        self.sim.start()

    def _signal_sim(self, sig: int) -> None:
        assert self.sim is not None and self.sim.proc is not None
        os.killpg(self.sim.proc.pid, sig)

    # -- faults --------------------------------------------------------------------------------------------------------
    def apply(self, f: Fault) -> None:
        assert self.sim is not None and self.twin is not None
        if f.action == "db_kill":
            self.influx.kill()
        elif f.action == "db_start":
            self.influx.start()
        elif f.action == "broker_restart":
            self.mq.restart()
        elif f.action == "sim_hang":
            self._signal_sim(signal.SIGSTOP)
            self.hung = True
        elif f.action == "sim_resume":
            self._signal_sim(signal.SIGCONT)
            self.hung = False
        elif f.action == "sim_kill":
            self.sim.kill()
            record, _ = self.records[-1]
            self.records[-1] = (record, "killed")
        elif f.action == "sim_start":
            record, _ = self.records[-1]
            last = last_line_time_ns(record)
            self._start_sim(datetime.fromtimestamp(last / 1e9, tz=UTC) + timedelta(seconds=TICK_S))
        elif f.action == "twin_kill":
            self.twin.kill()
        elif f.action == "twin_start":
            self.twin.start()
        else:  # pragma: no cover - the Action literal lists them all
            raise ValueError(f.action)

    # -- the run -------------------------------------------------------------------------------------------------------
    def run(self) -> Result:
        sched = self.sched
        self.log(sched.describe())
        wall0 = time.monotonic()
        start = datetime.now(tz=UTC).replace(microsecond=0) + timedelta(seconds=sched.clock_offset_s)
        record = self.tmp / "record1.jsonl"
        self.sim = self.simulator_factory(args=self._sim_args(record, start), start=False)
        self._start_target()  # first: its MQTT session exists before the cyclers publish
        wait_until(self.mqtt_connected, 60, 0.2, "the twin's MQTT session")
        self.records.append((record, "stopped"))
        self.sim.start()
        self.t0 = time.monotonic()
        wait_until(lambda: self.stored() > 500, 60, 0.2, "first samples stored")
        for f in sorted(sched.faults, key=lambda f: f.at_s):
            delay = self.t0 + f.at_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.log(f"  {time.monotonic() - self.t0:6.1f} s  {f.action}")
            self.apply(f)
        time.sleep(max(0.0, self.t0 + sched.run_s - time.monotonic()))
        # the graceful end: everything up, the simulator stopped (record complete, cyclers' queue flushed)
        if self.hung:
            self._signal_sim(signal.SIGCONT)
        if not self.influx.running:
            self.influx.start()
        if self.twin is not None and not self.twin.running:
            self.twin.start()
        # A server stopped while its client reconnects (a watchdog that timed out during a hung server's catch-up)
        # takes its unacknowledged publishes with it: that would be a fault of the test's ending, not of the
        # schedule. The line stops once the twin is connected again and a few publishes went through.
        wait_until(self.opcua_connected, 90, 0.5, "the twin's OPC UA connection back before the line stops")
        time.sleep(3.0)
        self.sim.stop()
        wait_until(self.settled, 300, 1.0, "spool drained and nothing more arriving")
        final = self.status()
        rows = influx_rows(self.influx.url, DATABASE, "SELECT * FROM /.*/")
        with open(self.tmp / "influx_rows.jsonl", "w") as fh:  # for a post-mortem beside the records
            fh.writelines(json.dumps(r) + "\n" for r in rows)
        runs = [Run(load_record(p), ended, TICK_S) for p, ended in self.records]
        upstream_of: Upstream
        if isinstance(self.twin, TwinProcess):
            upstream_of = self.twin.upstream_of  # the twin's own genealogy, through its API
        else:
            upstream_of = genealogy_from_stored(self.tmp / "genealogy-check", stored_trace_events(rows))
        report = check_all(runs, rows, upstream_of)
        if self.twin is not None:
            self.twin.stop()
        return Result(sched, report, time.monotonic() - wall0, final, self._logs())

    def _logs(self) -> list[str]:
        out: list[str] = []
        for proc in (self.twin, self.sim):
            if proc is not None:
                out.extend(f"{proc.name}: {line}" for line in proc.tail(200).splitlines()
                           if ("WARNING" in line or "ERROR" in line) and "close_secure_channel" not in line)
        return out[-40:]


def genealogy_from_stored(path: Path, events: list[dict[str, Any]]) -> Upstream:
    """A genealogy built only from the trace events InfluxDB holds (the ingest process has no graph of its own):
    if they are complete, every cell's upstream is."""
    from ontology.store import GenealogyStore, StoreConfig, UnknownIdError

    store = GenealogyStore(StoreConfig(path=path))
    for ev in sorted(events, key=lambda e: (e.get("line", ""), e["time"], e["seq"])):
        store.add_event(ev)
    assert store.flush(timeout=120), "the checker's genealogy store did not take the stored events"

    def upstream_of(cell: str, line: str) -> set[str] | None:
        try:
            return {e["id"] for e in store.genealogy(cell, line)["entities"]}
        except UnknownIdError:
            return None

    return upstream_of
