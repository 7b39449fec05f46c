"""The in-memory ID index: which entities the genealogy holds (type and creating event), on which lines.

Why in memory: placing an event asks for the type and producer of its ID and every input ID, thousands of times a
second in a backlog; a dict answers in nanoseconds where a store query takes a millisecond. Why built in the
background: at 100 000 cells the full index query takes ~23 s, so after a restart the store serves at once and, until
the index is complete, answers a lookup the partial index cannot from the store (a point query). What the placer adds
meanwhile is newer than the store's snapshot and is never replaced.

The index also knows which IDs samples named before the genealogy did (`UnresolvedReferences`), because it is what
resolves them.
"""

from __future__ import annotations

import logging
import threading
import time as _time

from rdflib import Literal

from ontology.quarantine import UnresolvedReferences
from ontology.queries import load
from ontology.store.backend import GraphBackend

log = logging.getLogger(__name__)

IndexRef = tuple[str, "int | str"]  # (type, seq of the creating event | "<seq>-<digest>"; 0 = received lot)


def entity_key(line: str, entity_id: str) -> str:
    """The index's (and the quarantine's waiting) key of an ID on a line."""
    return f"{line}\x00{entity_id}"


class EntityIndex:
    """"line\\0id" -> (type, creating event); complete once `ready` is set. `lines` is every line the genealogy has
    seen, `entity_count` how many entities it holds."""

    def __init__(self, backend: GraphBackend, unresolved: UnresolvedReferences, stop: threading.Event) -> None:
        self.backend = backend
        self.unresolved = unresolved
        self.stop = stop
        self.entries: dict[str, IndexRef] = {}
        self.ready = threading.Event()
        self.error: str | None = None
        self.entity_count = 0
        self.lines: set[str] = set()

    def build(self) -> None:
        """Fill the ID index from the store (in the background after a restart). Lookups meanwhile go to the store
        (`lookup`); what the placer adds in the meantime is newer than the store's snapshot and is never replaced."""
        try:
            ox_store = self.backend.ox
            if ox_store is not None:
                solutions = ox_store.query(load("index"))
                names = [v.value for v in solutions.variables]
                col = {n: i for i, n in enumerate(names)}
                i_line, i_id, i_type, i_seq, i_event = (col[n] for n in ("line", "id", "type", "seq", "event"))
                for n, row in enumerate(solutions):
                    event = row[i_event]
                    seq = row[i_seq]
                    ref: int | str = event.value if event is not None else int(seq.value) if seq is not None else 0
                    line = row[i_line].value
                    self.entries.setdefault(f"{line}\x00{row[i_id].value}", (row[i_type].value, ref))
                    self.lines.add(line)
                    if n % 10_000 == 0 and self.stop.is_set():
                        return
            else:
                for row in self.backend.select("index"):
                    ref = row.get("event") or int(row.get("seq", 0) or 0)
                    self.entries.setdefault(entity_key(row["line"], row["id"]), (row["type"], ref))
                    self.lines.add(row["line"])
        except Exception as exc:  # noqa: BLE001 - the store went away (closed): lookups keep going to the store
            if not self.stop.is_set():
                log.exception("building the genealogy ID index failed; lookups go to the store")
                self.error = repr(exc)
            return
        self.ready.set()
        for key in self.unresolved.listed():  # samples that named IDs the partial index did not hold yet
            if key in self.entries:
                self.unresolved.resolve(key)

    def state(self) -> str:
        """"complete" once the in-memory ID index holds every entity, else "building" (or "failed: ...")."""
        if self.ready.is_set():
            return "complete"
        return f"failed: {self.error}" if self.error else "building"

    def lookup(self, line: str, entity_id: str) -> IndexRef | None:
        """(type, creating event) of an entity: from the index, or while it is being built from the store."""
        key = entity_key(line, entity_id)
        found = self.entries.get(key)
        if found is not None or self.ready.is_set():
            return found
        rows = self.backend.select("lookup_entity", id=Literal(entity_id), line=Literal(line))
        if not rows:
            return None
        row = rows[0]
        ref = row.get("event") or int(row.get("seq", 0) or 0)
        return self.entries.setdefault(key, (row["type"], ref))

    def add_entity(self, key: str, ref: IndexRef) -> None:
        """A new entity (checked absent by lookup): indexed, counted, and no longer an unresolved reference."""
        self.entries[key] = ref
        self.entity_count += 1
        self.unresolved.resolve(key)

    def resolve_line(self, entity_id: str, line: str | None) -> str | None:
        """The line an ID is on: `line` if given and the ID is there; else the one line that has it, or None."""
        if line is not None:
            return line if self.lookup(line, entity_id) is not None else None
        hits = [ln for ln in sorted(self.lines) if self.lookup(ln, entity_id) is not None]
        return hits[0] if len(hits) == 1 else None

    def note_reference(self, line: str, entity_id: str, trace_key: str, source: str) -> bool:
        """A sample named `entity_id`: True if the genealogy knows it, else it is listed as unresolved. O(1)."""
        key = entity_key(line, entity_id)
        if key in self.entries:
            return True
        self.unresolved.note(key, line, entity_id, trace_key, source, _time.monotonic())
        return False
