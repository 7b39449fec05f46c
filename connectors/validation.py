"""Check every Sample before it is stored: type, NaN / inf, physical range, unit, names, trace IDs, time.

Why here and not in the store: a record that would poison the database (a string where a number series lives, a
newline in a tag, a clock 10 years ahead) must be caught before it reaches the durable spool, and the reason must
be precise enough to count per reason and to fix the source. A rejected sample becomes a ``Rejected`` with the
sample attached; ingest goes on.
"""

from __future__ import annotations

import math
import re
import time
from typing import Final

from connectors.records import ID_MAX_LEN, QUALITIES, TRACE_KEYS, Rejected, Sample
from connectors.settings import SignalRange, ValidationConfig

STATION_RE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(/[A-Za-z0-9][A-Za-z0-9_-]*)?$")
SIGNAL_RE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*$")
LINE_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
TAG_VALUE_RE: Final = re.compile(r"^[^\x00-\x1f\x7f]{1,256}$")
MAX_STRING_CHARS: Final = 4096
_NUMERIC_TRACE_KEYS: Final = frozenset({"roll_position_m", "seq"})
_TAG_LIKE_TRACE_KEYS: Final = frozenset({"channel"})
CHANNEL_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


class Validator:
    """Stateless per sample; built once from the ``validation`` config section."""

    def __init__(self, cfg: ValidationConfig | None = None) -> None:
        self.cfg = cfg or ValidationConfig()
        self.id_re = re.compile(self.cfg.id_pattern)
        self.units = frozenset(self.cfg.units)
        self.ranges: dict[str, SignalRange] = dict(self.cfg.ranges)
        self.max_future_ns = int(self.cfg.max_future_s * 1e9)
        self._names_ok: set[tuple[object, ...]] = set()  # (line, station, signal, unit, quality, tags) seen valid

    def range_for(self, station: str, signal: str) -> SignalRange | None:
        """``Station/Lane/Signal`` beats ``Station/Signal`` beats ``Signal``."""
        r = self.ranges.get(f"{station}/{signal}")
        if r is None and "/" in station:
            r = self.ranges.get(f"{station.split('/', 1)[0]}/{signal}")
        return r if r is not None else self.ranges.get(signal)

    def check(self, s: Sample, now_ns: int | None = None) -> Rejected | None:
        """``None`` when the sample may be stored, else the reason."""
        reason = self._reason(s, time.time_ns() if now_ns is None else now_ns)
        if reason is None:
            return None
        key, detail = reason
        return Rejected(key, detail, s.source or f"{s.station}/{s.signal}", repr(s.value), s.time_ns, s)

    def _reason(self, s: Sample, now_ns: int) -> tuple[str, str] | None:  # noqa: C901 - one flat list of rules
        names: tuple[object, ...] = (s.line, s.station, s.signal, s.unit, s.quality,
                                     tuple(s.tags.items()) if s.tags else ())
        try:
            known = names in self._names_ok
        except TypeError:  # unhashable junk in a field: the full checks below say what
            names, known = (), False
        if not known:
            bad = self._name_problem(s)
            if bad is not None:
                return bad
            if names and len(self._names_ok) < 100_000:
                self._names_ok.add(names)
        if isinstance(s.time_ns, bool) or not isinstance(s.time_ns, int) or s.time_ns <= 0:
            return "time", f"time_ns {s.time_ns!r} must be a positive integer (ns since 1970 UTC)"
        if s.time_ns > now_ns + self.max_future_ns:
            return "time", f"time {s.time_ns} is more than {self.cfg.max_future_s} s in the future (source clock?)"
        if s.trace:
            bad = self._trace_problem(s)
            if bad is not None:
                return bad
        return self._value_problem(s)

    def _name_problem(self, s: Sample) -> tuple[str, str] | None:
        if not isinstance(s.line, str) or not LINE_RE.fullmatch(s.line):
            return "name", f"line {s.line!r} must match {LINE_RE.pattern}"
        if not isinstance(s.station, str) or not STATION_RE.fullmatch(s.station):
            return "name", f"station {s.station!r} must match {STATION_RE.pattern} (e.g. Coating/Cathode)"
        if not isinstance(s.signal, str) or not SIGNAL_RE.fullmatch(s.signal) or len(s.signal) > 128:
            return "name", f"signal {s.signal!r} must match {SIGNAL_RE.pattern}"
        if not isinstance(s.quality, str) or s.quality not in QUALITIES:
            return "quality", f"quality {s.quality!r} not in {sorted(QUALITIES)}"
        if not isinstance(s.unit, str) or (self.cfg.reject_unknown_units and s.unit not in self.units):
            return "unit", f"unit {s.unit!r} is not a known UCUM code (validation.units)"
        for k, v in s.tags.items():
            if not isinstance(k, str) or not SIGNAL_RE.fullmatch(k) or not isinstance(v, str) \
                    or not TAG_VALUE_RE.fullmatch(v):
                return "tag", f"tag {k}={v!r} must be a name and a printable value up to 256 chars"
        return None

    def _value_problem(self, s: Sample) -> tuple[str, str] | None:
        v = s.value
        if isinstance(v, str):
            if len(v) > MAX_STRING_CHARS or any(c in v for c in "\n\r\x00"):
                return "type", f"string value of {len(v)} chars with control characters or over {MAX_STRING_CHARS}"
            return None
        if not isinstance(v, int | float):
            return "type", f"value must be a number, boolean or string, got {type(v).__name__}"
        if isinstance(v, bool):
            return None
        rng = self.range_for(s.station, s.signal)
        if rng is not None and rng.unit is not None and s.unit != rng.unit:
            return "unit", f"{s.signal} must be in {rng.unit!r}, got {s.unit!r}"
        if not math.isfinite(v):
            if s.quality == "bad":
                return None  # stored as a bad sample without a value: the outage itself is data
            return "nan", f"{s.signal} = {v} with quality {s.quality}: a non-finite value must carry bad quality"
        if s.quality != "bad" and rng is not None:
            if (rng.min is not None and v < rng.min) or (rng.max is not None and v > rng.max):
                return "out_of_range", f"{s.signal} = {v} {s.unit} outside [{rng.min}, {rng.max}]"
        return None

    def _trace_problem(self, s: Sample) -> tuple[str, str] | None:
        for k, v in s.trace.items():
            if k not in TRACE_KEYS:
                return "trace_id", f"trace key {k!r} is not one of {TRACE_KEYS}"
            if k in _NUMERIC_TRACE_KEYS:
                if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                    return "trace_id", f"trace {k}={v!r} must be a finite number >= 0"
            elif k in _TAG_LIKE_TRACE_KEYS:
                if not isinstance(v, str) or not CHANNEL_RE.fullmatch(v):
                    return "trace_id", f"trace {k}={v!r} must match {CHANNEL_RE.pattern}"
            elif not isinstance(v, str) or len(v) > ID_MAX_LEN or not self.id_re.fullmatch(v):
                return "trace_id", f"trace {k}={v!r} is not a well-formed ID ({self.cfg.id_pattern})"
        return None
