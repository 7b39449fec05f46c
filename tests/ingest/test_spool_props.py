"""Stateful property test of the spool (hypothesis): any sequence of appends of random sizes, reads, confirms of
whole or partial reads, failed sends, restarts (close + reopen from disk) and disk-level checks, under random small
budgets and each ``when_full`` policy.

Invariants: the byte accounting equals the files on disk; unconfirmed bytes never exceed the budget and the files
never exceed it by more than one segment; a refusal happens only when the frame truly does not fit; everything
appended and not dropped (``drop_oldest``) is delivered, in order, exactly once across restarts (a read that was
not confirmed is read again; a confirmed one never); once everything is confirmed any frame that fits the budget is
taken (no "block" that waits for a drain that cannot come).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from twin.store.spool import HEADER, Batch, FrameTooLarge, Spool, SpoolFull, split_frames


def frame_payload(fid: int, lines: int, pad: int) -> bytes:
    return b"".join(f"f{fid} l{j} {'x' * pad}\n".encode() for j in range(lines))


def frame_id(payload: bytes) -> int:
    return int(payload.split(b" ", 1)[0][1:])


class SpoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.base: Path = Path(os.environ["SPOOL_PROPS_DIR"])
        self.sp: Spool | None = None
        self.next_id = 0
        self.appended: list[tuple[int, int, int]] = []  # (id, lines, frame bytes) in append order
        self.delivered: list[int] = []  # ids whose batch was confirmed
        self.pending: list[Batch] = []  # read, not confirmed (the forwarder has them in flight)
        self.rejected_lines = 0
        self.counted_before_restarts = {"dropped": 0, "rejected": 0}  # the spool's counters are per process

    @initialize(max_bytes=st.integers(HEADER.size + 30, 3000), segment_bytes=st.integers(64, 4096),
                when_full=st.sampled_from(["block", "reject_new", "drop_oldest"]))
    def open_spool(self, max_bytes: int, segment_bytes: int, when_full: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="spool-", dir=self.base))
        self.kw = {"fsync": "never", "segment_bytes": segment_bytes, "max_bytes": max_bytes,
                   "when_full": when_full}
        self.sp = Spool(self.dir, **self.kw)  # type: ignore[arg-type]

    # -- rules ---------------------------------------------------------------------------------------------------------
    @rule(lines=st.integers(1, 4), pad=st.integers(0, 300))
    def append(self, lines: int, pad: int) -> None:
        assert self.sp is not None
        payload = frame_payload(self.next_id, lines, pad)
        size = HEADER.size + len(payload)
        unsent = self.sp.unsent_bytes
        try:
            self.sp.append(payload, lines)
        except FrameTooLarge:
            assert size > self.sp.max_bytes
            return
        except SpoolFull:
            assert self.sp.when_full != "drop_oldest" or unsent == 0
            assert unsent + size > self.sp.max_bytes, "refused a frame that fits"
            assert self.sp.full
            if self.sp.when_full == "reject_new":
                self.rejected_lines += lines
            return
        assert size <= self.sp.max_bytes
        self.appended.append((self.next_id, lines, size))
        self.next_id += 1

    @rule(sizes=st.lists(st.tuples(st.integers(1, 4), st.integers(0, 300)), min_size=1, max_size=6))
    def append_several_with_one_fsync(self, sizes: list[tuple[int, int]]) -> None:
        """``append_frames`` takes a prefix of the frames (what fits); the caller resumes at the first not taken."""
        assert self.sp is not None
        frames = [(frame_payload(self.next_id + k, lines, pad), lines) for k, (lines, pad) in enumerate(sizes)]
        first = HEADER.size + len(frames[0][0])
        unsent = self.sp.unsent_bytes
        try:
            taken, _ = self.sp.append_frames(frames)
        except FrameTooLarge:
            assert first > self.sp.max_bytes
            return
        except SpoolFull:
            assert unsent + first > self.sp.max_bytes, "refused a first frame that fits"
            if self.sp.when_full == "reject_new":
                self.rejected_lines += frames[0][1]
            return
        assert 1 <= taken <= len(frames)
        for payload, lines in frames[:taken]:
            self.appended.append((self.next_id, lines, HEADER.size + len(payload)))
            self.next_id += 1

    @rule(max_lines=st.integers(1, 12))
    def read(self, max_lines: int) -> None:
        assert self.sp is not None
        b = self.sp.read_batch(max_lines)
        if b is not None:
            self.pending.append(b)

    @precondition(lambda self: bool(self.pending))
    @rule()
    def confirm_oldest_read(self) -> None:
        assert self.sp is not None
        b = self.pending.pop(0)
        self.sp.confirm(b)
        self.delivered.extend(frame_id(p) for p in b.payloads)

    @precondition(lambda self: bool(self.pending))
    @rule()
    def send_failed(self) -> None:
        assert self.sp is not None
        self.pending.clear()
        self.sp.rewind()

    @rule()
    def restart(self) -> None:
        assert self.sp is not None
        self.sp.close()
        self.counted_before_restarts["dropped"] += self.sp.dropped_lines
        self.counted_before_restarts["rejected"] += self.sp.rejected_lines
        self.pending.clear()  # in flight when the process died: never confirmed
        self.sp = Spool(self.dir, **self.kw)  # type: ignore[arg-type]

    @rule(lines=st.integers(1, 4), pad=st.integers(0, 300))
    def drained_spool_takes_any_frame_that_fits(self, lines: int, pad: int) -> None:
        assert self.sp is not None
        self.drain()
        payload = frame_payload(self.next_id, lines, pad)
        assume(HEADER.size + len(payload) <= self.sp.max_bytes)
        self.sp.append(payload, lines)  # must not raise: nothing unconfirmed is left
        self.appended.append((self.next_id, lines, HEADER.size + len(payload)))
        self.next_id += 1
        assert not self.sp.full

    def drain(self) -> None:
        assert self.sp is not None
        self.pending.clear()
        self.sp.rewind()
        while (b := self.sp.read_batch(7)) is not None:
            self.sp.confirm(b)
            self.delivered.extend(frame_id(p) for p in b.payloads)
        assert self.sp.depth_lines == 0 and self.sp.unsent_bytes == 0

    # -- invariants ----------------------------------------------------------------------------------------------------
    @invariant()
    def accounting_equals_the_files(self) -> None:
        if self.sp is None:
            return
        on_disk = sum(p.stat().st_size for p in self.dir.glob("seg-*.spl"))
        assert self.sp.size_bytes == on_disk
        assert self.sp.unsent_bytes <= self.sp.max_bytes
        assert on_disk <= self.sp.max_bytes + self.sp.segment_bytes
        st_ = self.sp.stats()
        assert st_.depth_bytes == self.sp.unsent_bytes and st_.disk_bytes == on_disk

    @invariant()
    def depth_counts_what_is_not_confirmed(self) -> None:
        if self.sp is None or self.sp.when_full == "drop_oldest":
            return
        done = set(self.delivered)
        assert self.sp.depth_lines == sum(n for fid, n, _ in self.appended if fid not in done)
        assert self.sp.stats().rejected_lines + self.counted_before_restarts["rejected"] == self.rejected_lines

    def teardown(self) -> None:
        if self.sp is None:
            return
        self.drain()
        self.sp.close()
        ids = [fid for fid, _, _ in self.appended]
        assert len(self.delivered) == len(set(self.delivered)), "a confirmed frame was delivered twice"
        assert self.delivered == sorted(self.delivered), "delivered out of order"
        missing = [(fid, n) for fid, n, _ in self.appended if fid not in set(self.delivered)]
        if self.kw["when_full"] == "drop_oldest":
            assert sum(n for _, n in missing) <= self.sp.dropped_lines + self.counted_before_restarts["dropped"]
        else:
            assert self.delivered == ids and self.sp.dropped_lines + self.counted_before_restarts["dropped"] == 0


@pytest.fixture
def spool_props_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SPOOL_PROPS_DIR", str(tmp_path))
    return tmp_path


def test_spool_state_machine(spool_props_dir: Path) -> None:
    SpoolMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None,
                                              suppress_health_check=[HealthCheck.too_slow])
    SpoolMachine.TestCase().runTest()


@given(lines=st.lists(st.binary(min_size=1, max_size=120).map(lambda b: b.replace(b"\n", b"_")), min_size=1,
                      max_size=40),
       max_payload=st.integers(1, 400), trailing=st.booleans())
@settings(max_examples=200, deadline=None)
def test_split_frames_cuts_at_line_boundaries(lines: list[bytes], max_payload: int, trailing: bool) -> None:
    payload = b"\n".join(lines) + (b"\n" if trailing else b"")
    pieces = split_frames(payload, len(lines), max_payload)
    assert b"".join(p for p, _ in pieces) == payload
    assert sum(n for _, n in pieces) == len(lines)
    for p, _ in pieces:
        assert len(p) <= max_payload or p.count(b"\n") <= 1, "only a single over-long line may exceed the size"
        assert p.endswith(b"\n") or p is pieces[-1][0]
