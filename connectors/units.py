"""Engineering units: OPC UA EUInformation (UNECE Rec. 20 common codes) to the UCUM codes samples carry.

Why convert: one unit vocabulary in storage (UCUM, readable: ``um``, ``cm3/h``, ``Cel``) whatever the source spoke;
OPC UA servers state units as UNECE codes packed into ``UnitId`` (OPC 10000-8 5.6.4.4), MQTT payloads in UCUM.
A code not in the table is kept as ``unece:<code>`` so nothing is guessed (validation then flags it).
"""

from __future__ import annotations

from typing import Final

UNECE_TO_UCUM: Final[dict[str, str]] = {
    "G48": "cm3/h", "2X": "m/min", "MMT": "mm", "4H": "um", "H63": "mg/cm2", "23": "g/cm3", "P1": "%",
    "C62": "1", "CEL": "Cel", "KEL": "K", "MQH": "m3/h", "F47": "N/mm", "MTR": "m", "LTR": "L", "MBR": "mbar",
    "59": "ppm", "GRM": "g", "KGM": "kg", "VLT": "V", "AMP": "A", "AMH": "A.h", "E09": "mA.h", "WTT": "W",
    "KWT": "kW", "WHR": "W.h", "OHM": "Ohm", "SEC": "s", "MIN": "min", "HUR": "h", "HTZ": "Hz", "PAL": "Pa",
    "KPA": "kPa", "BAR": "bar", "NEW": "N", "KNT": "kN", "MTS": "m/s", "4G": "uL", "MLT": "mL", "GM": "g/m2",
    "JOU": "J", "KJO": "kJ", "RPM": "/min", "MAL": "mA", "4K": "mA",
}

#: UCUM codes the validator accepts by default besides those above.
EXTRA_UCUM: Final[tuple[str, ...]] = ("", "um", "mL/min", "L/min", "kg/h", "mAh/g", "mA.h/g", "mW.h", "mOhm", "hPa")


def unece_code_from_unit_id(unit_id: int) -> str:
    """Inverse of OPC 10000-8's packing: big-endian bytes of the ASCII code."""
    if unit_id <= 0:
        return ""
    raw = unit_id.to_bytes((unit_id.bit_length() + 7) // 8, "big")
    try:
        return raw.decode("ascii").strip("\x00 ")
    except UnicodeDecodeError:
        return ""


def ucum_from_unece(code: str) -> str:
    if not code:
        return ""
    return UNECE_TO_UCUM.get(code, f"unece:{code}")


def ucum_from_eu_information(unit_id: int, display_name: str = "") -> str:
    """EUInformation -> UCUM; ``UnitId`` -1 / 0 means 'not set' (then the display name is used when it is UCUM)."""
    code = unece_code_from_unit_id(unit_id) if unit_id and unit_id > 0 else ""
    if code:
        return ucum_from_unece(code)
    return display_name if display_name in UNECE_TO_UCUM.values() or display_name in EXTRA_UCUM else (
        f"display:{display_name}" if display_name else "")


#: Unit texts as devices write them -> UCUM (an MQTT JSON payload's "unit" member, an EUInformation DisplayName).
UNIT_ALIASES: Final[dict[str, str]] = {
    "degC": "Cel", "°C": "Cel", "℃": "Cel", "deg C": "Cel", "degK": "K", "µm": "um", "μm": "um", "mg/cm²": "mg/cm2",
    "g/m²": "g/m2", "g/cm³": "g/cm3", "cm³/h": "cm3/h", "m³/h": "m3/h", "ml/min": "mL/min", "l/min": "L/min",
    "m/s": "m/s", "mAh": "mA.h", "Ah": "A.h", "Wh": "W.h", "ohm": "Ohm", "Ω": "Ohm", "mΩ": "mOhm", "%RH": "%",
}

#: Linear conversions between units of one quantity: (from, to) -> (factor, offset), to = from * factor + offset.
#: Only what lines send for the twin's vocabulary; anything else is stored in the source's unit (and validated so).
_CONVERSIONS: Final[dict[tuple[str, str], tuple[float, float]]] = {
    ("g/m2", "mg/cm2"): (0.1, 0.0), ("mm", "um"): (1000.0, 0.0), ("m", "um"): (1e6, 0.0), ("K", "Cel"): (1.0, -273.15),
    ("m/s", "m/min"): (60.0, 0.0), ("mL/min", "cm3/h"): (60.0, 0.0), ("L/min", "cm3/h"): (60_000.0, 0.0),
    ("L/h", "cm3/h"): (1000.0, 0.0), ("m3/h", "cm3/h"): (1e6, 0.0), ("kg/m3", "g/cm3"): (0.001, 0.0),
    ("kN/m", "N/mm"): (1.0, 0.0), ("kN", "N"): (1000.0, 0.0), ("1", "%"): (100.0, 0.0), ("hPa", "mbar"): (1.0, 0.0),
    ("A.h", "mA.h"): (1000.0, 0.0), ("mA.h", "A.h"): (0.001, 0.0), ("mm", "m"): (0.001, 0.0),
}


def normalise_unit(text: str) -> str:
    """A device's unit text in UCUM where an alias is known; anything else unchanged."""
    t = text.strip()
    return UNIT_ALIASES.get(t, t)


def conversion(source_unit: str, target_unit: str) -> tuple[float, float] | None:
    """(factor, offset) from ``source_unit`` to ``target_unit``; (1, 0) when equal; None when not known."""
    s, t = normalise_unit(source_unit), normalise_unit(target_unit)
    if s == t:
        return 1.0, 0.0
    return _CONVERSIONS.get((s, t))
