"""The fast paths behind the 100 000-cell benchmark answer exactly what the slow ones did.

Oxigraph-native queries (ontology/oxstore.py) must convert result terms to the same Python values as rdflib did, bind
values only as escaped terms, and the bulk-load write path must store the same graph as the transactional one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyoxigraph as ox
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rdflib import XSD, Literal, URIRef

from ontology.builder import to_ox, to_rdflib
from ontology.iris import PL
from ontology.oxstore import ox_select, ox_values_block, py_value
from ontology.store import GenealogyStore, StoreConfig, _py
from tests.ontology.conftest import load
from tests.ontology.synthetic import PlantHistory

finite = st.floats(allow_nan=False, allow_infinity=False)
times = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1),
                     timezones=st.just(UTC))


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    finite.map(lambda v: Literal(v, datatype=XSD.double)),
    st.integers(-10**12, 10**12).map(lambda v: Literal(v, datatype=XSD.integer)),
    st.booleans().map(Literal),
    st.text(max_size=40).map(Literal),
    times.map(lambda t: Literal(t.isoformat().replace("+00:00", "Z"), datatype=XSD.dateTime)),
))
def test_result_values_match_what_rdflib_gave(term: Literal) -> None:
    """py_value on the pyoxigraph term == the old rdflib path (oxrdflib's Literal with datatype, then _py)."""
    via_oxrdflib = Literal(str(term), datatype=term.datatype or XSD.string)
    assert py_value(to_ox(term)) == _py(via_oxrdflib)
    assert to_rdflib(to_ox(term)) == term  # round trip keeps plain literals plain (rdflib compares them by datatype)


def test_iris_come_back_as_urirefs() -> None:
    value = py_value(ox.NamedNode("https://pilotline.example.org/id/PL1/CELL-000001"))
    assert isinstance(value, URIRef) and value == URIRef("https://pilotline.example.org/id/PL1/CELL-000001")


@settings(max_examples=150, deadline=None)
@given(st.text(min_size=1, max_size=60))
def test_bound_text_cannot_change_a_query(text: str) -> None:
    """Any text bound as the ID is one literal in the VALUES block: it finds nothing and never breaks the query."""
    store = ox.Store()
    store.add(ox.Quad(ox.NamedNode("https://x.example/e"), ox.NamedNode(str(PL.traceId)), ox.Literal("CELL-1")))
    store.add(ox.Quad(ox.NamedNode("https://x.example/e"), ox.NamedNode(str(PL.line)), ox.Literal("PL1")))
    store.add(ox.Quad(ox.NamedNode("https://x.example/e"), ox.NamedNode(str(PL.traceType)), ox.Literal("Cell")))
    rows = ox_select(store, "find_entity", {"id": Literal(text)})
    assert len(rows) == (1 if text == "CELL-1" else 0)
    assert ox_select(store, "find_entity", {"id": Literal("CELL-1")})[0]["type"] == "Cell"


def test_values_block_refuses_what_is_not_a_term() -> None:
    with pytest.raises(ValueError, match="variable name"):
        ox_values_block({"x } DELETE": ox.Literal("a")})
    with pytest.raises(ValueError, match="IRI or a literal"):
        ox_values_block({"x": ox.BlankNode("b")})  # type: ignore[dict-item]
    assert ox_values_block({"id": ox.Literal('a" } ?s ?p ?o {')}) == 'VALUES (?id) { ("a\\" } ?s ?p ?o {") }'


def test_bulk_and_transactional_writes_store_the_same_graph(tmp_path: Path) -> None:
    events = list(PlantHistory(cells=12, roll_length_m=5.0, segment_m=2.5, seed=3).events())
    answers = []
    for name, threshold in (("bulk", 1), ("transactional", 0)):
        with GenealogyStore(StoreConfig(path=tmp_path / name, bulk_threshold=threshold, batch_size=25)) as s:
            load(s, events)
            answers.append((len(s), s.export("nt").splitlines().__len__(), s.genealogy("CELL-000009"),
                            s.downstream("CR-C-000001", 0.5, 2.0)))
    assert answers[0] == answers[1]


def test_rdf_view_keeps_only_precedes_links_inside_the_genealogy(store: GenealogyStore) -> None:
    """A lot's receiving step precedes the steps of every cell that used the lot; the view of one cell keeps only the
    links between its own steps (and still has those)."""
    graph = store.genealogy_graph("CELL-000005")
    subjects = set(graph.subjects())
    links = list(graph.subject_objects(PL.precedes))
    assert links, "the steps of a genealogy precede one another"
    assert all(o in subjects for _, o in links)
    everywhere = {o for o in store.graph.objects(URIRef("https://pilotline.example.org/id/PL1/receiving/LOT-SEP-0001"),
                                                 PL.precedes)}
    assert len(everywhere) > len([o for s, o in links if str(s).endswith("LOT-SEP-0001")])


def test_writer_thread_flushes_everything_before_close(tmp_path: Path) -> None:
    events = list(PlantHistory(cells=30, roll_length_m=5.0, segment_m=2.5, seed=5).events())
    s = GenealogyStore(StoreConfig(path=tmp_path / "g", batch_size=7))
    for e in events:
        s.add_event(e)
    s.close()  # no flush(): close waits for the placer and the writer
    with GenealogyStore(StoreConfig(path=tmp_path / "g")) as again:
        assert again.status()["entities"] >= len({e["id"] for e in events})
        assert {e["id"] for e in again.genealogy("CELL-000030")["entities"]} >= {"CELL-000030", "STK-000030"}
