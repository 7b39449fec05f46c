"""``python -m simulator`` (console script ``pilotline-sim``): the bundled pilot line.

Subcommands besides the default run: ``hash-password`` (print a PBKDF2 hash for a users file) and ``nodes``
(print the address space; ``--markdown`` gives the table of docs/simulator.md).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from .opcua_server import POLICIES, HistoryOptions
from .plant import PlantError
from .runner import Options, Runner
from .scenario import ScenarioError, load_scenario
from .spec import line_specs, markdown_table
from .users import LineUserManager, UsersFileError, default_users, load_users, make_hash


def _positive(kind: type[float] | type[int]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"--port must be 1..65535, got {text}")
    return value


def _line_id(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", text):
        raise argparse.ArgumentTypeError(f"--line-id must be 1-32 letters, digits, '-' or '_' (it is an MQTT topic "
                                         f"level), got {text!r}")
    return text


def _security(text: str) -> tuple[str, ...]:
    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    bad = [m for m in modes if m not in POLICIES]
    if not modes or bad:
        raise argparse.ArgumentTypeError(f"--security takes a comma list of {sorted(POLICIES)}, got {text!r}")
    return modes


def _time(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--start-time must be ISO 8601, e.g. 2026-01-01T00:00:00Z: {exc}") from exc
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m simulator", description="Pilot-line simulator: OPC UA + MQTT.",
        epilog="subcommands: `python -m simulator hash-password [--stdin]` prints a users-file hash; "
               "`python -m simulator nodes [--markdown]` prints the address space.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=4840, help="OPC UA TCP port (default 4840)")
    p.add_argument("--speed", type=_positive(float), default=1.0,
                   help="time acceleration: simulated seconds per wall second (default 1; 60 = a line-hour a minute)")
    p.add_argument("--tick", type=_positive(float), default=1.0, help="simulated seconds per step (default 1.0)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed + scenario = same run")
    p.add_argument("--scenario", type=Path, default=None, help="scenario YAML (default: nominal line, no events)")
    p.add_argument("--security", type=_security, default=("sign", "sign-encrypt"),
                   help="comma list of none, sign, sign-encrypt (Basic256Sha256); default sign,sign-encrypt")
    p.add_argument("--users", type=Path, default=None,
                   help="users YAML (name -> password_hash, role); default: one 'operator' whose random password "
                        "is in DATA_DIR/operator-password")
    p.add_argument("--no-anonymous", action="store_true", help="refuse anonymous sessions (anonymous = viewer)")
    p.add_argument("--mqtt-url", default=None, help="e.g. mqtt://127.0.0.1:1883; omitted = no MQTT")
    p.add_argument("--record", type=Path, default=None, help="write every published value as JSON lines here")
    p.add_argument("--data-dir", type=Path, default=Path("var/simulator"),
                   help="server certificate/key and default operator password (default ./var/simulator)")
    p.add_argument("--line-id", type=_line_id, default="PL1",
                   help="line identifier in topics and trace events (default PL1)")
    p.add_argument("--start-time", type=_time, default=None,
                   help="simulated start time (default: wall-clock UTC now); fix it to compare records exactly")
    p.add_argument("--duration", type=_positive(float), default=None,
                   help="stop after this many simulated seconds (default: run until Ctrl-C)")
    p.add_argument("--warmup", type=float, default=0.0, metavar="SECONDS",
                   help="begin this many simulated seconds before the start time and run them as fast as the "
                        "machine can, so the line is full when pacing begins (scenario times and --duration count "
                        "from the beginning of the warm-up; default 0)")
    p.add_argument("--profile-points", type=int, default=0,
                   help="extra cross-web beta-gauge tracks per lane (load generator for ingest benchmarks)")
    p.add_argument("--profile-array", action="store_true",
                   help="publish the --profile-points tracks as one Double[N] node per lane instead of N nodes")
    p.add_argument("--historize", action="store_true",
                   help="offer OPC UA historical access (HistoryRead raw) on the analog and ID nodes (default off)")
    p.add_argument("--history-db", type=Path, default=None,
                   help="with --historize: keep the history in this SQLite file, so it survives a server restart "
                        "(default: in memory, lost with the server)")
    p.add_argument("--history-max-values", type=_positive(int), default=20_000,
                   help="with --historize: values kept per node, the oldest dropped first (default 20000)")
    p.add_argument("--log-level", default="WARNING", help="Python logging level (default WARNING)")
    return p


def _hash_password(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m simulator hash-password",
                                description="Print a PBKDF2-SHA256 hash for the users file.")
    p.add_argument("--stdin", action="store_true", help="read the password from stdin instead of prompting")
    p.add_argument("--iterations", type=int, default=600_000)
    args = p.parse_args(argv)
    password = sys.stdin.readline().rstrip("\n") if args.stdin else getpass.getpass("password: ")
    if not password:
        print("error: empty password", file=sys.stderr)
        return 2
    print(make_hash(password, args.iterations))
    return 0


def _nodes(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m simulator nodes", description="Print the address space.")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--channels", type=int, default=16)
    args = p.parse_args(argv)
    if args.markdown:
        print(markdown_table(args.channels))
    else:
        for s in line_specs(args.channels):
            print(f"ns=2;s={s.node_id}\t{s.kind}\t{s.unit or ''}\t{s.eu_range or ''}\t{'rw' if s.writable else 'r'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["hash-password"]:
        return _hash_password(argv[1:])
    if argv[:1] == ["nodes"]:
        return _nodes(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level.upper() != "DEBUG":
        logging.getLogger("asyncua").setLevel(logging.ERROR)
    try:
        scenario = load_scenario(args.scenario)
        if args.users:
            accounts = load_users(args.users)
        else:
            accounts, secret = default_users(args.data_dir)
            print(f"simulator: user 'operator' (role operator), password in {secret}", flush=True)
    except (ScenarioError, UsersFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not 0 <= args.warmup <= 7 * 86400:
        print("error: --warmup must be between 0 and 604800 simulated seconds", file=sys.stderr)
        return 2
    if args.profile_points < 0 or args.profile_points > 1000:
        print("error: --profile-points must be 0..1000", file=sys.stderr)
        return 2
    # the web must not run past a whole gauge distance or roll in one step (5 m/min is the WebSpeed EURange maximum)
    max_step_m = 5.0 * args.tick / 60.0
    if max_step_m > min(0.5, scenario.line.roll_length_m / 4):
        print(f"error: --tick {args.tick:g} s lets the web move up to {max_step_m:.2f} m per step; keep it below "
              f"{min(0.5, scenario.line.roll_length_m / 4) * 60 / 5:.1f} s for this scenario", file=sys.stderr)
        return 2
    opts = Options(host=args.host, port=args.port, speed=args.speed, tick_s=args.tick, seed=args.seed,
                   line_id=args.line_id, data_dir=args.data_dir, security=args.security, mqtt_url=args.mqtt_url,
                   record=args.record, start_time=args.start_time, duration_s=args.duration,
                   warmup_s=args.warmup,
                   profile_points=args.profile_points, profile_array=args.profile_array,
                   history=HistoryOptions(args.history_db, int(args.history_max_values)) if args.historize else None)
    users = LineUserManager(accounts, allow_anonymous=not args.no_anonymous)
    try:
        runner = Runner(opts, scenario, users)
    except (PlantError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(runner.run())
    except OSError as exc:
        print(f"error: {exc} (is port {args.port} in use?)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
