"""Lab and offline measurements (slurry viscosity, solid content, peel strength, porosimetry, electrode resistance, cell
impedance ...): rows keyed by a trace ID, validated like line data, stored in InfluxDB (measurement ``lab``).

A row names the material by its trace ID (a slurry batch, a roll with an optional ``from_m``..``to_m`` stretch, an
electrode sheet, a cell), the quantity, its value and unit, the method, the time it was measured and the operator.
Each bad row is quarantined with its reason and the good rows are kept (one bad row never refuses the file):

- ``malformed``: a field missing, of the wrong type, a stretch on something that is not a roll, ``from_m >= to_m``;
- ``unknown_id``: the trace ID is not in the genealogy (mistyped, or the material was never made);
- ``unknown_quantity`` / ``unknown_unit``: the quantity is not in ``QUANTITIES`` or its unit is not one it takes;
- ``out_of_range``: the value (after unit conversion) is outside the quantity's physical range, or the time is in the
  future;
- ``duplicate``: the same ID, stretch, quantity, method and time twice in the file, or already stored.

Schema of ``lab`` (docs/quality.md): tags ``line``, ``trace_id``, ``trace_type``, ``quantity``, ``unit``,
``method``; fields ``value`` (float, in the quantity's unit), ``from_m`` / ``to_m`` (roll stretches), ``operator``,
``source``; timestamp = the time of the measurement (ns). ``trace_id`` is a tag although IDs grow without bound: lab
results are sparse (one per batch, per roll stretch, per sampled cell) and a cell record asks for them by ID, which
must hit the index, not scan every lab point.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from connectors.records import iso_to_ns, ns_to_iso
from twin.quality.influx import InfluxReader
from twin.store.lineproto import string_field, tag_value

MEASUREMENT: Final = "lab"
ROLL_TYPES: Final = ("CoatedRoll", "CalenderedRoll", "SlitCoil")


@dataclass(frozen=True)
class Quantity:
    unit: str  # the unit it is stored in
    low: float
    high: float
    #: other units accepted and their factor to `unit`
    also: Mapping[str, float] = field(default_factory=dict)


#: What a lab measures (seed 004's list), the unit each is stored in, the units accepted and the physical range.
QUANTITIES: Final[dict[str, Quantity]] = {
    "viscosity": Quantity("Pa.s", 0.0, 1000.0, {"mPa.s": 1e-3, "cP": 1e-3}),
    "solid_content": Quantity("1", 0.0, 1.0, {"%": 0.01}),
    "peel_strength": Quantity("N/m", 0.0, 10_000.0, {"N/mm": 1000.0}),
    "adhesion": Quantity("N/m", 0.0, 10_000.0, {"N/mm": 1000.0}),
    "porosity": Quantity("1", 0.0, 1.0, {"%": 0.01}),
    "pore_diameter": Quantity("um", 0.0, 1000.0, {"nm": 1e-3}),
    "electrode_resistance": Quantity("Ohm.cm2", 0.0, 10_000.0, {"mOhm.cm2": 1e-3}),
    "sheet_resistance": Quantity("Ohm", 0.0, 1e6, {"mOhm": 1e-3}),
    "cell_impedance": Quantity("mOhm", 0.0, 1e5, {"Ohm": 1000.0}),
    "mass_loading": Quantity("mg/cm2", 0.0, 100.0, {"g/m2": 0.1}),
    "thickness": Quantity("um", 0.0, 5000.0, {"mm": 1000.0}),
    "density": Quantity("g/cm3", 0.0, 25.0, {"kg/m3": 1e-3}),
    "moisture": Quantity("ppm", 0.0, 1e6, {"%": 1e4}),
    "particle_size_d50": Quantity("um", 0.0, 1000.0, {"nm": 1e-3}),
}
FIELDS: Final = ("trace_id", "quantity", "value", "unit", "method", "time", "operator")
OPTIONAL: Final = ("from_m", "to_m", "note")
FUTURE_SLACK_NS: Final = 300 * 10**9


@dataclass
class Refused:
    row: int  # 1-based position in the input (the header of a CSV is not a row)
    reason: str
    detail: str
    raw: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "reason": self.reason, "detail": self.detail, "raw": dict(self.raw)}


@dataclass
class LabRow:
    row: int
    trace_id: str
    trace_type: str
    quantity: str
    value: float  # in QUANTITIES[quantity].unit
    unit: str
    method: str
    time_ns: int
    operator: str
    from_m: float | None = None
    to_m: float | None = None
    note: str = ""

    def key(self) -> tuple[Any, ...]:
        return (self.trace_id, self.from_m, self.to_m, self.quantity, self.method, self.time_ns)

    def line(self, line: str, source: str) -> str:
        tags = {"line": line, "trace_id": self.trace_id, "trace_type": self.trace_type, "quantity": self.quantity,
                "unit": self.unit, "method": self.method}
        tag_text = ",".join(f"{k}={tag_value(v)}" for k, v in sorted(tags.items()))
        fields = [f"value={self.value!r}", f"operator={string_field(self.operator)}"]
        if self.from_m is not None and self.to_m is not None:
            fields += [f"from_m={self.from_m!r}", f"to_m={self.to_m!r}"]
        if source:
            fields.append(f"source={string_field(source)}")
        if self.note:
            fields.append(f"note={string_field(self.note)}")
        return f"{MEASUREMENT},{tag_text} {','.join(fields)} {self.time_ns}"

    def to_dict(self) -> dict[str, Any]:
        out = {"row": self.row, "trace_id": self.trace_id, "trace_type": self.trace_type, "quantity": self.quantity,
               "value": self.value, "unit": self.unit, "method": self.method, "time": ns_to_iso(self.time_ns),
               "operator": self.operator}
        if self.from_m is not None:
            out.update(from_m=self.from_m, to_m=self.to_m)
        return out


@dataclass
class ImportResult:
    stored: list[LabRow]
    quarantined: list[Refused]

    def rejected(self, source: str) -> list[Any]:
        """The refused rows as ingest quarantine records (reason ``lab_<reason>``), so they sit beside the line's."""
        from contract.records import Rejected

        now = time.time_ns()
        return [Rejected(f"lab_{r.reason}", f"row {r.row}: {r.detail}", f"lab:{source}",
                         json.dumps(dict(r.raw), default=str), now) for r in self.quarantined]

    def to_dict(self, *, rows: bool = True) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for r in self.quarantined:
            counts[r.reason] = counts.get(r.reason, 0) + 1
        out: dict[str, Any] = {"stored": len(self.stored), "quarantined": len(self.quarantined),
                               "reasons": counts, "refused": [r.to_dict() for r in self.quarantined]}
        if rows:
            out["rows"] = [r.to_dict() for r in self.stored]
        return out


def read_file(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV file (header line with the field names) or a JSON file (a list of objects, or
    ``{"rows": [...]}``); which one by the suffix, else by the first character."""
    text = path.read_text(encoding="utf-8-sig")
    return parse_text(text, "json" if path.suffix.lower() == ".json" or text.lstrip()[:1] in "[{" else "csv")


def parse_text(text: str, fmt: str) -> list[dict[str, Any]]:
    if fmt == "json":
        data = json.loads(text)
        if isinstance(data, dict) and isinstance(data.get("rows"), list):
            data = data["rows"]
        if not isinstance(data, list):
            raise ValueError("a JSON lab file is a list of row objects (or {\"rows\": [...]})")
        return [r if isinstance(r, dict) else {"_raw": r} for r in data]
    return [dict(r) for r in csv.DictReader(io.StringIO(text))]


class LabImporter:
    """Validates rows against the genealogy (``find`` of each trace ID) and InfluxDB (duplicates), then stores the
    good ones. ``write`` takes line-protocol bytes (the service's InfluxDB, or the CLI's)."""

    def __init__(self, store: Any, influx: InfluxReader, line: str, *, max_rows: int = 100_000) -> None:
        self.store = store
        self.influx = influx
        self.line = line
        self.max_rows = max_rows

    def validate(self, rows: Sequence[Mapping[str, Any]]) -> ImportResult:
        if len(rows) > self.max_rows:
            raise ValueError(f"{len(rows)} rows is more than {self.max_rows} in one import (quality.lab_max_rows); "
                             "split the file")
        good: list[LabRow] = []
        bad: list[Refused] = []
        types: dict[str, str | None] = {}
        seen: set[tuple[Any, ...]] = set()
        now = time.time_ns()
        for i, raw in enumerate(rows, start=1):
            try:
                row = self._parse(i, raw, now)
            except _Refuse as exc:
                bad.append(Refused(i, exc.reason, exc.detail, raw))
                continue
            if row.trace_id not in types:
                types[row.trace_id] = self._type_of(row.trace_id)
            t = types[row.trace_id]
            if t is None:
                bad.append(Refused(i, "unknown_id", f"no entity with trace ID {row.trace_id} on line {self.line} "
                                                    "in the genealogy", raw))
                continue
            if row.from_m is not None and t not in ROLL_TYPES:
                bad.append(Refused(i, "malformed", f"from_m / to_m apply to rolls ({', '.join(ROLL_TYPES)}); "
                                                   f"{row.trace_id} is a {t}", raw))
                continue
            row.trace_type = t
            if row.key() in seen:
                bad.append(Refused(i, "duplicate", "the same ID, stretch, quantity, method and time appear earlier "
                                                   "in this import", raw))
                continue
            seen.add(row.key())
            good.append(row)
        stored = self._stored_keys({r.trace_id for r in good})
        kept: list[LabRow] = []
        for r in good:
            if r.key() in stored:
                bad.append(Refused(r.row, "duplicate", "already stored (same ID, stretch, quantity, method and time)",
                                   rows[r.row - 1]))
            else:
                kept.append(r)
        bad.sort(key=lambda b: b.row)
        return ImportResult(kept, bad)

    def store_rows(self, result: ImportResult, source: str = "") -> None:
        """Write the good rows (one request per 5 000 lines)."""
        lines = [r.line(self.line, source) for r in result.stored]
        for k in range(0, len(lines), 5000):
            self.influx.write(("\n".join(lines[k:k + 5000]) + "\n").encode())

    def import_rows(self, rows: Sequence[Mapping[str, Any]], source: str = "") -> ImportResult:
        result = self.validate(rows)
        self.store_rows(result, source)
        return result

    # -- parts -------------------------------------------------------------------------------------------------------
    def _type_of(self, trace_id: str) -> str | None:
        try:
            _, _, t = self.store.find(trace_id, self.line)
        except LookupError:
            return None
        return str(t)

    def _stored_keys(self, ids: Iterable[str]) -> set[tuple[Any, ...]]:
        ids = sorted(ids)
        out: set[tuple[Any, ...]] = set()
        for k in range(0, len(ids), 200):
            chunk = ids[k:k + 200]
            params: dict[str, Any] = {"line": self.line}
            conds = []
            for j, tid in enumerate(chunk):
                params[f"t{j}"] = tid
                conds.append(f'"trace_id" = $t{j}')
            q = (f'SELECT "value", "from_m", "to_m" FROM "{MEASUREMENT}" WHERE "line" = $line AND '
                 f'({" OR ".join(conds)}) GROUP BY "trace_id", "quantity", "method"')
            for r in self.influx.query([q], params)[0]:
                out.add((r["trace_id"], r.get("from_m"), r.get("to_m"), r["quantity"], r["method"], int(r["time"])))
        return out

    def _parse(self, i: int, raw: Mapping[str, Any], now_ns: int) -> LabRow:
        missing = [f for f in FIELDS if raw.get(f) in (None, "")]
        if missing:
            raise _Refuse("malformed", f"missing {', '.join(missing)} (a row needs {', '.join(FIELDS)})")
        unknown = sorted(set(raw) - set(FIELDS) - set(OPTIONAL))
        if unknown:
            raise _Refuse("malformed", f"unknown field(s) {unknown}; fields are {FIELDS + OPTIONAL}")
        from ontology.events import EventError, check_id

        trace_id = str(raw["trace_id"]).strip()
        try:
            check_id(trace_id, "trace_id")
        except EventError as exc:
            raise _Refuse("malformed", str(exc)) from None
        name = str(raw["quantity"]).strip()
        q = QUANTITIES.get(name)
        if q is None:
            raise _Refuse("unknown_quantity", f"{name!r} is not a lab quantity; known: {sorted(QUANTITIES)}")
        unit = str(raw["unit"]).strip()
        if unit == q.unit:
            factor = 1.0
        elif unit in q.also:
            factor = q.also[unit]
        else:
            raise _Refuse("unknown_unit", f"{name} is given in {unit!r}; it takes {[q.unit, *q.also]}")
        value = _float(raw["value"], "value") * factor
        if not (q.low <= value <= q.high):
            raise _Refuse("out_of_range", f"{name} = {value:g} {q.unit} is outside [{q.low:g}, {q.high:g}] {q.unit}")
        try:
            t_ns = iso_to_ns(str(raw["time"]).strip())
        except ValueError as exc:
            raise _Refuse("malformed", f"time: {exc}") from None
        if t_ns > now_ns + FUTURE_SLACK_NS:
            raise _Refuse("out_of_range", f"time {raw['time']} is in the future")
        a, b = raw.get("from_m"), raw.get("to_m")
        a = None if a in (None, "") else _float(a, "from_m")
        b = None if b in (None, "") else _float(b, "to_m")
        if (a is None) != (b is None):
            raise _Refuse("malformed", "give both from_m and to_m, or neither")
        if a is not None and b is not None and not (0 <= a < b):
            raise _Refuse("malformed", f"need 0 <= from_m < to_m, got {a}..{b}")
        method, operator = str(raw["method"]).strip(), str(raw["operator"]).strip()
        for label, text in (("method", method), ("operator", operator)):
            if len(text) > 128 or any(ord(c) < 32 for c in text):
                raise _Refuse("malformed", f"{label} must be 1..128 characters without control characters")
        return LabRow(i, trace_id, "", name, value, q.unit, method, t_ns, operator, a, b,
                      str(raw.get("note") or "")[:500])


class _Refuse(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _float(v: Any, name: str) -> float:
    if isinstance(v, bool):
        raise _Refuse("malformed", f"{name} must be a number, got {v!r}")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise _Refuse("malformed", f"{name} must be a number, got {v!r}") from None
    if not math.isfinite(f):
        raise _Refuse("malformed", f"{name} must be finite, got {v!r}")
    return f


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
