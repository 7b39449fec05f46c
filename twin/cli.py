"""The twin service's subcommands of ``python -m twin``: ``run`` and ``token``.

- ``run --config FILE``: the whole service (ingest, live state, predictions, recommendations, API and dashboard).
- ``token create --role viewer|operator|engineer --name N``: prints a new bearer token once (only its hash is kept).
- ``token list`` / ``token revoke --name N``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path


def _run_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="YAML config (default: built-in defaults + env)")
    p.add_argument("--opcua-password-file", type=Path, default=None,
                   help="read the OPC UA user's password from this file (e.g. the simulator's operator-password; "
                        "a Docker / Kubernetes secret file) instead of the config or environment")


def _run(args: argparse.Namespace) -> int:
    from twin.config import ConfigError
    from twin.service import run

    password = None
    if args.opcua_password_file is not None:
        try:
            password = args.opcua_password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            print(f"error: cannot read --opcua-password-file: {exc}", file=sys.stderr)
            return 2
    try:
        return run(str(args.config) if args.config else None, opcua_password=password)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _token_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("--role", choices=["viewer", "operator", "engineer"], default=None)
    p.add_argument("--name", default=None, help="who or what the token is for (unique)")
    p.add_argument("--config", type=Path, default=None, help="to find service.auth.token_file")


def _token(args: argparse.Namespace) -> int:
    from twin.auth import TokenStore
    from twin.config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    store = TokenStore(cfg.service.auth.token_file)
    if args.action == "list":
        print(json.dumps(store.list(), indent=2))
        return 0
    if not args.name:
        print("error: --name is required", file=sys.stderr)
        return 2
    if args.action == "revoke":
        if not store.revoke(args.name):
            print(f"error: no token named {args.name!r}", file=sys.stderr)
            return 1
        print(f"revoked {args.name}")
        return 0
    if not args.role:
        print("error: token create needs --role viewer|operator|engineer", file=sys.stderr)
        return 2
    try:
        token = store.create(args.role, args.name)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(token)
    print(f"(role {args.role}, name {args.name}; stored hashed in {store.path}; this is the only time it is shown)",
          file=sys.stderr)
    return 0


SERVICE_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None],
                                   Callable[[argparse.Namespace], int]]] = {
    "run": ("run the twin service: ingest, live state, predictions, recommendations, API, dashboard",
            _run_parser, _run),
    "token": ("create / list / revoke API bearer tokens", _token_parser, _token),
}
