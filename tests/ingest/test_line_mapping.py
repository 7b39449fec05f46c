"""The pieces a line description relies on, without servers: mapping rules, unit conversion, JSON device messages,
trace IDs read upstream of a gauge, one trace context shared by several servers, and description errors that name
the line in the file."""

from __future__ import annotations

import json

import pytest

from connectors.jsondevice import decode_device
from connectors.mapping import resolve
from connectors.opcua.trace import TraceContext
from connectors.records import Rejected, Sample
from connectors.settings import MqttJsonTopic, SignalRule
from connectors.units import conversion
from twin.line.load import LineDescriptionError, parse_line

S = 1_000_000_000


def test_rules_map_globs_and_node_ids_first_match_wins() -> None:
    rules = [
        SignalRule(match="Machines/*/Diagnostics/**", station="X", ignore=True),
        SignalRule(match="nsu=urn:vendor:coater;i=1017", station="Coating/Cathode", signal="PumpFlowRate"),
        SignalRule(match="Machines/SlotDieCoater_01/Monitoring/*", station="Coating/Cathode"),
        SignalRule(match="Machines/SlotDieCoater_01/Monitoring/BetaGauge.ArealWeight", station="Drying/Cathode",
                   signal="MassLoading"),
    ]
    m = resolve(rules, "Machines/SlotDieCoater_01/Monitoring/WetFilmThickness")
    assert m is not None and (m.station, m.signal) == ("Coating/Cathode", "WetFilmThickness")
    assert resolve(rules, "Machines/SlotDieCoater_01/Diagnostics/Fan/Rpm") is None
    by_id = resolve(rules, "Machines/SlotDieCoater_01/Control/Pump", ("ns=2;i=1017", "nsu=urn:vendor:coater;i=1017"))
    assert by_id is not None and by_id.signal == "PumpFlowRate"
    # the broader rule comes first, so it wins: order is the author's tool
    m2 = resolve(rules, "Machines/SlotDieCoater_01/Monitoring/BetaGauge.ArealWeight")
    assert m2 is not None and m2.signal == "BetaGauge.ArealWeight"
    folder = [SignalRule(match="Dryer/Zone*/Temp", station="Drying/Cathode", signal="Zone{1}Temperature")]
    m3 = resolve(folder, "Dryer/Zone2/Temp")
    assert m3 is not None and m3.signal == "Zone2Temperature"


def test_unit_conversions_are_exact_where_known_and_absent_otherwise() -> None:
    assert conversion("g/m2", "mg/cm2") == (0.1, 0.0)
    assert conversion("degC", "Cel") == (1.0, 0.0)
    assert conversion("mm", "um") == (1000.0, 0.0)
    assert conversion("mm", "mg/cm2") is None


def _dew_point_spec() -> MqttJsonTopic:
    return MqttJsonTopic.model_validate({
        "topic": "plant1/dryroom/+", "time_path": "ts",
        "values": [{"path": "dewpoint.value", "unit_path": "dewpoint.unit"}, {"path": "rh"}],
        "signals": [{"match": "plant1/dryroom/dp-sensor-7/dewpoint.value", "station": "DryRoom", "signal": "DewPoint",
                     "unit": "Cel", "min": -100, "max": 30}]})


def test_json_device_values_are_mapped_converted_and_bad_ones_quarantined_with_a_reason() -> None:
    spec = _dew_point_spec()
    raw = json.dumps({"ts": "2026-11-30T10:00:00.000000Z", "dewpoint": {"value": -48.2, "unit": "degC"},
                      "rh": 0.4}).encode()
    out = decode_device(spec, "plant1/dryroom/dp-sensor-7", raw, "PL2", 1)
    samples = [r for r in out if isinstance(r, Sample)]
    rejected = [r for r in out if isinstance(r, Rejected)]
    assert [(s.station, s.signal, s.value, s.unit, s.line) for s in samples] == [
        ("DryRoom", "DewPoint", -48.2, "Cel", "PL2")]
    assert samples[0].quality == "good"
    assert [r.reason for r in rejected] == ["unmapped"]  # rh: no rule maps it; kept in the quarantine
    hot = json.dumps({"ts": "2026-11-30T10:00:01Z", "dewpoint": {"value": 95.0, "unit": "degC"}}).encode()
    (r,) = decode_device(spec, "plant1/dryroom/dp-sensor-7", hot, "PL2", 1)
    assert isinstance(r, Rejected) and r.reason == "out_of_range" and r.sample is not None
    (bad,) = decode_device(spec, "plant1/dryroom/dp-sensor-7", b"{nope", "PL2", 1)
    assert isinstance(bad, Rejected) and bad.reason == "malformed_json"
    (no_time,) = decode_device(spec, "plant1/dryroom/dp-sensor-7", b'{"dewpoint": {"value": 1}}', "PL2", 1)
    assert isinstance(no_time, Rejected) and no_time.reason == "schema"


def test_gauge_downstream_of_the_id_reader_gets_the_ids_of_the_web_under_it() -> None:
    ctx = TraceContext()
    # the reader sees roll 1 from t=0 at 1 m/s; roll 2 starts at t=50 s (its position restarts at 0)
    ctx.update("Drying/Cathode", "roll_id", 0, "CR-C-000001")
    ctx.update("Drying/Cathode", "roll_id", 50 * S, "CR-C-000002")
    for k in range(100):
        ctx.update("Drying/Cathode", "roll_position_m", k * S, float(k if k < 50 else k - 50))
    ctx.set_offset("Drying/Cathode", 7.0)
    assert ctx.at("Drying/Cathode", 40 * S) == {"roll_id": "CR-C-000001", "roll_position_m": 33.0}
    # 3 m into roll 2 at the reader: the gauge, 7 m further on, still sees the end of roll 1
    assert ctx.at("Drying/Cathode", 53 * S)["roll_id"] == "CR-C-000001"
    assert ctx.at("Drying/Cathode", 60 * S) == {"roll_id": "CR-C-000002", "roll_position_m": 3.0}


def test_a_shared_context_is_cleared_and_saved_per_owner() -> None:
    ctx = TraceContext()
    ctx.update("Coating/Cathode", "roll_id", 5, "CR-C-000001", owner="coater")
    ctx.update("Calendering/Cathode", "roll_id", 5, "CR-C-000001", owner="coater")
    ctx.update("Calendering/Cathode", "roll_position_m", 5, 1.0, owner="calender")
    assert set(ctx.snapshot("calender")) == {"Calendering/Cathode"}
    ctx.clear("calender")  # the calender's server restarted: the coater's IDs stay
    assert ctx.at("Calendering/Cathode", 10) == {"roll_id": "CR-C-000001"}
    ctx.trim(100, owner="coater")
    ctx.trim(6, owner="calender")  # the calender still looks back to 6: nothing it needs goes
    assert ctx.at("Calendering/Cathode", 6) == {"roll_id": "CR-C-000001"}


def test_description_errors_name_the_key_and_the_line() -> None:
    text = """schema: pilotline.line.v1
line: {id: PL2}
sources:
  opcua:
    - name: coater
      endpoint: opc.tcp://127.0.0.1:4841
      signals:
        - match: "Machines/*/Monitoring/*"
          station: "not a station!"
        - {match: "x", station: Coating/Cathode, min: 5, max: 1}
"""
    with pytest.raises(LineDescriptionError) as exc:
        parse_line(text, "line.yaml")
    msg = str(exc.value)
    assert "line.yaml:10: sources.opcua.0.signals.1" in msg and "min (5.0) must be below max (1.0)" in msg
    with pytest.raises(LineDescriptionError, match="product 'nope' is not among products"):
        parse_line("schema: pilotline.line.v1\nproduct: nope\n")
    with pytest.raises(LineDescriptionError, match=r"<text>:1: colour: Extra inputs are not permitted"):
        parse_line("colour: red\nschema: pilotline.line.v1\n")


def test_a_mapped_vendor_node_is_validated_as_the_twins_signal() -> None:
    """The outside check stored 5 000 um of wet film and a unit of mm: the vendor's name matched no range. Mapped
    onto the twin's name, the twin's range and unit apply."""
    from connectors.opcua.browse import _unit_and_scale
    from connectors.validation import Validator

    rule = [SignalRule(match="Machines/*/Monitoring/WetFilmThickness", station="Coating/Cathode")]
    m = resolve(rule, "Machines/SlotDieCoater_01/Monitoring/WetFilmThickness")
    assert m is not None
    check = Validator().check

    def sample(value: float, unit: str) -> Sample:
        return Sample(1_700_000_000_000_000_000, "VL1", m.station, m.signal, value, unit, "good", "ns=2;i=1103", {},
                      1_700_000_000_000_000_000)

    now = 1_700_000_000_000_000_000
    assert check(sample(120.0, "um"), now) is None
    too_thick = check(sample(5000.0, "um"), now)
    assert too_thick is not None and too_thick.reason == "out_of_range"
    wrong_unit = check(sample(0.12, "mm"), now)
    assert wrong_unit is not None and wrong_unit.reason == "unit"
    # a rule that names the twin's unit converts what converts, and leaves the rest to the unit check
    assert _unit_and_scale("um", "mm") == ("um", (1000.0, 0.0))
    assert _unit_and_scale("um", "mg/cm2") == ("mg/cm2", None)
