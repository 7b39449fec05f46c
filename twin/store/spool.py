"""A durable on-disk queue of line-protocol batches in front of the database: append-only segments, replay on start.

Why not influxdb-client's batching: its buffer is memory only and loses data on exit (peers.md, #165 #394 #504).
Here a batch is acknowledged to its source (MQTT PUBACK) only after it is in a segment file (and fsync'ed, with
``fsync=always``). The writer reads from the cursor, sends, and moves the cursor only on a 2xx; after a crash the
unconfirmed tail is sent again, which is harmless because InfluxDB overwrites the same series and timestamp.

Layout of ``dir``: ``seg-000000000001.spl`` ... (append-only) and ``cursor.json`` (segment, offset of the first
unconfirmed frame; replaced atomically).

What is fsync'ed (issue 11, cost): appended frames, always before ``append_frames`` returns (with ``fsync=always``;
the caller appends everything that arrived in its commit window from every source as one call: group commit, one
fsync for all of them). The cursor is *not* fsync'ed on every confirm, nor even written every time: it is written
(tmp file + rename) at most every ``cursor_interval_s``, by ``flush_cursor`` when the forwarder goes idle and by
``close``, and written *and* fsync'ed before a segment file is deleted (so the deletion never outruns it). After a
power cut an older cursor only sends confirmed frames again (duplicates, which InfluxDB overwrites); a lost
``cursor.json`` sends the segments still on disk again; neither loses a frame.

A frame is a 28-byte header ``PLS1 | payload length | crc32 | line count | append time ns`` followed by the
payload. On start the last segment is scanned and cut at the first torn or
corrupt frame (a crash mid-append); segments entirely before the cursor are deleted.

The budget (``max_bytes``) counts only bytes the database has not confirmed: confirmed frames are the spool's to
reclaim, never a reason to refuse data. Confirmed bytes live on only as the prefix of the cursor's segment; a segment
is capped at a quarter of the budget and the active one is rolled once the cursor has passed all of it, so the files
take at most ``max_bytes`` plus one segment. A frame may be as large as the budget (minus its header), but callers
should cut batches with ``split_frames`` to ``max_frame_payload``, so that "full" always means "wait for a few
frames to drain", whatever the budget (issue 10: a 20 000-record frame larger than a 3 MB budget, and confirmed bytes
counted forever, stopped ingest for good).

When full: ``block`` raises ``SpoolFull`` so the caller holds back (MQTT is not acknowledged and the broker keeps the
messages); ``reject_new`` raises ``SpoolFull`` and counts the batch as rejected (the caller drops it);
``drop_oldest`` deletes the oldest unsent segment and counts its lines as dropped. ``full`` stays true while the
refused frame would still not fit, and becomes false by itself once the database has drained enough.

Disk trouble (ENOSPC on the spool's filesystem, fewer than ``min_free_bytes`` left free, quota, I/O error): the
frames being appended are cut off again, so the files hold whole frames only, and ``SpoolDiskError`` (a
``SpoolFull``) is raised: nothing of them is in the spool, the caller holds them back and retries; confirmed data is
never touched. ``min_free_bytes`` keeps room for the cursor and the connectors' state files beside the spool. A
cursor that cannot be saved is kept in memory and saved at the next chance (after a crash meanwhile the frames since
the last saved cursor are sent again: duplicates, which InfluxDB overwrites).

Delivery is at least once: a frame read but not confirmed before a crash is sent again; confirmed frames never are
(except after a failed cursor save, above).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

log = logging.getLogger(__name__)

MAGIC: Final = b"PLS1"
HEADER: Final = struct.Struct("<4sIIIQ")
FsyncPolicy = Literal["always", "interval", "never"]
WhenFull = Literal["block", "drop_oldest", "reject_new"]


class SpoolFull(Exception):
    """The spool reached ``max_bytes``; with ``block`` retry later, with ``reject_new`` the batch was refused."""


class SpoolDiskError(SpoolFull):
    """The filesystem refused the frame (disk full, quota, I/O error); nothing of it is in the spool: retry later."""


class FrameTooLarge(ValueError):
    """One frame larger than the whole budget can never be appended; cut it with ``split_frames``."""


def split_frames(payload: bytes, lines: int, max_payload: int) -> list[tuple[bytes, int]]:
    """Cut newline-separated line protocol into pieces of at most ``max_payload`` bytes at line boundaries.

    A single line longer than ``max_payload`` becomes a piece of its own. Line counts add up to ``lines``.
    """
    if len(payload) <= max_payload:
        return [(payload, lines)] if payload else []
    out: list[tuple[bytes, int]] = []
    start = 0
    size = len(payload)
    while start < size:
        end = min(size, start + max_payload)
        if end < size:
            cut = payload.rfind(b"\n", start, end)
            if cut < 0:  # one line longer than max_payload: to its end
                cut = payload.find(b"\n", end)
                end = size if cut < 0 else cut + 1
            else:
                end = cut + 1
        piece = payload[start:end]
        out.append((piece, piece.count(b"\n")))
        start = end
    counted = sum(n for _, n in out)
    if counted != lines:  # no newline after the last line, or a caller's own count: the last piece takes the rest
        last, n = out[-1]
        out[-1] = (last, max(0, n + lines - counted))
    return out


@dataclass(frozen=True, order=True)
class Position:
    segment: int
    offset: int


@dataclass
class Batch:
    """Frames read for one database write; ``end`` is where the cursor goes once it is confirmed."""

    payloads: list[bytes]
    lines: int
    end: Position
    oldest_append_ns: int
    append_ns: list[int] = field(default_factory=list)

    @property
    def data(self) -> bytes:
        return b"".join(self.payloads)


@dataclass
class _Segment:
    index: int
    path: Path
    size: int = 0
    lines: int = 0
    frames: int = 0
    first_append_ns: int = 0


@dataclass(frozen=True)
class SpoolStats:
    depth_bytes: int
    depth_lines: int
    segments: int
    oldest_age_s: float
    appended_lines: int
    confirmed_lines: int
    dropped_lines: int
    rejected_lines: int
    truncated_bytes: int
    full: bool  # the last append was refused and that frame would still not fit (or the disk refused it)
    disk_full: bool = False  # the last append failed on the filesystem (ENOSPC, quota, I/O error)
    disk_bytes: int = 0  # what the segment files hold, confirmed prefix included
    max_bytes: int = 0  # the budget for unconfirmed bytes


class Spool:
    """One spool directory; thread-safe (the processor appends from a worker thread, the forwarder reads and confirms
    from another)."""

    def __init__(
        self,
        directory: str | Path,
        *,
        fsync: FsyncPolicy = "always",
        fsync_interval_s: float = 1.0,
        segment_bytes: int = 8 * 1024 * 1024,
        max_bytes: int = 2 * 1024 * 1024 * 1024,
        when_full: WhenFull = "block",
        min_free_bytes: int = 0,
        cursor_interval_s: float = 1.0,
    ) -> None:
        if max_bytes <= HEADER.size:
            raise ValueError(f"spool max_bytes={max_bytes} leaves no room for a frame (header {HEADER.size} bytes)")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.fsync_interval_s = fsync_interval_s
        self.max_bytes = max_bytes
        # a segment holds at most a quarter of the budget: then a full spool has older segments to drop
        # (drop_oldest) and its confirmed prefix, the only confirmed bytes on disk, stays small
        self.segment_bytes = max(1, min(segment_bytes, max_bytes // 4))
        self.when_full = when_full
        # leave this much free on the filesystem: the cursor and the connectors' state files beside the spool
        # must still be writable when the spool has filled the disk
        self.min_free_bytes = min_free_bytes
        self._lock = threading.RLock()
        self._segments: list[_Segment] = []
        self._fd: int | None = None
        self._last_sync = time.monotonic()
        self._cursor = Position(1, 0)
        self._cursor_lines_in_seg = 0  # lines before the cursor inside the cursor's segment
        self._cursor_dirty = False  # the cursor moved but cursor.json could not be written (disk full)
        self.cursor_interval_s = cursor_interval_s  # write cursor.json at most this often on confirms
        self._cursor_unsaved = False  # the cursor moved since cursor.json was last written
        self._cursor_saved_mono = float("-inf")
        self._read_pos = Position(1, 0)
        self.appended_lines = 0
        self.confirmed_lines = 0
        self.dropped_lines = 0
        self.rejected_lines = 0
        self.truncated_bytes = 0
        self._full_need = 0  # size of the last refused frame; 0 once a frame was appended
        self._disk_full = False
        self._cursor_stamp = 0  # append time of the oldest unsent frame, 0 = look it up
        self._recover()

    @property
    def max_frame_payload(self) -> int:
        """The payload size callers should cut batches to (``split_frames``): several frames fit in any budget."""
        return max(1, self.segment_bytes - HEADER.size)

    # -- start-up ----------------------------------------------------------------------------------------------------
    def _seg_path(self, index: int) -> Path:
        return self.dir / f"seg-{index:012d}.spl"

    def _recover(self) -> None:
        segs = sorted(int(p.stem.split("-")[1]) for p in self.dir.glob("seg-*.spl"))
        cursor = self._load_cursor()
        for n, idx in enumerate(segs):
            seg = _Segment(idx, self._seg_path(idx))
            self._scan(seg, repair=(n == len(segs) - 1))
            self._segments.append(seg)
        if not self._segments:
            self._segments.append(_Segment(1, self._seg_path(1)))
            self._seg_path(1).touch()
        first = self._segments[0].index
        if cursor is None or cursor.segment < first:
            cursor = Position(first, 0)
        at = self._find(cursor.segment)
        if at is None:  # cursor beyond every segment: nothing pending
            cursor = Position(self._segments[-1].index, self._segments[-1].size)
            at = self._segments[-1]
        cursor = Position(cursor.segment, min(cursor.offset, at.size))
        self._cursor = cursor
        self._cursor_lines_in_seg = self._lines_before(at, cursor.offset)
        self._read_pos = cursor
        self._cursor_stamp = 0
        self._delete_confirmed_segments()
        active = self._segments[-1]
        self._fd = os.open(active.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if self.depth_lines:
            log.info("spool %s: %d lines in %d segment(s) to replay", self.dir, self.depth_lines, len(self._segments))

    def _load_cursor(self) -> Position | None:
        try:
            d = json.loads((self.dir / "cursor.json").read_text())
            return Position(int(d["segment"]), int(d["offset"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _scan(self, seg: _Segment, repair: bool) -> None:
        """Count frames; in the last segment, cut a torn tail (the crash case)."""
        size = seg.path.stat().st_size
        off = 0
        with open(seg.path, "rb") as fh:
            while off + HEADER.size <= size:
                hdr = fh.read(HEADER.size)
                magic, length, crc, lines, t_ns = HEADER.unpack(hdr)
                if magic != MAGIC or off + HEADER.size + length > size:
                    break
                payload = fh.read(length)
                if zlib.crc32(payload) != crc:
                    break
                if seg.frames == 0:
                    seg.first_append_ns = t_ns
                seg.frames += 1
                seg.lines += lines
                off += HEADER.size + length
        if off < size:
            if repair:
                log.warning("spool %s: cutting %d bytes of torn frame at the end", seg.path.name, size - off)
                os.truncate(seg.path, off)
            else:
                log.error("spool %s: corrupt frame at %d; %d bytes after it are skipped", seg.path.name, off,
                          size - off)
            self.truncated_bytes += size - off
        seg.size = off

    def _lines_before(self, seg: _Segment, offset: int) -> int:
        n = 0
        pos = 0
        with open(seg.path, "rb") as fh:
            while pos < offset:
                hdr = fh.read(HEADER.size)
                if len(hdr) < HEADER.size:
                    break
                _, length, _, lines, _ = HEADER.unpack(hdr)
                fh.seek(length, os.SEEK_CUR)
                pos += HEADER.size + length
                n += lines
        return n

    def _stamp_at(self, pos: Position) -> int:
        """Append time of the frame at ``pos`` (0 when there is none): the age of the oldest unsent data."""
        seg = self._find(pos.segment)
        if seg is None or pos.offset >= seg.size:
            nxt = [s for s in self._segments if s.index > pos.segment and s.size]
            return nxt[0].first_append_ns if nxt else 0
        try:
            with open(seg.path, "rb") as fh:
                fh.seek(pos.offset)
                hdr = fh.read(HEADER.size)
            return int(HEADER.unpack(hdr)[4]) if len(hdr) == HEADER.size else 0
        except OSError:
            return 0

    def _find(self, index: int) -> _Segment | None:
        for s in self._segments:
            if s.index == index:
                return s
        return None

    # -- appending ---------------------------------------------------------------------------------------------------
    @property
    def size_bytes(self) -> int:
        """What the segment files hold (the confirmed prefix of the cursor's segment included)."""
        with self._lock:
            return sum(s.size for s in self._segments)

    @property
    def unsent_bytes(self) -> int:
        """Bytes not confirmed by the database: what the budget counts."""
        with self._lock:
            return self._unsent_bytes()

    def _unsent_bytes(self) -> int:
        total = 0
        for s in self._segments:
            if s.index > self._cursor.segment:
                total += s.size
            elif s.index == self._cursor.segment:
                total += s.size - self._cursor.offset
        return total

    @property
    def full(self) -> bool:
        """The last refused frame still does not fit, or the filesystem refused the last append."""
        with self._lock:
            return self._disk_full or bool(self._full_need and
                                           self._unsent_bytes() + self._full_need > self.max_bytes)

    def append(self, payload: bytes, lines: int) -> int:
        """Persist one frame; returns (its append stamp, ns) once durable per the fsync policy.

        Raises ``SpoolFull`` (no room: retry later, or refused with ``reject_new``), ``SpoolDiskError`` (the
        filesystem refused it: retry later) or ``FrameTooLarge`` (larger than the whole budget)."""
        return self.append_frames([(payload, lines)])[1]

    def append_frames(self, frames: Sequence[tuple[bytes, int]]) -> tuple[int, int]:
        """Persist as many of ``frames`` as fit, in order, with one fsync; returns (how many, their append stamp).

        The caller goes on from the first frame not taken; calling again with it raises the reason (``SpoolFull``,
        ``SpoolDiskError``, ``FrameTooLarge``), which is raised at once when not even the first frame is taken."""
        stamp = time.time_ns()
        with self._lock:
            done = 0
            active = self._segments[-1]
            unsynced: list[tuple[int, int]] = []  # (lines, bytes) written to ``active`` since it was last synced
            try:
                for payload, lines in frames:
                    if not payload:
                        done += 1
                        continue
                    frame = HEADER.pack(MAGIC, len(payload), zlib.crc32(payload), lines, stamp) + payload
                    if len(frame) > self.max_bytes:
                        if done:
                            break
                        raise FrameTooLarge(f"a frame of {len(frame)} bytes can never fit spool.max_bytes="
                                            f"{self.max_bytes}; cut it with split_frames(..., "
                                            f"{self.max_frame_payload})")
                    if self.min_free_bytes and self._free_bytes() < self.min_free_bytes + len(frame):
                        raise OSError(errno.ENOSPC, f"fewer than spool.min_free_bytes={self.min_free_bytes} "
                                                    f"would stay free on the spool's filesystem")
                    if not self._make_room(len(frame)):
                        if done:
                            break
                        if self.when_full == "reject_new":
                            self.rejected_lines += lines
                        self._full_need = len(frame)
                        raise SpoolFull(f"spool {self.dir} holds {self._unsent_bytes()} unsent bytes of "
                                        f"{self.max_bytes} (when_full={self.when_full})")
                    if self._segments[-1] is not active:  # drop_oldest rotated: what was written is synced
                        active, unsynced = self._segments[-1], []
                    if active.size > 0 and active.size + len(frame) > self.segment_bytes:
                        active, unsynced = self._rotate(), []
                    self._write_all(frame)
                    if active.frames == 0:
                        active.first_append_ns = stamp
                    active.size += len(frame)
                    active.frames += 1
                    active.lines += lines
                    self.appended_lines += lines
                    unsynced.append((lines, len(frame)))
                    done += 1
                if self.fsync == "always" or (
                    self.fsync == "interval" and time.monotonic() - self._last_sync >= self.fsync_interval_s
                ):
                    assert self._fd is not None
                    os.fsync(self._fd)
                    self._last_sync = time.monotonic()
            except (OSError, SpoolDiskError) as exc:
                self._disk_full = True
                self._cut_back(active, unsynced)
                durable = done - len(unsynced)
                if durable > 0:
                    return durable, stamp
                if isinstance(exc, SpoolDiskError):
                    raise
                raise SpoolDiskError(f"spool {self.dir}: the filesystem refused a frame ({exc.strerror or exc}); "
                                     f"it is not in the spool, retry later") from exc
            self._full_need = 0
            self._disk_full = False
        return done, stamp

    def _free_bytes(self) -> int:
        st = os.statvfs(self.dir)
        return st.f_bavail * st.f_frsize

    def _make_room(self, size: int) -> bool:
        """Room for ``size`` more unsent bytes, dropping the oldest unsent segments with ``drop_oldest``."""
        while self._unsent_bytes() + size > self.max_bytes:
            if not (self.when_full == "drop_oldest" and self._drop_oldest_unsent()):
                return False
        return True

    def _write_all(self, frame: bytes) -> None:
        assert self._fd is not None
        done = 0
        while done < len(frame):
            n = os.write(self._fd, frame[done:])
            if n <= 0:
                raise OSError(errno.ENOSPC, "no progress writing a spool frame")
            done += n

    def _cut_back(self, active: _Segment, unsynced: list[tuple[int, int]]) -> None:
        """A write or fsync failed: cut the active segment back to its last synced frame, so the files hold whole,
        durable frames only and nothing unsynced was reported as appended."""
        lines = sum(n for n, _ in unsynced)
        size = active.size - sum(b for _, b in unsynced)
        try:
            assert self._fd is not None
            os.ftruncate(self._fd, size)
        except OSError as cut:  # the next start cuts a torn tail (crc) anyway
            log.error("spool %s: could not cut failed frames back: %s", active.path.name, cut)
        active.size = size
        active.frames -= len(unsynced)
        active.lines -= lines
        self.appended_lines -= lines
        if active.frames == 0:
            active.first_append_ns = 0

    def _rotate(self) -> _Segment:
        """Start a new active segment. The old one is synced and closed only once the new one exists, so a
        filesystem that refuses the new file leaves the spool as it was."""
        assert self._fd is not None
        seg = _Segment(self._segments[-1].index + 1, self._seg_path(self._segments[-1].index + 1))
        try:
            fd = os.open(seg.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            self._disk_full = True
            raise SpoolDiskError(f"spool {self.dir}: cannot create {seg.path.name}: {exc.strerror or exc}") from exc
        old = self._fd
        try:
            if self.fsync != "never":
                os.fsync(old)
        except OSError as exc:
            log.error("spool %s: fsync of the previous segment failed: %s", self.dir, exc)
        os.close(old)
        self._fd = fd
        self._segments.append(seg)
        if self.fsync != "never":
            self._fsync_dir()
        self._delete_confirmed_segments()  # the old active segment may have been fully confirmed already
        return seg

    def _fsync_dir(self) -> None:
        try:
            fd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("spool %s: directory fsync failed: %s", self.dir, exc)

    def _drop_oldest_unsent(self) -> bool:
        """``drop_oldest``: delete the oldest segment that holds unsent frames; False when there is none."""
        if not self._unsent_bytes():
            return False
        if len(self._segments) == 1:  # the unsent frames are all in the active segment: start a new one first
            try:
                self._rotate()
            except SpoolDiskError:
                return False
        self._drop_oldest_segment()
        return True

    def _drop_oldest_segment(self) -> None:
        seg = self._segments.pop(0)
        if seg.index == self._cursor.segment:
            lost = seg.lines - self._cursor_lines_in_seg
        elif seg.index > self._cursor.segment:
            lost = seg.lines
        else:
            lost = 0
        self.dropped_lines += lost
        log.error("spool full: dropped segment %s with %d unsent lines (when_full=drop_oldest)", seg.path.name, lost)
        seg.path.unlink(missing_ok=True)
        nxt = self._segments[0]
        if self._cursor.segment <= seg.index:
            self._cursor = Position(nxt.index, 0)
            self._cursor_lines_in_seg = 0
            self._cursor_stamp = 0
            self._save_cursor()
        if self._read_pos.segment <= seg.index:
            self._read_pos = Position(nxt.index, 0)

    def sync(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)
                self._last_sync = time.monotonic()

    # -- reading and confirming ------------------------------------------------------------------------------------
    def read_batch(self, max_lines: int, max_bytes: int = 64 * 1024 * 1024) -> Batch | None:
        """Frames from the read position on, up to about ``max_lines``; ``None`` when nothing is pending."""
        with self._lock:
            pos = self._read_pos
            pos = max(pos, self._cursor)
            segs = [(s.index, s.path, s.size) for s in self._segments if s.index >= pos.segment]
        payloads: list[bytes] = []
        stamps: list[int] = []
        lines = 0
        nbytes = 0
        end = pos
        for index, path, size in segs:
            off = pos.offset if index == pos.segment else 0
            if off >= size:
                end = Position(index, size) if index != pos.segment else end
                continue
            with open(path, "rb") as fh:
                fh.seek(off)
                while off < size and lines < max_lines and nbytes < max_bytes:
                    hdr = fh.read(HEADER.size)
                    magic, length, crc, n, t_ns = HEADER.unpack(hdr)
                    payload = fh.read(length)
                    if magic != MAGIC or zlib.crc32(payload) != crc:
                        raise OSError(f"spool {path.name}: corrupt frame at offset {off}")
                    payloads.append(payload)
                    stamps.append(t_ns)
                    lines += n
                    nbytes += length
                    off += HEADER.size + length
            end = Position(index, off)
            if lines >= max_lines or nbytes >= max_bytes:
                break
        if not payloads:
            return None
        with self._lock:
            self._read_pos = end
        return Batch(payloads, lines, end, min(stamps), stamps)

    def rewind(self) -> None:
        """After a failed write: read again from the cursor."""
        with self._lock:
            self._read_pos = self._cursor

    def confirm(self, batch: Batch) -> None:
        """The database has the batch: move the cursor past it and reclaim what is fully sent."""
        with self._lock:
            if batch.end <= self._cursor:
                return
            if batch.end.segment == self._cursor.segment:
                self._cursor_lines_in_seg += batch.lines
            else:
                seg = self._find(batch.end.segment)
                self._cursor_lines_in_seg = self._lines_before(seg, batch.end.offset) if seg else 0
            self._cursor = batch.end
            self._cursor_stamp = 0
            self.confirmed_lines += batch.lines
            self._cursor_unsaved = True
            if time.monotonic() - self._cursor_saved_mono >= self.cursor_interval_s:
                self._save_cursor(durable=False)
            self._delete_confirmed_segments()
            active = self._segments[-1]
            if (self._cursor == Position(active.index, active.size) and active.size >= self.segment_bytes // 2
                    and len(self._segments) == 1):
                # everything is confirmed and the active segment is half its size: roll it, so its bytes go
                with contextlib.suppress(SpoolDiskError):  # no room for a new file: the next rotation does it
                    self._rotate()

    @property
    def cursor_unsaved(self) -> bool:
        """The cursor moved since ``cursor.json`` was written: ``flush_cursor`` has something to do."""
        return self._cursor_unsaved or self._cursor_dirty

    def flush_cursor(self) -> None:
        """Write ``cursor.json`` now if the cursor moved since (not fsync'ed: see the module doc)."""
        with self._lock:
            if self._cursor_unsaved or self._cursor_dirty:
                self._save_cursor(durable=False)

    def _save_cursor(self, durable: bool = True) -> None:
        """Replace ``cursor.json``; ``durable``: fsync'ed first (before a segment file goes, when the policy
        fsyncs at all)."""
        tmp = self.dir / "cursor.json.tmp"
        try:
            with open(tmp, "w") as fh:
                json.dump({"segment": self._cursor.segment, "offset": self._cursor.offset}, fh)
                if durable and self.fsync != "never":
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, self.dir / "cursor.json")
            self._cursor_dirty = False
            self._cursor_unsaved = False
            self._cursor_saved_mono = time.monotonic()
        except OSError as exc:  # disk full: the cursor is right in memory; saved at the next confirm
            if not self._cursor_dirty:
                log.error("spool %s: cannot save the cursor (%s); after a crash now, frames since the last saved "
                          "cursor would be sent again", self.dir, exc)
            self._cursor_dirty = True
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def _delete_confirmed_segments(self) -> None:
        moved = False
        if len(self._segments) > 1 and self._segments[0].index < self._cursor.segment and self._cursor_unsaved:
            self._save_cursor()  # the saved cursor must point past a file before the file goes
        while len(self._segments) > 1 and self._segments[0].index < self._cursor.segment:
            seg = self._segments.pop(0)
            seg.path.unlink(missing_ok=True)
        # a fully confirmed segment before the active one: the cursor may sit at its end; step it over
        while len(self._segments) > 1:
            first = self._segments[0]
            if first.index != self._cursor.segment or self._cursor.offset < first.size:
                break
            nxt = self._segments[1]
            self._cursor = Position(nxt.index, 0)
            self._cursor_lines_in_seg = 0
            moved = True
            self._segments.pop(0)
            self._read_pos = max(self._read_pos, self._cursor)
            # the cursor must point past the file before the file goes (a crash between the two replays nothing)
            self._save_cursor()
            first.path.unlink(missing_ok=True)
        if moved:
            self._cursor_stamp = 0

    # -- metrics -----------------------------------------------------------------------------------------------------
    @property
    def depth_lines(self) -> int:
        with self._lock:
            total = 0
            for s in self._segments:
                if s.index > self._cursor.segment:
                    total += s.lines
                elif s.index == self._cursor.segment:
                    total += s.lines - self._cursor_lines_in_seg
            return total

    def stats(self) -> SpoolStats:
        with self._lock:
            depth_bytes = self._unsent_bytes()
            depth_lines = self.depth_lines
            age = 0.0
            if depth_lines:
                if not self._cursor_stamp:
                    self._cursor_stamp = self._stamp_at(self._cursor)
                if self._cursor_stamp:
                    age = max(0.0, (time.time_ns() - self._cursor_stamp) / 1e9)
            return SpoolStats(
                depth_bytes=depth_bytes, depth_lines=depth_lines, segments=len(self._segments), oldest_age_s=age,
                appended_lines=self.appended_lines, confirmed_lines=self.confirmed_lines,
                dropped_lines=self.dropped_lines, rejected_lines=self.rejected_lines,
                truncated_bytes=self.truncated_bytes, full=self.full, disk_full=self._disk_full,
                disk_bytes=sum(s.size for s in self._segments), max_bytes=self.max_bytes,
            )

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                if self.fsync != "never":
                    with contextlib.suppress(OSError):
                        os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None
            if self._cursor_dirty or self._cursor_unsaved:
                self._save_cursor()
