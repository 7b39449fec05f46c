"""The graph behind the genealogy: three backends behind one interface, and the only code that knows which is which.

Backends: `oxigraph` (persistent pyoxigraph store through oxrdflib; SPARQL runs natively in Oxigraph), `memory`
(rdflib's in-memory store; for tests and as the benchmark baseline) and `sparql` (a remote SPARQL 1.1 query/update
endpoint through rdflib's SPARQLUpdateStore, for a plant-wide store).

Why one module: each backend needs its own way to write a batch (Oxigraph quads, possibly in bulk; INSERT DATA for the
endpoint; rdflib's addN), to run the store's own queries (Oxigraph natively; rdflib with bindings inlined for an
endpoint) and to read triples back, and its own locking (pyoxigraph reads from snapshots and is safe beside a writer;
rdflib's memory store and the HTTP store are not). Everything else in the store goes through `GraphBackend` and never
asks which backend it has.
"""

from __future__ import annotations

import gc
import threading
from contextlib import AbstractContextManager, nullcontext
from typing import Any, cast

from rdflib import Graph, Literal, URIRef
from rdflib.graph import DATASET_DEFAULT_GRAPH_ID
from rdflib.query import ResultRow
from rdflib.term import Node

from ontology.builder import Triple, to_ox, to_rdflib, vocabulary_triples
from ontology.iris import PL
from ontology.oxstore import inline_values, literal_python, ox_select
from ontology.queries import load
from ontology.store.config import StoreConfig
from ontology.store.errors import QueryInputError

EXPORT_FORMATS = {"turtle": "TURTLE", "nt": "N_TRIPLES", "ntriples": "N_TRIPLES", "json-ld": "JSON_LD",
                  "xml": "RDF_XML"}
"""export() formats -> pyoxigraph's RdfFormat names."""


def open_graph(cfg: StoreConfig) -> tuple[Graph, Any]:
    """(rdflib graph, the pyoxigraph store under it or None) for the configured backend."""
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
        # graph (where write() inserts) is queried
        graph.default_union = True
        return graph, None
    raise ValueError(f"backend must be oxigraph, memory or sparql, got {cfg.backend!r}")


def _term(value: Any) -> Any:
    if isinstance(value, (URIRef, Literal)):
        return value
    return Literal(value)


def _py(term: Any) -> Any:
    return literal_python(term) if isinstance(term, Literal) else term


class GraphBackend:
    """The store's graph: `graph` (rdflib, for every backend), `ox` (the pyoxigraph store, or None) and `lock` (held
    around every rdflib access where the backend needs it)."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.graph, self.ox = open_graph(config)
        # pyoxigraph reads from snapshots and is safe beside a writer; rdflib's memory store and the HTTP store are not
        self.lock: AbstractContextManager[Any] = threading.RLock() if self.ox is None else nullcontext()

    def ensure_vocabulary(self) -> int:
        """The project TBox lives in the same graph so that exported data and /api/sparql users can read it. Returns
        how many triples were written (0: it was there)."""
        probe = (URIRef(str(PL)[:-1]), None, None)
        with self.lock:
            if next(iter(self.graph.triples(probe)), None) is None:
                triples = vocabulary_triples()
                self.write(triples)
                return len(triples)
        return 0

    def write(self, triples: list[Triple]) -> None:
        """Write one batch. On Oxigraph a large batch (a backlog or a bulk load) goes through `bulk_extend`, which
        writes sorted files straight into RocksDB instead of checking every quad inside a transaction. It is not
        transactional: a crash in the middle of such a batch can leave part of it written (set bulk_threshold to 0 to
        keep every batch all-or-nothing)."""
        if self.ox is not None:
            import pyoxigraph as ox

            quads = [ox.Quad(s, p, o) for s, p, o in triples]
            if self.config.bulk_threshold and len(quads) >= self.config.bulk_threshold:
                self.ox.bulk_extend(quads)
            else:
                self.ox.extend(quads)
        elif self.config.backend == "sparql":
            # INSERT DATA written from pyoxigraph's N-Triples serialisation of each term (escaped by pyoxigraph):
            # rdflib's SPARQLUpdateStore refuses blank nodes, and the vocabulary's OWL lists are blank nodes (one
            # request keeps their labels together; the vocabulary is far below one chunk)
            from rdflib.plugins.stores.sparqlstore import SPARQLUpdateStore

            store = self.graph.store
            assert isinstance(store, SPARQLUpdateStore)  # open_graph builds the graph on one for this backend
            with self.lock:
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
            with self.lock:
                self.graph.addN((to_rdflib(s), to_rdflib(p), to_rdflib(o), self.graph) for s, p, o in triples)

    def select(self, name: str, **bindings: Any) -> list[dict[str, Any]]:
        """Run one of the store's own SELECT queries (ontology/queries/<name>.rq) with bound values; one dict per row,
        Python values for literals, unbound variables left out."""
        init = {k: _term(v) for k, v in bindings.items()}
        if self.ox is not None:
            return ox_select(self.ox, name, init)
        text = load(name)
        if self.config.backend == "sparql" and init:
            # rdflib's SPARQLStore appends bindings as a VALUES clause *after* the WHERE group, where FILTERs inside
            # the group (downstream_range's positions) still see them unbound; put the same escaped terms first
            text, init = inline_values(text, init), {}
        with self.lock:
            result = self.graph.query(text, initBindings=init)
            assert result.vars is not None  # every ontology/queries/*.rq that select runs is a SELECT
            rows = []
            for row in result:
                assert isinstance(row, ResultRow)  # a SELECT's rows (rdflib types them with ASK's and CONSTRUCT's)
                rows.append({str(var): _py(row[var]) for var in result.vars if row[var] is not None})
        return rows

    def objects_ox(self, subject: Node, *predicates: URIRef) -> tuple[tuple[Any, ...], ...]:
        """Per predicate, the objects of `subject` as pyoxigraph terms (read under one lock)."""
        with self.lock:
            return tuple(tuple(to_ox(o) for o in self.graph.objects(subject, p)) for p in predicates)

    def describe(self, nodes: set[Any], out: Graph, *, inside_only: URIRef) -> None:
        """Add to `out` every triple whose subject is one of `nodes`; for the predicate `inside_only`, only those whose
        object is one of `nodes` too."""
        if self.ox is not None:
            import pyoxigraph as ox
            from oxrdflib._converter import from_ox  # the terms as oxrdflib's graph.triples gives them

            default = ox.DefaultGraph()
            only = ox.NamedNode(str(inside_only))
            inside = {ox.NamedNode(str(n)) for n in nodes}
            for node in sorted(nodes):
                for quad in self.ox.quads_for_pattern(ox.NamedNode(str(node)), None, None, default):
                    if quad.predicate == only and quad.object not in inside:
                        continue
                    # from_ox is typed for any term, None and RDF-star triples included; a stored quad's terms are
                    # IRIs, blank nodes or literals
                    triple = (from_ox(quad.subject), from_ox(quad.predicate), from_ox(quad.object))
                    out.add(cast("tuple[Node, Node, Node]", triple))
            return
        with self.lock:
            for node in nodes:
                for triple in self.graph.triples((node, None, None)):
                    if triple[1] == inside_only and triple[2] not in nodes:
                        continue
                    out.add(triple)

    def export(self, fmt: str = "turtle") -> bytes:
        """The whole graph, serialised (turtle, nt, json-ld, xml)."""
        if fmt not in EXPORT_FORMATS:
            raise QueryInputError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
        if self.ox is not None:
            import pyoxigraph as ox

            data = self.ox.dump(format=getattr(ox.RdfFormat, EXPORT_FORMATS[fmt]), from_graph=ox.DefaultGraph())
            return data if isinstance(data, bytes) else b""
        with self.lock:
            return self.graph.serialize(format={"nt": "nt", "ntriples": "nt"}.get(fmt, fmt), encoding="utf-8")

    def __len__(self) -> int:
        if self.ox is not None:
            return len(self.ox)
        with self.lock:
            return len(self.graph)

    def close(self) -> None:
        """Flush Oxigraph and release RocksDB's lock now (a restart in the same process must be able to reopen the
        directory); the other backends hold nothing to release."""
        if self.ox is not None:
            self.ox.flush()
            self.ox = None
            self.graph.store.close()
            self.graph = Graph()
            gc.collect()
