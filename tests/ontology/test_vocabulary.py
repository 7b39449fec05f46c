"""The vocabulary is aligned to real, current BattINFO / EMMO / BVCO IRIs (never invented, never deprecated)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rdflib import OWL, RDF, RDFS, Graph, Literal, URIRef

from ontology import iris
from ontology.builder import types_of, vocabulary
from ontology.events import TYPES
from ontology.shapes import shapes

EXTERNAL = ("https://w3id.org/emmo", "https://bvco.ontology.link/", "https://gpo.ontology.link/")


def _load_shared(root: Path) -> tuple[set[str], set[str]]:
    """Every subject declared in ../shared/ontologies and those marked owl:deprecated."""
    subjects: set[str] = set()
    deprecated: set[str] = set()
    for path in sorted(root.rglob("*.ttl")):
        graph = Graph()
        text = path.read_text(encoding="utf-8")
        if path.name == "units.ttl":  # upstream syntax error, header only (ontologies.md section 4)
            text = text.replace("units/otherunits> .", "units/otherunits> ;", 1)
        graph.parse(data=text, format="turtle", publicID=path.as_uri())
        subjects.update(str(s) for s in graph.subjects() if isinstance(s, URIRef))
        deprecated.update(str(s) for s in graph.subjects(OWL.deprecated, Literal(True)))
    return subjects, deprecated


@pytest.fixture(scope="module")
def shared_terms(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[set[str], set[str]]:
    return _load_shared(shared_dir / "ontologies")


def project_external_iris() -> set[str]:
    """External IRIs in vocab.ttl, shapes.ttl and ontology/iris.py (the builder emits no others)."""
    found: set[str] = set()
    for graph in (vocabulary(), shapes()):
        for triple in graph:
            for term in triple:
                if isinstance(term, URIRef) and str(term).startswith(EXTERNAL):
                    found.add(str(term))
    namespaces = {"EMMO": iris.EMMO, "ECHEM": iris.ECHEM, "BATTERY": iris.BATTERY, "MFG": iris.MFG, "BVCO": iris.BVCO}
    source = Path(iris.__file__).read_text(encoding="utf-8")
    for prefix, local in re.findall(r"\b(EMMO|ECHEM|BATTERY|MFG|BVCO)\.([A-Za-z][A-Za-z0-9_]+)", source):
        found.add(str(namespaces[prefix][local]))
    found.update(str(v) for v in vars(iris).values() if isinstance(v, URIRef) and str(v).startswith(EXTERNAL))
    found.update(cls for _, cls in iris.QUANTITY_BY_STEM)
    found.update(str(iris.EMMO[name]) for name in iris.UNIT_SUFFIXES.values())
    return found


def test_every_external_iri_exists_in_the_shared_ontologies_and_is_not_deprecated(
        shared_terms: tuple[set[str], set[str]]) -> None:
    subjects, deprecated = shared_terms
    used = project_external_iris()
    assert len(used) > 60  # classes, properties, quantities and units are all checked
    missing = sorted(i for i in used if i not in subjects)
    assert not missing, f"IRIs not declared in ../shared/ontologies: {missing}"
    stale = sorted(i for i in used if i in deprecated)
    assert not stale, f"deprecated IRIs in use: {stale}"


def test_no_old_namespaces_and_no_gpo_properties() -> None:
    """Pitfalls 1-3 of ontologies.md: BVCO's http://emmo.info namespace, GPO hasInput/hasOutput/hasPredecessor."""
    text = " ".join(str(t) for triple in vocabulary() for t in triple)
    assert "http://emmo.info" not in text
    assert "gpo.ontology.link" not in text
    assert (None, OWL.equivalentClass, None) not in vocabulary()


def test_every_trace_type_and_step_has_a_class_with_an_upstream_parent() -> None:
    v = vocabulary()
    for name in list(iris.ENTITY_CLASSES.values()) + list(set(iris.STEP_CLASSES.values())) + ["Equipment"]:
        cls = iris.PL[name]
        assert (cls, RDF.type, OWL.Class) in v, name
        parents = [str(t) for t in types_of(cls)]
        if name not in ("Receiving",):  # receiving has no upstream process class; it is a pl:ProcessStep
            assert any(p.startswith(EXTERNAL) for p in parents), f"{name} has no BattINFO/EMMO parent"
    assert set(TYPES) == set(iris.ENTITY_CLASSES)


def test_object_properties_specialise_emmo_relations() -> None:
    v = vocabulary()
    expected = {
        iris.PL.hasInput: iris.EMMO_HAS_INPUT, iris.PL.hasOutput: iris.EMMO_HAS_OUTPUT,
        iris.PL.hasSegment: iris.EMMO_HAS_PART, iris.PL.segmentOf: iris.EMMO_IS_PART_OF,
        iris.PL.precedes: iris.EMMO_PRECEDES, iris.PL.usedEquipment: iris.EMMO_HAS_PARTICIPANT,
        iris.PL.hasPositiveElectrodeSource: iris.ECHEM_HAS_POSITIVE_ELECTRODE,
    }
    for prop, parent in expected.items():
        assert (prop, RDFS.subPropertyOf, parent) in v, prop
