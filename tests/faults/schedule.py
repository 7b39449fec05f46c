"""Fault schedules: what happens to which real process, and when, drawn from a seed so a failure can be replayed.

A schedule is a list of timed actions (wall seconds after the line started) plus the run's settings (clock offset of
the line against the wall clock, spool budget, a size-limited filesystem under the spool, the full twin instead of
the ingest process). ``FAULTS_SEED=<n>`` replays a schedule; every test prints its schedule first.
"""

from __future__ import annotations

import os
import random
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["db_kill", "db_start", "broker_restart", "sim_hang", "sim_resume", "sim_kill", "sim_start",
                 "twin_kill", "twin_start"]


@dataclass(frozen=True)
class Fault:
    at_s: float  # wall seconds after the simulator's first start
    action: Action

    def __str__(self) -> str:
        return f"{self.at_s:6.1f} s  {self.action}"


@dataclass
class Schedule:
    name: str
    seed: int
    run_s: float  # wall seconds the line runs (faults included) before the graceful end
    faults: list[Fault] = field(default_factory=list)
    clock_offset_s: float = 0.0  # the line's start time minus the wall clock at start
    spool: dict[str, Any] = field(default_factory=dict)  # spool.* overrides
    ingest: dict[str, Any] = field(default_factory=dict)  # ingest.* overrides
    spool_fs_bytes: int | None = None  # the spool on a tmpfs of this size (disk full)
    full_twin: bool = False  # `python -m twin run` (genealogy through its API) instead of `python -m twin ingest`

    def describe(self) -> str:
        head = (f"schedule {self.name} seed={self.seed} (replay: FAULTS_SEED={self.seed}) run {self.run_s:.0f} s, "
                f"clock offset {self.clock_offset_s:+.0f} s, spool {self.spool or 'default'}"
                + (f", spool on a {self.spool_fs_bytes // 1024} KiB tmpfs" if self.spool_fs_bytes else "")
                + (", full twin" if self.full_twin else ", ingest process"))
        return "\n".join([head, *(f"  {f}" for f in sorted(self.faults, key=lambda f: f.at_s))])


def seed_for(name: str) -> int:
    """``FAULTS_SEED`` if set (replay), else a fixed seed per schedule name (the suite is reproducible by default)."""
    env = os.environ.get("FAULTS_SEED")
    return int(env) if env else zlib.crc32(name.encode()) % 100_000


def _outage(rng: random.Random, start: tuple[float, float], length: tuple[float, float]) -> tuple[float, float]:
    t0 = round(rng.uniform(*start), 1)
    return t0, round(t0 + rng.uniform(*length), 1)


def short(seed: int) -> Schedule:
    """The default suite's schedule (<= ~60 s wall): a database outage with the ingest process SIGKILLed in it and
    the broker restarted. (Clock offsets are in the long schedules.)"""
    rng = random.Random(seed)
    down, up = _outage(rng, (3, 5), (10, 14))
    kill = round(rng.uniform(down + 2, up - 5), 1)
    return Schedule("short", seed, run_s=up + 6, faults=[
        Fault(down, "db_kill"), Fault(round(down + 1.0, 1), "broker_restart"),
        Fault(kill, "twin_kill"), Fault(round(kill + 1.5, 1), "twin_start"), Fault(up, "db_start")])


def db_and_broker(seed: int) -> Schedule:
    """The database SIGKILLed twice (>= 25 s each), the broker restarted during and between the outages."""
    rng = random.Random(seed)
    d1, u1 = _outage(rng, (4, 8), (25, 35))
    d2, u2 = _outage(rng, (u1 + 8, u1 + 14), (25, 30))
    return Schedule("db_and_broker", seed, run_s=u2 + 10, faults=[
        Fault(d1, "db_kill"), Fault(round(rng.uniform(d1 + 2, u1 - 2), 1), "broker_restart"), Fault(u1, "db_start"),
        Fault(round(rng.uniform(u1 + 1, d2 - 1), 1), "broker_restart"), Fault(d2, "db_kill"), Fault(u2, "db_start")])


def server_hung(seed: int) -> Schedule:
    """The simulator SIGSTOPped (its TCP connections stay open, nothing answers) for 15 s, later for 6 s."""
    rng = random.Random(seed)
    h1 = round(rng.uniform(5, 9), 1)
    h2 = round(rng.uniform(h1 + 25, h1 + 32), 1)
    return Schedule("server_hung", seed, run_s=h2 + 6 + 12, faults=[
        Fault(h1, "sim_hang"), Fault(h1 + 15, "sim_resume"), Fault(h2, "sim_hang"), Fault(h2 + 6, "sim_resume")])


def server_killed(seed: int) -> Schedule:
    """The simulator SIGKILLed and started again (its line time carries on) twice."""
    rng = random.Random(seed)
    k1 = round(rng.uniform(8, 12), 1)
    k2 = round(rng.uniform(k1 + 20, k1 + 26), 1)
    return Schedule("server_killed", seed, run_s=k2 + 20, faults=[
        Fault(k1, "sim_kill"), Fault(round(k1 + rng.uniform(1, 4), 1), "sim_start"),
        Fault(k2, "sim_kill"), Fault(round(k2 + rng.uniform(1, 4), 1), "sim_start")])


def twin_killed_in_outage(seed: int) -> Schedule:
    """The ingest process SIGKILLed twice while the database is down (spooled, unconfirmed data on disk)."""
    rng = random.Random(seed)
    down, up = _outage(rng, (4, 7), (30, 38))
    k1 = round(rng.uniform(down + 3, down + 10), 1)
    k2 = round(rng.uniform(k1 + 8, up - 6), 1)
    return Schedule("twin_killed_in_outage", seed, run_s=up + 12, faults=[
        Fault(down, "db_kill"), Fault(k1, "twin_kill"), Fault(round(k1 + 1.0, 1), "twin_start"),
        Fault(k2, "twin_kill"), Fault(round(k2 + 2.0, 1), "twin_start"), Fault(up, "db_start")])


SMALL_SPOOL = {"max_bytes": 65536, "segment_bytes": 4096, "when_full": "block"}


def small_spool_block(seed: int) -> Schedule:
    """A spool of a few frames (64 KiB, 4 KiB segments, when_full=block) through a 20 s database outage: the
    pipeline must hold back (MQTT unacknowledged, OPC UA in memory) and lose nothing."""
    rng = random.Random(seed)
    down, up = _outage(rng, (4, 7), (18, 22))
    return Schedule("small_spool_block", seed, run_s=up + 15, spool=dict(SMALL_SPOOL), faults=[
        Fault(down, "db_kill"), Fault(up, "db_start")])


def clock_offset(seed: int) -> Schedule:
    """The line's clock hours to days behind the wall clock (a PLC clock never set, a replayed line), through a
    database outage and a broker restart. (Ahead of it is the usual case here: the line runs at x120.)"""
    rng = random.Random(seed)
    down, up = _outage(rng, (4, 7), (15, 20))
    offset = -rng.choice([3 * 86400.0, 7 * 3600.0, 40 * 60.0])  # 40 min: the line passes the wall clock mid-run
    return Schedule("clock_offset", seed, run_s=up + 10, clock_offset_s=offset, faults=[
        Fault(down, "db_kill"), Fault(round(rng.uniform(down + 2, up - 2), 1), "broker_restart"),
        Fault(up, "db_start")])


def clock_passes_wall(seed: int) -> Schedule:
    """No fault but the clock: the line starts 30-50 min behind the wall clock and passes it mid-run (at x120). The
    server stamps the values it creates with its own wall clock, so those stamps land inside the line's time."""
    rng = random.Random(seed)
    return Schedule("clock_passes_wall", seed, run_s=40.0, clock_offset_s=-rng.choice([30, 40, 50]) * 60.0)


def disk_full(seed: int) -> Schedule:
    """The spool on a 4 MiB tmpfs and a database outage long enough to fill it: ENOSPC must hold back like a full
    budget (when_full=block), not lose data."""
    rng = random.Random(seed)
    down, up = _outage(rng, (4, 7), (35, 45))
    return Schedule("disk_full", seed, run_s=up + 15, spool={"segment_bytes": 262144, "when_full": "block"},
                    spool_fs_bytes=4 * 1024 * 1024, faults=[Fault(down, "db_kill"), Fault(up, "db_start")])


def worst(seed: int) -> Schedule:
    """Everything at once, with the full twin (genealogy through its API): the line's clock 45-75 min behind the
    wall clock (at x120 it passes the wall clock 23-38 s into the run, among the faults: the server's own wall-clock
    stamps then fall inside the line's time), a database outage, the twin SIGKILLed in it, a spool of a few frames
    with when_full=block, and the simulator hung 15 s."""
    rng = random.Random(seed)
    down, up = _outage(rng, (5, 8), (32, 40))
    kill = round(rng.uniform(down + 4, down + 12), 1)
    hang = round(rng.uniform(kill + 4, up - 2), 1)
    return Schedule("worst", seed, run_s=max(up, hang + 15) + 15, spool=dict(SMALL_SPOOL), full_twin=True,
                    clock_offset_s=-rng.choice([45, 60, 75]) * 60.0, faults=[
                        Fault(down, "db_kill"), Fault(kill, "twin_kill"), Fault(round(kill + 2.0, 1), "twin_start"),
                        Fault(hang, "sim_hang"), Fault(round(hang + 15.0, 1), "sim_resume"), Fault(up, "db_start")])


LONG = [db_and_broker, server_hung, server_killed, twin_killed_in_outage, small_spool_block, clock_offset,
        clock_passes_wall, disk_full, worst]
