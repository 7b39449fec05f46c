"""An oxrdflib store whose bound values reach Oxigraph as an inline VALUES block.

pyoxigraph 0.5 applies `substitutions` (what oxrdflib passes for rdflib's `initBindings`) as a join that its
optimiser places late, so a bound trace ID still makes the engine walk every entity (300-800 ms at a few thousand
cells). The same binding written as an inline `VALUES` block at the start of the outer WHERE group is planned first
(0.1-5 ms). The block is built only from RDF terms serialised by rdflib (`Identifier.n3()`, which escapes quotes,
backslashes and line breaks), exactly like rdflib's own SPARQLStore does for remote endpoints: callers still pass
`initBindings`, and no caller string reaches the query text unescaped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from oxrdflib import OxigraphStore
from rdflib.query import Result
from rdflib.term import BNode, Identifier, Literal, URIRef

_WHERE = re.compile(r"\bWHERE\s*\{", re.IGNORECASE)
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def values_block(bindings: Mapping[str, Identifier]) -> str:
    names = list(bindings)
    for name in names:
        if not _VAR.match(str(name)):
            raise ValueError(f"binding name {name!r} is not a SPARQL variable name")
    terms = []
    for name in names:
        term = bindings[name]
        if isinstance(term, BNode) or not isinstance(term, (URIRef, Literal)):
            raise ValueError(f"binding ?{name} must be an IRI or a literal, got {term!r}")
        terms.append(term.n3())
    return "VALUES ({}) {{ ({}) }}".format(" ".join(f"?{n}" for n in names), " ".join(terms))


class BoundOxigraphStore(OxigraphStore):
    def query(self, query: Any, initNs: Mapping[str, Any], initBindings: Mapping[str, Identifier],  # noqa: N803
              queryGraph: str, **kwargs: object) -> Result:  # noqa: N803
        if initBindings and isinstance(query, str):
            match = _WHERE.search(query)
            if match is not None:
                query = f"{query[:match.end()]}\n  {values_block(initBindings)}\n{query[match.end():]}"
                initBindings = {}
        return super().query(query, initNs, initBindings, queryGraph, **kwargs)
