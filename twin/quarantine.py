"""Where bad input goes: kept with its reason and raw payload, counted per reason, listable and exportable.

Files are JSON lines (``quarantine-YYYYMMDD-NNNN.jsonl``: UTC day, then a sequence number), so an operator can read
them with any tool. ``max_bytes`` bounds everything the quarantine keeps on disk, whatever arrives: the active file is
rotated when it reaches an eighth of the budget (or the day changes), the oldest files are dropped whole to make room,
and one entry larger than a file's share is cut down with a marker (``entry_truncated_from_bytes``). What was dropped
is counted per reason in ``dropped.json`` beside the files, so the counts per reason since the quarantine began stay
right after rotation and restarts. (One file per day used to be the only unit of removal, and the newest file was
never trimmed: a ``max_bytes`` of 4 MB ended with 39 MB in one file.) A raw payload that is not UTF-8 is kept as
base64. Writing a quarantine entry never raises into ingest: a full disk is logged and counted (``write_errors``).
"""

from __future__ import annotations

import base64
import builtins
import json
import logging
import os
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from connectors.records import Rejected, ns_to_iso

log = logging.getLogger(__name__)

FILES_PER_BUDGET = 8  # the active file rotates at max_bytes / 8: dropping the oldest file frees at most that much
DROPPED_FILE = "dropped.json"
_NAME = re.compile(r"^quarantine-(\d{8})(?:-(\d+))?\.jsonl$")
# json.dumps keeps the entry's key order, so the reason is read from a line's head without parsing the payload
_REASON = re.compile(r'^\{"quarantined": "[^"]*", "reason": ("(?:[^"\\]|\\.)*")')


def _key(path: Path) -> tuple[str, int]:
    """Oldest first: (day, sequence); the one-file-per-day name of earlier versions sorts first in its day."""
    m = _NAME.match(path.name)
    return (m.group(1), int(m.group(2) or 0)) if m else ("", 0)


def _data_files(directory: Path) -> list[Path]:
    return sorted((f for f in directory.glob("quarantine-*.jsonl") if _NAME.match(f.name)), key=_key)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def _reason_of(line: str) -> str:
    m = _REASON.match(line)
    if m:
        return str(json.loads(m.group(1)))
    try:
        return str(json.loads(line).get("reason", "?"))
    except (json.JSONDecodeError, AttributeError):
        return "?"  # a torn line after a crash


class Quarantine:
    def __init__(self, directory: str | Path, max_bytes: int = 256 * 1024 * 1024, keep_raw_bytes: int = 65536) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.keep_raw_bytes = keep_raw_bytes
        # a file's share of the budget; one entry never exceeds it, so rotation and dropping can always make room
        self.file_bytes = max(256, max_bytes // FILES_PER_BUDGET)
        self.counts: Counter[str] = Counter()
        self.write_errors = 0
        self._lock = threading.Lock()
        self._fh: IO[str] | None = None
        self._active: Path | None = None
        self._sizes: dict[Path, int] = {}  # data files, oldest first (dicts keep insertion order)
        self._dropped: dict[str, Any] = {"entries": 0, "bytes": 0, "files": 0, "by_reason": {}, "through": ""}
        self._sidecar_bytes = 0
        self._load_dropped()
        self._scan()

    # -- bookkeeping ------------------------------------------------------------------------------------------------
    def _load_dropped(self) -> None:
        path = self.dir / DROPPED_FILE
        try:
            text = path.read_text(encoding="utf-8")
            loaded = json.loads(text)
        except FileNotFoundError:
            return
        except (OSError, json.JSONDecodeError) as exc:
            log.error("quarantine: cannot read %s (%s); counting drops from zero", path, exc)
            return
        self._dropped.update({k: loaded[k] for k in self._dropped if k in loaded})
        self._sidecar_bytes = len(text.encode())

    def _scan(self) -> None:
        """Sizes of the kept files; files already counted as dropped (a crash between the count and the unlink) are
        not kept: the writer removes them."""
        through = self._dropped.get("through") or ""
        self._sizes = {}
        self._stale: list[Path] = []
        for f in _data_files(self.dir):
            if through and _key(f) <= _key(Path(through)):
                self._stale.append(f)
                continue
            try:
                self._sizes[f] = f.stat().st_size
            except FileNotFoundError:
                continue

    def _is_kept(self, f: Path) -> bool:
        through = self._dropped.get("through") or ""
        return not through or _key(f) > _key(Path(through))

    def _write_dropped(self) -> None:
        path = self.dir / DROPPED_FILE
        text = json.dumps(self._dropped, sort_keys=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        self._sidecar_bytes = len(text.encode())

    def _drop_oldest(self) -> None:
        """Count the oldest file's entries per reason, record the drop, then remove the file."""
        oldest = next(iter(self._sizes))
        size = self._sizes.pop(oldest)
        by_reason: Counter[str] = Counter()
        try:
            with open(oldest, encoding="utf-8", errors="replace") as fh:
                by_reason.update(_reason_of(line) for line in fh if line.strip())
        except FileNotFoundError:
            pass
        total = Counter(self._dropped["by_reason"])
        total.update(by_reason)
        self._dropped.update(entries=self._dropped["entries"] + sum(by_reason.values()),
                             bytes=self._dropped["bytes"] + size, files=self._dropped["files"] + 1,
                             by_reason=dict(total), through=oldest.name)
        self._write_dropped()  # first the count, then the unlink: a crash between them never counts twice
        oldest.unlink(missing_ok=True)
        log.warning("quarantine: dropped %s (%d entries, %d bytes) to stay within %d bytes", oldest.name,
                    sum(by_reason.values()), size, self.max_bytes)

    # -- writing ---------------------------------------------------------------------------------------------------
    def _entry(self, r: Rejected) -> dict[str, Any]:
        raw = r.raw
        d: dict[str, Any] = {
            "quarantined": datetime.now(tz=UTC).isoformat().replace("+00:00", "Z"),
            "reason": r.reason, "detail": r.detail, "source": r.source,
            "time": ns_to_iso(r.time_ns) if r.time_ns and r.time_ns > 0 else None,
        }
        if isinstance(raw, bytes):
            cut = raw[: self.keep_raw_bytes]
            try:
                d["raw"] = cut.decode()
            except UnicodeDecodeError:
                d["raw_base64"] = base64.b64encode(cut).decode()
            d["raw_truncated"] = len(raw) > len(cut)
        else:
            d["raw"] = raw[: self.keep_raw_bytes]
            d["raw_truncated"] = len(raw) > self.keep_raw_bytes
        if r.sample is not None:
            s = r.sample.to_json()
            if isinstance(s.get("value"), float) and s["value"] != s["value"] or s.get("value") in (
                float("inf"), float("-inf")
            ):
                s["value"] = repr(s["value"])  # JSON has no NaN / inf
            d["sample"] = s
        return d

    def _line(self, r: Rejected) -> str:
        """One JSON line of at most ``file_bytes``: the longest fields are cut (raw first, as it is usually the
        longest) and the entry says how long it was (``entry_truncated_from_bytes``)."""
        d = self._entry(r)
        line = json.dumps(d, default=str) + "\n"  # ASCII (ensure_ascii): characters are bytes
        if len(line) <= self.file_bytes:
            return line
        d["entry_truncated_from_bytes"] = len(line)
        for _ in range(16):
            line = json.dumps(d, default=str) + "\n"
            excess = len(line) - self.file_bytes
            if excess <= 0:
                return line
            key = max((k for k in ("raw", "raw_base64", "detail", "source", "sample") if d.get(k)),
                      key=lambda k: len(json.dumps(d[k], default=str)), default=None)
            if key is None:
                break
            value = d[key]
            if key == "sample" or not isinstance(value, str):
                del d[key]
                d[f"{key}_truncated"] = True
                continue
            keep = max(0, len(value) - excess - 16)
            if key == "raw_base64":
                keep -= keep % 4  # still decodes
            d[key] = value[:keep]
            if key in ("raw", "raw_base64"):
                d["raw_truncated"] = True
        # nothing long left to cut (cannot happen with a budget of >= 256 bytes per file): keep what says why
        small = {"quarantined": d["quarantined"], "reason": str(d["reason"])[:64],
                 "entry_truncated_from_bytes": d["entry_truncated_from_bytes"]}
        return json.dumps(small) + "\n"

    def _new_file(self, day: str) -> Path:
        seqs = [_key(f)[1] for f in _data_files(self.dir) if _key(f)[0] == day]
        return self.dir / f"quarantine-{day}-{max(seqs, default=0) + 1:04d}.jsonl"

    def _active_takes(self, line_bytes: int) -> bool:
        active = self._active
        return (active is not None and _key(active)[0] == time.strftime("%Y%m%d", time.gmtime())
                and self._sizes[active] + line_bytes <= self.file_bytes)

    def _rotate(self, line_bytes: int) -> None:
        """Close the active file and open the next one (a previous process's newest file if it still has room)."""
        day = time.strftime("%Y%m%d", time.gmtime())
        was_active = self._active
        self._close_fh()
        newest = next(reversed(self._sizes), None)
        if (was_active is None and newest is not None and _key(newest)[0] == day
                and self._sizes[newest] + line_bytes + 1 <= self.file_bytes):
            target = newest  # carry on in the file a previous process left
        else:
            target = self._new_file(day)
        fh = open(target, "a", encoding="utf-8")  # noqa: SIM115 - kept open across writes
        size = self._sizes.get(target, 0)
        if size and not _ends_with_newline(target):
            fh.write("\n")  # a torn last line after a crash must not swallow the next entry
            size += 1
        self._fh, self._active = fh, target
        self._sizes[target] = size

    def _make_room(self, line_bytes: int) -> bool:
        """Drop the oldest files until the line fits the budget; False if only the active file is left."""
        while sum(self._sizes.values()) + line_bytes + self._sidecar_bytes > self.max_bytes:
            if next(iter(self._sizes)) == self._active:
                return False
            self._drop_oldest()
        return True

    def add_many(self, rejected: Iterable[Rejected]) -> int:
        items = list(rejected)
        if not items:
            return 0
        with self._lock:
            for r in items:
                self.counts[r.reason] += 1
            try:
                for stale in self._stale:
                    stale.unlink(missing_ok=True)
                self._stale = []
                pending: list[str] = []
                pending_bytes = 0
                for r in items:
                    line = self._line(r)
                    n = len(line)
                    if not self._active_takes(pending_bytes + n):
                        self._write_pending(pending)
                        pending_bytes = 0
                        self._rotate(n)
                    # cannot fail while one file's share (<= budget / 8) and the bookkeeping fit the budget
                    if not self._make_room(pending_bytes + n):
                        self._count_unkept(r, n)
                        continue
                    pending.append(line)
                    pending_bytes += n
                self._write_pending(pending)
            except OSError as exc:
                self.write_errors += len(items)
                log.error("quarantine: cannot write %d entries to %s: %s", len(items), self.dir, exc)
                self._close_fh()
                self._scan()
        return len(items)

    def _write_pending(self, pending: list[str]) -> None:
        if not pending or self._fh is None or self._active is None:
            return
        text = "".join(pending)
        self._fh.write(text)
        self._fh.flush()
        self._sizes[self._active] += len(text)
        pending.clear()

    def _count_unkept(self, r: Rejected, n: int) -> None:
        """An entry the budget cannot hold at all (a budget smaller than a file's share plus bookkeeping)."""
        total = Counter(self._dropped["by_reason"])
        total[r.reason] += 1
        self._dropped.update(entries=self._dropped["entries"] + 1, bytes=self._dropped["bytes"] + n,
                             by_reason=dict(total))
        self._write_dropped()

    def _close_fh(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError:
                pass
            self._fh = None
        self._active = None

    def add(self, r: Rejected) -> None:
        self.add_many([r])

    def dropped(self) -> dict[str, Any]:
        """What rotation removed to stay within ``max_bytes``: entries, bytes, files and entries per reason, since
        the quarantine began (persisted in ``dropped.json``)."""
        with self._lock:
            d = self._dropped
            return {"entries": d["entries"], "bytes": d["bytes"], "files": d["files"],
                    "by_reason": dict(d["by_reason"])}

    def usage(self) -> dict[str, Any]:
        """Bytes on disk against the budget, kept files, and what was dropped (for status pages and metrics)."""
        with self._lock:
            used = sum(self._sizes.values()) + self._sidecar_bytes
            files = len(self._sizes)
        return {"bytes": used, "max_bytes": self.max_bytes, "files": files, "dropped": self.dropped()}

    def close(self) -> None:
        with self._lock:
            self._close_fh()

    # -- reading ---------------------------------------------------------------------------------------------------
    def entries(self, reason: str | None = None) -> Iterator[dict[str, Any]]:
        """Oldest first; a line that cannot be parsed (a crash mid-write) is skipped."""
        with self._lock:
            if self._fh is not None:
                self._fh.flush()
        for f in _data_files(self.dir):
            if not self._is_kept(f):
                continue
            try:
                fh = open(f, encoding="utf-8")  # noqa: SIM115
            except FileNotFoundError:
                continue  # dropped by the writer while we read
            with fh:
                for line in fh:
                    try:
                        d = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if reason is None or d.get("reason") == reason:
                        yield d

    def list(self, reason: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` entries (optionally of one reason), newest last."""
        return list(deque(self.entries(reason), maxlen=limit))

    def summary(self, reason: str | None = None,
                limit: int = 100) -> tuple[dict[str, int], builtins.list[dict[str, Any]]]:
        """Counts per reason since the quarantine began (kept entries plus those rotation dropped), and the newest
        ``limit`` entries (of ``reason`` if given), from one read of the files: the API asks for both and the
        quarantine may hold hundreds of MB."""
        counts: Counter[str] = Counter(self.dropped()["by_reason"])
        newest: deque[dict[str, Any]] = deque(maxlen=limit)
        for d in self.entries():
            counts[d.get("reason", "?")] += 1
            if reason is None or d.get("reason") == reason:
                newest.append(d)
        return dict(counts), list(newest)

    def count_by_reason(self) -> dict[str, int]:
        """Counted from the files and the drop counts, so it survives restarts and rotation (``self.counts`` is this
        process only)."""
        c: Counter[str] = Counter(self.dropped()["by_reason"])
        c.update(d.get("reason", "?") for d in self.entries())
        return dict(c)

    def export(self, dest: str | Path, reason: str | None = None) -> int:
        """Write all (or one reason's) entries as JSON lines to ``dest``; returns how many."""
        n = 0
        tmp = Path(f"{dest}.tmp")
        with open(tmp, "w", encoding="utf-8") as out:
            for d in self.entries(reason):
                out.write(json.dumps(d) + "\n")
                n += 1
        os.replace(tmp, dest)
        return n
