"""Trace-event checks: every malformed event is refused with a reason that names the problem."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.records import TraceEvent
from ontology.builder import GraphBuilder, split_key, unit_iri
from ontology.events import EventError, parse_event
from tests.trace_contract import README_TRACE_EVENT

GOOD: dict[str, Any] = README_TRACE_EVENT


def with_(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    event = copy.deepcopy(GOOD)
    target = event
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return event


def test_the_readme_example_parses() -> None:
    event = parse_event(GOOD)
    assert event.id == "CR-C-000001" and event.inputs[0].to_m == 200.0
    assert event.time.tzinfo is not None and event.start < event.end  # type: ignore[operator]


@pytest.mark.parametrize(("path", "value", "says"), [
    (("schema",), "pilotline.trace.v0", "'schema'"),
    (("seq",), 0, "'seq'"),
    (("seq",), True, "'seq'"),
    (("line",), "PL 1", "'line'"),
    (("kind",), "destroyed", "'kind'"),
    (("id",), "cr-c-000001", "'id'"),
    (("id",), "CR-C-" + "0" * 70, "'id'"),
    (("id",), "SB-C-000001", "IDs start with 'CR-'"),
    (("type",), "Roll", "'type'"),
    (("time",), "2026-11-21T10:00:00", "no time zone"),
    (("time",), "yesterday", "not an ISO 8601"),
    (("end",), "2026-11-21T08:00:00Z", "before 'start'"),
    (("inputs",), {"id": "SB-C-000001"}, "'inputs' must be a list"),
    (("inputs", 0, "id"), "SB-C-000001\"}", "inputs[0].id"),
    (("inputs", 0, "to_m"), KeyError, "only one of from_m / to_m"),
    (("inputs", 0, "to_m"), -1.0, "0 <= from_m < to_m"),
    (("inputs", 0, "from_m"), math.nan, "finite"),
    (("parameters",), [1, 2], "'parameters' must be an object"),
    (("parameters", "web_speed_m_min"), math.inf, "finite"),
    (("parameters", "web_speed_m_min"), "fast" * 100, "printable string"),
    (("properties", "bad key!"), 1.0, "key 'bad key!'"),
])
def test_malformed_events_are_refused_with_the_reason(path: tuple[Any, ...], value: Any, says: str) -> None:
    with pytest.raises(EventError, match=None) as info:
        parse_event(with_(path, value))
    assert says in str(info.value), str(info.value)


def test_a_record_parsed_on_the_way_in_is_taken_as_it_is() -> None:
    """Ingest's record went through the same parser: the genealogy takes it typed, or its JSON, to the same event."""
    record = TraceEvent.from_json(GOOD)
    assert parse_event(record) is record
    assert parse_event(record.to_json()) == record == parse_event(GOOD)


def test_not_a_dict_is_refused() -> None:
    with pytest.raises(EventError, match="JSON object"):
        parse_event(["not", "an", "event"])


def test_null_values_are_skipped_not_refused() -> None:
    """The simulator writes non-finite readings as null: the event still places, without that value."""
    event = parse_event(with_(("properties", "mass_loading_mg_cm2_mean"), None))
    assert "mass_loading_mg_cm2_mean" not in event.properties and event.properties["length_m"] == 200.0


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(list(GOOD)), st.one_of(st.none(), st.integers(), st.floats(), st.text(),
                                                                st.lists(st.integers(), max_size=2)), max_size=6))
def test_fuzzed_fields_either_parse_or_raise_event_error(overrides: dict[str, Any]) -> None:
    event = copy.deepcopy(GOOD)
    event.update(overrides)
    try:
        parsed = parse_event(event)
    except EventError as exc:
        assert str(exc)
    else:
        assert parsed.seq >= 1 and parsed.id


@pytest.mark.parametrize(("key", "stem", "unit", "stat"), [
    ("mass_loading_mg_cm2_mean", "mass_loading", "mg_cm2", "mean"),
    ("pump_flow_rate_cm3_h", "pump_flow_rate", "cm3_h", None),
    ("web_speed_m_min", "web_speed", "m_min", None),
    ("line_load_N_mm", "line_load", "N_mm", None),
    ("dew_point_C_max", "dew_point", "C", "max"),
    ("porosity_mean", "porosity", None, "mean"),
    ("length_m", "length", "m", None),
    ("dry_porosity_exp_per_mg_cm2", "dry_porosity_exp", "1/mg_cm2", None),
])
def test_units_are_read_from_the_names(key: str, stem: str, unit: str | None, stat: str | None) -> None:
    assert split_key(key) == (stem, unit, stat)
    if unit is not None and not unit.startswith("1/"):
        assert unit_iri(unit) is not None


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_minted_iris_never_escape_their_path_segment(text: str) -> None:
    iri = str(GraphBuilder("https://plant.example/id/").equipment("PL1", text))
    tail = iri.removeprefix("https://plant.example/id/PL1/equipment/")
    assert "/" not in tail and " " not in tail and ">" not in tail and '"' not in tail
