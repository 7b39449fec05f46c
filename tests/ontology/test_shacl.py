"""SHACL: the graph of a plant history validates; broken genealogies are caught with the shape's message."""

from __future__ import annotations

from pathlib import Path

import pytest
from rdflib import XSD, Graph, Literal, URIRef

from ontology.iris import PL
from ontology.shapes import validate
from ontology.store import GenealogyStore, StoreConfig
from tests.ontology.conftest import load
from tests.ontology.synthetic import PlantHistory

BASE = "https://pilotline.example.org/id/PL1/"


@pytest.fixture(scope="module")
def small_graph(tmp_path_factory: pytest.TempPathFactory) -> Graph:
    with GenealogyStore(StoreConfig(path=tmp_path_factory.mktemp("shacl"))) as s:
        load(s, list(PlantHistory(cells=6, roll_length_m=5.0, segment_m=2.5).events()))
        s.add_prediction("CELL-000002", "cell-surrogate", "1.0.0", {"capacity_Ah": 2.0}, {"capacity_Ah": 0.1})
        s.add_audit("CELL-000002", "alice", "2026-11-22T08:00:00Z", None, "hold", "check")
        assert s.flush()
        graph = Graph()
        for triple in s.graph.triples((None, None, None)):
            graph.add(triple)
    return graph


def copy_of(graph: Graph) -> Graph:
    out = Graph()
    for triple in graph:
        out.add(triple)
    return out


def test_a_plant_history_validates(small_graph: Graph) -> None:
    report = validate(small_graph)
    assert report.conforms, report.text


def test_a_cell_with_two_positive_sources_is_caught(small_graph: Graph) -> None:
    broken = copy_of(small_graph)
    broken.add((URIRef(BASE + "CELL-000001"), PL.hasPositiveElectrodeSource, URIRef(BASE + "ES-C-000002")))
    report = validate(broken)
    assert not report.conforms and "exactly one positive electrode source" in report.text


def test_a_segment_beyond_its_roll_is_caught(small_graph: Graph) -> None:
    broken = copy_of(small_graph)
    seg = URIRef(BASE + "SEG-C-000001-002")
    broken.remove((seg, PL.toM, None))
    broken.add((seg, PL.toM, Literal(7.5, datatype=XSD.double)))
    report = validate(broken)
    assert not report.conforms and "a segment lies within its roll's length" in report.text


def test_a_step_without_time_is_caught(small_graph: Graph) -> None:
    broken = copy_of(small_graph)
    broken.remove((URIRef(BASE + "event/3"), PL.eventTime, None))
    report = validate(broken)
    assert not report.conforms and "every step has exactly one time" in report.text


def test_cli_validate_exit_code(tmp_path: Path) -> None:
    from ontology.__main__ import main

    with GenealogyStore(StoreConfig(path=tmp_path / "g")) as s:
        load(s, list(PlantHistory(cells=2, roll_length_m=5.0, segment_m=5.0).events()))
    assert main(["validate", "--store", str(tmp_path / "g")]) == 0
