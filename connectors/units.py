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
