"""Events that could not be placed in the graph, kept with the reason and never lost; and the IDs samples refer to
that the genealogy does not know (UnresolvedReferences).

An entry waiting for an input ID that has not arrived yet (events can arrive out of order over MQTT) is released and
placed automatically when that ID is created; everything else stays until an engineer looks at it. The log is an
append-only JSON-lines file beside the store, replayed on start, so the quarantine survives restarts too.

Bounded, because an outsider can fill it (forged or malformed events): at most ``max_entries`` are held (the oldest
one is dropped, and counted in ``dropped``, to make room), and the log is rewritten with only the entries still held
once it has grown to twice their size plus ``COMPACT_SLACK_BYTES`` (adds and releases of out-of-order events would
otherwise grow it forever while nothing stays quarantined).
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

COMPACT_SLACK_BYTES = 1 << 20
"""The log is compacted once it exceeds twice the size of the entries it holds plus this."""


@dataclass
class Entry:
    qid: int
    reason: str
    payload: Any
    what: str = "event"  # event | prediction | audit
    waiting_for: list[str] = field(default_factory=list)  # "line\x00id" keys whose creation would release it
    received_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    identity: str | None = None  # "line\x00seq\x00digest" of a trace event (see identity()); None if it had none

    def seq_identity(self) -> tuple[str, int, str] | None:
        if self.identity is None:
            return None
        line, seq, digest = self.identity.split("\x00")
        return line, int(seq), digest

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        out["waiting_for"] = [k.split("\x00", 1)[1] for k in self.waiting_for]
        ident = self.seq_identity()
        out["identity"] = {"line": ident[0], "seq": ident[1], "digest": ident[2]} if ident is not None else None
        return out


class Quarantine:
    def __init__(self, path: Path | None, max_entries: int = 100_000) -> None:
        self._path = path
        self.max_entries = max_entries
        self.dropped = 0  # entries dropped to stay within max_entries (since this process started)
        self._log_bytes = 0  # size of the log file
        self._live_bytes: dict[int, int] = {}  # qid -> size of its "add" record
        self._live_total = 0  # sum of _live_bytes, kept as it changes (add is on the placement path)
        self._lock = threading.Lock()
        self._entries: dict[int, Entry] = {}
        self._waiting: dict[str, set[int]] = {}
        self._identities: dict[tuple[str, int], dict[str, int]] = {}  # (line, seq) -> digest -> entries holding it
        self._next = 1
        if path is not None and path.exists():
            self._replay(path)
            self._log_bytes = path.stat().st_size
            self._compact_if_due()

    def _replay(self, path: Path) -> None:
        for raw in path.read_text(encoding="utf-8").splitlines():
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError:
                continue  # a torn last line after a crash: the entry it held was never acknowledged as stored
            if record.get("op") == "add":
                entry = Entry(**record["entry"])
                self._index(entry)
                self._set_live(entry.qid, len(raw.encode()) + 1)
                self._next = max(self._next, entry.qid + 1)
            elif record.get("op") == "release":
                self._drop(int(record["qid"]))

    def _append(self, record: dict[str, Any]) -> int:
        """Write one record; its size in bytes (0 without a file)."""
        if self._path is None:
            return 0
        line = json.dumps(record, default=str) + "\n"
        with self._path.open("a", encoding="utf-8") as fh:
            fh.write(line)
        size = len(line.encode())
        self._log_bytes += size
        return size

    def _set_live(self, qid: int, size: int) -> None:
        self._live_total += size - self._live_bytes.get(qid, 0)
        self._live_bytes[qid] = size

    def _compact_if_due(self) -> None:
        """Rewrite the log with the entries still held (atomically: a crash leaves the old or the new file)."""
        if self._path is None or self._log_bytes <= 2 * self._live_total + COMPACT_SLACK_BYTES:
            return
        tmp = self._path.with_name(self._path.name + ".compact")
        sizes: dict[int, int] = {}
        with tmp.open("w", encoding="utf-8") as fh:
            for qid, entry in self._entries.items():
                line = json.dumps({"op": "add", "entry": asdict(entry)}, default=str) + "\n"
                fh.write(line)
                sizes[qid] = len(line.encode())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._path)
        self._live_bytes = sizes
        self._live_total = sum(sizes.values())
        self._log_bytes = self._live_total

    def _index(self, entry: Entry) -> None:
        self._entries[entry.qid] = entry
        for key in entry.waiting_for:
            self._waiting.setdefault(key, set()).add(entry.qid)
        ident = entry.seq_identity()
        if ident is not None:
            digests = self._identities.setdefault(ident[:2], {})
            digests[ident[2]] = digests.get(ident[2], 0) + 1

    def _drop(self, qid: int) -> Entry | None:
        self._live_total -= self._live_bytes.pop(qid, 0)
        entry = self._entries.pop(qid, None)
        if entry is not None:
            for key in entry.waiting_for:
                bucket = self._waiting.get(key)
                if bucket is not None:
                    bucket.discard(qid)
                    if not bucket:
                        del self._waiting[key]
            ident = entry.seq_identity()
            if ident is not None:
                digests = self._identities.get(ident[:2], {})
                digests[ident[2]] = digests.get(ident[2], 1) - 1
                if digests[ident[2]] <= 0:
                    digests.pop(ident[2], None)
                    if not digests:
                        self._identities.pop(ident[:2], None)
        return entry

    def add(self, reason: str, payload: Any, *, what: str = "event", waiting_for: list[str] | None = None,
            identity: str | None = None) -> Entry:
        """Keep `payload` with `reason`; `identity` ("line\x00seq\x00digest") lets a replay of the same trace event
        be recognised as a duplicate after it left the store's in-memory seq window."""
        with self._lock:
            while len(self._entries) >= self.max_entries:  # the oldest makes room: bounded, and counted
                oldest = next(iter(self._entries))
                self._drop(oldest)
                self._append({"op": "release", "qid": oldest})
                self.dropped += 1
            entry = Entry(self._next, reason, payload, what, list(waiting_for or []), identity=identity)
            self._next += 1
            self._index(entry)
            self._set_live(entry.qid, self._append({"op": "add", "entry": asdict(entry)}))
            self._compact_if_due()
            return entry

    def release(self, qid: int) -> Entry | None:
        """Take one entry out (to be placed again by the caller); None if it is no longer here."""
        with self._lock:
            entry = self._drop(qid)
            if entry is not None:
                self._append({"op": "release", "qid": qid})
                self._compact_if_due()
            return entry

    def digests(self, line: str, seq: int) -> set[str]:
        """Digests of the trace events with this (line, seq) held here."""
        with self._lock:
            return set(self._identities.get((line, seq), ()))

    def set_identity(self, qid: int, identity: str) -> None:
        """Attach an identity to an entry written before identities were kept (in memory; the log is unchanged)."""
        with self._lock:
            entry = self._entries.get(qid)
            if entry is not None and entry.identity is None:
                entry.identity = identity
                line, seq, digest = identity.split("\x00")
                digests = self._identities.setdefault((line, int(seq)), {})
                digests[digest] = digests.get(digest, 0) + 1

    def release_waiting(self, key: str) -> list[Entry]:
        """Entries that were waiting for `key` (now created): removed here, to be placed again by the caller."""
        with self._lock:
            qids = sorted(self._waiting.get(key, ()))
            out = []
            for qid in qids:
                entry = self._drop(qid)
                if entry is not None:
                    self._append({"op": "release", "qid": qid})
                    out.append(entry)
            self._compact_if_due()
            return out

    def is_waiting_for(self, key: str) -> bool:
        with self._lock:
            return key in self._waiting

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        with self._lock:
            return iter(list(self._entries.values()))


@dataclass
class Reference:
    line: str
    id: str
    trace_key: str  # the Sample.trace key that named it (cell_id, ...)
    first_seen: str
    last_seen: str
    samples: int
    sources: list[str]  # station/signal of the first few samples that named it
    first_mono: float = field(default=0.0, repr=False)

    def public(self, now_mono: float) -> dict[str, Any]:
        out = asdict(self)
        out["unresolved_for_s"] = round(now_mono - out.pop("first_mono"), 3)
        return out


class UnresolvedReferences:
    """IDs that samples refer to but the genealogy has not seen (yet), kept like the quarantine keeps events.

    The samples themselves are stored as they came (never dropped); this view says which IDs they name that no trace
    event created, since when, and how many samples did. An ID leaves the view when the genealogy creates it (a cell's
    samples may arrive just before its trace event is placed; `grace_s` in `summary` separates those from IDs that stay
    unknown). Memory is bounded: at most `max_ids` IDs are listed; samples naming further unknown IDs are counted in
    `dropped_samples` / `dropped_ids_estimate` only.
    """

    SOURCES_MAX = 4

    def __init__(self, max_ids: int = 10_000) -> None:
        if max_ids < 0:
            raise ValueError(f"max_ids must be >= 0, got {max_ids}")
        self.max_ids = max_ids
        self._lock = threading.Lock()
        self._refs: dict[str, Reference] = {}  # "line\x00id" -> reference, oldest first
        self.samples = 0
        self.resolved = 0
        self.dropped_samples = 0
        self.dropped_ids_estimate = 0
        self._dropped_recent: set[str] = set()

    def note(self, key: str, line: str, entity_id: str, trace_key: str, source: str, now_mono: float) -> None:
        stamp = datetime.now(UTC).isoformat()
        with self._lock:
            self.samples += 1
            ref = self._refs.get(key)
            if ref is not None:
                ref.samples += 1
                ref.last_seen = stamp
                if len(ref.sources) < self.SOURCES_MAX and source not in ref.sources:
                    ref.sources.append(source)
                return
            if len(self._refs) >= self.max_ids:
                self.dropped_samples += 1
                if key not in self._dropped_recent:  # an estimate: remembers at most max_ids dropped keys
                    self.dropped_ids_estimate += 1
                    if len(self._dropped_recent) >= max(1, self.max_ids):
                        self._dropped_recent.clear()
                    self._dropped_recent.add(key)
                return
            self._refs[key] = Reference(line, entity_id, trace_key, stamp, stamp, 1, [source], now_mono)

    def resolve(self, key: str) -> bool:
        """The genealogy now knows `key`: it leaves the view (True if it was listed)."""
        if key not in self._refs:  # the common case, without the lock (a dict lookup is atomic)
            return False
        with self._lock:
            if self._refs.pop(key, None) is None:
                return False
            self.resolved += 1
            return True

    def listed(self) -> list[str]:
        with self._lock:
            return list(self._refs)

    def __len__(self) -> int:
        return len(self._refs)

    def over_grace(self, grace_s: float, now_mono: float) -> int:
        """How many listed IDs have been unknown for longer than `grace_s` (the view is oldest first)."""
        with self._lock:
            count = 0
            for ref in self._refs.values():
                if now_mono - ref.first_mono <= grace_s:
                    break
                count += 1
            return count

    def summary(self, grace_s: float, now_mono: float, limit: int = 20) -> dict[str, Any]:
        with self._lock:
            oldest = [r.public(now_mono) for r in itertools.islice(self._refs.values(), max(0, limit))]
        return {"ids": len(self._refs), "samples": self.samples, "resolved": self.resolved,
                "unresolved_longer_than_grace": self.over_grace(grace_s, now_mono), "grace_s": grace_s,
                "max_ids": self.max_ids, "dropped_samples": self.dropped_samples,
                "dropped_ids_estimate": self.dropped_ids_estimate, "oldest": oldest}
