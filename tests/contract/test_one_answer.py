"""Ingest and the genealogy give the same answer to every trace event (issue 10 item 8, issue 11).

Ingest's path is the MQTT decoder (``connectors.codecs.decode_message``, the same ``TraceEvent.from_json`` the OPC UA
event path calls); the genealogy's path is a real ``GenealogyStore`` fed the way the twin feeds it (the stored
record's ``to_json()``) and ``ontology.events.parse_event``. Before the contract package the two disagreed on all of
the inputs below: ingest stored the first five and the genealogy quarantined them, and ingest stored
``equipment: ""`` and wrote it back as ``""``, which the genealogy refused.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from connectors.codecs import decode_message
from connectors.records import RecordError, Rejected, TraceEvent
from ontology.events import EventError, parse_event
from ontology.store import GenealogyStore, StoreConfig, UnknownIdError
from tests.trace_contract import README_TRACE_EVENT

# The README example with an input the genealogy can place on its own (raw-material lots are received implicitly).
BASE: dict[str, Any] = {
    **copy.deepcopy(README_TRACE_EVENT), "seq": 1,
    "inputs": [{"id": "LOT-AL-0001", "type": "RawMaterialLot", "from_m": 0.0, "to_m": 200.0}],
}


def _patched(patch: dict[str, Any]) -> dict[str, Any]:
    event = copy.deepcopy(BASE)
    for key, value in patch.items():
        if key == "inputs[0]":
            event["inputs"][0] = value
        elif key == "parameters":
            event["parameters"] = {**event["parameters"], **value}
        else:
            event[key] = value
    return event


# (name, patch, accepted?): the decision of the contract for each contested input.
CONTESTED: list[tuple[str, dict[str, Any], bool]] = [
    ("from_m without to_m", {"inputs[0]": {"id": "LOT-AL-0001", "type": "RawMaterialLot", "from_m": 0.0}}, False),
    ("ID prefix not of its type", {"id": "SB-C-000001"}, False),
    ("line with a space and a slash", {"line": "PL 1/A"}, False),
    ("parameter key 'bad key!'", {"parameters": {"bad key!": 1.0}}, False),
    ("300-character step", {"step": "S" * 300}, False),
    ("equipment empty", {"equipment": ""}, True),
]


def _ingest_accepts(event: dict[str, Any]) -> TraceEvent | None:
    out = decode_message(f"pilotline/{BASE['line']}/trace", json.dumps(event).encode(), 0)
    if isinstance(out, Rejected):
        assert out.reason == "schema" and out.detail, out
        with pytest.raises(RecordError):
            TraceEvent.from_json(event)
        return None
    (record,) = out
    assert isinstance(record, TraceEvent)
    assert TraceEvent.from_json(event) == record
    return record


def _genealogy_places(payload: dict[str, Any], tmp_path: Path) -> bool:
    """Placed (findable, nothing quarantined) or quarantined as malformed: exactly one of the two."""
    with GenealogyStore(StoreConfig(path=tmp_path)) as store:
        store.add_event(payload)
        assert store.flush()
        reasons = [e.reason for e in store.quarantine]
        try:
            store.find(BASE["id"], line=BASE["line"])
            placed = True
        except UnknownIdError:
            placed = False
    assert placed != bool(reasons), reasons
    assert all(r.startswith("malformed: ") for r in reasons), reasons
    return placed


@pytest.mark.parametrize(("name", "patch", "accepted"), CONTESTED, ids=[c[0] for c in CONTESTED])
def test_ingest_and_genealogy_give_one_answer(name: str, patch: dict[str, Any], accepted: bool, tmp_path: Path) -> None:
    event = _patched(patch)
    record = _ingest_accepts(event)
    try:
        parse_event(event)
        genealogy_parses = True
    except EventError:
        genealogy_parses = False
    assert (record is not None) == genealogy_parses == accepted, (name, record, genealogy_parses)
    if not accepted:  # and the same reason, word for word, in both quarantines
        with pytest.raises(RecordError) as by_ingest:
            TraceEvent.from_json(event)
        with pytest.raises(EventError) as by_genealogy:
            parse_event(event)
        assert str(by_ingest.value) == str(by_genealogy.value), name
    # what the twin hands the genealogy: the record ingest stored, written back to JSON
    payload = record.to_json() if record is not None else event
    assert _genealogy_places(payload, tmp_path / "g") == accepted, name


def test_empty_equipment_is_absent_in_both() -> None:
    """``equipment: ""`` means no equipment named: ingest's record and the genealogy's see the same None."""
    record = TraceEvent.from_json(_patched({"equipment": ""}))
    assert record.equipment is None and "equipment" not in record.to_json()
    assert parse_event(_patched({"equipment": ""})).equipment is None
    assert TraceEvent.from_json(_patched({"equipment": None})) == record
    assert TraceEvent.from_json({k: v for k, v in _patched({}).items() if k != "equipment"}) == record
