"""The twin's app mounts the ontology's genealogy routes under its own auth, and shows the ingest quarantine."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from connectors.records import Rejected
from ontology.store import GenealogyStore, StoreConfig
from tests.ontology.synthetic import PlantHistory
from tests.twin.test_api import Env
from twin.api import create_app
from twin.quarantine import Quarantine


@pytest.fixture
def app_env(tmp_path: Path) -> Iterator[tuple[Env, PlantHistory]]:
    env = Env(tmp_path)
    history = PlantHistory(cells=3, roll_length_m=5.0, segment_m=5.0)
    store = GenealogyStore(StoreConfig(path=tmp_path / "genealogy"))
    for event in history.events():
        store.add_event(event)
    assert store.flush(timeout=60)
    quarantine = Quarantine(tmp_path / "quarantine")
    quarantine.add_many([
        Rejected("malformed_json", "payload is not JSON: Expecting value", "mqtt:pilotline/PL1/formation/CH-01/result",
                 b"{not json", time.time_ns()),
        Rejected("out_of_range", "MassLoading 900 mg/cm2 outside [0, 100]", "opcua:ns=2;s=PilotLine.Drying.Cathode."
                 "MassLoading", "900", time.time_ns()),
    ])
    env.ctx.genealogy = store
    env.ctx.quarantine = quarantine
    env.client = TestClient(create_app(env.ctx))
    yield env, history
    store.close()
    quarantine.close()


def test_ontology_routes_are_mounted_under_the_twin_auth(app_env: tuple[Env, PlantHistory]) -> None:
    env, history = app_env
    cell = sorted(history.truth.upstream)[0]
    assert env.client.get(f"/api/cells/{cell}/genealogy").status_code == 401
    r = env.client.get(f"/api/cells/{cell}/genealogy", headers=env.h("viewer"))
    assert r.status_code == 200, r.text
    assert cell in r.text
    ttl = env.client.get(f"/api/cells/{cell}/genealogy", headers={**env.h("viewer"), "Accept": "text/turtle"})
    assert ttl.status_code == 200 and "turtle" in ttl.headers["content-type"]
    missing = env.client.get("/api/cells/CELL-999999/genealogy", headers=env.h("viewer"))
    assert missing.status_code == 404 and "CELL-999999" in missing.text
    # fixed paths of the ontology router win over the twin's /api/genealogy/{entity_id}
    export = env.client.get("/api/genealogy/export", headers=env.h("viewer"))
    assert export.status_code == 200 and cell in export.text
    roll = sorted(history.truth.batch_stretch.values())[0][0][0]
    down = env.client.get("/api/trace/downstream", params={"id": roll, "from_m": 0, "to_m": 5},
                          headers=env.h("viewer"))
    assert down.status_code == 200 and cell[:5] in down.text
    update = env.client.post("/api/sparql", content="DELETE WHERE { ?s ?p ?o }",
                             headers={**env.h("engineer"), "Content-Type": "application/sparql-update"})
    assert update.status_code in (400, 403, 415), update.text
    still = env.client.get(f"/api/cells/{cell}/genealogy", headers=env.h("viewer"))
    assert still.status_code == 200


def test_quarantine_is_visible_in_the_api(app_env: tuple[Env, PlantHistory]) -> None:
    env, _ = app_env
    assert env.client.get("/api/quarantine").status_code == 401
    r = env.client.get("/api/quarantine", headers=env.h("viewer"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["counts"] == {"malformed_json": 1, "out_of_range": 1}
    reasons = [e["reason"] for e in body["entries"]]
    assert reasons == ["malformed_json", "out_of_range"]
    assert "{not json" in json.dumps(body["entries"][0])
    only = env.client.get("/api/quarantine", params={"reason": "out_of_range"}, headers=env.h("viewer")).json()
    assert [e["reason"] for e in only["entries"]] == ["out_of_range"]
    assert env.client.get("/api/quarantine", params={"limit": 0}, headers=env.h("viewer")).status_code == 422
