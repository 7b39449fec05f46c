"""The query process: answers user SPARQL and export pages from a snapshot of the genealogy store, one JSON request
per stdin line, one JSON answer per stdout line (started and killed by `ontology.sandbox`). It imports pyoxigraph
and nothing heavier, so that a replacement for a process killed at its time limit starts in a few tens of ms: it is
started under `nice`, but its interpreter's start-up is CPU the service does not get.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pyoxigraph as ox


def _term_json(term: Any) -> dict[str, str]:
    if isinstance(term, ox.NamedNode):
        return {"type": "uri", "value": term.value}
    if isinstance(term, ox.BlankNode):
        return {"type": "bnode", "value": term.value}
    if isinstance(term, ox.Literal):
        out = {"type": "literal", "value": term.value}
        if term.language:
            out["xml:lang"] = term.language
        elif term.datatype.value != "http://www.w3.org/2001/XMLSchema#string":
            out["datatype"] = term.datatype.value
        return out
    from rdflib import BNode, Literal, URIRef  # the thread backends' terms

    if isinstance(term, URIRef):
        return {"type": "uri", "value": str(term)}
    if isinstance(term, BNode):
        return {"type": "bnode", "value": str(term)}
    if isinstance(term, Literal):
        out = {"type": "literal", "value": str(term)}
        if term.language:
            out["xml:lang"] = term.language
        elif term.datatype is not None and str(term.datatype) != "http://www.w3.org/2001/XMLSchema#string":
            out["datatype"] = str(term.datatype)
        return out
    return {"type": "literal", "value": str(term)}


def _nt(term: Any) -> str:
    return str(term) if hasattr(term, "value") else term.n3()


@dataclass
class Answer:
    form: str  # SELECT | ASK | CONSTRUCT | DESCRIBE
    json: dict[str, Any] | None = None  # SPARQL 1.1 JSON results (SELECT, ASK)
    ntriples: str | None = None  # CONSTRUCT / DESCRIBE
    truncated: bool = False


@dataclass
class ExportPage:
    """Up to `limit` triples of the default graph as N-Triples lines, and the cursor of the next page (None: last)."""

    ntriples: str
    count: int
    more: bool
    next_cursor: str | None  # None on the last page, and where the caller asked for no cursor (pin=False)


def _collect(result: Any, form: str, limit: int, vars_of: Callable[[Any], list[str]],
             rows: Callable[[Any], Iterable[dict[str, Any]]]) -> Answer:
    if form == "ASK":
        return Answer(form, {"head": {}, "boolean": bool(result)})
    if form in ("CONSTRUCT", "DESCRIBE"):
        lines, truncated = [], False
        for i, triple in enumerate(result):
            if i >= limit:
                truncated = True
                break
            s, p, o = (triple.subject, triple.predicate, triple.object) if hasattr(triple, "subject") else triple
            lines.append(f"{_nt(s)} {_nt(p)} {_nt(o)} .")
        return Answer(form, ntriples="\n".join(lines) + ("\n" if lines else ""), truncated=truncated)
    names = vars_of(result)
    bindings, truncated = [], False
    for i, row in enumerate(rows(result)):
        if i >= limit:
            truncated = True
            break
        bindings.append({k: _term_json(v) for k, v in row.items() if v is not None})
    return Answer(form, {"head": {"vars": names}, "results": {"bindings": bindings}}, truncated=truncated)


def _ox_answer(store: Any, text: str, form: str, limit: int) -> Answer:
    result = store.query(text)
    return _collect(result, form, limit, lambda r: [v.value for v in r.variables],
                    lambda r: ({v.value: sol[v] for v in r.variables} for sol in r))


# The page query: no ORDER BY, so Oxigraph walks its index in one fixed order; on an immutable snapshot the same
# OFFSET always lands on the same triple, so pages neither repeat nor skip one. Both numbers are Python ints.
_PAGE = "SELECT ?s ?p ?o WHERE {{ ?s ?p ?o }} OFFSET {offset} LIMIT {limit}"


def _ox_page(store: Any, offset: int, limit: int) -> tuple[list[str], bool]:
    """`limit` N-Triples lines from `offset`, and whether more follow."""
    rows = store.query(_PAGE.format(offset=int(offset), limit=int(limit) + 1))
    lines = [f"{s} {p} {o} ." for s, p, o in (tuple(sol) for sol in rows)]
    return lines[:limit], len(lines) > limit


def _serve() -> None:
    """Child side: one JSON request per stdin line, one JSON answer per stdout line. The snapshot a request names
    stays open for the next request on the same snapshot."""
    if len(sys.argv) > 1:  # the niceness asked for, where no `nice` command started this process with it
        import os

        os.nice(max(0, int(sys.argv[1]) - os.nice(0)))
    if len(sys.argv) > 2:  # the heap this process may take: a runaway query ends this process, not the service
        import resource

        limit = int(sys.argv[2]) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    opened: tuple[str, Any] | None = None
    for raw in sys.stdin:
        request = json.loads(raw)
        try:
            if opened is None or opened[0] != request["path"]:
                opened = None  # close the previous snapshot before opening the next
                opened = (request["path"], ox.Store.read_only(request["path"]))
            store = opened[1]
            if request["op"] == "page":
                lines, more = _ox_page(store, int(request["offset"]), int(request["limit"]))
                reply: dict[str, Any] = {"status": "ok", "lines": lines, "more": more}
            else:
                answer = _ox_answer(store, request["query"], request["form"], int(request["limit"]))
                reply = {"status": "ok", "answer": answer.__dict__}
        except (SyntaxError, ValueError) as exc:
            reply = {"status": "error", "kind": "syntax", "message": f"{type(exc).__name__}: {exc}"}
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            reply = {"status": "error", "kind": "failed", "message": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()




if __name__ == "__main__":
    _serve()
