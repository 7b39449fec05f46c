"""``python -m twin check-line line.yaml``: check a line description against the live servers before running on it.

Why: a description is written from a vendor's documentation and a discover draft; what is wrong in it shows only
against the servers (a node renamed in a firmware update, a setpoint the configured user may not write, a grant node
that is an Int32, a rule that matches nothing). The twin would start and quietly store nothing, or refuse a
recommendation in production; check-line says it before, one line per check with the key (and the line) in the file:

    OK    sources.opcua.0 (coater): connected to opc.tcp://... (Basic256Sha256/SignAndEncrypt, user operator)
    ERROR line.yaml:87 products.nmc.loops.Cathode.manipulated.0.setpoint_node: ... not writable by user operator

Exit 1 on any ERROR (warnings are things that may be meant: a rule for a machine that is switched off). Errors in the
file itself come from ``twin.line.load`` with their line numbers, and stop the check.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import yaml
from asyncua import ua
from asyncua.client.client import Client

from connectors.mapping import glob_regex, matches_any, resolve
from connectors.opcua.asyncua_adapter import make_client, namespace_index
from connectors.opcua.browse import browse_root, node_id_forms, resolve_node_id, station_and_signal, units_batch
from connectors.opcua.bulk import (
    browse_tree,
    can_write,
    data_type_kind,
    data_type_name,
    good_value,
    operation_limits,
)
from connectors.settings import MqttConfig, OpcuaConfig, TraceNode
from twin.line.description import LineDescription
from twin.line.discover import Variable, read_variables
from twin.line.load import LineDescriptionError, _line_of, _positions, load_line

Level = Literal["OK", "WARN", "ERROR"]


@dataclass(frozen=True)
class Finding:
    level: Level
    key: str
    message: str


@dataclass
class Report:
    origin: str
    positions: dict[tuple[Any, ...], int]
    findings: list[Finding] = field(default_factory=list)

    def add(self, level: Level, key: str, message: str) -> None:
        self.findings.append(Finding(level, key, message))

    def ok(self, key: str, message: str) -> None:
        self.add("OK", key, message)

    def warn(self, key: str, message: str) -> None:
        self.add("WARN", key, message)

    def error(self, key: str, message: str) -> None:
        self.add("ERROR", key, message)

    @property
    def errors(self) -> int:
        return sum(f.level == "ERROR" for f in self.findings)

    def line_of(self, key: str) -> int | None:
        loc = tuple(int(p) if p.isdigit() else p for p in key.split("."))
        return _line_of(loc, self.positions)

    def render(self) -> str:
        out = []
        for f in self.findings:
            line = self.line_of(f.key) if f.level != "OK" else None
            where = f"{self.origin}:{line} " if line else ""
            out.append(f"{f.level:<5} {where}{f.key}: {f.message}")
        n = {lv: sum(f.level == lv for f in self.findings) for lv in ("OK", "WARN", "ERROR")}
        out.append(f"check-line: {n['ERROR']} errors, {n['WARN']} warnings, {n['OK']} OK")
        return "\n".join(out) + "\n"


@dataclass
class SourceView:
    """What one OPC UA source has, as far as the checks need it."""

    index: int
    cfg: OpcuaConfig
    client: Client | None = None
    ns: int = 2
    variables: dict[str, Variable] = field(default_factory=dict)  # browse path -> variable
    by_node_id: dict[str, Variable] = field(default_factory=dict)
    produced: set[str] = field(default_factory=set)  # Station/Signal its samples carry

    @property
    def key(self) -> str:
        return f"sources.opcua.{self.index}"


def _user(cfg: OpcuaConfig) -> str:
    return f"user {cfg.username}" if cfg.auth_method == "username" else "anonymous"


def _err(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


async def _node(view: SourceView, text: str) -> tuple[ua.NodeId, Variable | None]:
    """The node ``text`` names on the view's server (raises when it does not exist), and what discovery knows of it."""
    assert view.client is not None
    nid = await resolve_node_id(view.client, text, view.ns)
    await view.client.get_node(nid).read_browse_name()  # BadNodeIdUnknown for a NodeId that is not there
    return nid, view.by_node_id.get(nid.to_string())


async def _attributes(client: Client, nid: ua.NodeId) -> tuple[str, str, int | None, Any, bool]:
    """(kind, data type name, UserAccessLevel, value, value readable) of a variable."""
    dt, ual, val = await client.uaclient.read(_read_params(nid))
    dtype, level = good_value(dt), good_value(ual)
    readable = val.StatusCode is None or val.StatusCode.is_good()
    return (data_type_kind(dtype), data_type_name(dtype), int(level) if level is not None else None,
            good_value(val), readable)


def _read_params(nid: ua.NodeId) -> ua.ReadParameters:
    params = ua.ReadParameters()
    for attr in (ua.AttributeIds.DataType, ua.AttributeIds.UserAccessLevel, ua.AttributeIds.Value):
        rv = ua.ReadValueId()
        rv.NodeId = nid
        rv.AttributeId = cast(ua.UInt32, int(attr))
        params.NodesToRead.append(rv)
    return params


async def check_source(report: Report, view: SourceView, timeout_s: float) -> None:
    cfg, key = view.cfg, view.key
    security = f"{cfg.security_policy}/{cfg.security_mode}"
    try:
        client = await make_client(cfg, None)
        await asyncio.wait_for(client.connect(), timeout_s)
    except Exception as exc:  # noqa: BLE001 - whatever refused us is the finding
        report.error(f"{key}.endpoint", f"({cfg.name}) cannot connect to {cfg.endpoint} with security {security} as "
                                        f"{_user(cfg)}: {_err(exc)}")
        return
    view.client = client
    report.ok(key, f"({cfg.name}) connected to {cfg.endpoint} (security {security}, {_user(cfg)})")
    namespaces = list(await client.get_namespace_array())
    if cfg.namespace_uri and cfg.namespace_uri not in namespaces:
        report.error(f"{key}.namespace_uri", f"{cfg.namespace_uri!r} is not among the server's namespaces "
                                             f"{namespaces[1:]}")
        return
    view.ns = await namespace_index(client, cfg.namespace_uri)
    if cfg.namespace_uri:
        report.ok(f"{key}.namespace_uri", f"{cfg.namespace_uri} is namespace {view.ns}")
    try:
        root, root_path = await browse_root(cfg, client, view.ns)
    except Exception as exc:  # noqa: BLE001 - BadNoMatch and friends
        report.error(f"{key}.discovery.browse_path", f"{cfg.discovery.browse_path!r} not found below Objects "
                                                     f"({_err(exc)})")
        return
    limits = await operation_limits(client)
    tree = await browse_tree(client, root.nodeid, limits, root_path)
    variables = await read_variables(client, tree.nodes, limits)
    view.variables = {v.browse_path: v for v in variables}
    view.by_node_id = {v.node_id.to_string(): v for v in variables}
    report.ok(f"{key}.discovery.browse_path", f"{cfg.discovery.browse_path or '/'}: {len(variables)} variables "
                                              f"below it ({tree.browse_requests} Browse requests)")
    await _check_rules(report, view, namespaces, root_path)
    if cfg.grant_node:
        await _check_grant(report, view, cfg.grant_node, f"{key}.grant_node")
    if cfg.event_root:
        try:
            await _node(view, cfg.event_root)
            report.ok(f"{key}.event_root", f"{cfg.event_root} exists")
        except Exception as exc:  # noqa: BLE001
            report.error(f"{key}.event_root", f"{cfg.event_root!r} not found ({_err(exc)})")
    leaves = {p.rsplit("/", 1)[-1] for p in view.variables}
    for name, tkey in cfg.trace_names.items():
        if name in leaves:
            report.ok(f"{key}.trace_names.{name}", f"{sum(p.endswith('/' + name) for p in view.variables)} "
                                                   f"variables named {name} ({tkey})")
        else:
            report.warn(f"{key}.trace_names.{name}", f"no variable named {name} below the browse path")


async def _check_rules(report: Report, view: SourceView, namespaces: Sequence[str], root_path: Sequence[str]) -> None:
    cfg, key = view.cfg, view.key
    rules = cfg.signals
    wins = [0] * len(rules)
    hits = [0] * len(rules)
    for path, v in view.variables.items():
        forms = node_id_forms(v.node_id, namespaces)
        first = True
        for j, rule in enumerate(rules):
            hit = rule.match in forms if rule.is_node_id else glob_regex(rule.match).match(path) is not None
            if hit:
                hits[j] += 1
                if first:
                    wins[j] += 1
                    first = False
        mapped = resolve(rules, path, forms)
        if mapped is not None:
            view.produced.add(f"{mapped.station}/{mapped.signal}")
        elif not matches_any(rules, path, forms) and cfg.unmapped == "derive":
            rel = path.split("/")[len(root_path[:1]):]
            if rel:
                station, signal = station_and_signal(rel)
                view.produced.add(f"{station}/{signal}")
    bad = 0
    for j, rule in enumerate(rules):
        rkey = f"{key}.signals.{j}.match"
        if rule.is_node_id and hits[j] == 0:
            try:
                await _node(view, rule.match)
            except Exception as exc:  # noqa: BLE001
                report.error(rkey, f"{rule.match} does not exist on {cfg.name} ({_err(exc)})")
                bad += 1
                continue
            report.warn(rkey, f"{rule.match} exists but is not below discovery.browse_path "
                              f"{cfg.discovery.browse_path!r}: the connector will not see it")
            bad += 1
        elif hits[j] == 0:
            report.warn(rkey, f"{rule.match!r} matches no variable below the browse path")
            bad += 1
        elif wins[j] == 0:
            report.warn(rkey, f"{rule.match!r} matches {hits[j]} variables, but earlier rules take all of them "
                              "(first match wins)")
            bad += 1
    if rules:
        mapped_n = sum(wins)
        report.ok(f"{key}.signals", f"{len(rules) - bad} of {len(rules)} rules match; {mapped_n} of "
                                    f"{len(view.variables)} variables mapped, the others "
                                    f"{'derived' if cfg.unmapped == 'derive' else 'ignored'} (unmapped: "
                                    f"{cfg.unmapped})")


async def _check_grant(report: Report, view: SourceView, text: str, key: str) -> None:
    assert view.client is not None
    try:
        nid, _ = await _node(view, text)
        kind, dtype, _, value, readable = await _attributes(view.client, nid)
    except Exception as exc:  # noqa: BLE001
        report.error(key, f"grant node {text!r} not found on {view.cfg.name} ({_err(exc)})")
        return
    if not readable:
        report.error(key, f"grant node {text} is not readable by {_user(view.cfg)}")
    elif kind != "boolean":
        report.error(key, f"grant node {text} is a {dtype}, not a Boolean")
    else:
        report.ok(key, f"grant node {text}: Boolean, now {value}")


def _trace_kind_ok(t: TraceNode, kind: str) -> bool:
    if t.key == "roll_position_m":
        return kind == "numeric"
    return kind == "string"


async def check_trace(report: Report, views: Sequence[SourceView], nodes: Sequence[tuple[str, TraceNode]]) -> None:
    for key, t in nodes:
        candidates = [v for v in views if not t.source or v.cfg.name == t.source]
        reachable = [v for v in candidates if v.client is not None and v.variables is not None]
        found: list[tuple[SourceView, str, str]] = []
        for view in reachable:
            assert view.client is not None
            try:
                nid, _ = await _node(view, t.node)
                kind, dtype, _, _, _ = await _attributes(view.client, nid)
            except Exception:  # noqa: BLE001 - not on this server
                continue
            found.append((view, kind, dtype))
        if not found:
            where = ", ".join(v.cfg.name for v in candidates) or "no source"
            if len(reachable) < len(candidates):
                report.warn(f"{key}.node", f"{t.node!r} not found on the reachable servers ({where} asked)")
            else:
                report.error(f"{key}.node", f"{t.node!r} not found on {where}")
            continue
        for view, kind, dtype in found:
            want = "numeric" if t.key == "roll_position_m" else "String"
            if not _trace_kind_ok(t, kind):
                report.error(f"{key}.node", f"{t.node} on {view.cfg.name} is a {dtype}; {t.key} needs a {want} node")
            else:
                report.ok(f"{key}.node", f"{t.node} on {view.cfg.name}: {dtype} ({t.key} for "
                                         f"{', '.join(t.stations)})")
            name = t.node.rstrip("/").rsplit("/", 1)[-1]
            signal = "".join(c if c.isalnum() or c in "_." else "_" for c in name.split(";")[-1].split("=")[-1])
            view.produced.add(f"{t.stations[0]}/{signal if signal[:1].isalpha() else 'N' + signal}")


async def check_products(report: Report, desc: LineDescription, views: Sequence[SourceView]) -> None:
    by_name = {v.cfg.name: v for v in views}
    first = views[0].cfg.name if views else ""
    for pname, prod in desc.products.items():
        for lname, loop in prod.loops.items():
            base = f"products.{pname}.loops.{lname}"
            for i, m in enumerate(loop.manipulated):
                key = f"{base}.manipulated.{i}"
                view = by_name.get(m.source or first)
                if view is None or view.client is None:
                    report.warn(f"{key}.setpoint_node", f"not checked: source {m.source or first!r} is not connected")
                    continue
                await _check_setpoint(report, view, m.setpoint_node, m.low, m.high, f"{key}.setpoint_node")
                if m.grant_node:
                    await _check_grant(report, view, m.grant_node, f"{key}.grant_node")


async def _check_setpoint(report: Report, view: SourceView, text: str, low: float, high: float, key: str) -> None:
    assert view.client is not None
    try:
        nid, _ = await _node(view, text)
        kind, dtype, level, _, _ = await _attributes(view.client, nid)
        (unit, rng), = await units_batch(view.client, [nid])
    except Exception as exc:  # noqa: BLE001
        report.error(key, f"{text!r} not found on {view.cfg.name} ({_err(exc)})")
        return
    problems = []
    if kind != "numeric":
        problems.append(f"a {dtype}, not a number")
    if not can_write(level):
        problems.append(f"not writable by {_user(view.cfg)} (UserAccessLevel {level})")
    if rng is None:
        problems.append("no EURange (the twin checks every write against it)")
    if problems:
        report.error(key, f"{text} on {view.cfg.name}: " + "; ".join(problems))
        return
    assert rng is not None
    report.ok(key, f"{text} on {view.cfg.name}: {dtype}, EURange {rng[0]:g}..{rng[1]:g} {unit}, UserAccessLevel "
                   f"has CurrentWrite for {_user(view.cfg)}")
    if low < rng[0] or high > rng[1]:
        report.warn(key.rsplit(".", 1)[0] + ".low", f"bounds [{low:g}, {high:g}] reach outside the node's EURange "
                                                    f"[{rng[0]:g}, {rng[1]:g}]: the server will clamp or refuse")


def check_signals(report: Report, desc: LineDescription, views: Sequence[SourceView]) -> None:
    """Every signal a product or spec names must be produced by some source (a rule or a derived name)."""
    produced: set[str] = set()
    for v in views:
        produced |= v.produced
    complete = all(v.client is not None for v in views)
    mqtt = desc.sources.mqtt
    maybe_mqtt = mqtt is not None and mqtt.enabled
    for dev in mqtt.devices if mqtt is not None else []:
        for r in dev.signals:
            if "{" not in r.signal:
                produced.add(f"{r.station}/{r.signal}")
    wanted: list[tuple[str, str]] = []
    for pname, prod in desc.products.items():
        for lname, loop in prod.loops.items():
            base = f"products.{pname}.loops.{lname}"
            wanted += [(f"{base}.targets.{i}.signal", t.signal) for i, t in enumerate(loop.targets)]
            wanted += [(f"{base}.manipulated.{i}.actual_signal", m.actual_signal)
                       for i, m in enumerate(loop.manipulated)]
            wanted += [(f"{base}.measured_inputs.{i}.signal", m.signal) for i, m in enumerate(loop.measured_inputs)]
            if loop.web_speed_signal:
                wanted.append((f"{base}.web_speed_signal", loop.web_speed_signal))
    for key, signal in wanted:
        if signal in produced:
            report.ok(key, f"{signal} is produced")
        elif not complete:
            report.warn(key, f"{signal}: not produced by the reachable sources (some could not be checked)")
        elif maybe_mqtt:
            report.warn(key, f"{signal} is produced by no OPC UA node; it must come from MQTT")
        else:
            report.error(key, f"{signal} is produced by no source: no signals rule or derived name gives it")
    for skey in desc.specs:
        if skey not in produced and complete and not maybe_mqtt:
            report.warn(f"specs.{skey}", f"{skey} is produced by no source")


def check_mqtt(report: Report, cfg: MqttConfig, timeout_s: float) -> None:
    from connectors.mqtt import broker_address, paho_client

    host, port = broker_address(cfg)
    client = paho_client(cfg, client_id=f"{cfg.client_id}-check-line", clean_session=True)
    done = threading.Event()
    result: list[str] = []

    def on_connect(c: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        result.append(str(reason_code))
        done.set()

    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=max(5, cfg.keepalive_s))
    except Exception as exc:  # noqa: BLE001
        report.error("sources.mqtt.url", f"cannot reach the broker {cfg.url}: {_err(exc)}")
        return
    client.loop_start()
    try:
        if not done.wait(timeout_s):
            report.error("sources.mqtt.url", f"the broker {cfg.url} did not answer CONNECT within {timeout_s:g} s")
        elif result[0] != "Success":
            report.error("sources.mqtt.url", f"the broker {cfg.url} refused us: {result[0]}")
        else:
            report.ok("sources.mqtt.url", f"connected to {cfg.url}" + (f" as {cfg.username}" if cfg.username else ""))
    finally:
        client.disconnect()
        client.loop_stop()


async def check_line(desc: LineDescription, report: Report, *, endpoints: dict[str, str] | None = None,
                     password: str | None = None, timeout_s: float = 10.0) -> Report:
    views: list[SourceView] = []
    try:
        for i, src in enumerate(desc.sources.opcua):
            if not src.enabled:
                report.ok(f"sources.opcua.{i}", f"({src.name}) disabled: not checked")
                continue
            update: dict[str, Any] = {}
            if endpoints and src.name in endpoints:
                update["endpoint"] = endpoints[src.name]
            if password is not None and src.auth_method == "username" and not src.password:
                update["password"] = password
            view = SourceView(i, src.model_copy(update=update))
            views.append(view)
            await check_source(report, view, timeout_s)
        trace = [(f"trace.{k}", t) for k, t in enumerate(desc.trace)]
        for view in views:
            trace += [(f"{view.key}.trace.{k}", replace_source(t, view.cfg.name))
                      for k, t in enumerate(view.cfg.trace)]
        await check_trace(report, views, trace)
        await check_products(report, desc, views)
        check_signals(report, desc, views)
    finally:
        for view in views:
            if view.client is not None:
                try:
                    await asyncio.wait_for(view.client.disconnect(), timeout_s)
                except Exception:  # noqa: BLE001, S110 - the check is done; a slow goodbye changes nothing
                    pass
    if desc.sources.mqtt is not None and desc.sources.mqtt.enabled:
        await asyncio.to_thread(check_mqtt, report, desc.sources.mqtt, timeout_s)
    return report


def replace_source(t: TraceNode, name: str) -> TraceNode:
    """A source's own trace node is looked for on that source only."""
    return t if t.source else t.model_copy(update={"source": name})


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("description", type=Path, help="the line description (YAML)")
    p.add_argument("--password-file", type=Path, default=None,
                   help="password of the sources that authenticate with a user name and have none in the file")
    p.add_argument("--endpoint", action="append", default=[], metavar="NAME=URL",
                   help="check source NAME at URL instead of its endpoint (repeatable)")
    p.add_argument("--mqtt-url", default=None, help="check the MQTT broker at this URL instead of sources.mqtt.url")
    p.add_argument("--timeout", type=float, default=10.0, help="connect and request timeout, s (default 10)")


def run(args: argparse.Namespace) -> int:
    try:
        desc = load_line(args.description)
    except LineDescriptionError as exc:
        print(f"ERROR {exc}")
        return 1
    endpoints: dict[str, str] = {}
    for item in args.endpoint:
        name, sep, url = item.partition("=")
        if not sep or not url:
            print(f"check-line: --endpoint wants NAME=URL, got {item!r}", file=sys.stderr)
            return 2
        endpoints[name] = url
    unknown = sorted(set(endpoints) - {s.name for s in desc.sources.opcua})
    if unknown:
        print(f"check-line: --endpoint names no source of the description: {unknown}", file=sys.stderr)
        return 2
    password = None
    if args.password_file is not None:
        try:
            password = Path(args.password_file).read_text().rstrip("\r\n")
        except OSError as exc:
            print(f"check-line: {exc}", file=sys.stderr)
            return 2
    positions: dict[tuple[Any, ...], int] = {}
    root = yaml.compose(Path(args.description).read_text())
    if root is not None:
        _positions(root, (), positions)
    report = Report(str(args.description), positions)
    if args.mqtt_url and desc.sources.mqtt is not None:
        desc = desc.model_copy(update={"sources": desc.sources.model_copy(
            update={"mqtt": desc.sources.mqtt.model_copy(update={"url": args.mqtt_url})})})
    asyncio.run(check_line(desc, report, endpoints=endpoints, password=password, timeout_s=args.timeout))
    sys.stdout.write(report.render())
    return 1 if report.errors else 0
