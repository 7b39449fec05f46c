"""A real simulator run (OPC UA server process + MQTT through a real mosquitto, --record): the genealogy built from
its trace events matches the simulator's own record of what went into what, track answers are exact, SHACL holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from ontology.__main__ import trace_events
from ontology.shapes import validate
from ontology.store import GenealogyStore, StoreConfig
from tests.ontology.conftest import load

REPO = Path(__file__).resolve().parents[2]
QUIET = {"noise_scale": 0.0, "batch_variation": 0.0,
         "line": {"roll_length_m": 5, "segment_length_m": 5, "cell_interval_s": 30, "filling_duration_s": 30,
                  "cycler_channels": 2, "formation_duration_s": 600, "telemetry_interval_s": 30,
                  "post_drying_duration_s": 300}}

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory, mosquitto: Any) -> list[dict[str, Any]]:
    from deploy.localstack import free_port

    tmp = tmp_path_factory.mktemp("simrun")
    scenario = tmp / "quiet.yaml"
    scenario.write_text(yaml.safe_dump(QUIET), encoding="utf-8")
    rec = tmp / "record.jsonl"
    cmd = [sys.executable, "-m", "simulator", "--port", str(free_port()), "--data-dir", str(tmp / "data"),
           "--security", "none", "--speed", "600", "--duration", "3600", "--scenario", str(scenario),
           "--record", str(rec), "--start-time", "2026-01-01T00:00:00Z",
           "--mqtt-url", f"mqtt://{mosquitto.host}:{mosquitto.port}"]
    proc = subprocess.run(cmd, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
                          text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = list(trace_events(rec))
    assert events and all(e["schema"] == "pilotline.trace.v1" for e in events)
    return events


def closure(parents: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for parent in parents.get(todo.pop(), ()):
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


def test_genealogy_matches_the_simulators_record(record: list[dict[str, Any]], tmp_path: Path) -> None:
    parents: dict[str, set[str]] = defaultdict(set)
    stretches: dict[str, tuple[str, float, float]] = {}
    for e in record:
        if e["kind"] == "created" and e["type"] not in ("RollSegment", "FormationRun"):
            parents[e["id"]] |= {i["id"] for i in e["inputs"]}
        if e["kind"] == "created" and e["type"] == "ElectrodeSheet":
            (used,) = e["inputs"]
            stretches[e["id"]] = (used["id"], used["from_m"], used["to_m"])
    cells = sorted(e["id"] for e in record if e["type"] == "Cell" and e["kind"] == "created")
    assert len(cells) >= 10
    with GenealogyStore(StoreConfig(path=tmp_path / "g")) as store:
        load(store, record)
        status = store.status()
        assert status["quarantined_now"] == 0, [q.reason for q in store.quarantine]
        assert status["lines"]["PL1"]["missing_seq"] == 0 and status["placed"] == len(record)
        for cell in cells:
            g = store.genealogy(cell)
            assert {x["id"] for x in g["entities"]} == closure(parents, cell), cell
            assert g["conditions"]["max_dew_point_C"] is not None  # the stack event carries dew_point_C
            assert len(g["positive_electrode"]) == 1 and len(g["negative_electrode"]) == 1
        runs = [e for e in record if e["type"] == "FormationRun"]
        for run in runs:
            g = store.genealogy(run["inputs"][0]["id"])
            assert [r["id"] for r in g["formation"]] == [run["id"]] and g["formation"][0]["channel"] == run["equipment"]
        # track: cells whose sheets came from coil SC-C-000001-1 between 1 and 3 m, from the record alone
        coil, a, b = "SC-C-000001-1", 1.0, 3.0
        sheet_cells = {}
        for e in record:
            if e["type"] == "CellStack" and e["kind"] == "created":
                for i in e["inputs"]:
                    sheet_cells.setdefault(i["id"], set())
            if e["type"] == "Cell" and e["kind"] == "created":
                stack = next(i["id"] for i in e["inputs"] if i["type"] == "CellStack")
                for sheet in parents[stack]:
                    sheet_cells.setdefault(sheet, set()).add(e["id"])
        expected = {c for sheet, (used, f, t) in stretches.items() if used == coil and f < b and t > a
                    for c in sheet_cells.get(sheet, ())}
        assert expected and set(store.downstream(coil, a, b)["cells"]) == expected
        report = validate(store.graph)
        assert report.conforms, report.text[:3000]
        (tmp_path / "genealogy.json").write_text(json.dumps(store.genealogy(cells[0]), default=str))
