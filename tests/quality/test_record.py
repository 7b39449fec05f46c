"""The cell record against a real influxd and a genealogy store of a synthetic plant: statistics over exactly the
cell's roll stretch, windows, the dataset export agreeing with the records, the JSON-LD parsing and conforming, and
the API's routes, bounds and errors."""

from __future__ import annotations

import io
import json
import math
from typing import Any

import pytest
import rdflib
from fastapi.testclient import TestClient

from ontology.shapes import validate
from tests.quality.conftest import LOW_FROM_M, LOW_ROLL, LOW_TO_M, Plant
from tests.twin.test_api import Env
from twin.api import create_app
from twin.quality.dataset import DatasetBuilder, table, to_csv, to_parquet
from twin.quality.jsonld import record_graph, record_jsonld
from twin.quality.record import CellRecords
from twin.quality.stats import Summary


def _records(plant: Plant, specs: dict[str, Any] | None = None) -> CellRecords:
    return CellRecords(plant.store, plant.influx, specs or {})


def _direct_mean(plant: Plant, roll: str, a: float, b: float) -> tuple[float, int]:
    """The engineer's own query: mean of the beta gauge over that stretch of that roll."""
    rows = plant.influx.query(['SELECT mean("value"), count("value") FROM "Drying" WHERE "lane" = $lane AND '
                               '"signal" = $signal AND "roll_id" = $roll AND "roll_position_m" >= $a AND '
                               '"roll_position_m" < $b'],
                              {"lane": "Cathode", "signal": "MassLoading", "roll": roll, "a": a, "b": b})[0]
    return float(rows[0]["mean"]), int(rows[0]["count"])


@pytest.mark.parametrize("cell", ["CELL-000001", "CELL-000012", "CELL-000024", "CELL-000040"])
def test_mass_loading_mean_over_the_stretch_equals_a_direct_query(plant: Plant, cell: str) -> None:
    rec = _records(plant).record(cell)
    sheet = plant.history.truth.cell_sheets[cell][0]
    _, roll, a, b = plant.history.truth.sheet_stretch[sheet]
    cr = next(m for m in rec["materials"] if m["id"] == roll)
    assert (cr["basis"], cr["from_m"], cr["to_m"], cr["via_sheet"]) == ("roll stretch", a, b, sheet)
    stats = cr["signals"]["Drying/Cathode/MassLoading"]
    mean, n = _direct_mean(plant, roll, a, b)
    assert stats["n"] == n == 2  # samples every 0.25 m at 0.125, 0.375, ... m: two in a 0.5 m stretch
    assert stats["mean"] == pytest.approx(mean, rel=1e-12)
    in_low = LOW_FROM_M <= a and b <= LOW_TO_M
    assert (stats["mean"] < 14.0) == in_low
    # the calendered roll's stretch is the same positions (coated-roll coordinates) under its own ID
    cal = next(m for m in rec["materials"] if m["type"] == "CalenderedRoll" and m["id"].startswith("CAL-C"))
    assert (cal["from_m"], cal["to_m"]) == (a, b)
    assert cal["signals"]["Calendering/Cathode/CalenderedThickness"]["n"] == 2


def test_cpk_against_the_spec_and_windows(plant: Plant) -> None:
    from twin.service_settings import SpecLimits

    spec = SpecLimits(lsl=13.88, usl=14.74, target=14.31)
    rec = _records(plant, {"Drying/Cathode/MassLoading": spec}).record("CELL-000002")
    cr = next(m for m in rec["materials"] if m["id"] == "CR-C-000001")
    s = cr["signals"]["Drying/Cathode/MassLoading"]
    want = min(14.74 - s["mean"], s["mean"] - 13.88) / (3 * s["std"])
    assert s["cpk"] == pytest.approx(want) and s["spec"]["lsl"] == 13.88
    # the slurry batch coated on 0..10 m is in the cell's 0.5..1.0 m; the one on 10..20 m is not
    bases = {m["id"]: m["basis"] for m in rec["materials"] if m["type"] == "SlurryBatch"}
    assert bases == {"SB-A-000001": "time window", "SB-A-000002": "not in this cell",
                     "SB-C-000001": "time window", "SB-C-000002": "not in this cell"}
    sb = next(m for m in rec["materials"] if m["id"] == "SB-C-000001")
    assert sb["signals"]["Mixing/Cathode/Viscosity"]["n"] == 31  # 30 min of mixing, a sample a minute, both ends
    dew = rec["assembly"]["signals"]["DryRoom/DewPoint"]
    assert dew["mean"] == -45.0 and dew["n"] >= 1
    assert rec["assembly"]["max_dew_point_C"] == plant.history.truth.dew_point["CELL-000002"]
    assert rec["formation"][0]["results"]["discharge_capacity_Ah"]["value"] > 1.9
    # bounded by the materials, not the signals: per roll its stats and first / last times, per window its stats,
    # the assembly window; per roll and window two audit statements and one lab statement; in two requests
    rolls = sum(m["basis"] == "roll stretch" for m in rec["materials"])
    windows = sum(m["basis"] == "time window" for m in rec["materials"])
    assert (rolls, windows) == (4, 7)  # 2 coated + 2 calendered; 2 batches, 2 coils x 2 steps, 1 formation run
    run = next(m for m in rec["materials"] if m["type"] == "FormationRun")
    assert run["channel"] == "CH-03" and run["signals"]["Formation/Voltage"]["n"] == 7  # 60 s, every 10 s
    assert rec["influxdb"] == {"available": True, "requests": 2,
                               "statements": 3 * rolls + windows + 1 + 2 * (rolls + windows) + 1}
    assert rec["features"]["Drying/Cathode/MassLoading:mean"] == s["mean"]


def test_a_cell_id_that_is_no_cell_is_refused(plant: Plant) -> None:
    from ontology.store import QueryInputError

    with pytest.raises(QueryInputError, match="not a Cell"):
        _records(plant).record("CR-C-000001")
    with pytest.raises(LookupError):
        _records(plant).record("CELL-999999")


def test_the_dataset_export_gives_the_records_features(plant: Plant) -> None:
    cells = sorted(plant.history.truth.cell_sheets)
    recs = _records(plant)
    rows = DatasetBuilder(recs).features(cells)
    assert [c for c, _ in rows] == cells
    for cell in ("CELL-000003", "CELL-000017", "CELL-000033"):
        want = recs.record(cell)["features"]
        got = dict(rows)[cell]
        assert set(got) == set(want)
        for k, v in want.items():
            assert got[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
    columns, data = table(rows)
    assert columns[0] == "cell" and "Drying/Cathode/MassLoading:mean" in columns
    csv_text = to_csv(columns, data).decode()
    assert csv_text.count("\n") == len(cells) + 1
    import pyarrow.parquet as pq

    t = pq.read_table(io.BytesIO(to_parquet(columns, data)))
    assert t.num_rows == len(cells) and t.column_names == columns


def test_pooled_summaries_are_exact() -> None:
    import numpy as np

    rng = np.random.default_rng(1)
    a, b = rng.normal(3, 1, 17), rng.normal(5, 2, 5)
    both = Summary.of(a).pooled(Summary.of(b))  # type: ignore[union-attr]
    ref = Summary.of(np.concatenate([a, b]))
    assert ref is not None
    assert (both.n, both.min, both.max) == (ref.n, ref.min, ref.max)
    assert both.mean == pytest.approx(ref.mean) and both.std == pytest.approx(ref.std)


def test_the_json_ld_parses_and_conforms(plant: Plant) -> None:
    recs = _records(plant)
    rec = recs.record("CELL-000012")
    report = validate(record_graph(plant.store, rec))
    assert report.conforms, report.text
    text = record_jsonld(plant.store, rec)
    g = rdflib.Graph().parse(data=text, format="json-ld")
    pl = rdflib.Namespace("https://pilotline.example.org/vocab#")
    emmo = rdflib.Namespace("https://w3id.org/emmo#")
    roll = rdflib.URIRef(next(e["iri"] for e in rec["genealogy"]["entities"] if e["id"] == LOW_ROLL))
    means = [float(g.value(g.value(v, emmo.EMMO_8ef3cd6d_ae58_4a8d_9fc0_ad8f49015cd0),
                           emmo.EMMO_faf79f53_749d_40b2_807c_d34244c192f4))
             for v in g.objects(roll, pl.hasMeasured)
             if str(g.value(v, pl.key)) == "Drying/Cathode/MassLoading" and str(g.value(v, pl.statistic)) == "mean"]
    cr = next(m for m in rec["materials"] if m["id"] == LOW_ROLL)
    assert means == [pytest.approx(cr["signals"]["Drying/Cathode/MassLoading"]["mean"])]
    # BattINFO typing is explicit: the measured values carry EMMO's MeasuredProperty class
    assert (None, rdflib.RDF.type, emmo.EMMO_873b0ab3_88e6_4054_b901_5531e01f14a4) in g


@pytest.fixture
def api(plant: Plant, tmp_path: Any) -> Env:
    env = Env(tmp_path)
    env.ctx.genealogy = plant.store
    settings = env.ctx.settings.model_dump(mode="json")
    env.ctx.config_dump = lambda: {"influx": {"url": plant.url, "database": plant.database, "version": 1},
                                   "service": settings}
    env.client = TestClient(create_app(env.ctx))
    return env


def test_api_record_jsonld_dataset_and_errors(api: Env, plant: Plant) -> None:
    assert api.client.get("/api/cells/CELL-000005/record").status_code == 401
    r = api.client.get("/api/cells/CELL-000005/record", headers=api.h("viewer"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["cell"] == "CELL-000005" and body["genealogy"]["id"] == "CELL-000005"
    assert {"materials", "assembly", "formation", "predicted_vs_measured", "lab", "setpoint_changes",
            "features"} <= set(body)
    ld = api.client.get("/api/cells/CELL-000005/record", headers={**api.h("viewer"), "Accept": "application/ld+json"})
    assert ld.status_code == 200 and ld.headers["content-type"].startswith("application/ld+json")
    assert len(rdflib.Graph().parse(data=ld.text, format="json-ld")) > 100
    missing = api.client.get("/api/cells/CELL-999999/record", headers=api.h("viewer"))
    assert missing.status_code == 404 and "CELL-999999" in missing.json()["detail"]
    wrong = api.client.get("/api/cells/CR-C-000001/record", headers=api.h("viewer"))
    assert wrong.status_code == 422 and "not a Cell" in wrong.json()["detail"]
    csv_r = api.client.get("/api/cells/dataset", params={"cells": "CELL-000001,CELL-000002"},
                           headers=api.h("viewer"))
    assert csv_r.status_code == 200 and csv_r.headers["content-type"].startswith("text/csv")
    assert csv_r.text.splitlines()[0].startswith("cell,") and len(csv_r.text.splitlines()) == 3
    pq_r = api.client.get("/api/cells/dataset", params={"cells": "CELL-000001", "format": "parquet"},
                          headers=api.h("viewer"))
    assert pq_r.status_code == 200 and pq_r.content[:4] == b"PAR1"
    js = api.client.get("/api/cells/dataset", params={"capacity_below": 1.99, "format": "json"},
                        headers=api.h("viewer")).json()
    cap = js["columns"].index("formation:discharge_capacity_Ah")
    assert js["count"] >= 1 and all(row[cap] < 1.99 for row in js["rows"])
    none = api.client.get("/api/cells/dataset", headers=api.h("viewer"))
    assert none.status_code == 422 and "choose cells" in none.json()["detail"]


def test_api_rootcause_ranks_the_low_stretch_first(api: Env, plant: Plant) -> None:
    low = [c for c, (sheet, _) in plant.history.truth.cell_sheets.items()
           if LOW_FROM_M <= plant.history.truth.sheet_stretch[sheet][2] < LOW_TO_M]
    r = api.client.get("/api/rootcause", params={"cells": ",".join(low)}, headers=api.h("viewer"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["selected"] == len(low) == 14 and out["rest"] == 26
    assert out["causes"][0]["cause"] == "Drying/Cathode/MassLoading"
    assert out["features"][0]["q"] < 1e-4 and out["features"][0]["cliffs_delta"] == -1.0
    assert out["forest"]["cause_importances"][0]["cause"] == "Drying/Cathode/MassLoading"
    plot = out["plots"][0]
    assert len(plot["values"]["selected"]) == 14 and plot["box"]["selected"]["median"] < 14.0
    assert all(not f["feature"].startswith("formation:") for f in out["features"])
    json.dumps(out, allow_nan=False)
    assert not any(isinstance(v, float) and math.isnan(v) for f in out["features"] for v in f.values())


def test_a_stretch_named_further_up_does_not_widen_the_sheets() -> None:
    """The simulator names the whole roll on the slit coil's input (0..10 m): the sheet's 4..6 m stays 4..6 m."""
    g = {"entities": [{"id": "ES-C-000001", "type": "ElectrodeSheet", "steps": []},
                      {"id": "SC-C-000001-1", "type": "SlitCoil", "steps": []},
                      {"id": "CAL-C-000001", "type": "CalenderedRoll", "steps": []},
                      {"id": "CR-C-000001", "type": "CoatedRoll", "steps": []}],
         "edges": [{"child": "ES-C-000001", "parent": "SC-C-000001-1", "from_m": 4.0, "to_m": 6.0},
                   {"child": "SC-C-000001-1", "parent": "CAL-C-000001", "from_m": 0.0, "to_m": 10.0},
                   {"child": "CAL-C-000001", "parent": "CR-C-000001", "from_m": 0.0, "to_m": 10.0}]}
    ms = {m.id: (m.roll_from_m, m.roll_to_m) for m in CellRecords(None, None, {}).materials(g)}
    assert ms == {"CAL-C-000001": (4.0, 6.0), "CR-C-000001": (4.0, 6.0)}


def test_busy_and_bounds_answer_with_what_to_do(api: Env, plant: Plant) -> None:
    """All places taken: 429 with Retry-After (nothing queued behind); an answer wider than the row cap: 422."""
    r = api.client.get("/api/cells/CELL-000001/record", headers=api.h("viewer"))
    assert r.status_code == 200
    app = api.client.app
    gate = app.state.quality_gate  # type: ignore[attr-defined]
    held = [gate.enter("someone", 30.0) for _ in range(gate.total)]
    busy = api.client.get("/api/cells/CELL-000001/record", headers=api.h("viewer"))
    assert busy.status_code == 429 and int(busy.headers["Retry-After"]) >= 1
    for t in held:
        t.leave()
    app.state.quality.influx.max_rows = 3  # type: ignore[attr-defined]
    try:
        wide = api.client.get("/api/cells/dataset", params={"cells": "CELL-000001"}, headers=api.h("viewer"))
    finally:
        app.state.quality.influx.max_rows = 200_000  # type: ignore[attr-defined]
    assert wide.status_code == 422 and "quality.max_rows" in wide.json()["detail"]
    assert gate.running() == 0
