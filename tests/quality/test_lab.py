"""Lab and offline measurements: 1 000 rows with 10 % bad ones through POST /api/lab; every good row stored in
InfluxDB and linked to its material (shown in the records of the cells made from it), every bad one quarantined with
its reason; a second import of the same rows stores nothing twice; the CLI imports a file and shows a cell record."""

from __future__ import annotations

import csv
import io
import json
import random
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import rdflib
import yaml
from fastapi.testclient import TestClient

from tests.quality.conftest import Plant
from tests.twin.test_api import Env
from twin.api import create_app
from twin.quality.lab import FIELDS, LabImporter
from twin.quality.record import CellRecords
from twin.quarantine import Quarantine

REPO = Path(__file__).resolve().parents[2]


def _t(i: int) -> str:
    return f"2026-11-22T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z"


def good_rows(plant: Plant, n: int) -> list[dict[str, Any]]:
    """n distinct valid rows over every kind of trace ID the cells hold."""
    truth = plant.history.truth
    cells = sorted(truth.cell_sheets)
    sheets = sorted(truth.sheet_stretch)
    batches = sorted(truth.batch_stretch)
    rows: list[dict[str, Any]] = []
    for i in range(n):
        kind = i % 4
        base = {"method": "lab-" + str(kind), "time": _t(i), "operator": f"tech{i % 3}"}
        if kind == 0:
            rows.append({**base, "trace_id": batches[i % len(batches)], "quantity": "viscosity",
                         "value": 3.5 + (i % 10) * 0.1, "unit": "Pa.s"})
        elif kind == 1:
            a = float(i % 19)
            rows.append({**base, "trace_id": "CR-C-000001", "quantity": "peel_strength", "value": 20.0 + i % 7,
                         "unit": "N/m", "from_m": a, "to_m": a + 1.0})
        elif kind == 2:
            rows.append({**base, "trace_id": sheets[i % len(sheets)], "quantity": "porosity", "value": 31.0 + i % 3,
                         "unit": "%"})
        else:
            rows.append({**base, "trace_id": cells[i % len(cells)], "quantity": "cell_impedance",
                         "value": 25.0 + (i % 11) * 0.5, "unit": "mOhm"})
    return rows


def bad_rows(good: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    out: list[tuple[dict[str, Any], str]] = []
    for i in range(100):
        row = dict(good[i])
        row["time"] = _t(50_000 + i)  # not a duplicate of the good row it was copied from
        kind = i % 6
        if kind == 0:
            row["trace_id"] = f"CELL-{900_000 + i:06d}"
            out.append((row, "unknown_id"))
        elif kind == 1:
            row["unit"] = "furlongs"
            out.append((row, "unknown_unit"))
        elif kind == 2:
            row["value"] = -5.0
            out.append((row, "out_of_range"))
        elif kind == 3:
            out.append((dict(good[i]), "duplicate"))  # the same row again, later in the file
        elif kind == 4:
            row.pop("operator")
            out.append((row, "malformed"))
        else:
            row["quantity"] = "tastiness"
            out.append((row, "unknown_quantity"))
    return out


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[*FIELDS, "from_m", "to_m"], lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in w.fieldnames})
    return buf.getvalue()


def test_thousand_rows_ten_percent_bad(plant: Plant, tmp_path: Path) -> None:
    good = good_rows(plant, 900)
    bad = bad_rows(good)
    rows: list[tuple[dict[str, Any], str | None]] = [(r, None) for r in good] + [(r, why) for r, why in bad]
    random.Random(4).shuffle(rows)
    # a duplicate must come after its original: put each one after the last good row
    dups = [(r, w) for r, w in rows if w == "duplicate"]
    rows = [(r, w) for r, w in rows if w != "duplicate"] + dups
    assert len(rows) == 1000 and sum(w is not None for _, w in rows) == 100

    env = Env(tmp_path)
    env.ctx.genealogy = plant.store
    env.ctx.quarantine = Quarantine(tmp_path / "quarantine")
    env.ctx.config_dump = lambda: {"influx": {"url": plant.url, "database": plant.database, "version": 1}}
    env.client = TestClient(create_app(env.ctx))
    body = to_csv([r for r, _ in rows])
    assert env.client.post("/api/lab", content=body, headers={**env.h("viewer"), "Content-Type": "text/csv"}
                           ).status_code == 403
    r = env.client.post("/api/lab", content=body, headers={**env.h("operator"), "Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["stored"], out["quarantined"]) == (900, 100)
    want = {i + 1: why for i, (_, why) in enumerate(rows) if why is not None}
    assert {e["row"]: e["reason"] for e in out["refused"]} == want
    assert all(e["detail"] for e in out["refused"])
    # the refused rows sit in the ingest quarantine beside the line's, with their reason
    q = env.client.get("/api/quarantine", params={"limit": 1000}, headers=env.h("viewer")).json()
    assert sum(v for k, v in q["counts"].items() if k.startswith("lab_")) == 100
    assert q["counts"]["lab_unknown_id"] == len([w for w in want.values() if w == "unknown_id"])

    # every good row is stored, with its value (in the stored unit), method, operator and stretch
    stored = plant.influx.query(['SELECT * FROM "lab" WHERE "line" = $line'], {"line": "PL1"})[0]
    assert len(stored) == 900
    key = {(s["trace_id"], s["quantity"], s["method"], s["time"]): s for s in stored}
    from connectors.records import iso_to_ns

    for g in good:
        s = key[(g["trace_id"], g["quantity"], g["method"], iso_to_ns(g["time"]))]
        factor = 0.01 if g["unit"] == "%" else 1.0
        assert s["value"] == pytest.approx(g["value"] * factor) and s["operator"] == g["operator"]
        assert (s.get("from_m"), s.get("to_m")) == (g.get("from_m"), g.get("to_m"))

    # linked: every good row's material is in the genealogy, and each lands in the record of a cell made from it
    recs = CellRecords(plant.store, plant.influx, {})
    cell = "CELL-000004"  # good_rows gives cells[3], cells[7] ... an impedance
    rec = recs.record(cell)
    ids = {e["id"] for e in rec["genealogy"]["entities"]}
    got = {(x["trace_id"], x["quantity"], x["time"]) for x in rec["lab"]}
    cr = next(m for m in rec["materials"] if m["id"] == "CR-C-000001")
    for g in good:
        if g["trace_id"] not in ids:
            continue
        if g.get("from_m") is not None and not (g["from_m"] < cr["to_m"] and cr["from_m"] < g["to_m"]):
            assert (g["trace_id"], g["quantity"], g["time"].replace("Z", ".000000000Z")) not in got
            continue
        assert (g["trace_id"], g["quantity"], g["time"].replace("Z", ".000000000Z")) in got
    assert any(x["quantity"] == "cell_impedance" for x in rec["lab"])
    assert any(f.startswith("lab:Cell:cell_impedance") for f in rec["features"])
    # and in the record's JSON-LD, as measured values of their material, still conforming to the shapes
    from ontology.shapes import validate
    from twin.quality.jsonld import record_graph

    graph = record_graph(plant.store, rec)
    report = validate(graph)
    assert report.conforms, report.text
    keys = {str(o) for o in graph.objects(None, rdflib.URIRef("https://pilotline.example.org/vocab#key"))}
    assert {f"lab:{x['quantity']}" for x in rec["lab"]} == {"lab:cell_impedance", "lab:viscosity",
                                                            "lab:peel_strength"} <= keys

    # the same file again: nothing stored twice, every good row refused as already stored
    again = env.client.post("/api/lab", content=body, headers={**env.h("operator"), "Content-Type": "text/csv"}).json()
    assert again["stored"] == 0 and again["reasons"]["duplicate"] == 900 + 100 // 6 + (1 if 100 % 6 > 3 else 0)
    assert len(plant.influx.query(['SELECT * FROM "lab" WHERE "line" = $line'], {"line": "PL1"})[0]) == 900
    env.ctx.quarantine.close()


def test_json_rows_and_a_bad_file(plant: Plant) -> None:
    importer = LabImporter(plant.store, plant.influx, "PL1")
    rows = [{"trace_id": "SB-C-000001", "quantity": "solid_content", "value": 70.5, "unit": "%",
             "method": "oven", "time": "2026-11-23T08:00:00Z", "operator": "ana"},
            {"trace_id": "SB-C-000001", "quantity": "solid_content", "value": 0.7, "unit": "1",
             "method": "oven", "time": "2099-01-01T00:00:00Z", "operator": "ana"},
            {"trace_id": "ES-C-000001", "quantity": "porosity", "value": 0.3, "unit": "1", "method": "Hg",
             "time": "2026-11-23T08:00:00Z", "operator": "ana", "from_m": 1, "to_m": 2},
            {"trace_id": "CR-C-000001", "quantity": "mass_loading", "value": 143.1, "unit": "g/m2",
             "method": "punch", "time": "2026-11-23T08:00:00Z", "operator": "ana", "from_m": 3, "to_m": 2}]
    result = importer.import_rows(rows, "test")
    assert [r.value for r in result.stored] == [pytest.approx(0.705)]
    assert [(r.row, r.reason) for r in result.quarantined] == [(2, "out_of_range"), (3, "malformed"),
                                                               (4, "malformed")]
    assert "future" in result.quarantined[0].detail and "rolls" in result.quarantined[1].detail


def test_cli_lab_import_and_cell_record(influxd: Any, tmp_path: Path) -> None:
    from ontology.store import GenealogyStore, StoreConfig
    from tests.ontology.synthetic import PlantHistory

    history = PlantHistory(cells=3, roll_length_m=5.0, segment_m=5.0)
    store = GenealogyStore(StoreConfig(path=tmp_path / "genealogy"))
    for e in history.events():
        store.add_event(e)
    assert store.flush(timeout=60)
    store.close()
    db = f"cli_{uuid.uuid4().hex[:8]}"
    cfg = tmp_path / "twin.yaml"
    cfg.write_text(yaml.safe_dump({
        "influx": {"url": influxd.url, "database": db},
        "quarantine": {"dir": str(tmp_path / "quarantine")},
        "service": {"genealogy": {"store_path": str(tmp_path / "genealogy")}},
    }))
    import httpx

    httpx.post(f"{influxd.url}/query", data={"q": f'CREATE DATABASE "{db}"'})
    lab = tmp_path / "lab.csv"
    lab.write_text("trace_id,quantity,value,unit,method,time,operator\n"
                   "CELL-000001,cell_impedance,26.5,mOhm,EIS 1 kHz,2026-11-22T10:00:00Z,ana\n"
                   "CELL-000777,cell_impedance,26.5,mOhm,EIS 1 kHz,2026-11-22T10:00:00Z,ana\n")
    run = subprocess.run([sys.executable, "-m", "twin", "lab", "import", str(lab), "--config", str(cfg)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert (out["stored"], out["quarantined"], out["reasons"]) == (1, 1, {"unknown_id": 1})
    q = Quarantine(tmp_path / "quarantine")
    assert q.count_by_reason() == {"lab_unknown_id": 1}
    q.close()
    rec = subprocess.run([sys.executable, "-m", "twin", "cell-record", "CELL-000001", "--config", str(cfg)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert rec.returncode == 0, rec.stderr
    body = json.loads(rec.stdout)
    assert [(x["trace_id"], x["value"], x["method"]) for x in body["lab"]] == [("CELL-000001", 26.5, "EIS 1 kHz")]
    missing = subprocess.run([sys.executable, "-m", "twin", "cell-record", "CELL-000009", "--config", str(cfg)],
                             cwd=REPO, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "CELL-000009" in missing.stderr
