"""``python -m twin <command>``: the twin's command line.

- ``ingest --config FILE``: connectors + validation + spool + InfluxDB, nothing else (SIGINT / SIGTERM stop it
  cleanly; SIGKILL loses nothing either, the spool and the MQTT session cover it).
- ``quarantine list|export|counts --config FILE``: what validation refused, with reasons.

Other components add their subcommands in ``COMMANDS`` (name -> (configure parser, run)).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from twin.config import Config, ConfigError, load_config
from twin.logs import quiet_libraries

log = logging.getLogger("twin")


def _load(args: argparse.Namespace) -> Config:
    try:
        return load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


# -- ingest ------------------------------------------------------------------------------------------------------------
def _ingest_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="YAML config (default: built-in defaults + env)")
    p.add_argument("--no-opcua", action="store_true", help="do not start the OPC UA connector")
    p.add_argument("--no-mqtt", action="store_true", help="do not start the MQTT connector")
    p.add_argument("--log-level", default="INFO")


async def _serve_status(pipeline: object, port: int) -> asyncio.AbstractServer:
    """``GET /status`` (JSON stats) on loopback: enough to watch ingest without the twin service."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            body = json.dumps(pipeline.stats(), default=str).encode()  # type: ignore[attr-defined]
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port)


async def _run_ingest(cfg: Config, opcua: bool, mqtt: bool) -> int:
    from twin.ingest import IngestPipeline

    pipeline = IngestPipeline(cfg, opcua=opcua and cfg.opcua.enabled, mqtt=mqtt and cfg.mqtt.enabled)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await pipeline.start()
    server = await _serve_status(pipeline, cfg.ingest.http_port) if cfg.ingest.http_port else None
    log.info("ingest running: line %s -> %s (spool %s)", cfg.line.id, cfg.influx.url, cfg.spool.dir)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), cfg.ingest.stats_interval_s)
            st = pipeline.stats()
            log.info("ingest stats: %s", json.dumps({"counts": st["counts"], "spool_depth": st["spool"]["depth_lines"],
                                                      "db_up": st["database"]["database_up"],
                                                      "quarantine": st["quarantine"]}))
    finally:
        if server is not None:
            server.close()
        await pipeline.stop()
    return 0


def _ingest(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_libraries()
    cfg = _load(args)
    return asyncio.run(_run_ingest(cfg, not args.no_opcua, not args.no_mqtt))


# -- quarantine --------------------------------------------------------------------------------------------------------
def _quarantine_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list", "export", "counts"])
    p.add_argument("--config", type=Path, default=None)
    p.add_argument("--reason", default=None, help="only this reason (malformed_json, out_of_range, nan, unit ...)")
    p.add_argument("--limit", type=int, default=50, help="list: how many of the newest")
    p.add_argument("--out", type=Path, default=None, help="export: destination JSON-lines file")


def _quarantine(args: argparse.Namespace) -> int:
    from twin.quarantine import Quarantine

    cfg = _load(args)
    q = Quarantine(cfg.quarantine.dir, cfg.quarantine.max_bytes, cfg.quarantine.keep_raw_bytes)
    if args.action == "counts":
        print(json.dumps(q.count_by_reason(), indent=2))
    elif args.action == "list":
        for e in q.list(args.reason, args.limit):
            print(json.dumps(e))
    else:
        if args.out is None:
            print("error: export needs --out FILE", file=sys.stderr)
            return 2
        n = q.export(args.out, args.reason)
        print(f"exported {n} entries to {args.out}")
    return 0


# -- line description: discover, check-line (twin/line/discover.py, twin/line/check.py) -----------------------------
def _discover_parser(p: argparse.ArgumentParser) -> None:
    from twin.line.discover import configure_parser

    configure_parser(p)


def _discover(args: argparse.Namespace) -> int:
    from twin.line.discover import run

    return run(args)


def _check_line_parser(p: argparse.ArgumentParser) -> None:
    from twin.line.check import configure_parser

    configure_parser(p)


def _check_line(args: argparse.Namespace) -> int:
    from twin.line.check import run

    return run(args)


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "ingest": ("run the connectors and the store only", _ingest_parser, _ingest),
    "quarantine": ("list / export / count quarantined input", _quarantine_parser, _quarantine),
    "discover": ("browse an OPC UA server, print a draft line description", _discover_parser, _discover),
    "check-line": ("check a line description against the live servers", _check_line_parser, _check_line),
}
from twin.quality import cli as _quality_cli  # noqa: E402 - cell record and lab import (docs/quality.md)

COMMANDS["cell-record"] = ("a cell's record: genealogy + process statistics of its material",
                           _quality_cli.record_parser, _quality_cli.record)
COMMANDS["lab"] = ("import lab / offline measurements (CSV or JSON)", _quality_cli.lab_parser, _quality_cli.lab)
from twin.cli import SERVICE_COMMANDS  # noqa: E402 - the service's own subcommands (run, token), twin/cli.py

COMMANDS.update(SERVICE_COMMANDS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m twin", description="Pilot-line digital twin")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, configure, _) in COMMANDS.items():
        configure(sub.add_parser(name, help=help_text))
    args = parser.parse_args(argv)
    return COMMANDS[args.command][2](args)


if __name__ == "__main__":
    raise SystemExit(main())
