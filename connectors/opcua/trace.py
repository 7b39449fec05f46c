"""The trace context: which ID (roll, batch, position, cell ...) was current when, on the line's clock.

The stations' ID variables (``RollId``, ``RollPosition``, ``SlurryBatchId``, ``CellId`` ...) are kept as a
time-indexed history per station, and a sample gets the IDs that were current at its *source timestamp*.

Clocks: the line's clock (SourceTimestamp) need not be the server's or ours (a line replayed or simulated with
``--start-time``, a PLC clock off by hours). The context is kept on the line's clock only:

- an ID value without a SourceTimestamp (an initial value on subscribe, a server that does not stamp a node) is
  placed at the start of its key's history (valid until the key's first timestamped value; a later untimed value
  replaces it), never at the ServerTimestamp or the receive time, which would put it hours ahead of or behind the
  samples it tags. A sample without a SourceTimestamp is stored at its ServerTimestamp (else the receive time) and
  tagged with the IDs current at that time, as ``opcua.timestamp: source`` documents;
- the history is trimmed relative to the oldest sample that can still arrive (the oldest one not yet acknowledged to
  the server, minus ``opcua.trace_history_s``), not relative to the newest ID, which may carry another clock's time
  (asyncua stamps a variable's creation value with the server's wall clock);
- the whole history is saved with the subscription state, and an acknowledgement is sent only once the history that
  tagged its samples is saved: a restarted process that re-reads unacknowledged messages tags them as before;
- per node, the newest sample the pipeline has made durable is remembered (and saved): its re-delivery as the
  initial value of a new subscription (same time, value and quality), which may be older than the history, is
  dropped, so an instant is never stored a second time with other tags; republished messages are within the history
  and tagged as before. Both are reset when the server's start time changes (a new server run may have a new clock).

The last three points are bookkeeping of the connector (``connector.py``); this module holds the history itself and
the clock policy (``sample_time``, ``id_time``).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from asyncua import ua

from connectors.records import TraceValue

TimestampSource = Literal["source", "server", "received"]

#: Where an ID value without a SourceTimestamp goes in its history: before every timestamped entry, i.e. "valid from
#: the start until the key's first timestamped value". Never at the server's or our receive clock, which can be hours
#: away from the line's clock that stamps the samples (see ``id_time``).
EARLIEST_NS = -(2**63)


@dataclass
class _History:
    """One trace key of one station: its values in source-time order (any arrival order)."""

    times: list[int] = field(default_factory=list)
    values: list[TraceValue | None] = field(default_factory=list)

    def set(self, t_ns: int, value: TraceValue | None) -> bool:
        """Record ``value`` from ``t_ns`` on; a second value at the same instant replaces the first.
        Returns whether anything changed."""
        i = bisect.bisect_right(self.times, t_ns)
        if i > 0 and self.times[i - 1] == t_ns:
            if self.values[i - 1] == value:
                return False
            self.values[i - 1] = value
            return True
        self.times.insert(i, t_ns)
        self.values.insert(i, value)
        return True

    def at(self, t_ns: int) -> TraceValue | None:
        i = bisect.bisect_right(self.times, t_ns)
        return self.values[i - 1] if i else None

    def trim(self, keep_from_ns: int, max_entries: int) -> None:
        """Forget what no lookup at or after ``keep_from_ns`` needs: entries before the one current at that time.
        ``max_entries`` bounds the history whatever the times say (the oldest go first)."""
        cut = max(bisect.bisect_right(self.times, keep_from_ns) - 1, len(self.times) - max_entries, 0)
        if cut:
            del self.times[:cut]
            del self.values[:cut]


class TraceContext:
    """Per station, per trace key: which value was current when (by the line's clock, the samples' source time).

    A lookup at ``t`` returns, per key, the newest value at or before ``t``. ``snapshot`` keeps the whole history
    (not only the newest entry: a restarted process re-reads samples from before its crash and must tag them with
    the IDs of *their* time), and ``trim`` cuts it relative to the oldest sample that can still arrive, never
    relative to the newest ID (which may carry another clock's time).

    One context may serve several connectors of a line (the calender's server has no roll ID; the coater's does):
    each history belongs to the connector (``owner``) that writes it, which alone clears it (its server restarted),
    saves and restores it; a trim keeps what the connector with the oldest outstanding sample still needs.

    A station whose gauge sits ``offset_m`` downstream of where its IDs are read (``set_offset``) is looked up at the
    time the web now under the gauge passed the reader, found from the station's roll-position history.
    """

    def __init__(self) -> None:
        self._h: dict[str, dict[str, _History]] = {}
        self._owner: dict[tuple[str, str], str] = {}
        self._horizon: dict[str, int] = {}
        self._offset_m: dict[str, float] = {}
        self.version = 0  # bumped by every change: what a saved snapshot covers

    def update(self, station: str, key: str, t_ns: int | None, value: TraceValue | None, owner: str = "") -> None:
        """``t_ns`` None: the value has no source time; it is valid from the start of the history (EARLIEST_NS)."""
        self._owner.setdefault((station, key), owner)
        if self._h.setdefault(station, {}).setdefault(key, _History()).set(
                EARLIEST_NS if t_ns is None else t_ns, value):
            self.version += 1

    def set_offset(self, station: str, offset_m: float) -> None:
        if offset_m > 0:
            self._offset_m[station] = offset_m
        else:
            self._offset_m.pop(station, None)

    def at(self, station: str, t_ns: int) -> dict[str, TraceValue]:
        keys = self._h.get(station)
        if not keys:
            return {}
        offset = self._offset_m.get(station)
        if offset:
            t_ns = self._passed_reader_at(keys.get("roll_position_m"), t_ns, offset)
        out: dict[str, TraceValue] = {}
        for key, h in keys.items():
            v = h.at(t_ns)
            if v is not None and v != "":
                out[key] = v
        return out

    @staticmethod
    def _passed_reader_at(pos: _History | None, t_ns: int, offset_m: float) -> int:
        """When the web now ``offset_m`` downstream of the reader passed it: walk the position history back from
        ``t_ns`` until that much web has gone by (a drop in position is a new roll starting at 0), interpolating
        linearly between entries. Without a position history the time itself (nothing better is known)."""
        if pos is None or not pos.times:
            return t_ns
        i = bisect.bisect_right(pos.times, t_ns) - 1
        if i < 0:
            return t_ns
        left = offset_m
        t_hi, p_hi = t_ns, pos.values[i]
        while i >= 0:
            p = pos.values[i]
            t_lo = pos.times[i]
            if not isinstance(p, float | int) or not isinstance(p_hi, float | int):
                return t_lo
            if i + 1 < len(pos.times) and pos.times[i + 1] <= t_ns:
                step = p_hi - p if p_hi >= p else p_hi  # a new roll starts at 0
            else:
                step = 0.0  # t_ns lies within [t_lo, next entry): no movement known since t_lo
            if step >= left and step > 0:
                frac = left / step
                return int(t_hi - frac * (t_hi - t_lo))
            left -= max(step, 0.0)
            t_hi, p_hi = t_lo, p
            i -= 1
        return pos.times[0]

    def clear(self, owner: str | None = None) -> None:
        """Forget every history (``owner`` None) or only those ``owner`` writes."""
        if owner is None:
            self._h.clear()
            self._owner.clear()
        else:
            for (st, key), o in list(self._owner.items()):
                if o == owner:
                    self._h.get(st, {}).pop(key, None)
                    del self._owner[(st, key)]
        self.version += 1

    def trim(self, keep_from_ns: int, max_entries: int = 100_000, owner: str = "") -> None:
        """Lookups at ``keep_from_ns`` or later answer as before; older ones may not. With several owners, each
        says how far back it still looks, and the history is kept from the earliest of them."""
        self._horizon[owner] = keep_from_ns
        horizon = min(self._horizon.values())
        for station, offset in self._offset_m.items():  # its lookups reach back to when the web passed the reader
            pos = self._h.get(station, {}).get("roll_position_m")
            horizon = min(horizon, self._passed_reader_at(pos, horizon, offset))
        for keys in self._h.values():
            for h in keys.values():
                h.trim(horizon, max_entries)

    def snapshot(self, owner: str | None = None) -> dict[str, dict[str, list[list[Any]]]]:
        """Every entry of every station and key (of ``owner``'s histories when given), as JSON-ready
        ``[[t_ns, value], ...]`` lists."""
        out = {st: {k: [[t, v] for t, v in zip(h.times, h.values, strict=True)] for k, h in keys.items()
                    if h.times and (owner is None or self._owner.get((st, k), "") == owner)}
               for st, keys in self._h.items()}
        return {st: keys for st, keys in out.items() if keys}

    def restore(self, snap: dict[str, dict[str, list[Any]]], owner: str = "") -> None:
        """Load a ``snapshot``; also the older format that kept one ``[t_ns, value]`` per key."""
        for st, keys in snap.items():
            for k, entries in keys.items():
                pairs = entries if entries and isinstance(entries[0], list) else [entries]
                for t, v in pairs:
                    self.update(st, k, int(t), v, owner)


# ---------------------------------------------------------------------------------------------------------------
# the clock policy
# ---------------------------------------------------------------------------------------------------------------


def sample_time(dv: ua.DataValue, received_ns: int, source: TimestampSource) -> tuple[int, bool]:
    """A sample's time, and whether it is on the reference clock (``opcua.timestamp``) rather than a fallback.

    ``source``: the SourceTimestamp, else the ServerTimestamp, else the receive time (Telegraf's habit)."""
    ts = dv.SourceTimestamp if source == "source" else dv.ServerTimestamp if source == "server" else None
    if ts is not None:
        return datetime_ns(ts), True
    if source == "source" and dv.ServerTimestamp is not None:
        return datetime_ns(dv.ServerTimestamp), False
    return received_ns, source == "received"


def id_time(dv: ua.DataValue, received_ns: int, source: TimestampSource) -> int | None:
    """Where an ID value goes in the context history; None = from its start (no time on the reference clock).

    Never a fallback clock: an ID stamped with the server's clock while the samples carry the line's would be
    current hours too early or too late (see the module docstring)."""
    t_ns, on_reference_clock = sample_time(dv, received_ns, source)
    return t_ns if on_reference_clock else None


def datetime_ns(ts: datetime) -> int:
    """asyncua gives naive-UTC or aware datetimes; integer ns without float rounding."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return int(ts.timestamp()) * 1_000_000_000 + ts.microsecond * 1000
