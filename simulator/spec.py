"""The address space as data: every node's browse path, type, unit, EURange and writability.

One list drives three things so they cannot drift apart: the OPC UA server builds its nodes from it, the plant's
outputs are checked against it, and the docs/simulator.md table is generated from it
(``python -m simulator nodes --markdown``; a test compares docs/simulator.md with that output).

Paths are dotted below ``PilotLine`` (``Coating.Cathode.PumpFlowRate``); the OPC UA NodeId is
``ns=<idx>;s=PilotLine.<path>`` and the browse path ``PilotLine/<path with />``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

NAMESPACE_URI = "urn:pilotline:simulator"
ROOT = "PilotLine"
LANES: tuple[str, ...] = ("Cathode", "Anode")
WEB_STATIONS: tuple[str, ...] = ("Mixing", "Coating", "Drying", "Calendering", "Slitting", "PostDrying")
CELL_STATIONS: tuple[str, ...] = ("DryRoom", "Assembly", "Filling", "Formation")

DataKind = Literal["Double", "String", "Boolean", "UInt32"]

# UNECE Recommendation 20 common codes (OPC 10000-8 5.6.4.4: UnitId = code bytes packed big-endian).
UNITS: dict[str, tuple[str, str]] = {
    "G48": ("cm³/h", "cubic centimetre per hour"),
    "2X": ("m/min", "metre per minute"),
    "MMT": ("mm", "millimetre"),
    "4H": ("µm", "micrometre (micron)"),
    "H63": ("mg/cm²", "milligram per square centimetre"),
    "23": ("g/cm³", "gram per cubic centimetre"),
    "P1": ("%", "percent"),
    "C62": ("1", "one"),
    "CEL": ("°C", "degree Celsius"),
    "MQH": ("m³/h", "cubic metre per hour"),
    "F47": ("N/mm", "newton per millimetre"),
    "MTR": ("m", "metre"),
    "LTR": ("l", "litre"),
    "MBR": ("mbar", "millibar"),
    "59": ("ppm", "part per million"),
    "GRM": ("g", "gram"),
    "VLT": ("V", "volt"),
    "AMP": ("A", "ampere"),
    "AMH": ("A·h", "ampere hour"),
}
UNECE_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"


def unece_unit_id(code: str) -> int:
    """OPC 10000-8: the common code's ASCII bytes, left-padded to 3, read as a big-endian integer."""
    value = 0
    for ch in code.strip():
        value = (value << 8) | ord(ch)
    return value


@dataclass(frozen=True)
class NodeSpec:
    """One variable of the line. ``unit``/``eu_range`` only for analog items (AnalogItemType)."""

    path: str
    kind: DataKind
    description: str
    unit: str | None = None
    eu_range: tuple[float, float] | None = None
    writable: bool = False
    setpoint_of: str | None = None  # for XSetpoint nodes: the path of the actual value X
    array_length: int = 0  # > 0: a one-dimensional array of Double (ValueRank 1)

    @property
    def analog(self) -> bool:
        return self.unit is not None

    @property
    def node_id(self) -> str:
        return f"{ROOT}.{self.path}"

    @property
    def browse_path(self) -> str:
        return f"{ROOT}/" + self.path.replace(".", "/")


def _analog(path: str, unit: str, lo: float, hi: float, desc: str) -> NodeSpec:
    return NodeSpec(path, "Double", desc, unit, (lo, hi))


def _controllable(path: str, unit: str, lo: float, hi: float, desc: str) -> list[NodeSpec]:
    """OPC 40001-2 style pair: read-only actual ``X`` and writable ``XSetpoint`` with the same unit and EURange."""
    return [
        NodeSpec(path, "Double", f"{desc} (actual)", unit, (lo, hi)),
        NodeSpec(f"{path}Setpoint", "Double", f"{desc} (setpoint; needs operator role and the grant)", unit,
                 (lo, hi), writable=True, setpoint_of=path),
    ]


def _text(path: str, desc: str) -> NodeSpec:
    return NodeSpec(path, "String", desc)


def lane_specs(lane: str, profile_points: int = 0, profile_array: bool = False) -> list[NodeSpec]:
    m, c, d, k, s, p = (f"{st}.{lane}" for st in WEB_STATIONS)
    specs: list[NodeSpec] = [
        _text(f"{m}.BatchId", "slurry batch feeding the coater (SB-*)"),
        _text(f"{m}.Formulation", "dry formulation, mass %"),
        _analog(f"{m}.SolidContent", "P1", 0, 100, "slurry solid content (mass %) of the current batch"),
        _analog(f"{m}.SlurryDensity", "23", 0.5, 4.0, "slurry density of the current batch (eq. 9)"),
        _analog(f"{m}.BatchRemainingVolume", "LTR", 0, 100, "slurry left in the feed tank"),
        *_controllable(f"{c}.PumpFlowRate", "G48", 100, 2000, "slot-die pump volume flow (Coriolis meter)"),
        *_controllable(f"{c}.WebSpeed", "2X", 0.1, 5.0, "substrate web speed"),
        _analog(f"{c}.CoatingWidth", "MMT", 50, 300, "coating width"),
        _analog(f"{c}.WetFilmThickness", "4H", 0, 500, "wet film thickness, laser caliper 0.5 m after the die"),
        _analog(f"{c}.WetMassLoading", "H63", 0, 80, "derived: wet thickness x slurry density (eq. 11)"),
        _text(f"{c}.RollId", "coated roll being coated at the die (CR-*)"),
        _analog(f"{c}.RollPosition", "MTR", 0, 10000, "position of the die on the coated roll"),
        _text(f"{c}.SlurryBatchId", "slurry batch at the die (SB-*)"),
        *_controllable(f"{d}.Zone1Temperature", "CEL", 20, 160, "dryer zone 1 air temperature"),
        *_controllable(f"{d}.Zone2Temperature", "CEL", 20, 160, "dryer zone 2 air temperature"),
        *_controllable(f"{d}.AirFlow", "MQH", 50, 2000, "dryer air flow"),
        _analog(f"{d}.DryFilmThickness", "4H", 0, 400, "dry film thickness, laser caliper after the dryer"),
        _analog(f"{d}.MassLoading", "H63", 0, 60, "dry areal mass loading, beta gauge after the dryer"),
        _analog(f"{d}.Porosity", "P1", 0, 100, "derived dry porosity: 1 - (m / h) / rho_solids (eq. 13)"),
        _analog(f"{d}.CoatingDensity", "23", 0, 5, "derived dry coating density m / h (eq. 14)"),
        _text(f"{d}.RollId", "coated roll under the beta gauge (CR-*)"),
        _analog(f"{d}.RollPosition", "MTR", 0, 10000, "roll position under the beta gauge"),
        *_controllable(f"{k}.LineLoad", "F47", 0, 300, "calender line load"),
        *_controllable(f"{k}.RollTemperature", "CEL", 15, 120, "calender roll temperature"),
        _analog(f"{k}.CalenderedThickness", "4H", 0, 400, "calendered coating thickness, caliper after the nip"),
        _analog(f"{k}.CoatingDensity", "23", 0, 5, "derived: beta-gauge loading at that roll position / thickness"),
        _analog(f"{k}.Porosity", "P1", 0, 100, "derived calendered porosity 1 - density / rho_solids"),
        _analog(f"{k}.ActiveVolumeFraction", "C62", 0, 1, "derived active-material volume fraction (eq. 16)"),
        _text(f"{k}.RollId", "calendered roll (CAL-*)"),
        _text(f"{k}.SourceRollId", "coated roll being calendered (CR-*)"),
        _analog(f"{k}.RollPosition", "MTR", 0, 10000, "coated-roll position under the calender caliper"),
        _text(f"{k}.State", "running | idle (waiting for a coated roll)"),
        _text(f"{s}.SourceRollId", "calendered roll last slit (CAL-*)"),
        _text(f"{s}.CoilIds", "slit coils made from it, comma separated (SC-*)"),
        _analog(f"{s}.SlitWidth", "MMT", 10, 300, "slit coil width"),
        *_controllable(f"{p}.OvenTemperature", "CEL", 20, 150, "vacuum oven temperature"),
        _analog(f"{p}.Vacuum", "MBR", 0, 1100, "vacuum oven absolute pressure"),
        _analog(f"{p}.ResidualMoisture", "59", 0, 5000, "residual moisture of the coils in the oven (model)"),
        _text(f"{p}.CoilIds", "coils in the oven, comma separated (SC-*)"),
        _text(f"{p}.State", "drying | idle"),
    ]
    if profile_array and profile_points:
        specs.append(NodeSpec(f"{d}.MassLoadingProfile", "Double", "cross-web beta-gauge tracks as one array "
                              "(only with --profile-points N --profile-array)", "H63", (0, 60),
                              array_length=profile_points))
        profile_points = 0
    for i in range(profile_points):
        specs.append(_analog(f"{d}.MassLoadingProfile.P{i:03d}", "H63", 0, 60,
                             "cross-web beta-gauge track (only with --profile-points)"))
    return specs


def channel_name(i: int) -> str:
    return f"CH-{i:02d}"


def channel_specs(channel: str) -> list[NodeSpec]:
    f = f"Formation.{channel}"
    return [
        _text(f"{f}.CellId", "cell on the channel (CELL-*), empty when idle"),
        _text(f"{f}.FormationRunId", "formation run (FR-*)"),
        _text(f"{f}.Step", "idle | charge | rest | discharge | fault"),
        _analog(f"{f}.Voltage", "VLT", -1, 6, "cell voltage"),
        # a time-compressed formation (scenario formation_duration_s) drives proportionally higher currents: the
        # EURange, which the twin takes as the node's physical range, covers them
        _analog(f"{f}.Current", "AMP", -1000, 1000, "cell current (charge positive)"),
        _analog(f"{f}.Capacity", "AMH", 0, 50, "capacity moved in the current step"),
        _analog(f"{f}.Temperature", "CEL", 0, 80, "cell surface temperature"),
    ]


def line_specs(channels: int = 16, profile_points: int = 0, profile_array: bool = False) -> list[NodeSpec]:
    """Every variable of the line, in a stable order (the server creates them in this order)."""
    specs: list[NodeSpec] = [
        NodeSpec("RemoteSetpointsEnabled", "Boolean",
                 "operator's grant: remote setpoint writes are accepted only while true", writable=True),
        _text("LineId", "line identifier"),
        _text("SimulatedTime", "simulated line time (ISO 8601 UTC)"),
    ]
    for lane in LANES:
        specs += lane_specs(lane, profile_points, profile_array)
    specs += [
        _analog("DryRoom.DewPoint", "CEL", -80, 20, "dry-room dew point (thermo-hygrometer)"),
        _analog("DryRoom.Temperature", "CEL", 10, 35, "dry-room air temperature"),
        _text("Assembly.CellId", "cell id given at packaging of the last stack (CELL-*)"),
        _text("Assembly.StackId", "last stack (STK-*)"),
        _text("Assembly.CathodeSheetsId", "cathode sheet set of the last stack (ES-C-*)"),
        _text("Assembly.AnodeSheetsId", "anode sheet set of the last stack (ES-A-*)"),
        _text("Assembly.CathodeCoilId", "cathode coil being cut (SC-C-*)"),
        _text("Assembly.AnodeCoilId", "anode coil being cut (SC-A-*)"),
        NodeSpec("Assembly.StackCount", "UInt32", "stacks assembled since start"),
        _text("Filling.CellId", "last filled cell (CELL-*)"),
        _analog("Filling.ElectrolyteMass", "GRM", 0, 50, "electrolyte dosed into the last cell"),
        NodeSpec("Formation.ChannelCount", "UInt32", "cycler channels"),
    ]
    for i in range(1, channels + 1):
        specs += channel_specs(channel_name(i))
    return specs


def specs_by_path(specs: list[NodeSpec]) -> dict[str, NodeSpec]:
    return {s.path: s for s in specs}


def markdown_table(channels: int = 16) -> str:
    """The address-space table of docs/simulator.md (per-channel rows shown once for ``CH-<NN>``)."""
    rows = ["| browse path below `PilotLine/` | NodeId (`ns=2;s=...`) | type | unit (UNECE) | EURange | writable "
            "| meaning |", "|---|---|---|---|---|---|---|"]
    seen_channel = False
    for spec in line_specs(channels, 0):
        path = spec.path
        if path.startswith("Formation.CH-"):
            if seen_channel and not path.startswith("Formation.CH-01."):
                continue
            path = path.replace("CH-01", "CH-<NN>")
        if path.startswith("Formation.CH-<NN>"):
            seen_channel = True
        unit = f"{UNITS[spec.unit][0]} ({spec.unit})" if spec.unit else "-"
        rng = f"{spec.eu_range[0]:g} .. {spec.eu_range[1]:g}" if spec.eu_range else "-"
        writable = "operator" + (" + grant" if spec.setpoint_of else "") if spec.writable else "no"
        kind = f"AnalogItem {spec.kind}" if spec.analog else spec.kind
        rows.append(f"| `{path.replace('.', '/')}` | `PilotLine.{path}` | {kind} | {unit} | {rng} | {writable} "
                    f"| {spec.description.replace('|', '/')} |")
    rows.append("| `Drying/<Lane>/MassLoadingProfile/P<NNN>` | `PilotLine.Drying.<Lane>.MassLoadingProfile.P<NNN>` "
                "| AnalogItem Double | mg/cm² (H63) | 0 .. 60 | no | cross-web beta-gauge track NNN "
                "(only with `--profile-points N`) |")
    rows.append("| `Drying/<Lane>/MassLoadingProfile` | `PilotLine.Drying.<Lane>.MassLoadingProfile` "
                "| AnalogItem Double[N] | mg/cm² (H63) | 0 .. 60 | no | all N tracks as one array "
                "(only with `--profile-points N --profile-array`) |")
    return "\n".join(rows)
