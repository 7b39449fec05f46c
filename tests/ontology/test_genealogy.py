"""Trace and track answers against the generator's own record of what went into what."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ontology.store import GenealogyStore, QueryInputError, StoreConfig, UnknownIdError
from tests.ontology.conftest import load
from tests.ontology.synthetic import PlantHistory


def cells_of(history: PlantHistory) -> list[str]:
    return sorted(history.truth.upstream)


def test_every_cell_genealogy_matches_the_record(store: GenealogyStore, history: PlantHistory) -> None:
    for cell in cells_of(history):
        g = store.genealogy(cell)
        assert {e["id"] for e in g["entities"]} == history.truth.upstream[cell], cell
        c_sheet, a_sheet = history.truth.cell_sheets[cell]
        assert g["positive_electrode"] == [c_sheet] and g["negative_electrode"] == [a_sheet]
        edges = {(e["child"], e["parent"]) for e in g["edges"]}
        expected = {(child, parent) for child in history.truth.upstream[cell]
                    for parent in history.truth.parents.get(child, ())}
        assert edges == expected, cell
        assert g["conditions"]["max_dew_point_C"] == pytest.approx(history.truth.dew_point[cell])


def test_genealogy_carries_steps_parameters_units_windows_and_segments(store: GenealogyStore,
                                                                        history: PlantHistory) -> None:
    g = store.genealogy("CELL-000007")
    by_id = {e["id"]: e for e in g["entities"]}
    roll = by_id["CR-C-000001"]
    (coating,) = [s for s in roll["steps"] if s["step"] == "Coating"]
    assert coating["equipment"] == "SlotDieCoater-C" and coating["station"] == "Coating/Cathode"
    assert coating["start"] < coating["end"]
    flow = roll["parameters"]["Coating"]["pump_flow_rate_cm3_h"]
    assert flow["value"] == 696.0 and flow["unit_iri"] == "https://w3id.org/emmo#CubicCentiMetrePerHour"
    loading = roll["measured"]["mass_loading_mg_cm2_mean"]
    assert loading["quantity_iri"].endswith("electrochemistry_c955c089_6ee1_41a2_95fc_d534c5cfd3d5")  # MassLoading
    assert loading["statistic"] == "mean"
    coil = by_id["SC-C-000001-1"]
    assert [s["step"] for s in coil["steps"]] == ["Slitting", "PostDrying"]
    assert {r["influxdb"]["measurement"] for r in g["raw_data"]} >= {"Coating/Cathode", "Calendering", "Mixing/Cathode"}
    # sheet ES-C-000007 was cut at 3.0..3.5 m of roll CR-C-000001: the segment 0..5 m is underneath it
    sheet_coil, roll_id, f, t = history.truth.sheet_stretch["ES-C-000007"]
    under = [s for s in g["segments"] if s["sheet"] == "ES-C-000007"]
    assert [s["segment"] for s in under] == ["SEG-C-000001-001"] and under[0]["roll"] == roll_id
    assert under[0]["measured"]["mass_loading_mg_cm2_mean"]["unit"] == "mg_cm2"
    (run,) = g["formation"]
    assert run["id"] == "FR-000007" and run["channel"].startswith("CH-")
    assert run["results"]["discharge_capacity_Ah"]["unit"] == "Ah"


def expected_range(history: PlantHistory, roll: str, a: float, b: float) -> set[str]:
    cells = set()
    for cell, (c_sheet, a_sheet) in history.truth.cell_sheets.items():
        for sheet in (c_sheet, a_sheet):
            _, sheet_roll, f, t = history.truth.sheet_stretch[sheet]
            if sheet_roll == roll and f < b and t > a:
                cells.add(cell)
    return cells


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["CR-C-000001", "CR-C-000002", "CR-A-000001", "CAL-C-000001", "SC-A-000001-2"]),
       st.floats(0.0, 19.0), st.floats(0.05, 12.0))
def test_downstream_of_a_roll_stretch_is_exactly_the_cells_cut_from_it(store: GenealogyStore, history: PlantHistory,
                                                                      entity: str, a: float, width: float) -> None:
    b = a + width
    roll = history.truth.roll_of[entity]
    got = store.downstream(entity, from_m=a, to_m=b)
    expected = expected_range(history, roll, a, b)
    if entity.startswith("SC-"):  # a slit coil only holds the cells of its own half
        expected = {c for c in expected if any(history.truth.sheet_stretch[s][0] == entity
                                               for s in history.truth.cell_sheets[c])}
    assert set(got["cells"]) == expected


def test_downstream_of_a_batch_counts_only_its_coated_stretch(store: GenealogyStore, history: PlantHistory) -> None:
    for batch, stretches in history.truth.batch_stretch.items():
        expected: set[str] = set()
        for roll, f, t in stretches:
            expected |= expected_range(history, roll, f, t)
        got = store.downstream(batch)
        assert set(got["cells"]) == expected, batch
        assert got["method"] == "coated stretches of the rolls"


def test_downstream_of_a_lot_is_the_closure(store: GenealogyStore, history: PlantHistory) -> None:
    lot = "LOT-SEP-0001"
    expected = {c for c, up in history.truth.upstream.items() if lot in up}
    assert set(store.downstream(lot)["cells"]) == expected and expected


def test_cells_above_a_dew_point_limit(store: GenealogyStore, history: PlantHistory) -> None:
    limit = -45.0
    expected = {c for c, dp in history.truth.dew_point.items() if dp > limit}
    got = store.cells_dew_point_above(limit)
    assert {c["id"] for c in got["cells"]} == expected and expected


def test_dew_point_port_is_asked_for_the_assembly_window(history: PlantHistory, tmp_path: Path) -> None:
    calls: list[tuple[str, Any, Any]] = []

    def port(line: str, start: Any, end: Any) -> float:
        calls.append((line, start, end))
        return -38.5

    with GenealogyStore(StoreConfig(path=tmp_path / "g"), dew_point_port=port) as s:
        load(s, history.event_list)  # type: ignore[attr-defined]
        cond = s.genealogy("CELL-000003")["conditions"]
        assert cond["max_dew_point_C"] == -38.5 and cond["dew_point_source"] == "influxdb samples"
        assert cond["stored_max_dew_point_C"] == pytest.approx(history.truth.dew_point["CELL-000003"])
        (line, start, end), = calls
        assert line == "PL1" and start.tzinfo is not None and start < end
        assert cond["assembly_window"]["start"].startswith(start.strftime("%Y-%m-%dT%H:%M"))


def test_unknown_and_malformed_ids(store: GenealogyStore) -> None:
    with pytest.raises(UnknownIdError, match="CELL-999999"):
        store.genealogy("CELL-999999")
    with pytest.raises(QueryInputError, match="must match"):
        store.genealogy("cell 1")
    with pytest.raises(QueryInputError, match="positions apply to rolls"):
        store.downstream("SB-C-000001", from_m=1, to_m=2)
    with pytest.raises(QueryInputError, match="0 <= from_m < to_m"):
        store.downstream("CR-C-000001", from_m=5, to_m=2)
    with pytest.raises(QueryInputError, match="both"):
        store.downstream("CR-C-000001", from_m=5)


def test_predictions_and_audits_show_in_the_genealogy(store: GenealogyStore) -> None:
    store.add_prediction("CELL-000005", "cell-surrogate", "1.4.0", {"capacity_Ah": 2.01, "energy_Wh": 7.4},
                         {"capacity_Ah": 0.02}, "2026-11-22T08:00:00Z")
    store.add_audit("CELL-000005", "alice", "2026-11-22T08:05:00Z", {"decision": None}, {"decision": "hold"},
                    "capacity below forecast", "1.4.0")
    store.add_audit("PilotLine/Coating/Cathode/PumpFlowRate", "bob", "2026-11-22T09:00:00Z", 696.0, 700.0,
                    "loading drift", "1.4.0")
    assert store.flush()
    g = store.genealogy("CELL-000005")
    (pred,) = g["predictions"]
    assert pred["model_version"] == "1.4.0" and pred["outputs"]["capacity_Ah"] == {
        "value": 2.01, "std": 0.02, "unit": "Ah"}
    (audit,) = g["audits"]
    assert audit["who"] == "alice" and audit["after"] == {"decision": "hold"} and audit["model_version"] == "1.4.0"
    answer = store.sparql("PREFIX pl: <https://pilotline.example.org/vocab#> "
                          "SELECT ?sp ?after WHERE { ?a pl:setpoint ?sp ; pl:after ?after }")
    rows = answer.json["results"]["bindings"]
    assert [(r["sp"]["value"], float(r["after"]["value"])) for r in rows] == [
        ("PilotLine/Coating/Cathode/PumpFlowRate", 700.0)]
    with pytest.raises(ValueError, match="outputs"):
        store.add_prediction("CELL-000005", "m", "1", {}, {})
    with pytest.raises(ValueError, match="finite"):
        store.add_prediction("CELL-000005", "m", "1", {"x": float("nan")}, {})
    with pytest.raises(ValueError, match="entity_id"):
        store.add_prediction("not an id", "m", "1", {"x": 1.0}, {})


def test_quarantine_waits_for_unknown_inputs_and_refuses_conflicts(tmp_path: Path) -> None:
    h = PlantHistory(cells=4, roll_length_m=5.0, segment_m=5.0, segments_before_roll=True, seed=3)
    events = list(h.events())
    stack = next(e for e in events if e["type"] == "CellStack")
    late = [stack]
    early = [e for e in events if e is not stack]
    with GenealogyStore(StoreConfig(path=tmp_path / "g")) as s:
        load(s, early)
        # segments came before their roll (released automatically); the cell of the held-back stack waits
        assert s.status()["released_from_quarantine"] >= 1
        waiting = [e for e in s.quarantine if "unknown input" in e.reason]
        assert sorted(w.payload["id"] for w in waiting) == ["CELL-000001", "FR-000001"]  # FR waits for the cell
        load(s, late)
        assert len(s.quarantine) == 0
        assert {e["id"] for e in s.genealogy("CELL-000001")["entities"]} == h.truth.upstream["CELL-000001"]
        # the same event again (at-least-once delivery) changes nothing
        before = len(s)
        load(s, [copy.deepcopy(events[5])])
        assert len(s) == before and s.status()["duplicates"] == 1
        clash = copy.deepcopy(events[5])
        clash.update(seq=10_000, type="SlurryBatch", id="SB-C-000001", kind="created")
        clash_roll = copy.deepcopy(clash)
        clash_roll.update(seq=10_001, type="CoatedRoll", id="CR-C-000001")
        bad = copy.deepcopy(clash)
        bad.update(seq=10_002, time="not a time")
        load(s, [clash_roll, bad, {"garbage": True}])
        reasons = [e.reason for e in s.quarantine]
        assert any("duplicate ID: CR-C-000001" in r for r in reasons)
        assert any(r.startswith("malformed: 'time'") for r in reasons)
        assert any(r.startswith("malformed: 'schema'") for r in reasons)
        assert len(s) == before  # nothing of the refused events reached the graph
        assert s.status()["lines"]["PL1"]["missing_seq"] > 0  # seq 10000..10002 leave a visible gap


def test_store_survives_a_restart(history: PlantHistory, tmp_path: Path) -> None:
    path = tmp_path / "g"
    events = history.event_list  # type: ignore[attr-defined]
    cut = next(i for i, e in enumerate(events) if e["id"] == "CELL-000090")
    with GenealogyStore(StoreConfig(path=path)) as s:
        load(s, events[:cut])
        before = s.genealogy("CELL-000012")
        size = len(s)
    with GenealogyStore(StoreConfig(path=path)) as s:
        assert len(s) == size
        assert s.genealogy("CELL-000012") == before
        load(s, events[cut:])  # the rest refers to IDs placed before the restart: the index was rebuilt
        assert len(s.quarantine) == 0
        assert s.status()["lines"]["PL1"]["missing_seq"] == 0
        assert {e["id"] for e in s.genealogy("CELL-000090")["entities"]} == history.truth.upstream["CELL-000090"]


def test_memory_and_oxigraph_backends_answer_alike(history: PlantHistory, store: GenealogyStore) -> None:
    small = [e for e in history.event_list if e["seq"] <= 80]  # type: ignore[attr-defined]
    with GenealogyStore(StoreConfig(backend="memory")) as mem, GenealogyStore(StoreConfig()) as ox:
        load(mem, small)
        load(ox, small)
        cell = max(e["id"] for e in small if e["type"] == "Cell")
        assert mem.genealogy(cell) == ox.genealogy(cell)
        assert mem.downstream("CR-C-000001", 0.0, 2.0) == ox.downstream("CR-C-000001", 0.0, 2.0)
