"""Disk full on the spool's filesystem: a real, small tmpfs mounted for the test (skipped, with the reason, where the
sandbox does not allow mounting). Nothing acknowledged is lost, the files keep whole frames only, and ingest resumes
by itself when space comes back."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ingest.conftest import until
from tests.ingest.test_spool_budget import Source, stored_times
from twin.alarms import AlarmManager
from twin.config import Config
from twin.ingest import IngestPipeline
from twin.store.spool import Spool, SpoolDiskError

_db = itertools.count()


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: ENOSPC comes from the kernel, not from the code under test."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True,
                       text=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root / CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def payload(i: int) -> bytes:
    return b"".join(f"m,k=v value={i}.{j} {i * 1000 + j}\n".encode() for j in range(40)) + b"#" * 1000 + b"\n"


def test_enospc_keeps_whole_frames_and_every_appended_frame(small_fs: Path) -> None:
    sp = Spool(small_fs / "spool", fsync="always", segment_bytes=32 * 1024, max_bytes=64 * 1024 * 1024)
    appended = 0
    with pytest.raises(SpoolDiskError, match="refused"):
        while True:
            sp.append(payload(appended), 41)
            appended += 1
    assert appended > 10 and sp.stats().disk_full and sp.full
    assert sp.size_bytes == sum(p.stat().st_size for p in (small_fs / "spool").glob("seg-*.spl"))
    # confirming with a full disk: the cursor cannot always be saved; nothing raises, segments are reclaimed
    half = sp.read_batch(41 * (appended // 2))
    assert half is not None
    sp.confirm(half)
    sp.append(payload(appended), 41)  # space came back: appending works again
    appended += 1
    assert not sp.full
    sp.close()
    again = Spool(small_fs / "spool", fsync="always", segment_bytes=32 * 1024, max_bytes=64 * 1024 * 1024)
    assert again.stats().truncated_bytes == 0, "a failed append left a torn frame"
    got: list[bytes] = []
    while (b := again.read_batch(100)) is not None:
        got.extend(b.payloads)
        again.confirm(b)
    first = int(got[0].split(b"value=")[1].split(b".")[0])
    assert got == [payload(i) for i in range(first, appended)]
    assert first <= len(half.payloads)  # at most the confirmed half is gone, none of the rest


def test_min_free_bytes_leaves_room_for_the_state_files_beside_the_spool(small_fs: Path) -> None:
    reserve = 64 * 1024
    sp = Spool(small_fs / "spool", fsync="always", segment_bytes=32 * 1024, max_bytes=64 * 1024 * 1024,
               min_free_bytes=reserve)
    n = 0
    with pytest.raises(SpoolDiskError, match="min_free_bytes"):
        while True:
            sp.append(payload(n), 41)
            n += 1
    st = os.statvfs(small_fs)
    assert st.f_bavail * st.f_frsize >= reserve - len(payload(0)) - 4096
    (small_fs / "spool" / "opcua-subscription.json").write_text("x" * 8192)  # a connector's state still fits
    b = sp.read_batch(41)
    assert b is not None
    sp.confirm(b)  # and so does the cursor
    assert json.loads((small_fs / "spool" / "cursor.json").read_text())["offset"] > 0
    sp.close()


def test_pipeline_holds_on_a_full_disk_and_resumes(small_fs: Path, tmp_path: Path, influxd_factory: Any) -> None:
    influx = influxd_factory()
    db = f"diskfull_{int(time.time())}_{next(_db)}"
    cfg = Config.model_validate({
        "line": {"id": "PL1"},
        "influx": {"url": influx.url, "database": db, "flush_interval_s": 0.1, "retry_initial_s": 0.1,
                   "retry_max_s": 0.5, "timeout_s": 3},
        "spool": {"dir": str(small_fs / "spool"), "fsync": "always", "segment_bytes": 32 * 1024,
                  "max_bytes": 64 * 1024 * 1024, "when_full": "block",  # the budget is far above the disk
                  "min_free_bytes": 16 * 1024},
        "quarantine": {"dir": str(tmp_path / "quarantine")},
        "opcua": {"enabled": False}, "mqtt": {"enabled": False},
        "validation": {"max_future_s": 10 * 365 * 86400.0},
    })
    src = Source()
    alarms = AlarmManager()

    async def go() -> None:
        p = IngestPipeline(cfg, alarms=alarms)
        await p.start()
        influx.kill()
        while p.counts["spool_disk_errors"] == 0:
            src.submit(p, src.samples(300))
            await asyncio.sleep(0.05)
        await until(lambda: alarms.is_active("spool_full", "ingest"), 10, "spool_full alarm on a full disk")
        assert p.spool.stats().disk_full and src.unacked
        influx.start()
        await until(lambda: not src.unacked and p.spool.depth_lines == 0, 60, "resumed once the disk had room")
        await until(lambda: not alarms.is_active("spool_full", "ingest"), 10, "alarm cleared")
        src.submit(p, src.samples(300))
        await until(lambda: not src.unacked and p.spool.depth_lines == 0, 30, "new data after the disk full")
        await p.stop()

    asyncio.run(go())
    assert len(stored_times(influx.url, db)) == src.next
