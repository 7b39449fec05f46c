"""Group commit and the lazy cursor (issue 11, cost), against the real spool files and a real influxd.

- Records that arrive from several sources within ``spool.commit_interval_s`` are appended as one frame with one
  fsync, and every source is acknowledged only once its records are in the spool.
- ``cursor.json`` is written at most every ``cursor_interval_s`` on confirms (and not fsync'ed), by
  ``flush_cursor`` and ``close``; it is never behind a deleted segment file; after a crash (no ``close``) an older
  cursor only replays confirmed frames again: nothing unconfirmed is lost, order is kept.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from connectors.records import Sample
from twin.config import Config
from twin.ingest import IngestPipeline
from twin.store.spool import HEADER, Spool

_db = itertools.count()


def payload(i: int) -> bytes:
    return b"".join(f"m,k=v value={i}.{j} {i * 1000 + j}\n".encode() for j in range(20))


def frame_index(p: bytes) -> int:
    return int(p.split(b"value=", 1)[1].split(b".", 1)[0])


def saved_cursor(d: Path) -> tuple[int, int]:
    c = json.loads((d / "cursor.json").read_text())
    return int(c["segment"]), int(c["offset"])


def segment_indices(d: Path) -> list[int]:
    return sorted(int(p.stem.split("-")[1]) for p in d.glob("seg-*.spl"))


def test_cursor_written_lazily_never_behind_a_deleted_segment_and_a_crash_loses_nothing(tmp_path: Path) -> None:
    sp = Spool(tmp_path, segment_bytes=2048, cursor_interval_s=3600)  # the interval never elapses in this test
    for i in range(60):
        sp.append(payload(i), 20)
    first = sp.read_batch(20)
    assert first is not None
    sp.confirm(first)  # the first confirm writes cursor.json (none was written yet)
    assert saved_cursor(tmp_path) == (first.end.segment, first.end.offset) and not sp.cursor_unsaved
    second = sp.read_batch(20)
    assert second is not None and second.end.segment == first.end.segment
    sp.confirm(second)  # within the interval: the cursor moves in memory only
    assert saved_cursor(tmp_path) == (first.end.segment, first.end.offset) and sp.cursor_unsaved
    sp.flush_cursor()
    assert saved_cursor(tmp_path) == (second.end.segment, second.end.offset) and not sp.cursor_unsaved
    confirmed = [frame_index(p) for p in first.payloads + second.payloads]
    # confirm on across several segments: each deletion is preceded by a saved cursor past the deleted file
    while len(confirmed) < 30 or not sp.cursor_unsaved:  # until a confirm has stayed in memory only
        b = sp.read_batch(20)
        assert b is not None and len(confirmed) < 50
        sp.confirm(b)
        confirmed.extend(frame_index(p) for p in b.payloads)
        assert saved_cursor(tmp_path)[0] >= segment_indices(tmp_path)[0], "a segment was deleted before the cursor"
    # a crash now (no close): the new process replays from the saved cursor
    again = Spool(tmp_path, segment_bytes=2048, cursor_interval_s=3600)
    replayed: list[int] = []
    while (b := again.read_batch(50)) is not None:
        replayed.extend(frame_index(p) for p in b.payloads)
        again.confirm(b)
    assert replayed == list(range(replayed[0], 60)), "replay out of order or with a gap"
    assert replayed[0] < len(confirmed), "the saved cursor was not older (nothing was left unsaved)"
    again.close()
    sp.close()


class Source:
    """A source that keeps its records until acknowledged and notes what the spool held when the ack came."""

    def __init__(self, name: str, pipeline: IngestPipeline) -> None:
        self.name = name
        self.p = pipeline
        self.acked_with_appended: list[tuple[int, int]] = []  # (lines needed in the spool, lines it held)
        self.t0 = time.time_ns() - 10**12

    def submit(self, n: int, needed_lines: int) -> None:
        records = [Sample(self.t0 + i * 1000, "PL1", "Coating/Cathode", f"Signal{self.name}", float(i), "m/min")
                   for i in range(n)]
        self.t0 += n * 1000
        self.p.submit(records, lambda: self.acked_with_appended.append((needed_lines,
                                                                         self.p.spool.appended_lines)))


def count_frames(spool_dir: Path) -> int:
    frames = 0
    for seg in sorted(spool_dir.glob("seg-*.spl")):
        data = seg.read_bytes()
        off = 0
        while off + HEADER.size <= len(data):
            length = HEADER.unpack(data[off:off + HEADER.size])[1]
            off += HEADER.size + length
            frames += 1
    return frames


def test_sources_within_a_commit_window_share_one_fsynced_frame_and_are_acked_after_it(
        tmp_path: Path, influxd: Any) -> None:
    db = f"commit_{int(time.time())}_{next(_db)}"
    cfg = Config.model_validate({
        "line": {"id": "PL1"},
        "influx": {"url": influxd.url, "database": db, "flush_interval_s": 0.1},
        "spool": {"dir": str(tmp_path / "spool"), "fsync": "always", "commit_interval_s": 5.0},
        "quarantine": {"dir": str(tmp_path / "quarantine")},
        "opcua": {"enabled": False}, "mqtt": {"enabled": False},
        "validation": {"max_future_s": 10 * 365 * 86400.0},
    })

    async def until(pred: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not pred():
            assert time.monotonic() < deadline, what
            await asyncio.sleep(0.02)

    async def go() -> list[Source]:
        p = IngestPipeline(cfg)
        await p.start()
        sources = [Source(name, p) for name in ("A", "B", "C")]
        sources[0].submit(10, 10)  # the first records after a quiet spell go at once: one frame
        await until(lambda: bool(sources[0].acked_with_appended), 30, "first batch acknowledged")
        for k, src in enumerate(sources):  # then three sources, a little apart, inside one 5 s commit window
            src.submit(10, 10 + 10 * (k + 1))
            await asyncio.sleep(0.05)
        await until(lambda: all(len(s.acked_with_appended) == (2 if s.name == "A" else 1) for s in sources), 60,
                    "every source acknowledged")
        await until(lambda: p.spool.depth_lines == 0, 30, "stored")
        await p.stop()
        return sources

    sources = asyncio.run(go())
    assert count_frames(tmp_path / "spool") == 2, "the three sources' records were not committed together"
    for src in sources:
        for needed, held in src.acked_with_appended:
            assert held >= needed, f"source {src.name} was acknowledged before its records were in the spool"
