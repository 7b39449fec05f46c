"""``python -m twin discover ENDPOINT > line.yaml``: browse an OPC UA server and print a draft line description.

Why a draft and not a description: which station a vendor's node belongs to, and which of the twin's signals it is,
can only be guessed from names (``Machines/SlotDieCoater_01/Monitoring/BetaGauge/ArealWeight`` is probably the dry
mass loading after the dryer). What the server states is taken as is (EngineeringUnits, EURange, DataType,
AccessLevel); everything guessed is marked ``# GUESS: ...`` with the evidence, so the engineer reads each guess once,
corrects it and deletes the mark. The draft loads with ``twin.line.load.parse_line`` as printed, and
``python -m twin check-line`` checks the edited file against the live servers.

The browse is batched within the server's operation limits (``connectors/opcua/bulk.py``): many nodes per Browse and
Read request, continuation points followed with BrowseNext.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from asyncua import ua
from asyncua.client.client import Client

from connectors.opcua.asyncua_adapter import make_client, namespace_index
from connectors.opcua.browse import ANALOG_ITEM_TYPES, browse_root, units_batch
from connectors.opcua.bulk import (
    BrowsedNode,
    OperationLimits,
    browse_tree,
    can_write,
    data_type_kind,
    data_type_name,
    good_value,
    operation_limits,
    read_attributes,
)
from connectors.settings import OpcuaConfig, OpcuaDiscovery
from connectors.units import conversion, normalise_unit

# ---------------------------------------------------------------------------------------------------------------------
# The twin's vocabulary, and how a vendor's names are guessed onto it
# ---------------------------------------------------------------------------------------------------------------------

#: Station keywords (in a path element, lower case, letters and digits only) -> the twin's station and its process
#: step; first match wins, so the more specific come first ("vacuumoven" before "oven", "dryroom" before "dry").
STATION_KEYWORDS: tuple[tuple[str, str, str], ...] = (
    ("vacuumoven", "PostDrying", "post_drying"), ("postdry", "PostDrying", "post_drying"),
    ("dryroom", "DryRoom", "dry_room"),
    ("mixer", "Mixing", "mixing"), ("mixing", "Mixing", "mixing"),
    ("coater", "Coating", "coating"), ("coating", "Coating", "coating"), ("slotdie", "Coating", "coating"),
    ("dryer", "Drying", "drying"), ("drying", "Drying", "drying"), ("oven", "Drying", "drying"),
    ("calender", "Calendering", "calendering"),
    ("slitter", "Slitting", "slitting"), ("slitting", "Slitting", "slitting"),
    ("stacker", "Assembly", "assembly"), ("stacking", "Assembly", "assembly"), ("assembly", "Assembly", "assembly"),
    ("filling", "Filling", "filling"), ("filler", "Filling", "filling"),
    ("formation", "Formation", "formation"), ("cycler", "Formation", "formation"),
)
STEP_OF = {station: step for _, station, step in STATION_KEYWORDS}
PROCESS_ORDER = ("Mixing", "Coating", "Drying", "Calendering", "Slitting", "PostDrying", "DryRoom", "Assembly",
                 "Filling", "Formation", "Line")
LANES = {"cathode": "Cathode", "anode": "Anode"}
WEB_STATIONS = {"Mixing", "Coating", "Drying", "Calendering", "Slitting", "PostDrying"}  # one lane per electrode

#: The twin's signal names with their unit (UCUM; "" = whatever the source states).
VOCABULARY: dict[str, str] = {
    "WetFilmThickness": "um", "WetMassLoading": "mg/cm2", "DryFilmThickness": "um", "MassLoading": "mg/cm2",
    "CalenderedThickness": "um", "CoatingDensity": "g/cm3", "SlurryDensity": "g/cm3", "SolidContent": "%",
    "Porosity": "%", "PumpFlowRate": "cm3/h", "WebSpeed": "m/min", "CoatingWidth": "mm", "SlitWidth": "mm",
    "LineLoad": "N/mm", "RollGap": "um", "RollTemperature": "Cel", "OvenTemperature": "Cel", "AirFlow": "m3/h",
    "Temperature": "Cel", "DewPoint": "Cel", "Vacuum": "mbar", "ResidualMoisture": "ppm", "ElectrolyteMass": "g",
    "Voltage": "V", "Current": "A", "Capacity": "A.h", "ActiveVolumeFraction": "1",
}
_LOWER_VOCABULARY = {k.lower(): k for k in VOCABULARY}

#: Keyword rules over a node's name (lower case, letters and digits only): (regular expression, signal). First match
#: wins; ``{zone}`` is the zone number the expression captured.
SIGNAL_RULES: tuple[tuple[str, str], ...] = (
    (r"wet.*(film|thick)", "WetFilmThickness"),
    (r"wet.*(load|weight)", "WetMassLoading"),
    (r"(areal|basis|coat|coating|dry)weight|massloading|loading|grammage", "MassLoading"),
    (r"dewpoint", "DewPoint"),
    (r"(line|nip)(load|force|pressure)", "LineLoad"),
    (r"airflow", "AirFlow"),
    (r"flow", "PumpFlowRate"),
    (r"speed", "WebSpeed"),
    (r"slurry.*density", "SlurryDensity"),
    (r"density", "CoatingDensity"),
    (r"gap", "RollGap"),
    (r"roll.*temp", "RollTemperature"),
    (r"zone(?P<zone>\d+).*temp|temp.*zone(?P<zone2>\d+)", "Zone{zone}Temperature"),
    (r"oven.*temp", "OvenTemperature"),
    (r"temp", "Temperature"),
    (r"porosity", "Porosity"),
    (r"solid", "SolidContent"),
    (r"moisture", "ResidualMoisture"),
    (r"vacuum|pressure", "Vacuum"),
    (r"voltage", "Voltage"),
    (r"current", "Current"),
    (r"capacity", "Capacity"),
    (r"electrolyte", "ElectrolyteMass"),
)
SETPOINT_SUFFIX = re.compile(r"(setpoint|setvalue|sp|target)$")
ACTUAL_SUFFIX = re.compile(r"(actual|act|pv|value)$")

#: ID-like String nodes: (keyword expression over the name, trace key); the name must also look like an ID.
TRACE_KEYS: tuple[tuple[str, str], ...] = (
    (r"(source|parent|unwind|input|feed).*roll|roll.*(source|parent|unwind|input)", "source_roll_id"),
    (r"roll", "roll_id"),
    (r"batch|lot", "slurry_batch_id"),
    (r"formationrun|run", "formation_run_id"),
    (r"cell", "cell_id"),
    (r"stack", "stack_id"),
    (r"sheet", "sheet_id"),
    (r"segment", "segment_id"),
)
ID_LIKE = re.compile(r"(id|no|nr|number|code)$|batch|lot")
POSITION = re.compile(r"(roll|web)?(position|pos)$|rollposition|webposition|unwoundlength|rolllength")
GRANT = re.compile(r"remote|enable|grant|permi")
NAMEPLATE = {"identification", "nameplate", "deviceinfo", "deviceidentification"}

#: Process-chain inputs of the control loops (models/process_chain.py) by the twin's signal they actuate.
LOOP_INPUTS = {"PumpFlowRate": "pump_flow_rate_cm3_h", "WebSpeed": "web_speed_m_min", "LineLoad": "line_load_N_mm",
               "RollTemperature": "roll_temperature_C"}


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


@dataclass(frozen=True)
class StationGuess:
    station: str  # "Coating/Cathode", "Coating", "Line"
    machine: tuple[str, ...]  # the path of the element(s) the station came from (its "machine")
    why: str


def guess_station(path: Sequence[str]) -> StationGuess:
    """From the elements above the leaf, deepest first: a station keyword, and a lane (Cathode / Anode) anywhere above
    the leaf or the element right below a station named exactly like the twin's (``Formation/CH-01``)."""
    above = list(path[:-1])
    lane = ""
    lane_at = -1
    for i, el in enumerate(above):
        n = _norm(el)
        for key, name in LANES.items():
            if key in n:
                lane, lane_at = name, i
    for i in range(len(above) - 1, -1, -1):
        n = _norm(above[i])
        for key, station, _ in STATION_KEYWORDS:
            if key not in n:
                continue
            why = f'"{above[i]}" says {station}'
            end = i
            if not lane and n == station.lower() and i + 1 < len(above):
                lane, lane_at = _station_part(above[i + 1]), i + 1
            if lane:
                why += f', "{above[lane_at]}" the lane'
                end = max(end, lane_at)
            elif station in WEB_STATIONS:
                why += " (no lane in the path: add /Cathode or /Anode)"
            return StationGuess(f"{station}/{lane}" if lane else station, tuple(path[:end + 1]), why)
    return StationGuess("Line", tuple(path[:1]), "no station keyword in the path")


def _station_part(text: str) -> str:
    out = re.sub(r"[^A-Za-z0-9_-]", "_", text)
    return out if out[:1].isalnum() else f"X{out}"


def guess_signal(name: str, station: str, kept: str = "") -> tuple[str, str]:
    """(the twin's signal name, why) for a numeric node named ``name``; ``kept`` (default: the name) when no
    keyword matches."""
    n = _norm(name)
    setpoint = ""
    m = SETPOINT_SUFFIX.search(n)
    if m and m.start() > 0:
        n, setpoint = n[:m.start()], "Setpoint"
    else:
        m = ACTUAL_SUFFIX.search(n)
        if m and m.start() > 0 and n[:m.start()] not in ("",):
            n = n[:m.start()]
    if n in _LOWER_VOCABULARY:
        return _LOWER_VOCABULARY[n] + setpoint, "the twin's own name"
    for expr, signal in SIGNAL_RULES:
        hit = re.search(expr, n)
        if hit is None:
            continue
        if "{zone}" in signal:
            signal = signal.format(zone=hit.group("zone") or hit.group("zone2"))
        return signal + setpoint, f'"{name}" reads as {signal}'
    if "thick" in n:
        signal = "CalenderedThickness" if station.startswith("Calendering") else "DryFilmThickness"
        return signal + setpoint, f'"{name}" at {station.split("/")[0]} reads as {signal}'
    if "width" in n:
        signal = "SlitWidth" if station.startswith("Slitting") else "CoatingWidth"
        return signal + setpoint, f'"{name}" reads as {signal}'
    return kept or _signal_text(name), "no twin signal matched: the vendor's name is kept"


#: Folder names that say nothing about the signal (OPC 40001 Machinery and common vendor trees).
GENERIC_FOLDERS = {"monitoring", "control", "status", "process", "processdata", "data", "parameters", "measurements",
                   "values", "variables", "operational", "configuration", "signals"}


def _signal_text(text: str) -> str:
    out = re.sub(r"[^A-Za-z0-9_.]", "_", text)
    return out if out[:1].isalpha() else f"N{out}"


def kept_name(path: Sequence[str], machine: Sequence[str]) -> str:
    """The vendor's name of a node no keyword maps: the elements below its machine, generic folders left out,
    joined with dots (``MassLoadingProfile.P003``)."""
    below = [el for el in path[len(machine):-1] if _norm(el) not in GENERIC_FOLDERS]
    return _signal_text(".".join([*below, path[-1]]))


def unit_of_signal(signal: str) -> str:
    base = signal.removesuffix("Setpoint")
    if base in VOCABULARY:
        return VOCABULARY[base]
    return "Cel" if base.endswith("Temperature") else ""


def station_for_signal(signal: str, station: StationGuess) -> tuple[str, str]:
    """Where the twin keeps a signal when the machine's station is not it: a coater's beta gauge after the dryer
    measures the Drying station's MassLoading, its dryer zones are the Drying station's temperatures."""
    head, _, lane = station.station.partition("/")
    base = signal.removesuffix("Setpoint")
    if head == "Coating" and (base in ("MassLoading", "DryFilmThickness", "Porosity", "AirFlow")
                              or re.fullmatch(r"Zone\d+Temperature", base)):
        return (f"Drying/{lane}" if lane else "Drying"), f"the twin keeps {base} at Drying (after the dryer)"
    return station.station, station.why


# ---------------------------------------------------------------------------------------------------------------------
# What the server says about each variable
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class Variable:
    path: tuple[str, ...]
    node_id: ua.NodeId
    kind: str  # numeric | string | boolean | other
    data_type: str
    writable: bool  # the configured user's UserAccessLevel has CurrentWrite
    analog: bool
    value_rank: int = -1
    unit: str = ""
    eu_range: tuple[float, float] | None = None

    @property
    def name(self) -> str:
        return self.path[-1]

    @property
    def browse_path(self) -> str:
        return "/".join(self.path)


async def read_variables(client: Client, nodes: Sequence[BrowsedNode], limits: OperationLimits) -> list[Variable]:
    """DataType, UserAccessLevel and ValueRank of every variable (batched Read), then EngineeringUnits and EURange of
    the numeric ones (batched TranslateBrowsePaths + Read through ``units_batch``)."""
    variables = [n for n in nodes if n.is_variable]
    attrs = [ua.AttributeIds.DataType, ua.AttributeIds.UserAccessLevel, ua.AttributeIds.ValueRank]
    values = await read_attributes(client, [n.node_id for n in variables], attrs, limits)
    out: list[Variable] = []
    for n, (dt, ual, rank) in zip(variables, values, strict=True):
        dtype, level, vr = good_value(dt), good_value(ual), good_value(rank)
        out.append(Variable(n.path, n.node_id, data_type_kind(dtype), data_type_name(dtype),
                            can_write(int(level) if level is not None else None),
                            n.ref.TypeDefinition in ANALOG_ITEM_TYPES, int(vr) if vr is not None else -1))
    numeric = [v for v in out if v.kind == "numeric"]
    per = max(1, min(limits.translate, limits.read // 2))  # units_batch reads two properties per node
    for start in range(0, len(numeric), per):
        chunk = numeric[start:start + per]
        for v, (unit, rng) in zip(chunk, await units_batch(client, [v.node_id for v in chunk]), strict=True):
            v.unit, v.eu_range = unit, rng
    return out


# ---------------------------------------------------------------------------------------------------------------------
# The draft
# ---------------------------------------------------------------------------------------------------------------------


def q(text: str) -> str:
    """A YAML scalar that reads back as ``text`` (a JSON string is a YAML double-quoted scalar)."""
    return json.dumps(text)


def num(x: float) -> str:
    return repr(float(round(x, 9)))


@dataclass
class Rule:
    comment: str
    fields: dict[str, str]  # key -> YAML text


@dataclass
class Draft:
    source_name: str
    rules: list[Rule] = field(default_factory=list)
    trace: list[Rule] = field(default_factory=list)
    grant: tuple[str, str] | None = None  # (browse path, why)
    other_grants: list[str] = field(default_factory=list)
    setpoints: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # (lane, comment, fields)
    units: dict[str, tuple[str, str]] = field(default_factory=dict)  # station -> (equipment name, why)


def _comment(text: str) -> str:
    """A comment's text on one line (a browse name may hold a line break)."""
    return " ".join(text.split())


def _flow(fields: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}"


def _range_text(rng: tuple[float, float] | None, scale: tuple[float, float] | None) -> tuple[float, float] | None:
    if rng is None or not rng[0] < rng[1]:
        return None
    if scale is None:
        return rng
    a, b = scale
    lo, hi = sorted((rng[0] * a + b, rng[1] * a + b))
    return lo, hi


def propose(variables: Sequence[Variable], source_name: str) -> Draft:
    draft = Draft(source_name)
    machine_stations: dict[tuple[str, ...], list[str]] = {}
    trace_of: list[tuple[Variable, str, StationGuess, str]] = []
    for v in variables:
        sg = guess_station(v.path)
        n = _norm(v.name)
        nameplate = any(_norm(el) in NAMEPLATE for el in v.path[:-1])
        if v.kind == "string" and ID_LIKE.search(n) and not nameplate:
            key = next((k for expr, k in TRACE_KEYS if re.search(expr, n)), None)
            if key is not None:
                trace_of.append((v, key, sg, f'String node "{v.name}" reads as {key}'))
                continue
        if v.kind == "numeric" and POSITION.search(n) and not v.writable:
            trace_of.append((v, "roll_position_m", sg, f'numeric node "{v.name}" reads as the roll position (m)'))
            continue
        if v.kind == "boolean" and v.writable and GRANT.search(n):
            why = f'writable Boolean "{v.name}"'
            if draft.grant is None:
                draft.grant = (v.browse_path, why)
            else:
                draft.other_grants.append(v.browse_path)
            continue
        fields: dict[str, str] = {"match": q(v.browse_path)}
        if nameplate:
            fields.update(station=q(sg.station), signal=q(re.sub(r"[^A-Za-z0-9_]", "_", v.name)), ignore="true")
            draft.rules.append(Rule(f"GUESS: nameplate data ({v.data_type}), not a process signal: ignored", fields))
            continue
        if v.kind != "numeric":
            signal = kept_name(v.path, sg.machine)
            fields.update(station=q(sg.station), signal=q(signal))
            draft.rules.append(Rule(f"GUESS: station {sg.station} ({sg.why}); {v.data_type}, kept as {signal}",
                                    fields))
            machine_stations.setdefault(sg.machine, []).append(sg.station)
            continue
        signal, why_signal = guess_signal(v.name, sg.station, kept_name(v.path, sg.machine))
        station, why_station = station_for_signal(signal, sg)
        machine_stations.setdefault(sg.machine, []).append(station)
        fields.update(station=q(station), signal=q(signal))
        notes = [f"GUESS: station {station} ({why_station}); signal {signal} ({why_signal})"]
        twin_unit = unit_of_signal(signal)
        scale: tuple[float, float] | None = None
        if twin_unit and v.unit:
            conv = conversion(v.unit, twin_unit)
            if conv is None:
                notes.append(f"the server's unit {v.unit} is not the twin's {twin_unit} and no conversion is known: "
                             "its samples will be quarantined (unit); map it to another signal")
            else:
                fields["unit"] = q(twin_unit)
                if conv != (1.0, 0.0):
                    scale = conv
                    notes.append(f"the server states {v.unit}; the connector converts to {twin_unit}")
        elif twin_unit:
            fields["unit"] = q(twin_unit)
            notes.append(f"GUESS: the server states no unit; {twin_unit} is the twin's unit of {signal}")
        elif v.unit:
            fields["unit"] = q(normalise_unit(v.unit))
        rng = _range_text(v.eu_range, scale)
        if rng is not None:
            fields.update(min=num(rng[0]), max=num(rng[1]))
            lo, hi = v.eu_range or rng
            notes.append(f"min/max from EURange {num(lo)}..{num(hi)} {v.unit}".rstrip())
        if v.value_rank >= 0:
            notes.append(f"an array (ValueRank {v.value_rank})")
        draft.rules.append(Rule("; ".join(x for x in notes if x), fields))
        if v.writable and v.eu_range is not None and rng is not None:
            base = signal.removesuffix("Setpoint")
            lane = station.partition("/")[2] or "Main"
            step = max((rng[1] - rng[0]) * 0.05, 1e-9)
            sp_fields = {"input": LOOP_INPUTS.get(base, re.sub(r"(?<!^)(?=[A-Z])", "_", base).lower()),
                         "actual_signal": q(f"{station}/{base}"), "setpoint_node": q(v.browse_path),
                         "source": q(source_name), "low": num(rng[0]), "high": num(rng[1]), "max_step": num(step)}
            draft.setpoints.append((lane, f"GUESS: writable {v.data_type} {v.name} with EURange; bounds = EURange, "
                                          "max_step = 5 % of it; input from the signal name", sp_fields))
    for v, key, sg, why in trace_of:
        stations = sorted(set(machine_stations.get(sg.machine, [])) or {sg.station},
                          key=lambda s: (PROCESS_ORDER.index(s.split("/")[0]) if s.split("/")[0] in PROCESS_ORDER
                                         else len(PROCESS_ORDER), s))
        fields = {"node": q(v.browse_path), "key": key, "stations": "[" + ", ".join(q(s) for s in stations) + "]",
                  "source": q(source_name)}
        draft.trace.append(Rule(f"GUESS: {why}; stations = those guessed for {'/'.join(sg.machine)}", fields))
    for machine, stations in machine_stations.items():
        for st in dict.fromkeys(stations):
            if st in draft.units:
                continue
            name = " ".join(machine[-2:]) if st.partition("/")[2] and len(machine) > 1 else machine[-1]
            if st.split("/")[0] != guess_station((*machine, "x")).station.split("/")[0]:
                name = f"{name} ({st.split('/')[0]})"
            draft.units[st] = (name, f"from {'/'.join(machine)}")
    return draft


def render(draft: Draft, *, endpoint: str, namespace_uri: str, browse_path: str, line_id: str, cfg: OpcuaConfig,
           stats: str) -> str:
    out: list[str] = []
    w = out.append
    w(f"# Draft line description: python -m twin discover {endpoint}")
    w(f"# {datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}: {stats}")
    w("# Every '# GUESS:' is a proposal made from names and types, not something the server said: read each one,")
    w("# correct it, delete the mark. Units and ranges come from EngineeringUnits / EURange. Then check the file")
    w("# against the live servers: python -m twin check-line line.yaml (every key: deploy/lines/sample.yaml)")
    w("schema: pilotline.line.v1")
    w("")
    w("line:")
    w(f"  id: {q(line_id)}")
    w(f"  name: {q('')}")
    w("")
    w("equipment:")
    if draft.units:
        w("  units:")
        order = sorted(draft.units, key=lambda s: (PROCESS_ORDER.index(s.split("/")[0])
                                                   if s.split("/")[0] in PROCESS_ORDER else len(PROCESS_ORDER), s))
        for st in order:
            name, why = draft.units[st]
            step = STEP_OF.get(st.split("/")[0], "other")
            w(f"    # GUESS: station {st} {_comment(why)}")
            w(f"    - {{name: {q(name)}, station: {q(st)}, step: {step}}}")
    else:
        w("  units: []")
    w("")
    w("sources:")
    w("  opcua:")
    w(f"    - name: {q(draft.source_name)}")
    w(f"      endpoint: {q(endpoint)}")
    w(f"      namespace_uri: {q(namespace_uri)}")
    if cfg.security_policy != "None":
        w(f"      security_policy: {cfg.security_policy}")
        w(f"      security_mode: {cfg.security_mode}")
        w(f"      certificate: {q(str(cfg.certificate))}")
        w(f"      private_key: {q(str(cfg.private_key))}")
        if cfg.trusted_server_certificates:
            w("      trusted_server_certificates: [" + ", ".join(q(str(p)) for p in cfg.trusted_server_certificates)
              + "]")
    if cfg.auth_method == "username":
        w("      auth_method: username")
        w(f"      username: {q(cfg.username)}")
        w("      # the password: here, or PILOTLINE__OPCUA__PASSWORD, or check-line --password-file")
        w(f"      password: {q('')}")
    w(f"      discovery: {{browse_path: {q(browse_path)}}}")
    w("      # only what the signals rules below map is subscribed")
    w("      unmapped: ignore")
    if draft.grant is not None:
        w(f"      # GUESS: {_comment(draft.grant[1])} grants remote setpoints"
          + (f" (other candidates: {', '.join(draft.other_grants)})" if draft.other_grants else ""))
        w(f"      grant_node: {q(draft.grant[0])}")
    if draft.rules:
        w("      signals:")
        for r in draft.rules:
            w(f"        # {_comment(r.comment)}")
            w(f"        - {_flow(r.fields)}")
    else:
        w("      signals: []")
    w("")
    if draft.trace:
        w("trace:")
        for r in draft.trace:
            w(f"  # {_comment(r.comment)}")
            w(f"  - {_flow(r.fields)}")
    else:
        w("trace: []")
    w("")
    if draft.setpoints:
        w("# GUESS: setpoints the control loops could move (writable numeric nodes with an EURange). To use them,")
        w("# uncomment, add the targets (the quality signals, their process-chain output and your recipe's values)")
        w("# and the gauge positions along the web, and set product: to the product's name.")
        w("# product: my-product")
        w("# products:")
        w("#   my-product:")
        w("#     loops:")
        lanes: dict[str, list[tuple[str, dict[str, str]]]] = {}
        for lane, comment, f in draft.setpoints:
            lanes.setdefault(lane, []).append((comment, f))
        for lane, items in lanes.items():
            w(f"#       {lane}:")
            w(f"#         electrode: {'anode' if lane == 'Anode' else 'cathode'}")
            w("#         targets: []  # e.g. {signal: Drying/Cathode/MassLoading, output: "
              "drying.dry_mass_loading_mg_cm2, target: 14.3, tolerance: 0.2, gauge_position_m: 7.0}")
            w("#         manipulated:")
            for comment, f in items:
                w(f"#           # {_comment(comment)}")
                w(f"#           - {_flow(f)}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------------------------------


def _source_name(namespace_uri: str) -> str:
    tail = re.split(r"[:/#]", namespace_uri.rstrip(":/#"))[-1] if namespace_uri else ""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", tail)[:32]
    return name if name[:1].isalpha() else "opcua"


def config_from_args(args: argparse.Namespace) -> OpcuaConfig:
    password = ""
    if args.password_file is not None:
        password = Path(args.password_file).read_text().rstrip("\r\n")
    extra: dict[str, object] = {}
    if args.certificate is not None:
        extra["certificate"] = args.certificate
    if args.private_key is not None:
        extra["private_key"] = args.private_key
    if args.server_certificate:
        extra["trusted_server_certificates"] = list(args.server_certificate)
    return OpcuaConfig(endpoint=args.endpoint, namespace_uri=args.namespace or "",
                       security_policy=args.security_policy, security_mode=args.security_mode,
                       auth_method="username" if args.username else "anonymous", username=args.username or "",
                       password=password, connect_timeout_s=args.timeout, request_timeout_s=args.timeout,
                       discovery=OpcuaDiscovery(browse_path=args.browse_path or ""), **extra)


async def discover_line(cfg: OpcuaConfig, line_id: str, source_name: str | None = None) -> tuple[str, dict[str, float]]:
    """The draft description's text and the counts (nodes, variables, requests, seconds)."""
    t0 = time.perf_counter()
    client = await make_client(cfg, None)
    await asyncio.wait_for(client.connect(), cfg.connect_timeout_s)
    try:
        ns = await namespace_index(client, cfg.namespace_uri)
        namespaces = list(await client.get_namespace_array())
        uri = cfg.namespace_uri or namespaces[ns]
        root, root_path = await browse_root(cfg, client, ns)
        limits = await operation_limits(client)
        tree = await browse_tree(client, root.nodeid, limits, root_path)
        variables = await read_variables(client, tree.nodes, limits)
    finally:
        await client.disconnect()
    seconds = time.perf_counter() - t0
    name = source_name or _source_name(uri)
    draft = propose(variables, name)
    counts = {"nodes": len(tree.nodes), "variables": len(variables), "browse_requests": tree.browse_requests,
              "failed": len(tree.failed), "seconds": round(seconds, 3), "rules": len(draft.rules),
              "trace": len(draft.trace), "setpoints": len(draft.setpoints), "grant": int(draft.grant is not None),
              "nodes_per_browse": limits.browse, "nodes_per_read": limits.read}
    stats = (f"{len(tree.nodes)} nodes ({len(variables)} variables) browsed below {cfg.discovery.browse_path or '/'} "
             f"in {tree.browse_requests} Browse requests of up to {limits.browse} nodes, {seconds:.2f} s")
    text = render(draft, endpoint=cfg.endpoint, namespace_uri=uri, browse_path=cfg.discovery.browse_path,
                  line_id=line_id, cfg=cfg, stats=stats)
    return text, counts


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("endpoint", help="the server, e.g. opc.tcp://coater.plant:4840")
    p.add_argument("--namespace", default=None, help="namespace URI of the line's nodes (default: the first after "
                                                     "the server's own, index 2)")
    p.add_argument("--browse-path", default="", help='browse names below Objects to start from, separated by / '
                                                      '(e.g. "Machines"; default: all of Objects)')
    p.add_argument("--security-policy", default="None",
                   choices=["None", "Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"])
    p.add_argument("--security-mode", default="None", choices=["None", "Sign", "SignAndEncrypt"])
    p.add_argument("--certificate", type=Path, default=None,
                   help="client certificate (default var/pki/client_cert.der, created when absent)")
    p.add_argument("--private-key", type=Path, default=None, help="its key (default var/pki/client_key.pem)")
    p.add_argument("--server-certificate", type=Path, action="append", default=[],
                   help="a server certificate to trust (repeatable; default: trust the one presented)")
    p.add_argument("--username", default=None, help="user name (default: anonymous)")
    p.add_argument("--password-file", type=Path, default=None, help="file holding the user's password")
    p.add_argument("--line-id", default="PL1", help="the line's id in the draft (default PL1)")
    p.add_argument("--source-name", default=None, help="the source's name in the draft (default: from the namespace)")
    p.add_argument("--timeout", type=float, default=10.0, help="connect and request timeout, s (default 10)")


def run(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(args)
    except (ValueError, OSError) as exc:
        print(f"discover: {exc}", file=sys.stderr)
        return 2
    try:
        text, counts = asyncio.run(discover_line(cfg, args.line_id, args.source_name))
    except Exception as exc:  # noqa: BLE001 - one clear line for whatever the server or the network did
        print(f"discover: {cfg.endpoint}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    print(f"discover: {counts['nodes']} nodes ({counts['variables']} variables) browsed in "
          f"{counts['browse_requests']} Browse requests, {counts['seconds']:.2f} s; {counts['rules']} signals rules, "
          f"{counts['trace']} trace nodes, {counts['setpoints']} setpoints, grant node: "
          f"{'proposed' if counts['grant'] else 'none found'}", file=sys.stderr)
    return 0
