"""The OPC UA connector's trace-context history against a reference model (hypothesis, stateful).

The model is a sorted list per (station, key); a lookup at ``t`` is, per key, the latest entry at or before ``t``
(empty and missing values leave the key out). Updates come at arbitrary, out-of-order source times, some without a
time (placed before every timestamped entry), interleaved with lookups, JSON save + reload (what the state file does
across a crash) and trims. The contract a trim keeps: every lookup at or after its horizon answers as before.
"""

from __future__ import annotations

import bisect
import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from connectors.opcua import EARLIEST_NS, TraceContext, _History

STATIONS = ("Coating/Cathode", "Drying/Cathode", "Line")
KEYS = ("roll_id", "roll_position_m", "slurry_batch_id")
times = st.integers(min_value=-50, max_value=50).map(lambda t: 1_700_000_000_000_000_000 + t * 10**9)
values = st.one_of(st.none(), st.just(""), st.sampled_from(["CR-C-000001", "CR-C-000002", "SB-C-000007"]),
                   st.floats(min_value=0, max_value=5, allow_nan=False))


class _Model:
    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], list[tuple[int, Any]]] = {}

    def update(self, station: str, key: str, t: int | None, value: Any) -> None:
        t = EARLIEST_NS if t is None else t
        lst = self.entries.setdefault((station, key), [])
        lst[:] = [e for e in lst if e[0] != t]
        bisect.insort(lst, (t, value), key=lambda e: e[0])

    def at(self, station: str, t: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for (st_, key), lst in self.entries.items():
            if st_ != station:
                continue
            i = bisect.bisect_right([e[0] for e in lst], t)
            if i and lst[i - 1][1] not in (None, ""):
                out[key] = lst[i - 1][1]
        return out

    def probe_times(self) -> list[int]:
        ts = {t for lst in self.entries.values() for t, _ in lst}
        return sorted({t + d for t in ts for d in (-1, 0, 1)} | {EARLIEST_NS, 2**62})


class TraceContextMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ctx = TraceContext()
        self.model = _Model()
        self.horizon = EARLIEST_NS  # lookups before the newest trim's horizon are no longer promised

    @rule(station=st.sampled_from(STATIONS), key=st.sampled_from(KEYS), t=st.one_of(st.none(), times), value=values)
    def update(self, station: str, key: str, t: int | None, value: Any) -> None:
        self.ctx.update(station, key, t, value)
        self.model.update(station, key, t, value)

    @rule(station=st.sampled_from(STATIONS), t=times)
    def lookup(self, station: str, t: int) -> None:
        if t >= self.horizon:
            assert self.ctx.at(station, t) == self.model.at(station, t)

    @rule()
    def save_and_reload(self) -> None:
        """What a crash and restart do: the state file is JSON; a new process restores it."""
        text = json.dumps(self.ctx.snapshot())
        self.ctx = TraceContext()
        self.ctx.restore(json.loads(text))

    @rule(horizon=times)
    def trim(self, horizon: int) -> None:
        self.ctx.trim(horizon)
        self.horizon = max(self.horizon, horizon)

    @invariant()
    def every_lookup_from_the_horizon_on_matches_the_model(self) -> None:
        for station in STATIONS:
            for t in self.model.probe_times():
                if t >= self.horizon:
                    assert self.ctx.at(station, t) == self.model.at(station, t), (station, t)


TestTraceContextMachine = TraceContextMachine.TestCase
TestTraceContextMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


@settings(max_examples=200, deadline=None)
@given(entries=st.lists(st.tuples(times, values), max_size=40), horizon=times,
       max_entries=st.integers(min_value=2, max_value=10))
def test_a_capped_trim_keeps_the_newest_entries_and_their_answers(entries: list[tuple[int, Any]], horizon: int,
                                                                  max_entries: int) -> None:
    h = _History()
    for t, v in entries:
        h.set(t, v)
    before = {t: h.at(t) for t, _ in entries} | {t + 1: h.at(t + 1) for t, _ in entries}
    all_times = list(h.times)
    h.trim(horizon, max_entries)
    assert len(h.times) <= max_entries
    assert h.times == all_times[len(all_times) - len(h.times):], "a trim only ever drops the oldest entries"
    assert h.times or not all_times, "the entry current now is never dropped"
    since = max(horizon, h.times[0] if h.times else horizon)
    for t, v in before.items():
        if t >= since:
            got = h.at(t)
            assert got == v or (isinstance(v, float) and isinstance(got, float) and math.isclose(got, v)), t


def test_the_older_one_entry_per_key_state_file_still_loads() -> None:
    """State files written before the whole history was saved held ``[t_ns, value]`` per key."""
    ctx = TraceContext()
    ctx.restore({"Drying/Cathode": {"roll_id": [1_000, "CR-C-000001"], "roll_position_m": [1_500, 2.5]}})
    assert ctx.at("Drying/Cathode", 999) == {}
    assert ctx.at("Drying/Cathode", 2_000) == {"roll_id": "CR-C-000001", "roll_position_m": 2.5}
