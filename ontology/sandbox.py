"""Run a user's read-only SPARQL query with a hard time limit and a result limit.

For the persistent Oxigraph store the query runs in a child process that opens the store read-only (RocksDB allows
that beside the writer) and is killed when it runs out of time, so a runaway query cannot hold the service's CPU.
Other backends run the query in a thread; past the limit the caller gets an error and the thread's result is dropped.
Updates never reach a store: they are refused before any execution (see `check_read_only`).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyparsing import ParseException
from rdflib.plugins.sparql.parser import parseQuery, parseUpdate


class ReadOnlyError(PermissionError):
    """The request was a SPARQL update; this endpoint only reads."""


class QueryTimeout(TimeoutError):
    """The query ran past its time limit and was stopped."""


class QuerySyntaxError(ValueError):
    """Not a valid SPARQL 1.1 query."""


def check_read_only(text: str) -> str:
    """Return the query form (SELECT, ASK, CONSTRUCT, DESCRIBE); refuse updates and SERVICE (no outbound calls)."""
    if not isinstance(text, str) or not text.strip():
        raise QuerySyntaxError("empty query: send a SPARQL 1.1 SELECT, ASK, CONSTRUCT or DESCRIBE")
    try:
        parsed = parseQuery(text)
    except ParseException as exc:
        try:
            parseUpdate(text)
        except ParseException:
            raise QuerySyntaxError(f"SPARQL syntax error at line {exc.lineno}, column {exc.col}: {exc.msg}") from None
        raise ReadOnlyError("SPARQL updates are refused: this endpoint is read-only") from None
    if "ServiceGraphPattern" in repr(parsed):
        raise ReadOnlyError("SERVICE (federated queries) is refused: this endpoint answers from its own graph only")
    return str(parsed[1].name).replace("Query", "").upper()


def _term_json(term: Any) -> dict[str, str]:
    import pyoxigraph as ox
    from rdflib import BNode, Literal, URIRef

    if isinstance(term, (ox.NamedNode, URIRef)):
        return {"type": "uri", "value": str(term.value if isinstance(term, ox.NamedNode) else term)}
    if isinstance(term, (ox.BlankNode, BNode)):
        return {"type": "bnode", "value": str(term.value if isinstance(term, ox.BlankNode) else term)}
    if isinstance(term, ox.Literal):
        out = {"type": "literal", "value": term.value}
        if term.language:
            out["xml:lang"] = term.language
        elif term.datatype.value != "http://www.w3.org/2001/XMLSchema#string":
            out["datatype"] = term.datatype.value
        return out
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


def _serve(path: str) -> None:
    """Child side: one JSON request per stdin line, one JSON answer per stdout line."""
    import json
    import sys

    import pyoxigraph as ox

    for raw in sys.stdin:
        request = json.loads(raw)
        try:
            store = ox.Store.read_only(path)
            answer = _ox_answer(store, request["query"], request["form"], int(request["limit"]))
            del store
            reply = {"status": "ok", "answer": answer.__dict__}
        except Exception as exc:  # noqa: BLE001 - reported to the caller as a query error
            reply = {"status": "error", "message": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


class OxigraphSandbox:
    """One long-lived child process (`python -m ontology.sandbox DIR`) answering queries against a read-only view
    of the store directory; killed and replaced when a query runs past its limit."""

    def __init__(self, store_dir: Path) -> None:
        self.store_dir = str(store_dir)
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            root = str(Path(__file__).resolve().parent.parent)
            env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
            self._proc = subprocess.Popen([sys.executable, "-m", "ontology.sandbox", self.store_dir],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=root)
        return self._proc

    def run(self, text: str, form: str, limit: int, timeout_s: float) -> Answer:
        with self._lock:
            proc = self._ensure()
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write((json.dumps({"query": text, "form": form, "limit": limit}) + "\n").encode())
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
            if not ready:
                self.close()
                raise QueryTimeout(f"query stopped after {timeout_s:g} s (the limit); narrow it or add LIMIT")
            line = proc.stdout.readline()
        if not line:
            self.close()
            raise QuerySyntaxError("the query process ended without an answer (out of memory?)")
        reply = json.loads(line)
        if reply["status"] == "error":
            raise QuerySyntaxError(reply["message"])
        return Answer(**reply["answer"])

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        if proc is not None:
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()


def run_in_thread(run: Callable[[], Answer], timeout_s: float) -> Answer:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["answer"] = run()
        except Exception as exc:  # noqa: BLE001
            box["error"] = exc

    worker = threading.Thread(target=target, daemon=True, name="sparql-query")
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise QueryTimeout(f"query stopped waiting after {timeout_s:g} s (the limit); narrow it or add LIMIT")
    if "error" in box:
        raise QuerySyntaxError(f"{type(box['error']).__name__}: {box['error']}")
    return box["answer"]


def rdflib_answer(graph: Any, text: str, form: str, limit: int) -> Answer:
    result = graph.query(text)
    if form == "ASK":
        return Answer(form, {"head": {}, "boolean": bool(result.askAnswer)})
    return _collect(result, form, limit, lambda r: [str(v) for v in r.vars],
                    lambda r: ({str(k): row[k] for k in r.vars} for row in r))


if __name__ == "__main__":
    _serve(sys.argv[1])
