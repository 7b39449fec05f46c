"""MQTT codecs and sample validation: hypothesis properties, and every rejection reason named."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.codecs import decode_message, split_unit
from connectors.records import Rejected, Sample, TraceEvent
from connectors.settings import ValidationConfig
from connectors.units import UNECE_TO_UCUM, ucum_from_eu_information, unece_code_from_unit_id
from connectors.validation import Validator

NOW = time.time_ns()
TOPIC = "pilotline/PL1/formation/CH-01/telemetry"


def telemetry(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"schema": "pilotline.cycler.telemetry.v1", "seq": 7, "line": "PL1", "channel": "CH-01",
                         "time": "2026-11-21T10:00:00.000000Z", "cell_id": "CELL-000001",
                         "formation_run_id": "FR-000001", "step": "charge", "voltage_V": 3.71, "current_A": 1.2,
                         "capacity_Ah": 0.4, "temperature_C": 25.3}
    d.update(over)
    return d


def test_simulator_telemetry_decodes_to_samples() -> None:
    out = decode_message(TOPIC, json.dumps(telemetry()).encode(), NOW)
    assert isinstance(out, list)
    by = {s.signal: s for s in out if isinstance(s, Sample)}
    assert set(by) == {"Step", "Voltage", "Current", "Capacity", "Temperature"}
    v = by["Voltage"]
    assert (v.value, v.unit, v.station, v.quality) == (3.71, "V", "Formation/CH-01", "good")
    assert v.trace == {"channel": "CH-01", "seq": 7, "cell_id": "CELL-000001", "formation_run_id": "FR-000001"}
    assert by["Temperature"].unit == "Cel" and by["Capacity"].unit == "A.h"
    assert v.time_ns == 1795255200000000000 and v.tags == {"protocol": "mqtt"}


def test_result_message_prefixes_signals() -> None:
    msg = {"schema": "pilotline.cycler.result.v1", "seq": 9, "channel": "CH-01", "time": "2026-11-21T10:00:00Z",
           "charge_capacity_Ah": 2.5, "dcir_mOhm": None, "passed": True, "coulombic_efficiency": 0.9}
    out = decode_message("pilotline/PL1/formation/CH-01/result", json.dumps(msg).encode(), NOW)
    assert isinstance(out, list)
    names = {s.signal: s for s in out if isinstance(s, Sample)}
    assert set(names) == {"ResultChargeCapacity", "ResultPassed", "ResultCoulombicEfficiency"}
    assert names["ResultPassed"].value is True


@pytest.mark.parametrize(
    ("payload", "reason", "topic"),
    [
        (b"\xff\xfe garbage", "malformed_json", TOPIC),
        (b"{not json", "malformed_json", TOPIC),
        (b"[1, 2, 3]", "schema", TOPIC),
        (json.dumps(telemetry(seq="7")).encode(), "schema", TOPIC),
        (json.dumps({k: v for k, v in telemetry().items() if k != "seq"}).encode(), "schema", TOPIC),
        (json.dumps(telemetry(time="yesterday")).encode(), "schema", TOPIC),
        (json.dumps(telemetry(channel="CH-02")).encode(), "schema", TOPIC),
        (json.dumps(telemetry(schema="other.v9")).encode(), "schema", TOPIC),
        (json.dumps(telemetry(cell_id=5)).encode(), "schema", TOPIC),
        (json.dumps({"seq": 1, "time": "2026-11-21T10:00:00Z"}).encode(), "schema", TOPIC),
        (b"{}", "schema", "pilotline/PL1/trace"),
        (b'{"seq": 1}', "topic", "somewhere/else"),
    ],
)
def test_malformed_payloads_are_rejected_with_reason(payload: bytes, reason: str, topic: str) -> None:
    out = decode_message(topic, payload, NOW)
    assert isinstance(out, Rejected) and out.reason == reason and out.raw == payload and out.source == topic


@given(st.binary(max_size=300), st.sampled_from([TOPIC, "pilotline/PL1/trace", "pilotline/x/formation/y/result",
                                                 "a/b"]))
@settings(max_examples=300)
def test_no_payload_makes_the_codec_raise(raw: bytes, topic: str) -> None:
    out = decode_message(topic, raw, NOW)
    assert isinstance(out, Rejected | list)


scalars = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-10**6, 10**6), st.booleans(),
                    st.text(max_size=10))


@given(st.dictionaries(st.from_regex(r"\A[a-z][a-z_]{0,10}_(V|A|Ah|C|s|pct)\Z"), scalars, min_size=1, max_size=6),
       st.integers(0, 10**6))
def test_every_member_becomes_one_sample_with_its_value(members: dict[str, Any], seq: int) -> None:
    msg = {"seq": seq, "time": "2026-11-21T10:00:00.000001Z", **members}
    out = decode_message(TOPIC, json.dumps(msg).encode(), NOW)
    assert isinstance(out, list)
    got = {s.signal: s for s in out if isinstance(s, Sample)}
    assert len(got) == len({split_unit(m)[0] for m in members})
    for m, v in members.items():
        name, unit = split_unit(m)
        if sum(split_unit(x)[0] == name for x in members) == 1:
            assert got[name].value == v and got[name].unit == unit and got[name].trace["seq"] == seq


@given(st.integers(1, 2**40), st.sampled_from(["created", "consumed", "processed"]))
def test_trace_topic_round_trip(seq: int, kind: str) -> None:
    ev = {"schema": "pilotline.trace.v1", "seq": seq, "line": "PL1", "time": "2026-11-21T10:00:00.000000Z",
          "kind": kind, "id": "CELL-000001", "type": "Cell", "step": "Assembly", "station": "Assembly",
          "equipment": "Stacker", "inputs": [], "parameters": {"channel": "CH-01", "n": 3}, "properties": {}}
    out = decode_message("pilotline/PL1/trace", json.dumps(ev).encode(), NOW)
    assert isinstance(out, list) and isinstance(out[0], TraceEvent) and out[0].to_json() == ev


# -- units ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("code", sorted(UNECE_TO_UCUM))
def test_unece_codes_round_trip_through_unit_id(code: str) -> None:
    unit_id = int.from_bytes(code.encode(), "big")
    assert unece_code_from_unit_id(unit_id) == code
    assert ucum_from_eu_information(unit_id) == UNECE_TO_UCUM[code]


def test_unknown_unit_codes_are_kept_visible() -> None:
    assert ucum_from_eu_information(int.from_bytes(b"ZZZ", "big")) == "unece:ZZZ"
    assert ucum_from_eu_information(-1, "um") == "um" and ucum_from_eu_information(-1, "furlong") == "display:furlong"


# -- validation -----------------------------------------------------------------------------------------------------
V = Validator(ValidationConfig())


def sample(**over: Any) -> Sample:
    base: dict[str, Any] = {"time_ns": NOW, "line": "PL1", "station": "Coating/Cathode", "signal": "WetFilmThickness",
                            "value": 120.0, "unit": "um", "quality": "good", "source": "x",
                            "trace": {"roll_id": "CR-C-000001", "roll_position_m": 3.5}}
    base.update(over)
    return Sample(**base)


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"value": math.nan}, "nan"),
        ({"value": math.inf}, "nan"),
        ({"value": -5.0}, "out_of_range"),
        ({"value": 1e9}, "out_of_range"),
        ({"unit": "mm"}, "unit"),
        ({"unit": "furlong", "signal": "Anything"}, "unit"),
        ({"trace": {"roll_id": "roll 1"}}, "trace_id"),
        ({"trace": {"roll_position_m": -1.0}}, "trace_id"),
        ({"trace": {"colour": "red"}}, "trace_id"),
        ({"trace": {"channel": "CH 1"}}, "trace_id"),
        ({"station": "Coating/Cathode\nx"}, "name"),
        ({"station": "Coating,Cathode"}, "name"),
        ({"signal": "Wet Film"}, "name"),
        ({"line": ""}, "name"),
        ({"time_ns": 0}, "time"),
        ({"time_ns": NOW + 10**12}, "time"),
        ({"value": "a\nb"}, "type"),
        ({"value": [1, 2]}, "type"),
        ({"quality": "great"}, "quality"),
        ({"tags": {"machine": "a\tb"}}, "tag"),
    ],
)
def test_every_rule_names_its_reason(over: dict[str, Any], reason: str) -> None:
    r = V.check(sample(**over), NOW)
    assert r is not None and r.reason == reason and r.sample is not None and r.detail


def test_good_bad_and_range_overrides() -> None:
    assert V.check(sample(), NOW) is None
    assert V.check(sample(value=math.nan, quality="bad"), NOW) is None  # stored as a bad sample
    assert V.check(sample(value=-5.0, quality="bad"), NOW) is None  # a bad value is data about the outage
    v = Validator(ValidationConfig(ranges={"WetFilmThickness": {"min": 0, "max": 10},
                                           "Coating/Cathode/WetFilmThickness": {"min": 0, "max": 500}}))
    assert v.check(sample(value=120.0), NOW) is None  # the more specific key wins
    assert v.check(sample(station="Coating/Anode", value=120.0), NOW).reason == "out_of_range"  # type: ignore[union-attr]


@given(st.builds(Sample, time_ns=st.integers(-10, 2**62), line=st.text(max_size=5), station=st.text(max_size=20),
                 signal=st.text(max_size=10), value=st.one_of(st.floats(), st.integers(), st.booleans(), st.text()),
                 unit=st.text(max_size=5), quality=st.sampled_from(["good", "bad", "uncertain", "x"]),
                 trace=st.dictionaries(st.text(max_size=15), st.one_of(st.text(max_size=20), st.floats()))))
@settings(max_examples=400)
def test_validation_never_raises(s: Sample) -> None:
    r = V.check(s, NOW)
    assert r is None or (isinstance(r, Rejected) and r.reason)
