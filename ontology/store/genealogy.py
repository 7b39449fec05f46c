"""`GenealogyStore`: places trace events in an RDF graph in the background and answers genealogy questions.

This module composes the parts (see ``__init__.py`` for the list) and holds the store's life: opening (the backend, the
quarantine, the seq figures, the ID index rebuilt in the background), the calls that never block ingest
(`add_event`, `add_prediction`, `add_audit`: queued for the placer thread), status, and an orderly close. The
answers themselves are views.py's; the rules, placement.py's.

Restart: the per-line seq figures come from `seqs.json` (seqstate.py) and the in-memory ID index is rebuilt by a
background thread (index.py), so the constructor returns at once; until the index is complete, a lookup it cannot
answer is a point query on the store.
"""

from __future__ import annotations

import threading
import time as _time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from rdflib import Graph, URIRef

from ontology.builder import GraphBuilder
from ontology.events import EventError, TraceEvent, parse_event
from ontology.lineage import Lineage
from ontology.quarantine import Quarantine, UnresolvedReferences
from ontology.sandbox import QueryEngine
from ontology.store.backend import GraphBackend
from ontology.store.config import Counters, DewPointPort, StoreConfig
from ontology.store.held import HeldEvents
from ontology.store.identity import EventIdentity
from ontology.store.index import EntityIndex, IndexRef
from ontology.store.intake import audit_item, prediction_item
from ontology.store.placement import Placer
from ontology.store.seqstate import SeqState
from ontology.store.views import GenealogyViews
from ontology.store.worker import Worker


class GenealogyStore:
    """Persistent cell genealogy; see the package docstring. Use as a context manager or call close()."""

    def __init__(self, config: StoreConfig | None = None, *, dew_point_port: DewPointPort | None = None) -> None:
        self.config = config or StoreConfig()
        self.builder = GraphBuilder(self.config.base_iri)
        self._backend = GraphBackend(self.config)
        self._views = GenealogyViews(self._backend, self.builder, dew_point_port)
        qpath = self.config.path / "quarantine.jsonl" if self.config.path is not None else None
        self.quarantine = Quarantine(qpath, self.config.quarantine_max_entries)
        self.unresolved = UnresolvedReferences(self.config.unresolved_max_ids)
        self.lineage = Lineage(self.config.lineage_max_ids)
        self.counters = Counters()
        self._stop = threading.Event()
        self._entities = EntityIndex(self._backend, self.unresolved, self._stop)
        self._seqs = SeqState(self.config, self._backend, self.quarantine, self._entities, self._stop)
        self._identity = EventIdentity(self._backend, self.builder, self._seqs, self.quarantine)
        self._held = HeldEvents()
        placer = Placer(self.config, self.builder, self._backend, self._entities, self._seqs, self._identity,
                        self._held, self.quarantine, self.counters)
        self._worker = Worker(self.config, self._backend, placer, self._identity, self._seqs, self.quarantine,
                              self.counters, self._stop)
        # user SPARQL and export pages: query processes over snapshots, never the live RocksDB directory (sandbox.py)
        self.queries = QueryEngine(self._backend.graph, self._backend.ox, self._backend.lock, self.config.path,
                                   lambda: self.counters.triples_written)
        self.counters.triples_written += self._backend.ensure_vocabulary()
        self._seqs.load(held=self._held.rebuild(self.quarantine))
        self._indexer = threading.Thread(target=self._start_up, name="genealogy-index", daemon=True)
        if self._backend.ox is None and self.config.backend == "memory":
            self._start_up()  # an in-memory graph starts empty: nothing to wait for
        else:
            self._indexer.start()
        self._worker.start()

    # ------------------------------------------------------------------ lifecycle
    def _start_up(self) -> None:
        """Background start-up work: the seq recount after an unclean stop, then the index."""
        if self._seqs.recount_in_background():
            self._build_index()

    def _build_index(self) -> None:
        """Fill the ID index from the store (index.py); a subclass may hold it back (tests)."""
        self._entities.build()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued so far is placed and written; True if it was within `timeout` seconds."""
        return self._worker.flush(timeout)

    def close(self) -> None:
        self.flush(timeout=60.0)
        self._stop.set()
        threads_ended = self._worker.join()
        if self._indexer.is_alive():
            self._indexer.join(timeout=60.0)  # it stops within 10 000 rows; it must let go of the store first
        if threads_ended and self._seqs.ready.is_set():
            self._seqs.save(clean=True)
        self.queries.close()
        # the engine holds the pyoxigraph store: let go of it too, or RocksDB's lock outlives close() (a restart in
        # the same process could not reopen the directory)
        self.queries = QueryEngine(Graph(), None, self._backend.lock, None, lambda: 0)
        self._backend.close()

    def __enter__(self) -> GenealogyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ ingest API (never blocks)
    def add_event(self, event: Mapping[str, Any] | TraceEvent) -> None:
        """Queue one trace event (the contract's record, or its JSON) and return at once; problems end up in the
        quarantine. A created entity's inputs go to `lineage` at once (a JSON event is parsed for it here, and again
        by the placer, which keeps what it was given)."""
        record = event if isinstance(event, TraceEvent) else _parsed(event)
        if record is not None:
            self.lineage.add(record)
        self._worker.enqueue("event", event)

    def add_prediction(self, entity_id: str, model_name: str, model_version: str, outputs: Mapping[str, float],
                       std: Mapping[str, float] | None = None, time: datetime | str | None = None,
                       *, line: str | None = None) -> None:
        """Record what a model predicted about an entity (shown in its genealogy with the model version).

        Arguments are checked now (a caller's mistake raises ValueError); an entity not in the graph yet is waited for.
        """
        self._worker.enqueue("prediction", prediction_item(entity_id, model_name, model_version, outputs, std, time,
                                                           line))

    def add_audit(self, target: str, who: str, when: datetime | str, before: Any, after: Any, why: str,
                  model_version: str | None = None, *, line: str | None = None) -> None:
        """Record a recommendation / setpoint decision. `target` is a trace ID (linked to the entity) or a setpoint
        name such as an OPC UA node path (kept as text)."""
        self._worker.enqueue("audit", audit_item(target, who, when, before, after, why, model_version, line))

    # ------------------------------------------------------------------ state
    def seq_state(self) -> str:
        return self._seqs.state()

    def wait_seq_state(self, timeout: float | None = None) -> bool:
        """Wait until the per-line seq figures are known (after an unclean stop they are recounted first)."""
        return self._seqs.ready.wait(timeout)

    def index_state(self) -> str:
        """"complete" once the in-memory ID index holds every entity, else "building" (or "failed: ...")."""
        return self._entities.state()

    def wait_index(self, timeout: float | None = None) -> bool:
        """Wait until the ID index is complete (tests and benchmarks; the store serves before)."""
        return self._entities.ready.wait(timeout)

    def status(self) -> dict[str, Any]:
        """Counters and per-line seq figures, all O(1) per line (a few fields, never a scan)."""
        lines = {name: {"highest_seq": s.highest, "received": s.distinct, "missing_seq": s.missing,
                        "held_implausible": self._held.count(name)} for name, s in list(self._seqs.lines.items())}
        c = self.counters
        return {"backend": self.config.backend, "path": str(self.config.path) if self.config.path else None,
                "base_iri": self.builder.base_iri, "queued": self._worker.queue.qsize(), "received": c.received,
                "placed": c.placed, "duplicates": c.duplicates, "seq_reused": c.seq_reused,
                "implausible_seq": c.implausible_seq, "quarantined_now": len(self.quarantine),
                "quarantine_dropped": self.quarantine.dropped,
                "released_from_quarantine": c.released, "predictions": c.predictions, "audits": c.audits,
                "write_errors": c.write_errors, "last_error": c.last_error, "triples_written": c.triples_written,
                "entities": self._entities.entity_count, "index": self.index_state(), "seq_state": self.seq_state(),
                "lines": lines,
                "max_seq_jump": self.config.max_seq_jump, "seq_tracking_bytes": self.seq_tracking_bytes(),
                "unresolved_references": self.unresolved.summary(self.config.unresolved_grace_s, _time.monotonic())}

    def seq_tracking_bytes(self) -> int:
        """Memory the seq tracking holds: the per-line windows (fixed) and the recent out-of-window judgements."""
        return sum(s.memory_bytes() for s in list(self._seqs.lines.values())) + self._identity.memory_bytes()

    # ------------------------------------------------------------------ references from samples
    def note_reference(self, line: str, entity_id: str, trace_key: str, source: str) -> bool:
        """A sample named `entity_id` (under `trace_key`, e.g. cell_id): True if the genealogy knows it. An unknown ID
        is listed in the unresolved-references view (status()["unresolved_references"]) until a trace event creates
        it; the sample itself is the caller's to keep. O(1): a dict lookup (a store query never runs here)."""
        return self._entities.note_reference(line, entity_id, trace_key, source)

    def unresolved_over_grace(self) -> int:
        """How many IDs named by samples have stayed unknown longer than `unresolved_grace_s` (for an alarm)."""
        return self.unresolved.over_grace(self.config.unresolved_grace_s, _time.monotonic())

    # ------------------------------------------------------------------ queries (views.py, the backend)
    @property
    def graph(self) -> Graph:
        return self._backend.graph

    @property
    def dew_point_port(self) -> DewPointPort | None:
        return self._views.dew_point_port

    @dew_point_port.setter
    def dew_point_port(self, port: DewPointPort | None) -> None:
        self._views.dew_point_port = port

    def find(self, entity_id: str, line: str | None = None) -> tuple[URIRef, str, str]:
        """(IRI, line, type) of a trace ID; UnknownIdError if absent, QueryInputError if the ID is malformed."""
        return self._views.find(entity_id, line)

    def genealogy(self, entity_id: str, line: str | None = None) -> dict[str, Any]:
        """Upstream trace of an entity (views.GenealogyViews.genealogy)."""
        return self._views.genealogy(entity_id, line)

    def genealogy_graph(self, entity_id: str, line: str | None = None) -> Graph:
        """The genealogy of an entity as RDF (views.GenealogyViews.genealogy_graph)."""
        return self._views.genealogy_graph(entity_id, line)

    def downstream(self, entity_id: str, from_m: float | None = None, to_m: float | None = None,
                   line: str | None = None) -> dict[str, Any]:
        """Downstream track of an entity, or of a stretch of a roll (views.GenealogyViews.downstream)."""
        return self._views.downstream(entity_id, from_m, to_m, line)

    def cells_dew_point_above(self, limit_C: float, *, check_samples: bool = False,
                              max_port_calls: int = 10_000) -> dict[str, Any]:
        """Cells assembled while the dry-room dew point exceeded `limit_C` (views.GenealogyViews)."""
        return self._views.cells_dew_point_above(limit_C, check_samples=check_samples, max_port_calls=max_port_calls)

    def sparql(self, text: str, *, max_results: int = 10_000, timeout_s: float = 10.0,
               on_done: Callable[[], None] | None = None) -> Any:
        """A user's read-only SPARQL query (SELECT, ASK, CONSTRUCT, DESCRIBE) with a time and a result limit; safe
        beside the writer and from many threads (see `ontology.sandbox.QueryEngine`). `on_done` is called once the
        query's work has really ended (a thread backend's query may outlive its time limit).

        Raises sandbox.ReadOnlyError for updates, QuerySyntaxError for bad queries, QueryTimeout past the limit."""
        return self.queries.run(text, max_results=max_results, timeout_s=timeout_s, on_done=on_done)

    def export(self, fmt: str = "turtle") -> bytes:
        """The whole graph, serialised (turtle, nt, json-ld, xml)."""
        return self._backend.export(fmt)

    def __len__(self) -> int:
        return len(self._backend)

    # ------------------------------------------------------------------ for tests and benchmarks
    def _select(self, name: str, **bindings: Any) -> list[dict[str, Any]]:
        """One of the store's own queries (ontology/queries/<name>.rq), as the views run it."""
        return self._backend.select(name, **bindings)

    @property
    def _index(self) -> dict[str, IndexRef]:
        return self._entities.entries

    @property
    def _queue(self) -> Any:
        return self._worker.queue


def _parsed(event: Any) -> TraceEvent | None:
    try:
        return parse_event(event)
    except EventError:
        return None
