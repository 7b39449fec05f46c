"""Predictions per roll segment and per cell from trace events: lineage walk, physics and ONNX surrogate, domain,
InfluxDB lines."""

from __future__ import annotations

from typing import Any

import pytest

from contract.records import TraceEvent
from contract.trace import ID_PREFIX_BY_TYPE
from models.cell_format import REFERENCE_POUCH
from twin.plant_model import PhysicsModel, RegistryModel
from twin.predict import Predictor, prediction_lines
from twin.service_settings import PredictSettings


def _events() -> list[TraceEvent]:
    seq = iter(range(1, 1000))

    def ev(type_: str, id_: str, inputs: list[dict[str, Any]], **kw: Any) -> TraceEvent:
        typed = [{"type": next(t for t, pre in ID_PREFIX_BY_TYPE.items() if i["id"].startswith(pre)), **i}
                 for i in inputs]
        return TraceEvent.from_json({"schema": "pilotline.trace.v1", "seq": next(seq), "line": "PL1",
                                     "time": "2026-11-21T10:00:00Z", "kind": "created", "type": type_, "id": id_,
                                     "step": type_, "station": "Line", "inputs": typed, **kw})

    return [
        ev("CoatedRoll", "CR-C-000001", [{"id": "SB-C-000001", "from_m": 0, "to_m": 20}],
           parameters={"pump_flow_rate_cm3_h": 700.0, "web_speed_m_min": 1.0, "coating_width_mm": 125.0}),
        ev("CoatedRoll", "CR-A-000001", [], parameters={"pump_flow_rate_cm3_h": 850.0, "web_speed_m_min": 1.0}),
        ev("RollSegment", "SEG-C-000001-001", [{"id": "CR-C-000001", "from_m": 0, "to_m": 5}],
           properties={"mass_loading_mg_cm2_mean": 14.3}),
        ev("RollSegment", "SEG-C-000001-002", [{"id": "CR-C-000001", "from_m": 5, "to_m": 10}]),
        ev("RollSegment", "SEG-A-000001-001", [{"id": "CR-A-000001", "from_m": 0, "to_m": 5}]),
        ev("CalenderedRoll", "CAL-C-000001", [{"id": "CR-C-000001"}]),
        ev("SlitCoil", "SC-C-000001-1", [{"id": "CAL-C-000001"}]),
        ev("CalenderedRoll", "CAL-A-000001", [{"id": "CR-A-000001"}]),
        ev("SlitCoil", "SC-A-000001-1", [{"id": "CAL-A-000001"}]),
        ev("ElectrodeSheet", "ES-C-000001", [{"id": "SC-C-000001-1", "from_m": 6.0, "to_m": 7.0}]),
        ev("ElectrodeSheet", "ES-A-000001", [{"id": "SC-A-000001-1", "from_m": 1.0, "to_m": 2.0}]),
        ev("CellStack", "STK-000001", [{"id": "ES-C-000001"}, {"id": "ES-A-000001"}]),
        ev("Cell", "CELL-000001", [{"id": "STK-000001"}, {"id": "LOT-ELY-0001"}]),
    ]


def _latest(key: str) -> float | None:
    return {"Calendering/Cathode/LineLoad": 84.0, "Calendering/Anode/LineLoad": 35.0,
            "Calendering/Cathode/RollTemperature": 24.9,  # just below the surrogate's 25 degC edge: noise, clamped
            "Calendering/Anode/RollTemperature": 25.2}.get(key)


def _models() -> list[Any]:
    models: list[Any] = [PhysicsModel()]
    try:
        from models.runtime import ModelRegistry

        models.append(RegistryModel(ModelRegistry.load(), "structure"))
    except (ImportError, FileNotFoundError, KeyError):
        pass
    return models


@pytest.mark.parametrize("model", _models(), ids=lambda m: m.version.split("@")[0])
def test_segment_and_cell_predictions(model: Any) -> None:
    got: list[dict[str, Any]] = []
    p = Predictor(PredictSettings(), "PL1", model, _latest, sinks=[got.append])
    for e in _events():
        p.on_event(e)
    segs = [g for g in got if g["subject_type"] == "RollSegment"]
    cells = [g for g in got if g["subject_type"] == "Cell"]
    assert [s["subject"] for s in segs] == ["SEG-C-000001-001", "SEG-C-000001-002", "SEG-A-000001-001"]
    assert all(s["in_domain"] for s in segs), [s["violations"] for s in segs]
    seg = segs[0]
    assert seg["outputs"]["drying.dry_mass_loading_mg_cm2"] == pytest.approx(14.40, abs=0.05)  # 700 cm3/h
    assert seg["measured"]["drying.dry_mass_loading_mg_cm2"] == 14.3
    assert seg["model_version"].startswith(model.version.split("@")[0])
    # the cell's cathode sheets come from 6-7 m of CR-C-000001: segment 002 only
    assert len(cells) == 1 and cells[0]["kind"] == "structure"
    cell = cells[0]
    assert cell["inputs"]["cathode_segments"] == ["SEG-C-000001-002"]
    assert cell["inputs"]["anode_segments"] == ["SEG-A-000001-001"]
    assert 1.0 < cell["outputs"]["np_ratio"] < 1.4
    assert cell["outputs"]["capacity_Ah_cathode_limited"] == pytest.approx(
        cell["outputs"]["cathode_areal_capacity_mAh_cm2"] * REFERENCE_POUCH.cathode_area_cm2 / 1000, rel=1e-6)
    if isinstance(model, RegistryModel):
        assert seg["std"] and all(v >= 0 for v in seg["std"].values())
    lines = prediction_lines(seg).splitlines()
    assert len(lines) == len(seg["outputs"])
    assert all(ln.startswith("twin_predictions,line=PL1,kind=structure,") and 'subject="SEG-C-000001-001"' in ln
               for ln in lines)


def test_out_of_domain_is_flagged_not_hidden() -> None:
    got: list[dict[str, Any]] = []
    p = Predictor(PredictSettings(), "PL1", PhysicsModel(), lambda key: 400.0 if "LineLoad" in key else None,
                  sinks=[got.append])
    for e in _events()[:3]:
        p.on_event(e)
    assert got and not got[0]["in_domain"] and "line_load_N_mm" in got[0]["violations"][0]
    assert p.counts["out_of_domain"] == 1


def test_a_failing_sink_does_not_stop_the_others() -> None:
    got: list[dict[str, Any]] = []

    def broken(pred: dict[str, Any]) -> None:
        raise RuntimeError("graph down")

    p = Predictor(PredictSettings(), "PL1", PhysicsModel(), _latest, sinks=[broken, got.append])
    for e in _events()[:3]:
        p.on_event(e)
    assert len(got) == 1 and p.counts["errors"] == 1


def test_cell_gets_performance_and_cost_from_the_surrogates() -> None:
    """With the committed cell and cost surrogates, a cell's prediction includes capacity, energy and $/kWh, with
    the model versions; without a dew-point reading, no cost is invented."""
    registry = pytest.importorskip("models.runtime").ModelRegistry.load()
    if not {"structure", "cell", "cost"} <= set(registry.names):
        pytest.skip("surrogate artifacts are not installed (python -m models train)")

    def run(latest: Any) -> dict[str, dict[str, Any]]:
        got: list[dict[str, Any]] = []
        p = Predictor(PredictSettings(), "PL1", RegistryModel(registry, "structure"), latest, registry=registry,
                      sinks=[got.append])
        for e in _events():
            p.on_event(e)
        return {g["kind"]: g for g in got if g["subject_type"] == "Cell"}

    with_dew = run(lambda key: -45.0 if key == "DryRoom/DewPoint" else _latest(key))
    assert set(with_dew) == {"structure", "performance", "cost"}
    perf, cost = with_dew["performance"], with_dew["cost"]
    assert perf["model_version"].startswith("cell@") and cost["model_version"].startswith("cost@")
    # the reference pouch (1200 cm2 at ~2.2 mAh/cm2) holds ~2.6 Ah at C/3
    assert 2.0 < perf["outputs"]["capacity_Ah_C3"] < 3.2
    assert perf["outputs"]["energy_Wh_C3"] > perf["outputs"]["energy_Wh_3C"] > 0
    assert cost["outputs"]["cost_usd_per_kWh"] > 0 and cost["in_domain"], cost["violations"]
    without_dew = run(_latest)
    assert "performance" in without_dew and "cost" not in without_dew


def test_predictions_walk_the_genealogy_stores_lineage() -> None:
    """With a genealogy, the predictor walks the store's lineage (fed by add_event, as the service hands each event to
    the store first) instead of keeping a second one, and predicts the same."""
    from ontology.store import GenealogyStore, StoreConfig

    alone: list[dict[str, Any]] = []
    own = Predictor(PredictSettings(), "PL1", PhysicsModel(), _latest, sinks=[alone.append])
    for e in _events():
        own.on_event(e)
    got: list[dict[str, Any]] = []
    with GenealogyStore(StoreConfig(backend="memory")) as store:
        p = Predictor(PredictSettings(), "PL1", PhysicsModel(), _latest, sinks=[got.append], lineage=store.lineage)
        assert p.lineage is store.lineage
        for e in _events():
            store.add_event(e)
            p.on_event(e)
        assert len(store.lineage) == len(_events())
    assert [(g["subject"], g["kind"]) for g in got] == [(g["subject"], g["kind"]) for g in alone]
    assert [g["outputs"] for g in got] == [g["outputs"] for g in alone]
    cell = next(g for g in got if g["subject_type"] == "Cell")
    assert cell["inputs"]["cathode_segments"] == ["SEG-C-000001-002"]
    assert cell["inputs"]["anode_segments"] == ["SEG-A-000001-001"]
