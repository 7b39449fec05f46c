"""`python -m ontology ...`: serve the genealogy API, load recorded trace events, ask genealogy questions, validate.

    python -m ontology load RECORD.jsonl --store var/genealogy      # simulator --record file or bare JSON lines
    python -m ontology serve --store var/genealogy --port 8090
    python -m ontology genealogy CELL-000001 --store var/genealogy
    python -m ontology downstream CR-C-000001 --from-m 40 --to-m 55 --store var/genealogy
    python -m ontology validate --store var/genealogy                 # SHACL (pyshacl)
    python -m ontology export --store var/genealogy --format turtle > genealogy.ttl
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ontology.iris import DEFAULT_BASE_IRI
from ontology.store import GenealogyStore, QueryInputError, StoreConfig, UnknownIdError


def trace_events(path: Path) -> Iterator[dict[str, Any]]:
    """Trace events from a JSON-lines file: simulator `--record` lines (only `mqtt:pilotline/<line>/trace`
    records) or bare trace events, one per line."""
    with path.open(encoding="utf-8") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise SystemExit(f"{path}:{number}: not JSON ({exc.msg})") from None
            if isinstance(record, dict) and "source" in record:
                source = str(record.get("source", ""))
                if source.startswith("mqtt:pilotline/") and source.endswith("/trace"):
                    yield record["value"]
            else:
                yield record


def _store(args: argparse.Namespace) -> GenealogyStore:
    return GenealogyStore(StoreConfig(path=args.store, backend=args.backend, base_iri=args.base_iri,
                                      query_endpoint=args.query_endpoint, update_endpoint=args.update_endpoint))


def _add_store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", type=Path, default=Path("var/genealogy"), help="store directory (default var/genealogy)")
    p.add_argument("--backend", choices=("oxigraph", "memory", "sparql"), default="oxigraph")
    p.add_argument("--base-iri", default=DEFAULT_BASE_IRI, help=f"base of instance IRIs (default {DEFAULT_BASE_IRI})")
    p.add_argument("--query-endpoint", default=None, help="remote SPARQL 1.1 query endpoint (backend sparql)")
    p.add_argument("--update-endpoint", default=None, help="remote SPARQL 1.1 update endpoint (backend sparql)")


def build_app(store: GenealogyStore) -> Any:
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    from ontology.api import make_router

    app = FastAPI(title="Pilot-line genealogy", version="0.1.0")

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Any, exc: RequestValidationError) -> JSONResponse:
        reasons = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": f"malformed request: {reasons}"}, status_code=400)

    app.include_router(make_router(store))
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ontology", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the genealogy API alone")
    _add_store_args(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090)
    p = sub.add_parser("load", help="place trace events from JSON-lines files")
    _add_store_args(p)
    p.add_argument("files", type=Path, nargs="+")
    for name in ("genealogy", "downstream"):
        p = sub.add_parser(name, help=f"print the {name} of an ID as JSON")
        _add_store_args(p)
        p.add_argument("id")
        p.add_argument("--line", default=None)
        if name == "downstream":
            p.add_argument("--from-m", type=float, default=None)
            p.add_argument("--to-m", type=float, default=None)
    for name, text in (("validate", "SHACL-validate the graph"), ("status", "counts, sequence gaps, quarantine"),
                       ("export", "serialise the whole graph")):
        p = sub.add_parser(name, help=text)
        _add_store_args(p)
        if name == "export":
            p.add_argument("--format", default="turtle", choices=("turtle", "nt", "json-ld", "xml"))
    args = parser.parse_args(argv)

    if args.command == "serve":
        import uvicorn

        with _store(args) as store:
            uvicorn.run(build_app(store), host=args.host, port=args.port, log_level="warning")
        return 0
    with _store(args) as store:
        if args.command == "load":
            count = 0
            for path in args.files:
                for event in trace_events(path):
                    store.add_event(event)
                    count += 1
            store.flush(timeout=3600)
            status = store.status()
            print(json.dumps({"read": count, **{k: status[k] for k in ("placed", "duplicates", "quarantined_now",
                                                                        "entities", "lines")}}, indent=2))
            for entry in list(store.quarantine)[:20]:
                print(f"quarantined: {entry.reason}", file=sys.stderr)
            return 0
        try:
            if args.command == "genealogy":
                print(json.dumps(store.genealogy(args.id, args.line), indent=2, default=str))
            elif args.command == "downstream":
                print(json.dumps(store.downstream(args.id, args.from_m, args.to_m, args.line), indent=2, default=str))
            elif args.command == "status":
                print(json.dumps({**store.status(), "quarantine": [e.public() for e in list(store.quarantine)[:50]]},
                                 indent=2, default=str))
            elif args.command == "export":
                sys.stdout.buffer.write(store.export(args.format))
            elif args.command == "validate":
                from ontology.shapes import validate

                report = validate(store.graph)
                print(report.text)
                return 0 if report.conforms else 1
        except UnknownIdError as exc:
            print(f"not found: {exc}", file=sys.stderr)
            return 4
        except QueryInputError as exc:
            print(f"bad input: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
