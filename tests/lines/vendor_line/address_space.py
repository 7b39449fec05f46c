"""The two machines' address spaces as data: every node has a fixed number, so the README and a line
description can name it (``ns=<urn:vendor:coater>;i=1111``), and the geometry a twin needs (gauge positions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from asyncua import ua

COATER_NAMESPACE: Final = "urn:vendor:coater"
CALENDER_NAMESPACE: Final = "urn:vendor:calender"
UNECE_NAMESPACE: Final = "http://www.opcfoundation.org/UA/units/un/cefact"

# UNECE Recommendation 20 common codes (OPC 10000-8 5.6.4.4: UnitId = the code's ASCII bytes, big-endian).
UNITS: Final[dict[str, tuple[str, str]]] = {
    "4H": ("µm", "micrometre (micron)"),
    "GM": ("g/m²", "gram per square metre"),
    "2X": ("m/min", "metre per minute"),
    "G48": ("cm³/h", "cubic centimetre per hour"),
    "CEL": ("°C", "degree Celsius"),
    "F47": ("N/mm", "newton per millimetre"),
    "23": ("g/cm³", "gram per cubic centimetre"),
    "MTR": ("m", "metre"),
}
GAUGE_OFFSET_M: Final = 6.0  # beta gauge after the dryer, along the web from the slot die
CALIPER_OFFSET_M: Final = 0.5  # calender thickness caliper after the nip


def node_id(number: int, ns: int) -> ua.NodeId:
    """A numeric NodeId (asyncua annotates the fields with its wire types; at run time it takes plain ints)."""
    return ua.NodeId(number, ns)  # type: ignore[arg-type]


def unece_unit_id(code: str) -> int:
    """OPC 10000-8: the common code's ASCII bytes read as a big-endian integer ("GM" -> 0x474D)."""
    value = 0
    for ch in code:
        value = (value << 8) | ord(ch)
    return value





@dataclass(frozen=True)
class Item:
    """One variable below the machine object. ``path`` is relative to the machine (``Monitoring/WebSpeed``)."""

    number: int
    path: str
    kind: str  # Double | String | Boolean
    unit: str | None = None
    eu_range: tuple[float, float] | None = None
    access: str = ""  # "" read only | "setpoint" (operator or admin, under the grant) | "grant" (admin only)
    description: str = ""


@dataclass(frozen=True)
class MachineSpec:
    namespace: str
    application_uri: str
    machine: str
    machine_number: int
    objects: dict[str, int]  # folder path below the machine -> number
    items: tuple[Item, ...]
    identification: tuple[tuple[int, str, Any, ua.VariantType], ...]
    properties: tuple[tuple[int, str, str, float, str], ...] = ()  # (number, parent item path, name, value, unit)

    def item(self, path: str) -> Item:
        return next(i for i in self.items if i.path == path)


COATER: Final = MachineSpec(
    namespace=COATER_NAMESPACE,
    application_uri="urn:vendor:coater:server",
    machine="SlotDieCoater_01",
    machine_number=1001,
    objects={"Identification": 1010, "Monitoring": 1100, "Monitoring/BetaGauge": 1110, "Control": 1200},
    items=(
        Item(1101, "Monitoring/WebSpeed", "Double", "2X", (0.0, 10.0), description="web speed at the slot die"),
        Item(1102, "Monitoring/PumpFlowActual", "Double", "G48", (0.0, 2000.0), description="slurry pump flow"),
        Item(1103, "Monitoring/WetFilmThickness", "Double", "4H", (0.0, 1000.0),
             description="wet film after the die (laser caliper at the die)"),
        Item(1104, "Monitoring/DryerZone1Temp", "Double", "CEL", (0.0, 200.0), description="dryer zone 1 air"),
        Item(1105, "Monitoring/DryerZone2Temp", "Double", "CEL", (0.0, 200.0), description="dryer zone 2 air"),
        Item(1106, "Monitoring/DryerZone3Temp", "Double", "CEL", (0.0, 200.0), description="dryer zone 3 air"),
        Item(1111, "Monitoring/BetaGauge/ArealWeight", "Double", "GM", (0.0, 500.0),
             description="dry coating areal weight (beta gauge after the dryer, 6 m downstream of the die)"),
        Item(1120, "Monitoring/CurrentRollID", "String", description="coated roll being coated at the slot die"),
        Item(1121, "Monitoring/RollPosition", "Double", "MTR", (0.0, 100000.0),
             description="metres of the current roll coated at the die (absent with --no-position)"),
        Item(1122, "Monitoring/SlurryBatchID", "String", description="slurry batch feeding the die"),
        Item(1201, "Control/PumpFlowSetpoint", "Double", "G48", (100.0, 1500.0), "setpoint",
             "slurry pump flow setpoint; out-of-range writes are clamped (GoodClamped)"),
        Item(1202, "Control/WebSpeedSetpoint", "Double", "2X", (0.2, 5.0), "setpoint",
             "web speed setpoint; out-of-range writes are clamped (GoodClamped)"),
        Item(1203, "Control/RemoteControlEnabled", "Boolean", access="grant",
             description="remote setpoints granted (admin user or --grant only)"),
    ),
    identification=(
        (1011, "Manufacturer", ua.LocalizedText("Vendor Coating Systems GmbH"), ua.VariantType.LocalizedText),
        (1012, "Model", ua.LocalizedText("SDC-300"), ua.VariantType.LocalizedText),
        (1013, "SerialNumber", "SDC-300-0471", ua.VariantType.String),
        (1014, "YearOfConstruction", 2021, ua.VariantType.UInt16),
    ),
    properties=((1112, "Monitoring/BetaGauge/ArealWeight", "DistanceFromDie", GAUGE_OFFSET_M, "MTR"),),
)

CALENDER: Final = MachineSpec(
    namespace=CALENDER_NAMESPACE,
    application_uri="urn:vendor:calender:server",
    machine="Calender_02",
    machine_number=2001,
    objects={"Identification": 2010, "Monitoring": 2100, "Control": 2200},
    items=(
        Item(2101, "Monitoring/LineLoad", "Double", "F47", (0.0, 300.0), description="line load at the nip"),
        Item(2102, "Monitoring/RollGap", "Double", "4H", (0.0, 500.0), description="roll gap"),
        Item(2103, "Monitoring/RollTemperature", "Double", "CEL", (0.0, 150.0), description="work roll surface"),
        Item(2104, "Monitoring/WebSpeed", "Double", "2X", (0.0, 10.0), description="web speed (0 when idle)"),
        Item(2105, "Monitoring/Thickness", "Double", "4H", (0.0, 300.0),
             description="calendered coating thickness without foil (caliper 0.5 m after the nip)"),
        Item(2106, "Monitoring/Density", "Double", "23", (0.0, 5.0),
             description="calendered coating density (caliper and the coater's areal weight)"),
        Item(2201, "Control/LineLoadSetpoint", "Double", "F47", (0.0, 250.0), "setpoint",
             "line load setpoint; out-of-range writes are clamped (GoodClamped)"),
        Item(2202, "Control/RemoteControlEnabled", "Boolean", access="grant",
             description="remote setpoints granted (admin user or --grant only)"),
    ),
    identification=(
        (2011, "Manufacturer", ua.LocalizedText("Vendor Calender Works AG"), ua.VariantType.LocalizedText),
        (2012, "Model", ua.LocalizedText("KAL-500"), ua.VariantType.LocalizedText),
        (2013, "SerialNumber", "KAL-500-0112", ua.VariantType.String),
        (2014, "YearOfConstruction", 2019, ua.VariantType.UInt16),
    ),
    properties=((2107, "Monitoring/Thickness", "DistanceFromNip", CALIPER_OFFSET_M, "MTR"),),
)

