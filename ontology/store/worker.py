"""The store's two threads: the placer judges and places queued items in batches, the writer writes each batch.

Why threads: `add_event` only puts an item on a queue and returns, so a slow graph never blocks ingest. Why two:
placing (Python) and writing (Oxigraph, which releases the GIL) overlap; the placer hands each batch to the writer and
goes on with the next one. At most one batch waits for the writer, so a slow store slows placing down instead of
piling triples up in memory. A failed write (a remote endpoint down, a full disk) is retried with a growing delay,
never dropped; only at close, once retries have taken several seconds, is the batch saved to `unwritten.nt` instead.

`flush()` waits until every item queued so far is placed *and* written.
"""

from __future__ import annotations

import logging
import threading
import time as _time
from dataclasses import dataclass, field
from queue import Empty, Full, Queue
from typing import Any

from ontology.builder import Triple
from ontology.quarantine import Quarantine
from ontology.store.backend import GraphBackend
from ontology.store.config import Counters, StoreConfig
from ontology.store.held import waits_for_seq
from ontology.store.identity import EventIdentity
from ontology.store.placement import Placer, plain
from ontology.store.seqstate import SeqState

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.2
"""First delay before a failed batch is written again, s; doubled after every failure up to RETRY_MAX_S."""
RETRY_MAX_S = 10.0
GIVE_UP_AT_CLOSE_S = 5.0
"""Once the delay has grown past this while the store is closing, the batch goes to unwritten.nt."""


@dataclass(eq=False)
class Worker:
    """The queue, the placer thread and the writer thread."""

    config: StoreConfig
    backend: GraphBackend
    placer: Placer
    identity: EventIdentity
    seqs: SeqState
    quarantine: Quarantine
    counters: Counters
    stop: threading.Event
    queue: Queue[tuple[str, Any]] = field(init=False)
    idle: threading.Event = field(init=False, default_factory=threading.Event)
    # at most one placed batch waits for the writer: (triples, items, seq figures, batch number); None = stop
    writes: Queue[tuple[list[Triple], int, dict[str, Any], int] | None] = field(
        init=False, default_factory=lambda: Queue(maxsize=1))

    def __post_init__(self) -> None:
        self.queue = Queue(maxsize=self.config.queue_max)
        self.idle.set()
        self.writer = threading.Thread(target=self._write_loop, name="genealogy-writer", daemon=True)
        self.placer_thread = threading.Thread(target=self._run, name="genealogy-placer", daemon=True)

    def start(self) -> None:
        self.writer.start()
        self.placer_thread.start()

    def enqueue(self, what: str, payload: Any) -> None:
        """Queue one item; past queue_max it is kept in the quarantine instead (never blocks, never lost)."""
        try:
            self.queue.put_nowait((what, payload))
        except Full:
            self.quarantine.add(f"backlog full ({self.config.queue_max} items waiting): kept here, not placed",
                                plain(payload), what=what)
            self.counters.quarantined += 1

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued so far is placed and written; True if it was within `timeout` seconds."""
        deadline = _time.monotonic() + timeout
        while _time.monotonic() < deadline:
            if self.queue.unfinished_tasks == 0 and self.idle.is_set():
                return True
            _time.sleep(0.005)
        return False

    def join(self) -> bool:
        """After `stop` is set: wait for both threads; True if both ended."""
        self.placer_thread.join(timeout=10.0)
        self.writer.join(timeout=60.0)
        return not self.placer_thread.is_alive() and not self.writer.is_alive()

    def _run(self) -> None:
        self.seqs.recount_pinned.wait()  # set at once, or within a millisecond of start-up after an unclean stop
        while not (self.stop.is_set() and self.queue.empty()):
            self.seqs.merge_recount()
            try:
                first = self.queue.get(timeout=0.1)
            except Empty:
                continue
            self.idle.clear()
            self.identity.batch_no += 1
            self.identity.forget_written()
            items = [first]
            while len(items) < self.config.batch_size:
                try:
                    items.append(self.queue.get_nowait())
                except Empty:
                    break
            triples: list[Triple] = []
            work = list(items)
            while work:
                what, payload = work.pop(0)
                try:
                    released = self.placer.place(what, payload, triples)
                except Exception as exc:  # the worker must survive anything one bad item does
                    log.exception("placing a %s failed", what)
                    self.quarantine.add(f"internal error while placing: {exc!r}", plain(payload), what=what)
                    self.counters.quarantined += 1
                    released = []
                for entry in released:
                    self.counters.released += 1
                    ident = entry.seq_identity()
                    if ident is not None:  # out of the quarantine, not placed yet: still a judged event
                        self.identity.remember(ident[0], ident[1], ident[2], None)
                    # an implausible event the line has caught up with is judged as new (its seq was not counted)
                    again = "recheck-" if waits_for_seq(entry) else "retry-"
                    work.append((again + entry.what, entry.payload))
            self.writes.put((triples, len(items), self.seqs.snapshot(), self.identity.batch_no))
        self.writes.put(None)

    def _write_loop(self) -> None:
        while True:
            job = self.writes.get()
            if job is None:
                return
            triples, count, snapshot, batch_no = job
            self._write_with_retry(triples)
            self.identity.written_no = batch_no  # the store answers for that batch's events now
            self.seqs.save(clean=False, snapshot=snapshot)  # what is written now is counted in seqs.json
            for _ in range(count):
                self.queue.task_done()  # flush() waits for this: placed *and* written
            if self.queue.unfinished_tasks == 0:
                self.idle.set()

    def _write_with_retry(self, triples: list[Triple]) -> None:
        delay = RETRY_FIRST_S
        while triples:
            try:
                self.backend.write(triples)
                self.counters.triples_written += len(triples)
                return
            except Exception as exc:  # remote endpoint down, disk full: keep the batch and try again
                self.counters.write_errors += 1
                self.counters.last_error = repr(exc)
                log.warning("writing %d triples failed (%r); retrying in %.1f s", len(triples), exc, delay)
                if self.stop.is_set() and delay > GIVE_UP_AT_CLOSE_S:
                    path = self.config.path / "unwritten.nt" if self.config.path else None
                    if path is not None:
                        with path.open("a", encoding="utf-8") as fh:
                            fh.writelines(f"{s} {p} {o} .\n" for s, p, o in triples)  # N-Triples terms
                    return
                _time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
