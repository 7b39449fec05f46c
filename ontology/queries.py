"""The SPARQL files under ontology/queries/, loaded once and run with bound values only.

IDs and numbers reach a query as RDF terms through `initBindings` (pyoxigraph substitutions on the Oxigraph store,
rdflib bindings in memory, a VALUES block built from escaped terms for a remote endpoint), never by string formatting,
so a crafted ID cannot change a query's meaning.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Final

QUERY_NAMES: Final = (
    "find_entity",
    "upstream",
    "upstream_edges",
    "upstream_values",
    "raw_data",
    "segments",
    "assembly_conditions",
    "dew_point_summary",
    "formation",
    "predictions",
    "audits",
    "downstream",
    "downstream_range",
    "coating_stretches",
    "cells_dew_point_above",
    "assembly_windows",
    "index",
    "lookup_entity",
    "entity_count",
    "seq_summary",
    "seqs",
    "event_identity",
    "genealogy_nodes",
    "genealogy_root_nodes",
)


@cache
def load(name: str) -> str:
    if name not in QUERY_NAMES:
        raise KeyError(f"no query named {name!r}; known: {', '.join(QUERY_NAMES)}")
    return (resources.files("ontology") / "queries" / f"{name}.rq").read_text(encoding="utf-8")
