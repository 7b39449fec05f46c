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
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Any

import pyoxigraph as ox
from oxrdflib import OxigraphStore
from rdflib.query import Result
from rdflib.term import BNode, Identifier, Literal, URIRef

from ontology.builder import to_ox
from ontology.queries import load

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


def inline_values(query: str, bindings: Mapping[str, Identifier]) -> str:
    """`query` with `bindings` as a VALUES block at the start of its first WHERE group."""
    match = _WHERE.search(query)
    if match is None:
        raise ValueError("the query has no WHERE group to bind values in")
    return f"{query[:match.end()]}\n  {values_block(bindings)}\n{query[match.end():]}"


class BoundOxigraphStore(OxigraphStore):
    def query(self, query: Any, initNs: Mapping[str, Any], initBindings: Mapping[str, Identifier],  # noqa: N803
              queryGraph: str, **kwargs: object) -> Result:  # noqa: N803
        if initBindings and isinstance(query, str) and _WHERE.search(query) is not None:
            query, initBindings = inline_values(query, initBindings), {}
        return super().query(query, initNs, initBindings, queryGraph, **kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# The project's own queries on the Oxigraph store run here, on pyoxigraph directly: going through rdflib and oxrdflib
# converted every result term twice (to rdflib, then to Python) and cost more than Oxigraph's evaluation itself
# (6 of 10 ms for the upstream trace of one cell). Bound values still reach the query only as a VALUES block of
# terms serialised by pyoxigraph (N-Triples escaping of quotes, backslashes and line breaks), never by formatting
# caller text into the query.

_XSD = "http://www.w3.org/2001/XMLSchema#"
_STRING, _DOUBLE, _INTEGER, _BOOLEAN = (ox.NamedNode(_XSD + t) for t in ("string", "double", "integer", "boolean"))


@cache
def _split(name: str) -> tuple[str, str] | None:
    text = load(name)
    match = _WHERE.search(text)
    return (text[:match.end()], text[match.end():]) if match is not None else None


def ox_values_block(bindings: Mapping[str, ox.NamedNode | ox.Literal]) -> str:
    for name, term in bindings.items():
        if not _VAR.match(str(name)):
            raise ValueError(f"binding name {name!r} is not a SPARQL variable name")
        if not isinstance(term, (ox.NamedNode, ox.Literal)):
            raise ValueError(f"binding ?{name} must be an IRI or a literal, got {term!r}")
    return "VALUES ({}) {{ ({}) }}".format(" ".join(f"?{n}" for n in bindings),
                                           " ".join(str(t) for t in bindings.values()))


def _rdflib_to_ox(term: Identifier) -> ox.NamedNode | ox.Literal:
    if not isinstance(term, (URIRef, Literal)):
        raise ValueError(f"a bound value must be an IRI or a literal, got {term!r}")
    return to_ox(term)  # type: ignore[return-value]


def literal_python(lit: Literal) -> Any:
    """What the genealogy answers hold for a literal: rdflib's Python value, dates as ISO 8601 UTC with Z."""
    py = lit.toPython()
    if isinstance(py, datetime):
        return py.astimezone(UTC).isoformat().replace("+00:00", "Z") if py.tzinfo else py.isoformat()
    if isinstance(py, Literal):
        return str(py)
    return py


@lru_cache(maxsize=65536)
def _slow_literal(value: str, datatype: str, language: str | None) -> Any:
    """``literal_python`` for the datatypes without a fast path."""
    return literal_python(Literal(value, lang=language) if language else Literal(value, datatype=URIRef(datatype)))


def py_value(term: Any) -> Any:
    """A result term as the genealogy JSON holds it: IRIs as rdflib URIRefs, literals as Python values."""
    if isinstance(term, ox.NamedNode):
        return URIRef(term.value)
    if isinstance(term, ox.Literal):
        datatype = term.datatype
        if datatype == _STRING:
            return term.value
        if datatype == _DOUBLE:
            try:
                return float(term.value)
            except ValueError:
                pass
        elif datatype == _INTEGER:
            try:
                return int(term.value)
            except ValueError:
                pass
        elif datatype == _BOOLEAN and term.value in ("true", "false"):
            return term.value == "true"
        return _slow_literal(term.value, datatype.value, term.language)
    if isinstance(term, ox.BlankNode):
        return BNode(term.value)
    raise ValueError(f"unexpected result term {term!r}")


def ox_select(store: ox.Store, name: str, bindings: Mapping[str, Identifier]) -> list[dict[str, Any]]:
    """Run ontology/queries/<name>.rq on a pyoxigraph store with `bindings` inlined as a VALUES block."""
    terms = {k: _rdflib_to_ox(v) for k, v in bindings.items()}
    parts = _split(name)
    if parts is None:
        solutions = store.query(load(name), substitutions={ox.Variable(k): v for k, v in terms.items()})
    else:
        head, tail = parts
        solutions = store.query(f"{head}\n  {ox_values_block(terms)}\n{tail}" if terms else head + tail)
    assert isinstance(solutions, ox.QuerySolutions), f"{name}.rq is not a SELECT query"
    names = [v.value for v in solutions.variables]
    return [{n: py_value(t) for n, t in zip(names, solution, strict=True) if t is not None} for solution in solutions]
