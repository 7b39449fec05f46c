"""Per-line seq figures (highest seq, how many different seqs were received) and their survival across restarts.

Why: the figures judge every event (a seq far ahead is implausible; a seq seen before is a replay or a reuse) and
show gaps (`missing_seq`), so they must be right after a restart too, without a scan of the store on every start. They
are written to `seqs.json` after every batch and marked clean by close(): after a clean stop they are read back
(instant); after a crash, the seqs of the store as it is now and of the quarantine are recounted in the background
while events are placed, and merged into what this run counted (until then every event is judged by the store, not
the window). Recent seqs themselves are tracked in a fixed-size window per line (ontology/seqwindow.py).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Final

from ontology.builder import event_digest
from ontology.events import EventError, parse_event
from ontology.quarantine import Entry, Quarantine
from ontology.queries import load
from ontology.seqwindow import LineSeqs
from ontology.store.backend import GraphBackend
from ontology.store.config import StoreConfig
from ontology.store.identity import stored_identities
from ontology.store.index import EntityIndex

log = logging.getLogger(__name__)

SEQ_STATE_FILE: Final = "seqs.json"


class SeqState:
    """`lines`: line -> its seq window and figures; `ready` once the figures are complete (after a recount: merged)."""

    def __init__(self, config: StoreConfig, backend: GraphBackend, quarantine: Quarantine, index: EntityIndex,
                 stop: threading.Event) -> None:
        self.config = config
        self.backend = backend
        self.quarantine = quarantine
        self.index = index
        self.stop = stop
        self.lines: dict[str, LineSeqs] = {}
        self.ready = threading.Event()  # the per-line seq figures are complete (after a recount: merged)
        self.recount: list[tuple[str, int]] | None = None  # to recount: the quarantined seqs at start-up
        self.recount_pinned = threading.Event()  # the recount's query has its snapshot: placing may start
        self.recount_pinned.set()
        self.recount_result: dict[str, tuple[int, int]] | None = None  # line -> (highest, distinct) at start-up
        self.stale_highest: dict[str, int] = {}

    def path(self) -> Path | None:
        """seqs.json beside a persistent store (not for the in-memory graph, which starts empty every time)."""
        if self.config.path is None or self.config.backend == "memory":
            return None
        return self.config.path / SEQ_STATE_FILE

    def line(self, line: str) -> LineSeqs:
        seqs = self.lines.get(line)
        if seqs is None:
            seqs = self.lines[line] = LineSeqs(self.config.seq_window)
        return seqs

    def load(self, held: set[int]) -> None:
        """Per line: highest seq and how many different seqs were received (placed or quarantined), and the entity
        count. After a clean stop they are read from seqs.json (instant). Otherwise (a crash, or a store from before
        seqs.json) the seqs of the store as it is now and of the quarantine are recounted in the background while
        events are placed: until the count is merged, every event is judged by the store (not the window) and the
        figures of this run are added to the count. Implausible events held in the quarantine (`held`: their
        quarantine ids) are not counted (the line has not got there)."""
        path = self.path()
        state: dict[str, Any] | None = None
        if path is not None and path.exists():
            try:
                state = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                state = None
        if state is not None and state.get("clean") and isinstance(state.get("lines"), dict):
            for line, numbers in state["lines"].items():
                seqs = self.line(line)
                seqs.highest, seqs.distinct = int(numbers["highest"]), int(numbers["distinct"])
            self.index.entity_count = int(state.get("entities", 0))
            self.figures_known()
            return
        if state is not None and isinstance(state.get("lines"), dict):  # what the last batch before the stop saw
            self.stale_highest = {line: int(n["highest"]) for line, n in state["lines"].items()}
        quarantined = [ident[:2] for entry in self.quarantine if entry.qid not in held
                       and (ident := self.entry_identity(entry)) is not None]
        if self.backend.ox is None:  # an empty memory graph, or a remote store: counted here, synchronously
            self._recount_now(held)
            self.figures_known()
            return
        rows = self.backend.select("entity_count")
        self.index.entity_count = int(rows[0]["n"]) if rows else 0
        if self.index.entity_count == 0:
            # a new store (every placed event created or names an entity): only the quarantine to count, here and
            # now; in the background, a first batch placed before the count was merged went unjudged by the figures
            self._recount_now(held)
            self.figures_known()
            return
        self.recount = quarantined
        self.recount_pinned.clear()

    def figures_known(self) -> None:
        for line, seqs in self.lines.items():
            seqs.low = seqs.highest  # nothing below is in the window: older seqs are looked up in the store
            self.index.lines.add(line)
        self.save(clean=False)  # until close() says otherwise, a crash means: recount at the next start
        self.ready.set()

    def recount_in_background(self) -> bool:
        """Start-up thread: the seq recount after an unclean stop (nothing to do after a clean one). False if the
        store was closed before the count ended (start-up goes no further)."""
        if self.recount is None:
            return True
        quarantined, self.recount = self.recount, None
        seen: dict[str, set[int]] = {}
        try:
            # a SELECT without aggregates is evaluated lazily over the store as it is at this call (pyoxigraph's
            # results stay in the thread that asked); placing waits for this call only, so nothing this run places
            # is among the rows
            try:
                rows = self.backend.ox.query(load("seqs"))
            finally:
                self.recount_pinned.set()
            for n, row in enumerate(rows):
                seen.setdefault(row[0].value, set()).add(int(row[1].value))
                if n % 10_000 == 0 and self.stop.is_set():
                    return False
        except Exception:  # noqa: BLE001 - the store went away (closed) before the count ended
            if not self.stop.is_set():
                log.exception("recounting the genealogy's seqs failed; the figures count this run only")
        for line, seq in quarantined:
            seen.setdefault(line, set()).add(seq)
        self.recount_result = {line: (max(seqs), len(seqs)) for line, seqs in seen.items() if seqs}
        del seen
        return True

    def merge_recount(self) -> None:
        """Placer thread: add the start-up count to what this run counted (disjoint: an event of this run was judged
        new only if the store and the quarantine had no event with its seq)."""
        result = self.recount_result
        if result is None or self.ready.is_set():
            return
        for line, (highest, distinct) in result.items():
            seqs = self.line(line)
            seqs.highest = max(seqs.highest, highest)
            seqs.distinct += distinct
        self.figures_known()

    def state(self) -> str:
        return "ready" if self.ready.is_set() else "recounting after an unclean stop (figures of this run only)"

    def _recount_now(self, held: set[int]) -> None:
        for row in self.backend.select("seq_summary"):
            seqs = self.line(row["line"])
            seqs.highest, seqs.distinct = int(row["highest"]), int(row["distinct"])
        rows = self.backend.select("entity_count")
        self.index.entity_count = int(rows[0]["n"]) if rows else 0
        counted: set[tuple[str, int]] = set()
        for entry in self.quarantine:
            ident = self.entry_identity(entry)
            if entry.qid in held or ident is None or (ident[0], ident[1]) in counted:
                continue
            line, seq, _ = ident
            counted.add((line, seq))
            seqs = self.line(line)
            if seq > seqs.highest:
                seqs.highest = seq
                seqs.distinct += 1
            elif not stored_identities(self.backend, line, seq):
                seqs.distinct += 1

    def entry_identity(self, entry: Entry) -> tuple[str, int, str] | None:
        """The (line, seq, digest) of a quarantined event; worked out from the payload for entries kept before
        identities were (never for a malformed one)."""
        ident = entry.seq_identity()
        if ident is not None or entry.what != "event":
            return ident
        try:
            event = parse_event(entry.payload)
        except EventError:
            return None
        identity = f"{event.line}\x00{event.seq}\x00{event_digest(event)}"
        self.quarantine.set_identity(entry.qid, identity)
        return event.line, event.seq, identity.rsplit("\x00", 1)[1]

    def snapshot(self) -> dict[str, Any]:
        return {"lines": {line: {"highest": s.highest, "distinct": s.distinct} for line, s in self.lines.items()},
                "entities": self.index.entity_count}

    def save(self, *, clean: bool, snapshot: dict[str, Any] | None = None) -> None:
        """Write seqs.json atomically (a new file renamed over the old one)."""
        path = self.path()
        if path is None:
            return
        body = dict(snapshot if snapshot is not None else self.snapshot())
        body["clean"] = clean
        tmp = path.with_suffix(".json.tmp")
        try:
            tmp.write_text(json.dumps(body), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:  # the next start recounts; ingest goes on
            log.warning("could not write %s: %r", path, exc)
