"""Sample / TraceEvent codecs: round trips (hypothesis) and clear errors on bad payloads."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.records import (
    TRACE_TYPES,
    RecordError,
    Sample,
    TraceEvent,
    TraceInput,
    is_valid_id,
    iso_to_ns,
    ns_to_iso,
)
from contract.trace import ID_PREFIX_BY_TYPE
from tests.trace_contract import README_TRACE_EVENT

ids = st.from_regex(r"\A[A-Z][A-Z0-9]{0,5}(-[A-Z0-9]{1,6}){1,3}\Z")
names = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1, max_size=20)
values = st.one_of(st.floats(allow_nan=False), st.integers(-(2**53), 2**53), st.booleans(), names)
times = st.integers(0, 4_000_000_000_000_000_000)


@st.composite
def samples(draw: Any) -> Sample:
    trace = draw(st.dictionaries(st.sampled_from(["roll_id", "slurry_batch_id", "cell_id"]), ids, max_size=3))
    if draw(st.booleans()):
        trace["roll_position_m"] = draw(st.floats(0, 10_000, allow_nan=False))
    return Sample(
        time_ns=draw(times), line=draw(names), station=draw(names), signal=draw(names), value=draw(values),
        unit=draw(st.sampled_from(["um", "cm3/h", "Cel", ""])),
        quality=draw(st.sampled_from(["good", "bad", "uncertain"])),
        source=draw(names), trace=trace, received_ns=draw(st.integers(0, 2**62)),
    )


@given(samples())
def test_sample_json_round_trip(s: Sample) -> None:
    assert Sample.from_json(json.loads(json.dumps(s.to_json()))) == s


@st.composite
def typed_id(draw: Any) -> tuple[str, str]:
    """An ID and its type: the contract wants the type's prefix (a CoatedRoll is CR-...)."""
    entity_type = draw(st.sampled_from(sorted(TRACE_TYPES)))
    return ID_PREFIX_BY_TYPE[entity_type] + draw(st.from_regex(r"\A[A-Z0-9]{1,6}(-[A-Z0-9]{1,6}){0,2}\Z")), entity_type


@st.composite
def trace_events(draw: Any) -> TraceEvent:
    t = draw(st.integers(0, 2**62)) // 1000 * 1000  # JSON carries microseconds
    inputs = tuple(
        TraceInput(*draw(typed_id()),
                   *( (a, a + b) for a, b in [(draw(st.floats(0, 1e4)), draw(st.floats(1e-3, 1e4)))] ).__next__())
        for _ in range(draw(st.integers(0, 3)))
    )
    entity_id, entity_type = draw(typed_id().filter(lambda it: all(i.id != it[0] for i in inputs)))  # not from itself
    return TraceEvent(
        seq=draw(st.integers(1, 2**40)), line="PL1", time_ns=t,
        kind=draw(st.sampled_from(["created", "consumed", "processed"])),
        id=entity_id, type=entity_type, step="Coating", station="Coating/Cathode",
        equipment="SlotDieCoater-C", start_ns=t - 10**9 if t >= 10**9 else None, end_ns=t, inputs=inputs,
        parameters=draw(st.dictionaries(st.sampled_from(["a_m", "b_um"]),
                                        st.floats(allow_nan=False, allow_infinity=False))),
        properties={"length_m": 200.0},
    )


@given(trace_events())
def test_trace_event_json_round_trip(e: TraceEvent) -> None:
    assert TraceEvent.from_json(json.loads(json.dumps(e.to_json()))) == e


@given(st.integers(0, 2**62))
def test_iso_ns_round_trip(t: int) -> None:
    assert iso_to_ns(ns_to_iso(t)) == t


README_EXAMPLE = README_TRACE_EVENT


def test_readme_trace_event_example_parses_and_round_trips() -> None:
    e = TraceEvent.from_json(README_EXAMPLE)
    assert e.id == "CR-C-000001" and e.inputs[0].to_m == 200.0
    assert e.end_ns - e.start_ns == 3600 * 10**9
    assert e.to_json() == README_EXAMPLE


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"seq": 0}, "seq"),
        ({"seq": "1"}, "seq"),
        ({"kind": "born"}, "kind"),
        ({"type": "Roll"}, "type"),
        ({"id": "cr-c-1"}, "id"),
        ({"id": "X" * 70 + "-1"}, "id"),
        ({"time": "yesterday"}, "time"),
        ({"schema": "other"}, "schema"),
        ({"inputs": [{"id": "SB-C-1"}]}, "inputs[0]"),
        ({"inputs": [{"id": "SB-C-1", "type": "SlurryBatch", "from_m": 5, "to_m": 1}]}, "to_m"),
        ({"inputs": [{"id": "SB-C-1", "type": "SlurryBatch", "from_m": math.nan}]}, "from_m"),
        ({"parameters": {"x": [1, 2]}}, "parameters"),
        ({"parameters": {"x": math.inf}}, "parameters"),
    ],
)
def test_trace_event_errors_name_the_field(patch: dict[str, Any], message: str) -> None:
    with pytest.raises(RecordError, match=message.replace("[", r"\[")):
        TraceEvent.from_json({**README_EXAMPLE, **patch})


def test_missing_fields_are_listed() -> None:
    with pytest.raises(RecordError, match="id"):
        TraceEvent.from_json({k: v for k, v in README_EXAMPLE.items() if k != "id"})
    with pytest.raises(RecordError, match="required"):
        Sample.from_json({"line": "PL1"})
    with pytest.raises(RecordError, match="JSON object"):
        Sample.from_json([1, 2])  # type: ignore[arg-type]


@given(st.text(max_size=80))
@settings(max_examples=300)
def test_id_validation_agrees_with_the_pattern(text: str) -> None:
    import re

    expected = len(text) <= 64 and re.fullmatch(r"[A-Z][A-Z0-9]*(-[A-Z0-9]+)+", text) is not None
    assert is_valid_id(text) == expected
