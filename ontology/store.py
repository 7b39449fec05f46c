"""The genealogy store: places trace events in an RDF graph in the background and answers genealogy questions.

Backends (one rdflib interface): `oxigraph` (persistent pyoxigraph store through oxrdflib; SPARQL runs natively in
Oxigraph), `memory` (rdflib's in-memory store; for tests and as the benchmark baseline) and `sparql` (a remote
SPARQL 1.1 query/update endpoint through rdflib's SPARQLUpdateStore, for a plant-wide store).

`add_event` only puts the dict on a queue and returns: a worker thread checks, places and writes events in batches,
so a slow graph never blocks ingest. An event that cannot be placed is quarantined with the reason; one that waits
for an input that has not been created yet is placed automatically when it is.

An event is identified by (line, seq, digest of its content), not by its seq alone: a replay of the same event is a
duplicate (counted, nothing changes), a different event that reuses a seq is judged on its own (placed as its own step
`event/<seq>-<digest>`, or quarantined if it conflicts), so a stray or forged event cannot hide the line's real one.
Recent seqs are tracked in a fixed-size window per line (ontology/seqwindow.py); older ones are looked up in the store.
An event whose seq jumps more than `max_seq_jump` ahead of its line is quarantined as implausible, and placed when the
line gets that far.

Restart: the per-line seq figures come from `seqs.json` (written after every batch; recomputed by a scan only after
an unclean stop) and the in-memory ID index is rebuilt by a background thread, so the constructor returns at once;
until the index is complete, a lookup it cannot answer is a point query on the store.
"""

from __future__ import annotations

import gc
import hashlib
import heapq
import json
import logging
import os
import queue
import threading
import time as _time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, cast
from typing import Literal as TypingLiteral

from rdflib import XSD, Graph, Literal, URIRef
from rdflib.graph import DATASET_DEFAULT_GRAPH_ID
from rdflib.query import ResultRow
from rdflib.term import Node

from ontology import iris
from ontology.builder import GraphBuilder, Triple, event_digest, event_ref, to_ox, to_rdflib, vocabulary_triples
from ontology.events import ID_PATTERN, EventError, TraceEvent, check_id, check_number, parse_event, parse_time
from ontology.iris import PL
from ontology.oxstore import inline_values, literal_python, ox_select
from ontology.quarantine import Entry, Quarantine, UnresolvedReferences
from ontology.queries import load
from ontology.sandbox import QueryEngine
from ontology.seqwindow import DEFAULT_SIZE, LineSeqs, Seen

log = logging.getLogger(__name__)

Backend = TypingLiteral["oxigraph", "memory", "sparql"]
DewPointPort = Callable[[str, datetime, datetime], "float | None"]
"""Answers "highest dew point (degC) on this line between start and end" from the time-series store, or None."""

ROLL_TYPES: Final = ("CoatedRoll", "CalenderedRoll", "SlitCoil")


class UnknownIdError(LookupError):
    """The ID (or ID on that line) is not in the graph; the message says what was not found."""


class QueryInputError(ValueError):
    """A query argument is malformed; the message says why (maps to HTTP 400)."""


@dataclass
class StoreConfig:
    path: Path | None = None
    backend: Backend = "oxigraph"
    base_iri: str = iris.DEFAULT_BASE_IRI
    query_endpoint: str | None = None
    update_endpoint: str | None = None
    batch_size: int = 2000
    queue_max: int = 1_000_000
    source_cache: int = 50_000
    bulk_threshold: int = 50_000  # triples per batch from which Oxigraph writes with bulk_extend; 0 = never
    # an event whose seq is more than this ahead of the highest seq of its line (0 for a line not seen yet) is held in
    # the quarantine as implausible and placed when the line reaches it; 0 = no check. A twin first attached to a line
    # whose counter is already past this needs it raised for that first start.
    max_seq_jump: int = 1_000_000
    # recent seqs per line judged in memory (16 bytes each); older: looked up in the store
    seq_window: int = DEFAULT_SIZE
    unresolved_max_ids: int = 10_000  # IDs listed in the unresolved-references view (samples naming unknown IDs)
    quarantine_max_entries: int = 100_000  # events held in the quarantine; the oldest is dropped (counted) past it
    unresolved_grace_s: float = 600.0  # an ID unknown for longer than this counts as unresolved, not just early


@dataclass
class _Counters:
    received: int = 0
    placed: int = 0
    duplicates: int = 0
    quarantined: int = 0
    released: int = 0
    predictions: int = 0
    audits: int = 0
    write_errors: int = 0
    triples_written: int = 0
    seq_reused: int = 0  # events with a seq another event had (each judged on its own)
    implausible_seq: int = 0
    last_error: str | None = None


def _key(line: str, entity_id: str) -> str:
    return f"{line}\x00{entity_id}"


def _held_key(line: str, seq: int) -> str:
    """The quarantine's waiting key of an implausible event: released when the line reaches `seq`."""
    return f"{line}\x00seq>={seq}"


IndexRef = tuple[str, "int | str"]  # (type, seq of the creating event | "<seq>-<digest>"; 0 = received lot)
SEQ_STATE_FILE: Final = "seqs.json"


class GenealogyStore:
    """Persistent cell genealogy; see the module docstring. Use as a context manager or call close()."""

    def __init__(self, config: StoreConfig | None = None, *, dew_point_port: DewPointPort | None = None) -> None:
        self.config = config or StoreConfig()
        self.builder = GraphBuilder(self.config.base_iri)
        self.dew_point_port = dew_point_port
        self.graph, self._ox = self._open_graph()
        # pyoxigraph reads from snapshots and is safe beside a writer; rdflib's memory store and the HTTP store are not
        self._lock: AbstractContextManager[Any] = threading.RLock() if self._ox is None else nullcontext()
        qpath = self.config.path / "quarantine.jsonl" if self.config.path is not None else None
        self.quarantine = Quarantine(qpath, self.config.quarantine_max_entries)
        self.unresolved = UnresolvedReferences(self.config.unresolved_max_ids)
        self._index: dict[str, IndexRef] = {}  # "line\0id" -> (type, creating event); complete once _index_ready
        self._index_ready = threading.Event()
        self._index_error: str | None = None
        self._entity_count = 0
        self._seqs: dict[str, LineSeqs] = {}
        # events judged in batches not written yet (the store cannot answer for them; the window may have moved on):
        # (line, seq) -> (batch number, [(digest, owns the plain step IRI)]); at most the two batches in flight
        self._unwritten: dict[tuple[str, int], tuple[int, list[tuple[str, bool]]]] = {}
        self._batch_no = 0  # placer: the batch being placed
        self._written_no = 0  # writer: the last batch written
        self._held: dict[str, list[tuple[int, int]]] = {}  # line -> heap of (release at seq, quarantine id)
        self._lines: set[str] = set()
        self._sources: OrderedDict[str, tuple[tuple[Any, ...], tuple[Any, ...]]] = OrderedDict()  # pyoxigraph IRIs
        self.counters = _Counters()
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=self.config.queue_max)
        self._stop = threading.Event()
        # user SPARQL and export pages: query processes over snapshots, never the live RocksDB directory (sandbox.py)
        self.queries = QueryEngine(self.graph, self._ox, self._lock, self.config.path,
                                   lambda: self.counters.triples_written)
        self._idle = threading.Event()
        self._idle.set()
        self._ensure_vocabulary()
        self._seq_ready = threading.Event()  # the per-line seq figures are complete (after a recount: merged)
        self._recount: list[tuple[str, int]] | None = None  # to recount: the quarantined seqs at start-up
        self._recount_pinned = threading.Event()  # the recount's query has its snapshot: placing may start
        self._recount_pinned.set()
        self._recount_result: dict[str, tuple[int, int]] | None = None  # line -> (highest, distinct) at start-up
        self._stale_highest: dict[str, int] = {}
        self._load_seq_state()
        self._indexer = threading.Thread(target=self._start_up, name="genealogy-index", daemon=True)
        if self._ox is None and self.config.backend == "memory":
            self._start_up()  # an in-memory graph starts empty: nothing to wait for
        else:
            self._indexer.start()
        # placing (Python) and writing (Oxigraph, which releases the GIL) overlap: the placer hands each batch to the
        # writer and goes on with the next one; at most one batch waits, so a slow store slows placing down instead
        # of piling triples up in memory
        self._writes: queue.Queue[tuple[list[Triple], int, dict[str, Any], int] | None] = queue.Queue(maxsize=1)
        self._writer = threading.Thread(target=self._write_loop, name="genealogy-writer", daemon=True)
        self._writer.start()
        self._worker = threading.Thread(target=self._run, name="genealogy-placer", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ lifecycle
    def _open_graph(self) -> tuple[Graph, Any]:
        cfg = self.config
        if cfg.backend == "oxigraph":
            from ontology.oxstore import BoundOxigraphStore

            store = BoundOxigraphStore()
            if cfg.path is not None:
                cfg.path.mkdir(parents=True, exist_ok=True)
                store.open(str(cfg.path / "oxigraph"))
            graph = Graph(store=store, identifier=DATASET_DEFAULT_GRAPH_ID)
            return graph, store._inner
        if cfg.backend == "memory":
            if cfg.path is not None:
                cfg.path.mkdir(parents=True, exist_ok=True)
            return Graph(), None
        if cfg.backend == "sparql":
            if not cfg.query_endpoint:
                raise ValueError("backend 'sparql' needs query_endpoint (and update_endpoint, if different)")
            from rdflib.plugins.stores.sparqlstore import SPARQLUpdateStore

            sparql_store = SPARQLUpdateStore(cfg.query_endpoint, cfg.update_endpoint or cfg.query_endpoint)
            if cfg.path is not None:
                cfg.path.mkdir(parents=True, exist_ok=True)
            graph = Graph(store=sparql_store, identifier=DATASET_DEFAULT_GRAPH_ID)
            # rdflib would send the identifier as default-graph-uri=urn:x-rdflib:default with every query, i.e. ask
            # the endpoint for an empty named graph; "union" makes it send no dataset, so the endpoint's default
            # graph (where _write inserts) is queried
            graph.default_union = True
            return graph, None
        raise ValueError(f"backend must be oxigraph, memory or sparql, got {cfg.backend!r}")

    def _ensure_vocabulary(self) -> None:
        """The project TBox lives in the same graph so that exported data and /api/sparql users can read it."""
        probe = (URIRef(str(PL)[:-1]), None, None)
        with self._lock:
            if next(iter(self.graph.triples(probe)), None) is None:
                self._write(vocabulary_triples())

    # ------------------------------------------------------------------ start-up state
    def _seq_state_path(self) -> Path | None:
        """seqs.json beside a persistent store (not for the in-memory graph, which starts empty every time)."""
        if self.config.path is None or self.config.backend == "memory":
            return None
        return self.config.path / SEQ_STATE_FILE

    def _line_seqs(self, line: str) -> LineSeqs:
        seqs = self._seqs.get(line)
        if seqs is None:
            seqs = self._seqs[line] = LineSeqs(self.config.seq_window)
        return seqs

    def _load_seq_state(self) -> None:
        """Per line: highest seq and how many different seqs were received (placed or quarantined), and the entity
        count. After a clean stop they are read from seqs.json (instant). Otherwise (a crash, or a store from before
        seqs.json) the seqs of the store as it is now and of the quarantine are recounted in the background while
        events are placed: until the count is merged, every event is judged by the store (not the window) and the
        figures of this run are added to the count. Implausible events held in the quarantine are not counted (the
        line has not got there); their release heap is rebuilt here."""
        path = self._seq_state_path()
        state: dict[str, Any] | None = None
        if path is not None and path.exists():
            try:
                state = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                state = None
        held: set[int] = set()
        for entry in self.quarantine:
            for key in entry.waiting_for:
                line, _, rest = key.partition("\x00")
                if rest.startswith("seq>="):
                    heapq.heappush(self._held.setdefault(line, []), (int(rest[5:]), entry.qid))
                    held.add(entry.qid)
        if state is not None and state.get("clean") and isinstance(state.get("lines"), dict):
            for line, numbers in state["lines"].items():
                seqs = self._line_seqs(line)
                seqs.highest, seqs.distinct = int(numbers["highest"]), int(numbers["distinct"])
            self._entity_count = int(state.get("entities", 0))
            self._seq_figures_known()
            return
        if state is not None and isinstance(state.get("lines"), dict):  # what the last batch before the stop saw
            self._stale_highest = {line: int(n["highest"]) for line, n in state["lines"].items()}
        quarantined = [ident[:2] for entry in self.quarantine if entry.qid not in held
                       and (ident := self._entry_identity(entry)) is not None]
        if self._ox is None:  # an empty memory graph, or a remote store: counted here, synchronously
            self._recount_seqs(held)
            self._seq_figures_known()
            return
        rows = self._select("entity_count")
        self._entity_count = int(rows[0]["n"]) if rows else 0
        self._recount = quarantined
        self._recount_pinned.clear()

    def _seq_figures_known(self) -> None:
        for line, seqs in self._seqs.items():
            seqs.low = seqs.highest  # nothing below is in the window: older seqs are looked up in the store
            self._lines.add(line)
        self._save_seq_state(clean=False)  # until close() says otherwise, a crash means: recount at the next start
        self._seq_ready.set()

    def _start_up(self) -> None:
        """Background start-up work: the seq recount after an unclean stop, then the index."""
        if self._recount is not None:
            quarantined, self._recount = self._recount, None
            seen: dict[str, set[int]] = {}
            try:
                # a SELECT without aggregates is evaluated lazily over the store as it is at this call (pyoxigraph's
                # results stay in the thread that asked); placing waits for this call only, so nothing this run places
                # is among the rows
                try:
                    rows = self._ox.query(load("seqs"))
                finally:
                    self._recount_pinned.set()
                for n, row in enumerate(rows):
                    seen.setdefault(row[0].value, set()).add(int(row[1].value))
                    if n % 10_000 == 0 and self._stop.is_set():
                        return
            except Exception:  # noqa: BLE001 - the store went away (closed) before the count ended
                if not self._stop.is_set():
                    log.exception("recounting the genealogy's seqs failed; the figures count this run only")
            for line, seq in quarantined:
                seen.setdefault(line, set()).add(seq)
            self._recount_result = {line: (max(seqs), len(seqs)) for line, seqs in seen.items() if seqs}
            del seen
        self._build_index()

    def _merge_recount(self) -> None:
        """Placer thread: add the start-up count to what this run counted (disjoint: an event of this run was judged
        new only if the store and the quarantine had no event with its seq)."""
        result = self._recount_result
        if result is None or self._seq_ready.is_set():
            return
        for line, (highest, distinct) in result.items():
            seqs = self._line_seqs(line)
            seqs.highest = max(seqs.highest, highest)
            seqs.distinct += distinct
        self._seq_figures_known()

    def seq_state(self) -> str:
        return "ready" if self._seq_ready.is_set() else "recounting after an unclean stop (figures of this run only)"

    def wait_seq_state(self, timeout: float | None = None) -> bool:
        """Wait until the per-line seq figures are known (after an unclean stop they are recounted first)."""
        return self._seq_ready.wait(timeout)

    def _recount_seqs(self, held: set[int]) -> None:
        for row in self._select("seq_summary"):
            seqs = self._line_seqs(row["line"])
            seqs.highest, seqs.distinct = int(row["highest"]), int(row["distinct"])
        rows = self._select("entity_count")
        self._entity_count = int(rows[0]["n"]) if rows else 0
        counted: set[tuple[str, int]] = set()
        for entry in self.quarantine:
            ident = self._entry_identity(entry)
            if entry.qid in held or ident is None or (ident[0], ident[1]) in counted:
                continue
            line, seq, _ = ident
            counted.add((line, seq))
            seqs = self._line_seqs(line)
            if seq > seqs.highest:
                seqs.highest = seq
                seqs.distinct += 1
            elif not self._stored_identities(line, seq):
                seqs.distinct += 1

    def _entry_identity(self, entry: Entry) -> tuple[str, int, str] | None:
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

    def _seq_snapshot(self) -> dict[str, Any]:
        return {"lines": {line: {"highest": s.highest, "distinct": s.distinct} for line, s in self._seqs.items()},
                "entities": self._entity_count}

    def _save_seq_state(self, *, clean: bool, snapshot: dict[str, Any] | None = None) -> None:
        """Write seqs.json atomically (a new file renamed over the old one)."""
        path = self._seq_state_path()
        if path is None:
            return
        body = dict(snapshot if snapshot is not None else self._seq_snapshot())
        body["clean"] = clean
        tmp = path.with_suffix(".json.tmp")
        try:
            tmp.write_text(json.dumps(body), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:  # the next start recounts; ingest goes on
            log.warning("could not write %s: %r", path, exc)

    def _build_index(self) -> None:
        """Fill the ID index from the store (in the background after a restart). Lookups meanwhile go to the store
        (`_lookup`); what the placer adds in the meantime is newer than the store's snapshot and is never replaced."""
        try:
            if self._ox is not None:
                solutions = self._ox.query(load("index"))
                names = [v.value for v in solutions.variables]
                col = {n: i for i, n in enumerate(names)}
                i_line, i_id, i_type, i_seq, i_event = (col[n] for n in ("line", "id", "type", "seq", "event"))
                for n, row in enumerate(solutions):
                    event = row[i_event]
                    seq = row[i_seq]
                    ref: int | str = event.value if event is not None else int(seq.value) if seq is not None else 0
                    line = row[i_line].value
                    self._index.setdefault(f"{line}\x00{row[i_id].value}", (row[i_type].value, ref))
                    self._lines.add(line)
                    if n % 10_000 == 0 and self._stop.is_set():
                        return
            else:
                for row in self._select("index"):
                    ref = row.get("event") or int(row.get("seq", 0) or 0)
                    self._index.setdefault(_key(row["line"], row["id"]), (row["type"], ref))
                    self._lines.add(row["line"])
        except Exception as exc:  # noqa: BLE001 - the store went away (closed): lookups keep going to the store
            if not self._stop.is_set():
                log.exception("building the genealogy ID index failed; lookups go to the store")
                self._index_error = repr(exc)
            return
        self._index_ready.set()
        for key in self.unresolved.listed():  # samples that named IDs the partial index did not hold yet
            if key in self._index:
                self.unresolved.resolve(key)

    def index_state(self) -> str:
        """"complete" once the in-memory ID index holds every entity, else "building" (or "failed: ...")."""
        if self._index_ready.is_set():
            return "complete"
        return f"failed: {self._index_error}" if self._index_error else "building"

    def wait_index(self, timeout: float | None = None) -> bool:
        """Wait until the ID index is complete (tests and benchmarks; the store serves before)."""
        return self._index_ready.wait(timeout)

    def _lookup(self, line: str, entity_id: str) -> IndexRef | None:
        """(type, creating event) of an entity: from the index, or while it is being built from the store."""
        key = _key(line, entity_id)
        found = self._index.get(key)
        if found is not None or self._index_ready.is_set():
            return found
        rows = self._select("lookup_entity", id=Literal(entity_id), line=Literal(line))
        if not rows:
            return None
        row = rows[0]
        ref = row.get("event") or int(row.get("seq", 0) or 0)
        return self._index.setdefault(key, (row["type"], ref))

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued so far is placed and written; True if it was within `timeout` seconds."""
        deadline = _time.monotonic() + timeout
        while _time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0 and self._idle.is_set():
                return True
            _time.sleep(0.005)
        return False

    def close(self) -> None:
        self.flush(timeout=60.0)
        self._stop.set()
        self._worker.join(timeout=10.0)
        self._writer.join(timeout=60.0)
        if self._indexer.is_alive():
            self._indexer.join(timeout=60.0)  # it stops within 10 000 rows; it must let go of the store first
        if not self._worker.is_alive() and not self._writer.is_alive() and self._seq_ready.is_set():
            self._save_seq_state(clean=True)
        self.queries.close()
        # the engine holds the pyoxigraph store: let go of it too, or RocksDB's lock outlives close() (a restart in
        # the same process could not reopen the directory)
        self.queries = QueryEngine(Graph(), None, self._lock, None, lambda: 0)
        if self._ox is not None:
            self._ox.flush()
            # release RocksDB's lock now (a restart in the same process must be able to reopen the directory)
            self._ox = None
            self.graph.store.close()
            self.graph = Graph()
            gc.collect()

    def __enter__(self) -> GenealogyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ ingest API (never blocks)
    def add_event(self, event: Mapping[str, Any] | TraceEvent) -> None:
        """Queue one trace event (the contract's record, or its JSON) and return at once; problems end up in the
        quarantine."""
        self._enqueue("event", event)

    def add_prediction(self, entity_id: str, model_name: str, model_version: str, outputs: Mapping[str, float],
                       std: Mapping[str, float] | None = None, time: datetime | str | None = None,
                       *, line: str | None = None) -> None:
        """Record what a model predicted about an entity (shown in its genealogy with the model version).

        Arguments are checked now (a caller's mistake raises ValueError); an entity not in the graph yet is waited for.
        """
        check_id(entity_id, "entity_id")
        for name, text in (("model_name", model_name), ("model_version", model_version)):
            if not isinstance(text, str) or not text.strip() or len(text) > 128:
                raise EventError(f"'{name}' must be a non-empty string of at most 128 characters, got {text!r}")
        if not isinstance(outputs, Mapping) or not outputs:
            raise EventError("'outputs' must be a non-empty mapping of output name -> number")
        clean_out = {str(k): check_number(v, f"outputs.{k}") for k, v in outputs.items()}
        clean_std = {str(k): check_number(v, f"std.{k}") for k, v in (std or {}).items()}
        unknown = set(clean_std) - set(clean_out)
        if unknown:
            raise EventError(f"'std' has keys that are not outputs: {sorted(unknown)}")
        if any(v < 0 for v in clean_std.values()):
            raise EventError("'std' values must be >= 0")
        when = _as_time(time, "time")
        self._enqueue("prediction", {"entity_id": entity_id, "model_name": model_name, "model_version": model_version,
                                     "outputs": clean_out, "std": clean_std, "time": when.isoformat(), "line": line})

    def add_audit(self, target: str, who: str, when: datetime | str, before: Any, after: Any, why: str,
                  model_version: str | None = None, *, line: str | None = None) -> None:
        """Record a recommendation / setpoint decision. `target` is a trace ID (linked to the entity) or a setpoint
        name such as an OPC UA node path (kept as text)."""
        if not isinstance(target, str) or not target.strip() or len(target) > 256 or not target.isprintable():
            raise EventError("'target' must be a trace ID or a setpoint name (printable, <= 256 chars), "
                             f"got {target!r}")
        for name, text in (("who", who), ("why", why)):
            if not isinstance(text, str) or not text.strip() or len(text) > 2000:
                raise EventError(f"'{name}' must be a non-empty string, got {text!r}")
        if model_version is not None and (not isinstance(model_version, str) or not model_version.strip()):
            raise EventError(f"'model_version' must be a non-empty string or None, got {model_version!r}")
        for name, value in (("before", before), ("after", after)):
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError):
                raise EventError(f"'{name}' must be JSON-serialisable without NaN, got {value!r}") from None
        stamp = _as_time(when, "when")
        self._enqueue("audit", {"target": target, "who": who, "when": stamp.isoformat(), "before": before,
                                "after": after, "why": why, "model_version": model_version, "line": line})

    def _enqueue(self, what: str, payload: Any) -> None:
        try:
            self._queue.put_nowait((what, payload))
        except queue.Full:
            self.quarantine.add(f"backlog full ({self.config.queue_max} items waiting): kept here, not placed",
                                _plain(payload), what=what)
            self.counters.quarantined += 1

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        self._recount_pinned.wait()  # set at once, or within a millisecond of start-up after an unclean stop
        while not (self._stop.is_set() and self._queue.empty()):
            self._merge_recount()
            try:
                first = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            self._idle.clear()
            self._batch_no += 1
            self._forget_written()
            items = [first]
            while len(items) < self.config.batch_size:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            triples: list[Triple] = []
            work = list(items)
            while work:
                what, payload = work.pop(0)
                try:
                    released = self._place(what, payload, triples)
                except Exception as exc:  # the worker must survive anything one bad item does
                    log.exception("placing a %s failed", what)
                    self.quarantine.add(f"internal error while placing: {exc!r}", _plain(payload), what=what)
                    self.counters.quarantined += 1
                    released = []
                for entry in released:
                    self.counters.released += 1
                    ident = entry.seq_identity()
                    if ident is not None:  # out of the quarantine, not placed yet: still a judged event
                        self._remember(ident[0], ident[1], ident[2], None)
                    # an implausible event the line has caught up with is judged as new (its seq was not counted)
                    again = "recheck-" if any(k.partition("\x00")[2].startswith("seq>=") for k in entry.waiting_for) \
                        else "retry-"
                    work.append((again + entry.what, entry.payload))
            self._writes.put((triples, len(items), self._seq_snapshot(), self._batch_no))
        self._writes.put(None)

    def _write_loop(self) -> None:
        while True:
            job = self._writes.get()
            if job is None:
                return
            triples, count, snapshot, batch_no = job
            self._write_with_retry(triples)
            self._written_no = batch_no  # the store answers for that batch's events now
            self._save_seq_state(clean=False, snapshot=snapshot)  # what is written now is counted in seqs.json
            for _ in range(count):
                self._queue.task_done()  # flush() waits for this: placed *and* written
            if self._queue.unfinished_tasks == 0:
                self._idle.set()

    def _write_with_retry(self, triples: list[Triple]) -> None:
        delay = 0.2
        while triples:
            try:
                self._write(triples)
                return
            except Exception as exc:  # remote endpoint down, disk full: keep the batch and try again
                self.counters.write_errors += 1
                self.counters.last_error = repr(exc)
                log.warning("writing %d triples failed (%r); retrying in %.1f s", len(triples), exc, delay)
                if self._stop.is_set() and delay > 5:
                    path = self.config.path / "unwritten.nt" if self.config.path else None
                    if path is not None:
                        with path.open("a", encoding="utf-8") as fh:
                            fh.writelines(f"{s} {p} {o} .\n" for s, p, o in triples)  # N-Triples terms
                    return
                _time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _write(self, triples: list[Triple]) -> None:
        """Write one batch. On Oxigraph a large batch (a backlog or a bulk load) goes through `bulk_extend`, which
        writes sorted files straight into RocksDB instead of checking every quad inside a transaction. It is not
        transactional: a crash in the middle of such a batch can leave part of it written (set bulk_threshold to 0 to
        keep every batch all-or-nothing)."""
        if self._ox is not None:
            import pyoxigraph as ox

            quads = [ox.Quad(s, p, o) for s, p, o in triples]
            if self.config.bulk_threshold and len(quads) >= self.config.bulk_threshold:
                self._ox.bulk_extend(quads)
            else:
                self._ox.extend(quads)
        elif self.config.backend == "sparql":
            # INSERT DATA written from pyoxigraph's N-Triples serialisation of each term (escaped by pyoxigraph):
            # rdflib's SPARQLUpdateStore refuses blank nodes, and the vocabulary's OWL lists are blank nodes (one
            # request keeps their labels together; the vocabulary is far below one chunk)
            from rdflib.plugins.stores.sparqlstore import SPARQLUpdateStore

            store = self.graph.store
            assert isinstance(store, SPARQLUpdateStore)  # _open_graph builds the graph on one for this backend
            with self._lock:
                for i in range(0, len(triples), 20_000):
                    body = "\n".join(f"{s} {p} {o} ." for s, p, o in triples[i:i + 20_000])
                    try:
                        store.update(f"INSERT DATA {{\n{body}\n}}")
                    except Exception:
                        # SPARQLUpdateStore keeps a failed update in its buffer and would send it again with the
                        # next one; the retry sends it itself
                        store.rollback()
                        raise
        else:
            with self._lock:
                self.graph.addN((to_rdflib(s), to_rdflib(p), to_rdflib(o), self.graph) for s, p, o in triples)
        self.counters.triples_written += len(triples)

    # ------------------------------------------------------------------ event identity
    def _stored_identities(self, line: str, seq: int) -> list[tuple[str, str | None]]:
        """(step IRI, digest or None for steps written before digests were kept) of the placed events with this seq."""
        bindings = {"seq": Literal(int(seq), datatype=XSD.integer), "line": Literal(line)}
        return [(str(r["p"]), r.get("digest")) for r in self._select("event_identity", **bindings)]

    def _identities_of_old(self, line: str, seq: int) -> list[tuple[str, bool | None]]:
        """(digest or "" if unknown, owns the plain step IRI) of every event with this seq the store has judged before,
        for a seq older than the window: recent ones not written yet, the store's, the quarantine's."""
        pending = self._unwritten.get((line, seq))
        out: list[tuple[str, bool | None]] = list(pending[1]) if pending is not None else []
        plain = self.builder._process(line, seq)
        out += [(digest or "", node == plain) for node, digest in self._stored_identities(line, seq)]
        out += [(digest, None) for digest in self.quarantine.digests(line, seq)]
        return out

    def _judge(self, event: TraceEvent, digest: str) -> Seen:
        seqs = self._line_seqs(event.line)
        # while the start-up recount runs, the window knows only this run: the store judges every event
        seen = seqs.check(event.seq, int(digest, 16)) if self._seq_ready.is_set() else Seen.UNKNOWN
        if seen is not Seen.UNKNOWN:
            return seen
        known = self._identities_of_old(event.line, event.seq)
        if not known:
            return Seen.NEW
        # "" is a step written before digests were kept: as before, its seq alone makes a replay a duplicate
        return Seen.SAME if any(d in (digest, "") for d, _ in known) else Seen.REUSED

    def _record(self, event: TraceEvent, digest: str, seen: Seen) -> None:
        self._line_seqs(event.line).add(event.seq, int(digest, 16), new_seq=seen is Seen.NEW)
        self._remember(event.line, event.seq, digest, None)

    def _remember(self, line: str, seq: int, digest: str, plain: bool | None) -> None:
        """Keep a judgement until its batch is written (`plain` None: keep what was known)."""
        _, entries = self._unwritten.get((line, seq), (0, []))
        was = next((p for d, p in entries if d == digest), False)
        entries = [e for e in entries if e[0] != digest] + [(digest, was if plain is None else plain)]
        self._unwritten[(line, seq)] = (self._batch_no, entries)

    def _forget_written(self) -> None:
        written = self._written_no
        if self._unwritten:
            self._unwritten = {k: v for k, v in self._unwritten.items() if v[0] > written}

    def _variant(self, event: TraceEvent, digest: str) -> str | None:
        """None: the event's step is `event/<seq>`; else the digest naming `event/<seq>-<digest>`, because another
        event took the plain name first (the first seen within the window; the one placed with it, beyond)."""
        seqs = self._line_seqs(event.line)
        first = seqs.first(event.seq) if self._seq_ready.is_set() else None
        if first is not None:
            if first != int(digest, 16):
                return digest
        else:
            owners = {d for d, plain in self._identities_of_old(event.line, event.seq) if plain}
            if owners and owners != {digest}:
                return digest
        self._remember(event.line, event.seq, digest, True)
        return None

    def _place(self, what: str, payload: Any, out: list[Triple]) -> list[Entry]:
        mode, _, kind = what.rpartition("-")
        if kind == "event":
            return self._place_event(payload, out, mode or "new")
        if kind == "prediction":
            return self._place_prediction(payload, out)
        if kind == "audit":
            return self._place_audit(payload, out)
        raise ValueError(f"unknown work item {what!r}")

    def _reject(self, reason: str, payload: Any, what: str = "event", waiting_for: list[str] | None = None,
                identity: str | None = None) -> list[Entry]:
        self.quarantine.add(reason, _plain(payload), what=what, waiting_for=waiting_for, identity=identity)
        self.counters.quarantined += 1
        return []

    def _release_held(self, line: str) -> list[Entry]:
        """Implausible events of this line that its highest seq has come within max_seq_jump of."""
        heap = self._held.get(line)
        out: list[Entry] = []
        highest = self._seqs[line].highest if line in self._seqs else 0
        while heap and heap[0][0] <= highest:
            _, qid = heapq.heappop(heap)
            entry = self.quarantine.release(qid)
            if entry is not None:
                out.append(entry)
        return out

    def _place_event(self, raw: Any, out: list[Triple], mode: str) -> list[Entry]:
        """mode: "new" (received now), "retry" (released from the quarantine: judged when received), "recheck" (an
        implausible event the line caught up with: judged now, received before)."""
        if mode == "new":
            self.counters.received += 1
        try:
            event = parse_event(raw)
        except EventError as exc:
            return self._reject(f"malformed: {exc}", raw)
        line = event.line
        digest = event_digest(event)
        identity = f"{line}\x00{event.seq}\x00{digest}"
        released: list[Entry] = []
        if mode != "retry":
            seqs = self._line_seqs(line)
            jump = self.config.max_seq_jump
            reference: int | None = seqs.highest
            if not self._seq_ready.is_set():  # recounting: the figures of the last batch before the stop, if any
                stale = self._stale_highest.get(line)
                reference = max(seqs.highest, stale) if stale is not None else None
            if jump and reference is not None and event.seq - reference > jump:
                self.counters.implausible_seq += 1
                at = event.seq - jump
                entry = self.quarantine.add(
                    f"implausible seq: {event.seq} is {event.seq - reference} ahead of the highest seq seen on "
                    f"line {line} ({reference}; max_seq_jump {jump}); held here, placed when the line reaches seq "
                    f"{at}", _plain(raw), waiting_for=[_held_key(line, at)])
                self.counters.quarantined += 1
                heapq.heappush(self._held.setdefault(line, []), (at, entry.qid))
                return []
            seen = self._judge(event, digest)
            if seen is Seen.SAME:
                self.counters.duplicates += 1  # at-least-once delivery: the same event again
                return []
            if seen is Seen.REUSED:
                self.counters.seq_reused += 1
            self._record(event, digest, seen)
            released += self._release_held(line)
        own_key = _key(line, event.id)
        known = self._lookup(line, event.id)
        if event.kind == "created":
            if known is not None:
                if known[0] != event.type:
                    return released + self._reject(
                        f"duplicate ID with conflicting type: {event.id} is already a {known[0]} (created by event "
                        f"{known[1]}), this event says {event.type}", raw, identity=identity)
                return released + self._reject(f"duplicate ID: {event.id} ({event.type}) was already created by "
                                               f"event {known[1]}", raw, identity=identity)
        elif known is None:
            return released + self._reject(f"unknown ID {event.id}: a '{event.kind}' event needs the {event.type} to "
                                           "exist; placed automatically when it is created", raw,
                                           waiting_for=[own_key], identity=identity)
        elif known[0] != event.type:
            return released + self._reject(f"conflicting type: {event.id} is a {known[0]}, this event says "
                                           f"{event.type}", raw, identity=identity)
        missing: list[str] = []
        received: list[str] = []
        for used in event.inputs:
            found = self._lookup(line, used.id)
            if found is None:
                if used.type == "RawMaterialLot":
                    received.append(used.id)
                else:
                    missing.append(used.id)
            elif found[0] != used.type:
                return released + self._reject(f"conflicting input type: {used.id} is a {found[0]}, the event lists "
                                               f"it as {used.type}", raw, identity=identity)
        if missing:
            return released + self._reject(f"unknown input ID(s) {', '.join(missing)}: placed automatically when they "
                                           "are created", raw, waiting_for=[_key(line, m) for m in missing],
                                           identity=identity)
        for lot in dict.fromkeys(received):
            out += self.builder.received_lot_triples(line, lot, event.time)
            self._add_entity(_key(line, lot), ("RawMaterialLot", 0))
        variant = self._variant(event, digest)
        producers = {used.id: self._producer(line, used.id) for used in event.inputs}
        sources = self._cell_sources(event) if event.type == "Cell" and event.kind == "created" else None
        out += self.builder.event_triples(event, producers, sources, digest=digest, variant=variant)
        self.counters.placed += 1
        self._lines.add(line)
        if event.kind == "created":
            self._add_entity(own_key, (event.type, event_ref(event.seq, variant)))
            if event.type == "CellStack":
                self._remember_sources(line, event)
            released += self.quarantine.release_waiting(own_key)
            released += self.quarantine.release_waiting(_key("*", event.id))
        for lot in received:
            released += self.quarantine.release_waiting(_key(line, lot))
        return released

    def _add_entity(self, key: str, ref: IndexRef) -> None:
        """A new entity (checked absent by _lookup): indexed, counted, and no longer an unresolved reference."""
        self._index[key] = ref
        self._entity_count += 1
        self.unresolved.resolve(key)

    def _producer(self, line: str, entity_id: str) -> Any:
        found = self._lookup(line, entity_id)
        if found is None:
            return None
        entity_type, ref = found
        if ref == 0:
            return self.builder.receiving_node(line, entity_id)
        if entity_type == "FormationRun":
            return self.builder.entity_node(line, entity_id)
        return self.builder.process_node(line, ref)

    def _remember_sources(self, line: str, event: TraceEvent) -> None:
        from ontology.builder import polarity_of

        pos = tuple(self.builder.entity_node(line, i.id) for i in event.inputs
                    if i.type == "ElectrodeSheet" and polarity_of(i.id) == "positive")
        neg = tuple(self.builder.entity_node(line, i.id) for i in event.inputs
                    if i.type == "ElectrodeSheet" and polarity_of(i.id) == "negative")
        self._sources[_key(line, event.id)] = (pos, neg)
        while len(self._sources) > self.config.source_cache:
            self._sources.popitem(last=False)

    def _cell_sources(self, event: TraceEvent) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        pos: list[Any] = []
        neg: list[Any] = []
        for used in event.inputs:
            if used.type == "ElectrodeSheet":
                from ontology.builder import polarity_of

                side = pos if polarity_of(used.id) == "positive" else neg
                side.append(self.builder.entity_node(event.line, used.id))
            if used.type != "CellStack":
                continue
            cached = self._sources.get(_key(event.line, used.id))
            if cached is None:
                stack = self.builder.entity(event.line, used.id)
                with self._lock:
                    cached = (tuple(to_ox(o) for o in self.graph.objects(stack, PL.hasPositiveElectrodeSource)),
                              tuple(to_ox(o) for o in self.graph.objects(stack, PL.hasNegativeElectrodeSource)))
            pos += cached[0]
            neg += cached[1]
        return tuple(pos), tuple(neg)

    def _resolve_line(self, entity_id: str, line: str | None) -> str | None:
        if line is not None:
            return line if self._lookup(line, entity_id) is not None else None
        hits = [ln for ln in sorted(self._lines) if self._lookup(ln, entity_id) is not None]
        return hits[0] if len(hits) == 1 else None

    def _place_prediction(self, p: dict[str, Any], out: list[Triple]) -> list[Entry]:
        line = self._resolve_line(p["entity_id"], p.get("line"))
        if line is None:
            return self._reject(f"unknown entity {p['entity_id']} for a prediction: placed automatically when it is "
                                "created", p, "prediction", [_key(p.get("line") or "*", p["entity_id"])])
        run_key = _digest(p["model_name"], p["model_version"], p["time"], json.dumps(p["outputs"], sort_keys=True))
        out += self.builder.prediction_triples(line, p["entity_id"], p["model_name"], p["model_version"], p["outputs"],
                                               p["std"], datetime.fromisoformat(p["time"]), run_key)
        self.counters.predictions += 1
        return []

    def _place_audit(self, a: dict[str, Any], out: list[Triple]) -> list[Entry]:
        target = a["target"]
        entity = None
        setpoint = target
        line = a.get("line")
        if ID_PATTERN.match(target) and len(target) <= 64:
            resolved = self._resolve_line(target, line)
            if resolved is None:
                return self._reject(f"unknown entity {target} for an audit record: placed automatically when it is "
                                    "created", a, "audit", [_key(line or "*", target)])
            entity, setpoint, line = target, None, resolved
        line = line or (sorted(self._lines)[0] if len(self._lines) == 1 else "plant")
        run_key = _digest(target, a["who"], a["when"], json.dumps([a["before"], a["after"]], sort_keys=True))
        out += self.builder.audit_triples(line, entity, setpoint, a["who"], datetime.fromisoformat(a["when"]),
                                          a["before"], a["after"], a["why"], a["model_version"], run_key)
        self.counters.audits += 1
        return []

    # ------------------------------------------------------------------ queries
    def _select(self, name: str, **bindings: Any) -> list[dict[str, Any]]:
        init = {k: _term(v) for k, v in bindings.items()}
        if self._ox is not None:
            return ox_select(self._ox, name, init)
        text = load(name)
        if self.config.backend == "sparql" and init:
            # rdflib's SPARQLStore appends bindings as a VALUES clause *after* the WHERE group, where FILTERs inside
            # the group (downstream_range's positions) still see them unbound; put the same escaped terms first
            text, init = inline_values(text, init), {}
        with self._lock:
            result = self.graph.query(text, initBindings=init)
            assert result.vars is not None  # every ontology/queries/*.rq that _select runs is a SELECT
            rows = []
            for row in result:
                assert isinstance(row, ResultRow)  # a SELECT's rows (rdflib types them with ASK's and CONSTRUCT's)
                rows.append({str(var): _py(row[var]) for var in result.vars if row[var] is not None})
        return rows

    def find(self, entity_id: str, line: str | None = None) -> tuple[URIRef, str, str]:
        """(IRI, line, type) of a trace ID; UnknownIdError if absent, QueryInputError if the ID is malformed."""
        try:
            check_id(entity_id, "id")
        except EventError as exc:
            raise QueryInputError(str(exc)) from None
        if line is not None and (not isinstance(line, str) or not line or len(line) > 64):
            raise QueryInputError(f"line must be a non-empty string, got {line!r}")
        bindings: dict[str, Any] = {"id": Literal(entity_id)}
        if line is not None:
            bindings["line"] = Literal(line)
        rows = self._select("find_entity", **bindings)
        if not rows:
            where = f" on line {line}" if line else ""
            raise UnknownIdError(f"no entity with trace ID {entity_id}{where} in the genealogy graph")
        if len(rows) > 1:
            lines = sorted(r["line"] for r in rows)
            raise QueryInputError(f"trace ID {entity_id} exists on several lines ({', '.join(lines)}); pass line=")
        row = rows[0]
        return URIRef(str(row["entity"])), row["line"], row["type"]

    def _root(self, entity_id: str, line: str) -> dict[str, URIRef]:
        """Bind the root by IRI: binding its ID and line literals lets the planner start from every `pl:line` triple."""
        return {"root": self.builder.entity(line, entity_id)}

    def genealogy(self, entity_id: str, line: str | None = None) -> dict[str, Any]:
        """Upstream trace of an entity (normally a cell): the whole tree with steps, equipment, parameters, measured
        values, raw-data windows, roll segments under its sheets, formation, predictions, audits and the dry-room
        dew point during its assembly."""
        iri, line, entity_type = self.find(entity_id, line)
        root = self._root(entity_id, line)
        entities: dict[str, dict[str, Any]] = {}
        steps: dict[tuple[str, str], dict[str, Any]] = {}
        for row in self._select("upstream", **root):
            item = entities.get(row["id"])
            if item is None:
                item = entities[row["id"]] = {"id": row["id"], "type": row["type"], "iri": str(row["entity"]),
                                              "steps": [], "parameters": {}, "measured": {}}
                item.update((name, row[var]) for var, name in _ENTITY_FIELDS if var in row)
            if (row["id"], str(row["proc"])) not in steps:
                step = steps[(row["id"], str(row["proc"]))] = {"iri": str(row["proc"])}
                step.update((name, row[var]) for var, name in _STEP_FIELDS if var in row)
                item["steps"].append(step)
        for item in entities.values():
            item["steps"].sort(key=lambda s: (s.get("seq") or 0))
        quantities: dict[str, dict[str, Any]] = {}
        for row in self._select("upstream_values", **root):
            q = quantities.setdefault(str(row["q"]), {"id": row["id"], "step": None, "proc": row.get("proc")})
            name = _FIELD_NAMES.get(str(row["p"]), str(row["p"]))
            if name == "type":
                if str(row["value"]) not in _GENERIC_VALUE_TYPES:
                    q["quantity_iri"] = str(row["value"])
            elif name == "unit_iri":
                q["unit_iri"] = str(row["value"])
            else:
                q[name] = row["value"]
        proc_steps = {s["iri"]: s.get("step") for s in steps.values()}
        for q in quantities.values():
            item = entities.get(q.pop("id"))
            if item is None or "key" not in q:
                continue
            proc = q.pop("proc")
            q.pop("step")
            key = q.pop("key")
            if proc is not None:
                item["parameters"].setdefault(proc_steps.get(str(proc)) or "?", {})[key] = q
            else:
                item["measured"][key] = q
        edge_map: dict[tuple[str, str], dict[str, Any]] = {}
        for r in self._select("upstream_edges", **root):
            edge = edge_map.setdefault((r["childId"], r["parentId"]), {"child": r["childId"], "parent": r["parentId"]})
            if "usage" in r:
                edge[_FIELD_NAMES.get(str(r["p"]), str(r["p"]))] = r["value"]
        raw = [{"id": r["id"], "step": r["step"], "influxdb": {"measurement": r["measurement"],
                                                               "tags": {"line": r["line"]},
                                                               "start": r["start"], "end": r["end"]}}
               for r in self._select("raw_data", **root)]
        seg_rows = self._select("segments", **root)
        seg_values: dict[tuple[str, str, str], dict[str, Any]] = {}
        for r in seg_rows:
            field_name = "unit" if str(r["p"]) == str(PL.unitCode) else "value"
            seg_values.setdefault((r["sheetId"], r["segmentId"], str(r["q"])), {})[field_name] = r["value"]
        segments: dict[tuple[str, str], dict[str, Any]] = {}
        for r in seg_rows:
            value = seg_values[(r["sheetId"], r["segmentId"], str(r["q"]))]
            if "value" not in value:
                continue  # a quantity without a number (as before: only numeric measurements are listed)
            seg = segments.setdefault((r["sheetId"], r["segmentId"]), {
                "sheet": r["sheetId"], "segment": r["segmentId"], "roll": r["rollId"],
                "from_m": r["segFrom"], "to_m": r["segTo"], "measured": {}})
            seg["measured"][r["key"]] = {"value": value["value"], "unit": value.get("unit")}
        formation: dict[str, dict[str, Any]] = {}
        results: dict[str, dict[str, Any]] = {}
        for r in self._select("formation", **root):
            run = formation.setdefault(r["runId"], {"id": r["runId"], "channel": None, "results": {}})
            name = _FIELD_NAMES.get(str(r["p"]), str(r["p"]))
            if "q" in r:
                results.setdefault(str(r["q"]), {"run": r["runId"]})[name] = r["value"]
            elif name == "equipment":
                run["channel"] = r["value"]
            else:
                run[name] = r["value"]
        for res in results.values():
            if "key" in res:
                formation[res.pop("run")]["results"][res.pop("key")] = res
        predictions: dict[str, dict[str, Any]] = {}
        for r in self._select("predictions", **root):
            pred = predictions.setdefault(str(r["run"]), {"model": r["model"], "model_version": r["version"],
                                                          "time": r["time"], "outputs": {}})
            pred["outputs"][r["key"]] = {"value": r.get("value"), "std": r.get("std"), "unit": r.get("unit")}
        audit_map: dict[str, dict[str, Any]] = {}
        for r in self._select("audits", **root):
            rec = audit_map.setdefault(str(r["record"]), {"who": r["who"], "time": r["time"], "why": r["why"],
                                                          "setpoint": None, "before": None, "after": None,
                                                          "model_version": None})
            name = _FIELD_NAMES.get(str(r["p"]), str(r["p"]))
            rec[name] = _unjson(r["value"]) if name in ("before", "after") else r["value"]
        by_type: dict[str, list[str]] = {}
        equipment: set[str] = set()
        for item in entities.values():
            by_type.setdefault(item["type"], []).append(item["id"])
            equipment.update(s["equipment"] for s in item["steps"] if "equipment" in s)
        sheets = [i for i in entities.values() if i["type"] == "ElectrodeSheet"]
        return {
            "id": entity_id,
            "line": line,
            "type": entity_type,
            "iri": str(iri),
            "positive_electrode": sorted(i["id"] for i in sheets if i.get("polarity") == "positive"),
            "negative_electrode": sorted(i["id"] for i in sheets if i.get("polarity") == "negative"),
            "slurry_batches": sorted(by_type.get("SlurryBatch", [])),
            "raw_material_lots": sorted(by_type.get("RawMaterialLot", [])),
            "by_type": {k: sorted(v) for k, v in sorted(by_type.items())},
            "equipment": sorted(equipment),
            "conditions": self._conditions(root, line),
            "entities": sorted(entities.values(), key=lambda e: (e["type"], e["id"])),
            "edges": sorted(edge_map.values(), key=lambda e: (e["child"], e["parent"])),
            "raw_data": sorted(raw, key=lambda r: (r["influxdb"]["start"], r["id"])),
            "segments": sorted(segments.values(), key=lambda s: (s["sheet"], s["segment"])),
            "formation": sorted(formation.values(), key=lambda r: r["id"]),
            "predictions": sorted(predictions.values(), key=lambda p: p["time"]),
            "audits": sorted(audit_map.values(), key=lambda a: a["time"]),
        }

    def _conditions(self, root: dict[str, URIRef], line: str) -> dict[str, Any]:
        rows = self._select("assembly_conditions", **root)
        row = rows[0] if rows else {}
        dew = self._select("dew_point_summary", **root)
        stored = dew[0].get("maxDewPoint") if dew else None
        out: dict[str, Any] = {
            "assembly_window": {"start": row.get("from"), "end": row.get("to")} if row.get("from") else None,
            "max_dew_point_C": stored,
            "dew_point_source": "trace-event summary" if stored is not None else None,
            "stored_max_dew_point_C": stored,
        }
        if self.dew_point_port is not None and row.get("from") and row.get("to"):
            try:
                live = self.dew_point_port(line, _aware(row["from"]), _aware(row["to"]))
            except Exception as exc:  # the time-series store may be down; the genealogy still answers
                out["dew_point_port_error"] = repr(exc)
            else:
                if live is not None:
                    out["influxdb_max_dew_point_C"] = float(live)
                    out["max_dew_point_C"], out["dew_point_source"] = float(live), "influxdb samples"
        return out

    def genealogy_graph(self, entity_id: str, line: str | None = None) -> Graph:
        """The genealogy as RDF: every triple about the nodes genealogy_nodes.rq and genealogy_root_nodes.rq find
        (a bounded description). `pl:precedes` links to steps outside the genealogy are left out: the receiving step
        of a separator lot precedes every stacking step that used the lot (tens of thousands at 100 000 cells)."""
        _, line, _ = self.find(entity_id, line)
        root = self._root(entity_id, line)
        nodes = {row["node"] for name in ("genealogy_nodes", "genealogy_root_nodes")
                 for row in self._select(name, **root)}
        out = Graph()
        for prefix, ns in (("pl", PL), ("emmo", iris.EMMO), ("echem", iris.ECHEM), ("battery", iris.BATTERY),
                           ("mfg", iris.MFG)):
            out.bind(prefix, ns)
        if self._ox is not None:
            import pyoxigraph as ox
            from oxrdflib._converter import from_ox  # the terms as oxrdflib's graph.triples gives them

            default = ox.DefaultGraph()
            precedes = ox.NamedNode(str(PL.precedes))
            inside = {ox.NamedNode(str(n)) for n in nodes}
            for node in sorted(nodes):
                for quad in self._ox.quads_for_pattern(ox.NamedNode(str(node)), None, None, default):
                    if quad.predicate == precedes and quad.object not in inside:
                        continue
                    # from_ox is typed for any term, None and RDF-star triples included; a stored quad's terms are
                    # IRIs, blank nodes or literals
                    triple = (from_ox(quad.subject), from_ox(quad.predicate), from_ox(quad.object))
                    out.add(cast("tuple[Node, Node, Node]", triple))
            return out
        with self._lock:
            for node in nodes:
                for triple in self.graph.triples((node, None, None)):
                    if triple[1] == PL.precedes and triple[2] not in nodes:
                        continue
                    out.add(triple)
        return out

    def downstream(self, entity_id: str, from_m: float | None = None, to_m: float | None = None,
                   line: str | None = None) -> dict[str, Any]:
        """Downstream track: cells (and all entities) made from an entity; with from_m/to_m, only cells whose sheets
        were cut from that stretch of a roll. For a slurry batch coated on a known stretch of a roll, only the cells
        from that stretch count."""
        if (from_m is None) != (to_m is None):
            raise QueryInputError("give both from_m and to_m, or neither")
        if from_m is not None:
            try:
                from_m, to_m = check_number(from_m, "from_m"), check_number(to_m, "to_m")
            except EventError as exc:
                raise QueryInputError(str(exc)) from None
            if from_m < 0 or to_m <= from_m:
                raise QueryInputError(f"need 0 <= from_m < to_m, got {from_m}..{to_m}")
        _, line, entity_type = self.find(entity_id, line)
        result: dict[str, Any] = {"id": entity_id, "line": line, "type": entity_type}
        if from_m is not None:
            if entity_type not in ROLL_TYPES:
                raise QueryInputError(f"positions apply to rolls ({', '.join(ROLL_TYPES)}); {entity_id} is a "
                                      f"{entity_type}")
            rows = self._range(entity_id, line, from_m, to_m)  # type: ignore[arg-type]
            sheets = sorted({(r["sheetId"], r["carrierId"], r["f"], r["t"]) for r in rows})
            result.update(from_m=from_m, to_m=to_m, method="roll positions",
                          cells=sorted({r["cellId"] for r in rows}),
                          sheets=[{"sheet": s, "cut_from": c, "from_m": f, "to_m": t} for s, c, f, t in sheets])
            result["count"] = len(result["cells"])
            return result
        everything = self._select("downstream", **self._root(entity_id, line))
        cells = {r["id"] for r in everything if r["type"] == "Cell"}
        method = "genealogy closure"
        if entity_type == "SlurryBatch":
            stretches = self._select("coating_stretches", **self._root(entity_id, line))
            if stretches:
                method = "coated stretches of the rolls"
                for s in stretches:
                    roll_cells = {r["id"] for r in self._select("downstream", **self._root(s["rollId"], line))
                                  if r["type"] == "Cell"}
                    in_range = {r["cellId"] for r in self._range(s["rollId"], line, s["fromM"], s["toM"])}
                    cells -= roll_cells - in_range
                result["coated_stretches"] = [{"roll": s["rollId"], "from_m": s["fromM"], "to_m": s["toM"]}
                                              for s in stretches]
        result.update(method=method, cells=sorted(cells), count=len(cells),
                      entities=sorted(({"id": r["id"], "type": r["type"]} for r in everything),
                                      key=lambda e: (e["type"], e["id"])))
        return result

    def _range(self, entity_id: str, line: str, from_m: float, to_m: float) -> list[dict[str, Any]]:
        return self._select("downstream_range", **self._root(entity_id, line),
                            fromM=Literal(float(from_m), datatype=XSD.double),
                            toM=Literal(float(to_m), datatype=XSD.double))

    def cells_dew_point_above(self, limit_C: float, *, check_samples: bool = False,
                              max_port_calls: int = 10_000) -> dict[str, Any]:
        """Cells assembled while the dry-room dew point exceeded `limit_C` (degC).

        Uses the dew-point summaries stored from trace events; with `check_samples` and a dew-point port, cells
        without a summary are checked against the samples (at most `max_port_calls` windows)."""
        try:
            limit = check_number(limit_C, "limit_C")
        except EventError as exc:
            raise QueryInputError(str(exc)) from None
        rows = self._select("cells_dew_point_above", limit=Literal(limit, datatype=XSD.double))
        cells = {(r["line"], r["cellId"]): {"id": r["cellId"], "line": r["line"], "max_dew_point_C": r["maxDewPoint"],
                                            "source": "trace-event summary"} for r in rows}
        checked, truncated = 0, False
        if check_samples and self.dew_point_port is not None:
            for w in self._select("assembly_windows"):
                key = (w["line"], w["cellId"])
                if key in cells:
                    continue
                if checked >= max_port_calls:
                    truncated = True
                    break
                checked += 1
                value = self.dew_point_port(w["line"], _aware(w["from"]), _aware(w["to"]))
                if value is not None and value > limit:
                    cells[key] = {"id": w["cellId"], "line": w["line"], "max_dew_point_C": float(value),
                                  "source": "influxdb samples"}
        found = sorted(cells.values(), key=lambda c: (-c["max_dew_point_C"], c["id"]))
        return {"limit_C": limit, "cells": found, "count": len(found), "windows_checked_in_influxdb": checked,
                "truncated": truncated}

    def sparql(self, text: str, *, max_results: int = 10_000, timeout_s: float = 10.0,
               on_done: Callable[[], None] | None = None) -> Any:
        """A user's read-only SPARQL query (SELECT, ASK, CONSTRUCT, DESCRIBE) with a time and a result limit; safe
        beside the writer and from many threads (see `ontology.sandbox.QueryEngine`). `on_done` is called once the
        query's work has really ended (a thread backend's query may outlive its time limit).

        Raises sandbox.ReadOnlyError for updates, QuerySyntaxError for bad queries, QueryTimeout past the limit."""
        return self.queries.run(text, max_results=max_results, timeout_s=timeout_s, on_done=on_done)

    def status(self) -> dict[str, Any]:
        """Counters and per-line seq figures, all O(1) per line (a few fields, never a scan)."""
        lines = {name: {"highest_seq": s.highest, "received": s.distinct, "missing_seq": s.missing,
                        "held_implausible": len(self._held.get(name, ()))} for name, s in list(self._seqs.items())}
        c = self.counters
        return {"backend": self.config.backend, "path": str(self.config.path) if self.config.path else None,
                "base_iri": self.builder.base_iri, "queued": self._queue.qsize(), "received": c.received,
                "placed": c.placed, "duplicates": c.duplicates, "seq_reused": c.seq_reused,
                "implausible_seq": c.implausible_seq, "quarantined_now": len(self.quarantine),
                "quarantine_dropped": self.quarantine.dropped,
                "released_from_quarantine": c.released, "predictions": c.predictions, "audits": c.audits,
                "write_errors": c.write_errors, "last_error": c.last_error, "triples_written": c.triples_written,
                "entities": self._entity_count, "index": self.index_state(), "seq_state": self.seq_state(),
                "lines": lines,
                "max_seq_jump": self.config.max_seq_jump, "seq_tracking_bytes": self.seq_tracking_bytes(),
                "unresolved_references": self.unresolved.summary(self.config.unresolved_grace_s, _time.monotonic())}

    def seq_tracking_bytes(self) -> int:
        """Memory the seq tracking holds: the per-line windows (fixed) and the recent out-of-window judgements."""
        return sum(s.memory_bytes() for s in list(self._seqs.values())) + 128 * len(self._unwritten)

    # ------------------------------------------------------------------ references from samples
    def note_reference(self, line: str, entity_id: str, trace_key: str, source: str) -> bool:
        """A sample named `entity_id` (under `trace_key`, e.g. cell_id): True if the genealogy knows it. An unknown ID
        is listed in the unresolved-references view (status()["unresolved_references"]) until a trace event creates
        it; the sample itself is the caller's to keep. O(1): a dict lookup (a store query never runs here)."""
        key = _key(line, entity_id)
        if key in self._index:
            return True
        self.unresolved.note(key, line, entity_id, trace_key, source, _time.monotonic())
        return False

    def unresolved_over_grace(self) -> int:
        """How many IDs named by samples have stayed unknown longer than `unresolved_grace_s` (for an alarm)."""
        return self.unresolved.over_grace(self.config.unresolved_grace_s, _time.monotonic())

    def export(self, fmt: str = "turtle") -> bytes:
        """The whole graph, serialised (turtle, nt, json-ld, xml)."""
        formats = {"turtle": "TURTLE", "nt": "N_TRIPLES", "ntriples": "N_TRIPLES", "json-ld": "JSON_LD",
                   "xml": "RDF_XML"}
        if fmt not in formats:
            raise QueryInputError(f"export format must be one of {', '.join(formats)}, got {fmt!r}")
        if self._ox is not None:
            import pyoxigraph as ox

            data = self._ox.dump(format=getattr(ox.RdfFormat, formats[fmt]), from_graph=ox.DefaultGraph())
            return data if isinstance(data, bytes) else b""
        with self._lock:
            return self.graph.serialize(format={"nt": "nt", "ntriples": "nt"}.get(fmt, fmt), encoding="utf-8")

    def __len__(self) -> int:
        if self._ox is not None:
            return len(self._ox)
        with self._lock:
            return len(self.graph)


_FIELD_NAMES: Final = {
    str(PL.polarity): "polarity", str(PL.lengthM): "length_m", str(PL.step): "step", str(PL.kind): "kind",
    str(PL.seq): "seq", str(PL.eventTime): "time", str(PL.startTime): "start", str(PL.endTime): "end",
    str(PL.station): "station", str(PL.name): "equipment", str(PL.key): "key", str(PL.unitCode): "unit",
    str(PL.statistic): "statistic", "http://www.w3.org/1999/02/22-rdf-syntax-ns#type": "type",
    "http://www.w3.org/1999/02/22-rdf-syntax-ns#value": "value", str(iris.EMMO_HAS_MEASUREMENT_UNIT): "unit_iri",
    str(iris.EMMO_HAS_NUMBER_VALUE): "value", str(PL.fromM): "from_m", str(PL.toM): "to_m",
    str(PL.setpoint): "setpoint", str(PL.before): "before", str(PL.after): "after",
    str(PL.modelVersion): "model_version",
}
# upstream.rq columns -> genealogy JSON fields (of an entity, of one of its steps)
_ENTITY_FIELDS: Final = (("polarity", "polarity"), ("length", "length_m"))
_STEP_FIELDS: Final = (("step", "step"), ("kind", "kind"), ("seq", "seq"), ("time", "time"), ("start", "start"),
                       ("end", "end"), ("station", "station"), ("equipment", "equipment"))
_GENERIC_VALUE_TYPES: Final = {str(PL.MeasuredValue), str(PL.ParameterValue), str(PL.PredictedValue)}


def _term(value: Any) -> Any:
    if isinstance(value, (URIRef, Literal)):
        return value
    return Literal(value)


def _py(term: Any) -> Any:
    return literal_python(term) if isinstance(term, Literal) else term


def _aware(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return parse_time(str(value), "time")


def _as_time(value: datetime | str | None, name: str) -> datetime:
    if value is None:
        return datetime.now(UTC)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise EventError(f"'{name}' must be timezone-aware (UTC)")
        return value.astimezone(UTC)
    return parse_time(value, name)


def _value_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"value": row.get("value", row.get("text"))}
    if "unit" in row:
        out["unit"] = row["unit"]
    if "unitIri" in row:
        out["unit_iri"] = str(row["unitIri"])
    if "statistic" in row:
        out["statistic"] = row["statistic"]
    if "quantity" in row:
        out["quantity_iri"] = str(row["quantity"])
    return out


def _unjson(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _digest(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


def _plain(payload: Any) -> Any:
    """Something JSON can hold, whatever the caller sent (the quarantine keeps it verbatim where possible; a parsed
    trace event as its JSON, so that a release parses it again like any received event)."""
    if isinstance(payload, TraceEvent):
        return payload.to_json()
    try:
        json.dumps(payload, allow_nan=True)
        return payload
    except (TypeError, ValueError):
        return repr(payload)
