"""SHACL validation of the genealogy graph with pyshacl (shapes in ontology/shapes.ttl)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from pyshacl import validate as shacl_validate
from rdflib import XSD, Graph, Literal


@lru_cache(maxsize=1)
def shapes() -> Graph:
    graph = Graph()
    graph.parse(source=str(resources.files("ontology") / "shapes.ttl"), format="turtle")
    return graph


@dataclass(frozen=True)
class Report:
    conforms: bool
    text: str
    results: Graph


def validate(data: Graph) -> Report:
    """Validate a copy of `data` in memory (pyshacl walks the graph many times; the copy keeps the store free)."""
    local = Graph()
    for s, p, o in data.triples((None, None, None)):
        if isinstance(o, Literal) and o.datatype == XSD.string:
            o = Literal(str(o))  # Oxigraph returns xsd:string explicitly; rdflib compares it unequal to plain "x"
        local.add((s, p, o))
    conforms, results, text = shacl_validate(local, shacl_graph=shapes(), inference="none", advanced=True,
                                             allow_warnings=False)
    return Report(bool(conforms), str(text), results)
