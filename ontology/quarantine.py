"""Events that could not be placed in the graph, kept with the reason and never lost.

An entry waiting for an input ID that has not arrived yet (events can arrive out of order over MQTT) is released and
placed automatically when that ID is created; everything else stays until an engineer looks at it. The log is an
append-only JSON-lines file beside the store, replayed on start, so the quarantine survives restarts too.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


@dataclass
class Entry:
    qid: int
    reason: str
    payload: Any
    what: str = "event"  # event | prediction | audit
    waiting_for: list[str] = field(default_factory=list)  # "line\x00id" keys whose creation would release it
    received_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        out["waiting_for"] = [k.split("\x00", 1)[1] for k in self.waiting_for]
        return out


class Quarantine:
    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._entries: dict[int, Entry] = {}
        self._waiting: dict[str, set[int]] = {}
        self._next = 1
        if path is not None and path.exists():
            self._replay(path)

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
                self._entries[entry.qid] = entry
                for key in entry.waiting_for:
                    self._waiting.setdefault(key, set()).add(entry.qid)
                self._next = max(self._next, entry.qid + 1)
            elif record.get("op") == "release":
                self._drop(int(record["qid"]))

    def _append(self, record: dict[str, Any]) -> None:
        if self._path is None:
            return
        with self._path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=str) + "\n")

    def _drop(self, qid: int) -> Entry | None:
        entry = self._entries.pop(qid, None)
        if entry is not None:
            for key in entry.waiting_for:
                bucket = self._waiting.get(key)
                if bucket is not None:
                    bucket.discard(qid)
                    if not bucket:
                        del self._waiting[key]
        return entry

    def add(self, reason: str, payload: Any, *, what: str = "event", waiting_for: list[str] | None = None) -> Entry:
        with self._lock:
            entry = Entry(self._next, reason, payload, what, list(waiting_for or []))
            self._next += 1
            self._entries[entry.qid] = entry
            for key in entry.waiting_for:
                self._waiting.setdefault(key, set()).add(entry.qid)
            self._append({"op": "add", "entry": asdict(entry)})
            return entry

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
