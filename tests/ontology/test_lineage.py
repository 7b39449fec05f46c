"""The lineage walk (ontology/lineage.py): the one walk from a cell back to its coated-roll stretches, kept by the
genealogy store as events arrive and used by the twin's predictions."""

from __future__ import annotations

from typing import Any

from contract.records import TraceEvent
from ontology.lineage import Lineage
from ontology.store import GenealogyStore, StoreConfig
from tests.ontology.synthetic import PlantHistory


def test_the_walk_finds_the_stretches_the_graph_holds(history: PlantHistory, store: GenealogyStore) -> None:
    """Every cell of the synthetic plant: the walk gives the coated roll and the stretch each of its sheets was cut
    from (positions carried unchanged through calendering and slitting), as the history made them, and the same rolls
    as the graph's segments under the cell's sheets."""
    cells = sorted(history.truth.cell_sheets)
    assert len(store.lineage) == sum(1 for e in history.event_list if e["kind"] == "created")  # type: ignore[attr-defined]
    for cell in cells:
        want = set()
        for sheet in history.truth.cell_sheets[cell]:
            _, roll, f, t = history.truth.sheet_stretch[sheet]
            want.add((roll, f, t))
        got = store.lineage.coated_stretches("PL1", cell)
        assert len(got) == 2 and set(got) == want, cell
    for cell in cells[::10]:
        in_graph = {s["roll"] for s in store.genealogy(cell)["segments"]}
        assert in_graph == {roll for roll, _, _ in store.lineage.coated_stretches("PL1", cell)}, cell


def _created(line: str, entity_type: str, entity_id: str, inputs: list[dict[str, Any]], seq: int,
             **extra: Any) -> dict[str, Any]:
    return {"schema": "pilotline.trace.v1", "seq": seq, "line": line, "time": "2026-11-21T10:00:00Z",
            "kind": "created", "type": entity_type, "id": entity_id, "step": entity_type, "station": "Line",
            "inputs": inputs, **extra}


def _chain(line: str, roll: str, from_m: float, to_m: float) -> list[TraceEvent]:
    """A cell on `line` whose cathode sheet was cut from from_m..to_m of the coils of `roll`."""
    events = [
        _created(line, "SlurryBatch", "SB-C-000001", [{"id": "LOT-NMC-0001", "type": "RawMaterialLot"}], 1),
        _created(line, "CoatedRoll", roll, [{"id": "SB-C-000001", "type": "SlurryBatch", "from_m": 0, "to_m": 20}], 2,
                 parameters={"pump_flow_rate_cm3_h": 700.0, "web_speed_m_min": 1, "tension_ok": True,
                             "recipe": "R1"}),
        _created(line, "CalenderedRoll", "CAL-C-000001", [{"id": roll, "type": "CoatedRoll"}], 3),
        _created(line, "SlitCoil", "SC-C-000001-1", [{"id": "CAL-C-000001", "type": "CalenderedRoll"}], 4),
        _created(line, "ElectrodeSheet", "ES-C-000001",
                 [{"id": "SC-C-000001-1", "type": "SlitCoil", "from_m": from_m, "to_m": to_m}], 5),
        _created(line, "CellStack", "STK-000001", [{"id": "ES-C-000001", "type": "ElectrodeSheet"},
                                                  {"id": "LOT-SEP-0001", "type": "RawMaterialLot"}], 6),
        _created(line, "Cell", "CELL-000001", [{"id": "STK-000001", "type": "CellStack"}], 7),
    ]
    return [TraceEvent.from_json(e) for e in events]


def test_lines_are_kept_apart_parameters_are_numbers_and_the_oldest_go_first() -> None:
    lineage = Lineage(max_ids=14)
    for ev in _chain("PL1", "CR-C-000001", 6.0, 7.0) + _chain("PL2", "CR-C-000001", 1.0, 2.0):
        lineage.add(ev)
    assert lineage.coated_stretches("PL1", "CELL-000001") == [("CR-C-000001", 6.0, 7.0)]
    assert lineage.coated_stretches("PL2", "CELL-000001") == [("CR-C-000001", 1.0, 2.0)]
    assert lineage.coated_stretches("PL3", "CELL-000001") == []
    # the roll itself: its whole length as far as the events say; a slurry batch is not walked back to
    assert lineage.coated_stretches("PL1", "CR-C-000001") == [("CR-C-000001", None, None)]
    assert lineage.coated_stretches("PL1", "SB-C-000001") == []
    assert dict(lineage.parameters("PL1", "CR-C-000001")) == {"pump_flow_rate_cm3_h": 700.0, "web_speed_m_min": 1.0}
    assert lineage.parameters("PL1", "CAL-C-000001") == {}
    # a walk deeper than `depth` steps stops there
    assert lineage.coated_stretches("PL1", "CELL-000001", depth=4) == []
    lineage.add(_chain("PL3", "CR-C-000009", 0.0, 1.0)[0])  # 15 entities: PL1's first one goes
    assert len(lineage) == 14 and lineage.coated_stretches("PL1", "SB-C-000001") == []
    assert lineage.coated_stretches("PL1", "CELL-000001") == [("CR-C-000001", 6.0, 7.0)]


def test_the_store_records_the_inputs_when_the_event_is_handed_over() -> None:
    """add_event puts a created entity's inputs in the lineage before it returns (the placer works later, in its own
    thread); the contract's record and its JSON alike. A malformed event is not walked, and still quarantined."""
    with GenealogyStore(StoreConfig(backend="memory")) as store:
        events = _chain("PL1", "CR-C-000001", 6.0, 7.0)
        for ev in events[:-1]:
            store.add_event(ev)
        store.add_event(events[-1].to_json())
        assert store.lineage.coated_stretches("PL1", "CELL-000001") == [("CR-C-000001", 6.0, 7.0)]
        bad = _created("PL1", "Cell", "CELL-000002", [{"id": "STK-000001", "type": "CellStack"}], 8)
        bad["time"] = "2026-11-21T10:00:00"  # no zone
        store.add_event(bad)
        assert store.lineage.coated_stretches("PL1", "CELL-000002") == []
        assert store.flush(timeout=60)
        assert store.status()["placed"] == 7 and len(store.quarantine) == 1


def test_a_stretch_named_further_up_does_not_widen_the_sheets() -> None:
    """A sheet cut from 4-6 m of a coil that was slit from the whole 0-10 m of a calendered roll is 4-6 m of the
    coated roll (positions are roll coordinates all the way), not 0-10 m."""
    from contract.trace import parse_trace_event
    from ontology.lineage import Lineage

    def ev(seq: int, id_: str, type_: str, inputs: list[dict[str, object]]) -> object:
        return parse_trace_event({"schema": "pilotline.trace.v1", "seq": seq, "line": "PL1",
                                  "time": "2026-11-30T10:00:00.000000Z", "kind": "created", "id": id_, "type": type_,
                                  "step": "s", "station": "X", "equipment": "E", "inputs": inputs,
                                  "parameters": {}, "properties": {}})

    lin = Lineage()
    lin.add(ev(1, "CR-C-000001", "CoatedRoll", []))  # type: ignore[arg-type]
    lin.add(ev(2, "CAL-C-000001", "CalenderedRoll",  # type: ignore[arg-type]
               [{"id": "CR-C-000001", "type": "CoatedRoll", "from_m": 0.0, "to_m": 10.0}]))
    lin.add(ev(3, "SC-C-000001-1", "SlitCoil",  # type: ignore[arg-type]
               [{"id": "CAL-C-000001", "type": "CalenderedRoll", "from_m": 0.0, "to_m": 10.0}]))
    lin.add(ev(4, "ES-C-000001", "ElectrodeSheet",  # type: ignore[arg-type]
               [{"id": "SC-C-000001-1", "type": "SlitCoil", "from_m": 4.0, "to_m": 6.0}]))
    assert lin.coated_stretches("PL1", "ES-C-000001") == [("CR-C-000001", 4.0, 6.0)]
