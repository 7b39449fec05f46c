"""``python -m twin cell-record ID`` and ``python -m twin lab import FILE``.

With ``--api URL`` (and ``--token``) they ask the running twin (GET /api/cells/ID/record, POST /api/lab): the
genealogy store is the service's and one process holds it. Without, they open the store and InfluxDB named in the
configuration themselves (the twin must not be running on the same store).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def record_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("cell_id", help="a cell's trace ID, e.g. CELL-000042")
    p.add_argument("--config", type=Path, default=None, help="YAML config (default: built-in defaults + env)")
    p.add_argument("--api", default=None, help="the running twin's address, e.g. http://127.0.0.1:8080")
    p.add_argument("--token", default=None, help="bearer token for --api (python -m twin token create)")
    p.add_argument("--format", choices=("json", "jsonld"), default="json")
    p.add_argument("--line", default=None, help="the line, when the ID exists on several")


def lab_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["import"])
    p.add_argument("file", type=Path, help="CSV (header: trace_id,quantity,value,unit,method,time,operator"
                                           "[,from_m,to_m,note]) or JSON (a list of such objects)")
    p.add_argument("--config", type=Path, default=None)
    p.add_argument("--api", default=None, help="post to the running twin instead (POST /api/lab)")
    p.add_argument("--token", default=None, help="an operator's bearer token for --api")


def _http(method: str, url: str, token: str | None, body: bytes | None = None,
          content_type: str = "application/json") -> tuple[int, bytes]:
    import httpx

    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    r = httpx.request(method, url, content=body, headers=headers, timeout=120.0)
    return r.status_code, r.content


def _local(args: argparse.Namespace) -> tuple[Any, Any]:
    from ontology.store import GenealogyStore, StoreConfig
    from twin.__main__ import _load
    from twin.quality.service import QualityService
    from twin.quality.settings import QualitySettings

    cfg = _load(args)
    g = cfg.service.genealogy
    if not g.store_path:
        print("error: service.genealogy.store_path is empty (an in-memory store has nothing to read); "
              "use --api to ask the running twin", file=sys.stderr)
        raise SystemExit(2)
    store = GenealogyStore(StoreConfig(path=g.store_path))
    store.wait_index(60)
    settings = getattr(cfg.service, "quality", None) or QualitySettings()
    return cfg, QualityService.from_config(cfg.model_dump(mode="json"), store, cfg.service.live.specs, cfg.line.id,
                                           settings)


def record(args: argparse.Namespace) -> int:
    if args.api:
        url = f"{args.api.rstrip('/')}/api/cells/{args.cell_id}/record?format={args.format}"
        if args.line:
            url += f"&line={args.line}"
        status, body = _http("GET", url, args.token)
        sys.stdout.write(body.decode() + "\n")
        return 0 if status == 200 else 1
    _, q = _local(args)
    try:
        rec = q.record(args.cell_id, args.line)
        if args.format == "jsonld":
            from twin.quality.jsonld import record_jsonld

            print(record_jsonld(q.store, rec))
        else:
            print(json.dumps(rec, indent=1, default=str, allow_nan=False) if _finite(rec) else
                  json.dumps(rec, indent=1, default=str))
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        q.close()
        q.store.close()
    return 0


def _finite(obj: Any) -> bool:
    try:
        json.dumps(obj, default=str, allow_nan=False)
    except ValueError:
        return False
    return True


def lab(args: argparse.Namespace) -> int:
    from twin.quality.lab import read_file

    try:
        rows = read_file(args.file)
    except (OSError, ValueError) as exc:
        print(f"error: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    if args.api:
        status, body = _http("POST", f"{args.api.rstrip('/')}/api/lab", args.token,
                             json.dumps(rows).encode())
        sys.stdout.write(body.decode() + "\n")
        return 0 if status == 200 else 1
    cfg, q = _local(args)
    try:
        result = q.lab_import(rows, str(args.file))
        if result.quarantined:
            from twin.quarantine import Quarantine

            Quarantine(cfg.quarantine.dir, cfg.quarantine.max_bytes, cfg.quarantine.keep_raw_bytes).add_many(
                result.rejected(str(args.file)))
        print(json.dumps(result.to_dict(rows=False), indent=1))
    finally:
        q.close()
        q.store.close()
    return 0
