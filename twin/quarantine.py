"""Where bad input goes: kept with its reason and raw payload, counted per reason, listable and exportable.

Files are JSON lines, one per UTC day (``quarantine-YYYYMMDD.jsonl``), so an operator can read them with any tool and
the oldest can be dropped whole when ``max_bytes`` is exceeded. A raw payload that is not UTF-8 is kept as base64.
Writing a quarantine entry never raises into ingest: a full disk is logged and counted (``write_errors``).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from connectors.records import Rejected, ns_to_iso

log = logging.getLogger(__name__)


class Quarantine:
    def __init__(self, directory: str | Path, max_bytes: int = 256 * 1024 * 1024, keep_raw_bytes: int = 65536) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.keep_raw_bytes = keep_raw_bytes
        self.counts: Counter[str] = Counter()
        self.write_errors = 0
        self._lock = threading.Lock()
        self._fh: IO[str] | None = None
        self._fh_day = ""

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

    def _file(self) -> IO[str]:
        day = time.strftime("%Y%m%d", time.gmtime())
        if self._fh is None or day != self._fh_day:
            if self._fh is not None:
                self._fh.close()
            self._fh = open(self.dir / f"quarantine-{day}.jsonl", "a", encoding="utf-8")  # noqa: SIM115
            self._fh_day = day
        return self._fh

    def add_many(self, rejected: Iterable[Rejected]) -> int:
        items = list(rejected)
        if not items:
            return 0
        with self._lock:
            for r in items:
                self.counts[r.reason] += 1
            try:
                fh = self._file()
                fh.write("".join(json.dumps(self._entry(r), default=str) + "\n" for r in items))
                fh.flush()
                self._enforce_bound()
            except OSError as exc:
                self.write_errors += len(items)
                log.error("quarantine: cannot write %d entries to %s: %s", len(items), self.dir, exc)
        return len(items)

    def add(self, r: Rejected) -> None:
        self.add_many([r])

    def _enforce_bound(self) -> None:
        files = sorted(self.dir.glob("quarantine-*.jsonl"))
        total = sum(f.stat().st_size for f in files)
        while total > self.max_bytes and len(files) > 1:
            oldest = files.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink()
            log.warning("quarantine: removed %s to stay below %d bytes", oldest.name, self.max_bytes)

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    # -- reading ---------------------------------------------------------------------------------------------------
    def entries(self, reason: str | None = None) -> Iterator[dict[str, Any]]:
        """Oldest first; a line that cannot be parsed (a crash mid-write) is skipped."""
        with self._lock:
            if self._fh is not None:
                self._fh.flush()
        for f in sorted(self.dir.glob("quarantine-*.jsonl")):
            with open(f, encoding="utf-8") as fh:
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

    def summary(self, reason: str | None = None, limit: int = 100) -> tuple[dict[str, int], list[dict[str, Any]]]:
        """Counts per reason over everything kept, and the newest ``limit`` entries (of ``reason`` if given), from
        one read of the files: the API asks for both and the quarantine may hold hundreds of MB."""
        counts: Counter[str] = Counter()
        newest: deque[dict[str, Any]] = deque(maxlen=limit)
        for d in self.entries():
            counts[d.get("reason", "?")] += 1
            if reason is None or d.get("reason") == reason:
                newest.append(d)
        return dict(counts), list(newest)

    def count_by_reason(self) -> dict[str, int]:
        """Counted from the files, so it survives restarts (``self.counts`` is this process only)."""
        c: Counter[str] = Counter(d.get("reason", "?") for d in self.entries())
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
