"""The genealogy HTTP API: answers, content negotiation, 404 / 400 with reasons, a read-only SPARQL endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.testclient import TestClient
from rdflib import Graph

from ontology.__main__ import build_app
from ontology.api import make_router
from ontology.store import GenealogyStore
from tests.ontology.synthetic import PlantHistory

REPO = Path(__file__).resolve().parents[2]
PL = "PREFIX pl: <https://pilotline.example.org/vocab#> "


@pytest.fixture(scope="module")
def client(store: GenealogyStore) -> TestClient:
    return TestClient(build_app(store))


def test_genealogy_json(client: TestClient, history: PlantHistory) -> None:
    r = client.get("/api/cells/CELL-000004/genealogy")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert {e["id"] for e in body["entities"]} == history.truth.upstream["CELL-000004"]
    assert body["conditions"]["max_dew_point_C"] == pytest.approx(history.truth.dew_point["CELL-000004"])


@pytest.mark.parametrize(("accept", "fmt"), [("text/turtle", "turtle"), ("application/ld+json", "json-ld")])
def test_genealogy_as_rdf_by_accept_header(client: TestClient, history: PlantHistory, accept: str, fmt: str) -> None:
    r = client.get("/api/cells/CELL-000004/genealogy", headers={"Accept": accept})
    assert r.status_code == 200 and r.headers["content-type"].startswith(accept)
    graph = Graph().parse(data=r.text, format=fmt)
    traced = {str(o) for s, p, o in graph if str(p) == "https://pilotline.example.org/vocab#traceId"}
    assert traced >= history.truth.upstream["CELL-000004"] | {"FR-000004"}
    cell = "https://pilotline.example.org/id/PL1/CELL-000004"
    types = {str(o) for s, p, o in graph if str(s) == cell and str(p).endswith("#type")}
    assert "https://w3id.org/emmo/domain/battery#battery_392b3f47_d62a_4bd4_a819_b58b09b8843a" in types  # PouchCell
    units = {str(o) for s, p, o in graph if str(p) == "https://w3id.org/emmo#EMMO_bed1d005_b04e_4a90_94cf_02bc678a8569"}
    assert "https://w3id.org/emmo#MilliGramPerSquareCentiMetre" in units


def test_unknown_and_malformed(client: TestClient) -> None:
    r = client.get("/api/cells/CELL-424242/genealogy")
    assert r.status_code == 404 and "CELL-424242" in r.json()["error"]
    r = client.get("/api/cells/CR-C-000001/genealogy")
    assert r.status_code == 404 and "is a CoatedRoll, not a cell" in r.json()["error"]
    r = client.get("/api/cells/cell%201/genealogy")
    assert r.status_code == 400 and "must match" in r.json()["error"]
    r = client.get("/api/trace/downstream", params={"id": "CR-C-000001", "from_m": "forty", "to_m": "55"})
    assert r.status_code == 400 and "from_m must be a number" in r.json()["error"]
    r = client.get("/api/trace/downstream", params={"id": "CR-C-000001", "from_m": "nan", "to_m": "55"})
    assert r.status_code == 400 and "finite" in r.json()["error"]
    r = client.get("/api/trace/downstream")
    assert r.status_code == 400 and "id is required" in r.json()["error"]
    r = client.get("/api/trace/downstream", params={"id": "SB-C-999999"})
    assert r.status_code == 404
    r = client.get("/api/trace/dew-point", params={"limit_C": "-40", "check_samples": "perhaps"})
    assert r.status_code == 400 and "check_samples" in r.json()["error"]


def test_downstream_route(client: TestClient, store: GenealogyStore) -> None:
    r = client.get("/api/trace/downstream", params={"id": "CR-C-000001", "from_m": "4", "to_m": "5.5"})
    assert r.status_code == 200
    assert r.json()["cells"] == store.downstream("CR-C-000001", 4.0, 5.5)["cells"] and r.json()["cells"]
    r = client.get("/api/trace/dew-point", params={"limit_C": "-45"})
    assert r.status_code == 200 and r.json()["count"] == store.cells_dew_point_above(-45.0)["count"]


def test_sparql_protocol_select_ask_construct(client: TestClient) -> None:
    q = PL + "SELECT ?id WHERE { ?c a pl:Cell ; pl:traceId ?id } ORDER BY ?id LIMIT 3"
    r = client.post("/api/sparql", content=q, headers={"Content-Type": "application/sparql-query"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/sparql-results+json")
    assert [b["id"]["value"] for b in r.json()["results"]["bindings"]] == ["CELL-000001", "CELL-000002", "CELL-000003"]
    r = client.post("/api/sparql", data={"query": "ASK { ?s ?p ?o }"})
    assert r.status_code == 200 and r.json()["boolean"] is True
    r = client.get("/api/sparql", params={"query": "CONSTRUCT { ?s ?p ?o } WHERE { ?s ?p ?o } LIMIT 5"})
    assert r.status_code == 200 and len(Graph().parse(data=r.text, format="nt")) == 5


def test_sparql_result_limit_and_errors(store: GenealogyStore) -> None:
    app = FastAPI()
    app.include_router(make_router(store, sparql_max_results=7, sparql_timeout_s=2.0))
    c = TestClient(app)
    r = c.get("/api/sparql", params={"query": "SELECT * WHERE { ?s ?p ?o }"})
    assert len(r.json()["results"]["bindings"]) == 7 and r.headers["x-results-truncated"] == "true"
    r = c.get("/api/sparql", params={"query": "SELEC * WHERE"})
    assert r.status_code == 400 and "syntax error" in r.json()["error"]
    t0 = time.monotonic()
    r = c.get("/api/sparql", params={"query": "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"})
    assert r.status_code == 503 and "2 s" in r.json()["error"] and time.monotonic() - t0 < 10
    r = c.get("/api/sparql", params={"query": "ASK { ?s ?p ?o }"})  # the killed worker was replaced
    assert r.status_code == 200 and r.json()["boolean"] is True


@pytest.mark.parametrize("update", [
    "INSERT DATA { <urn:x> <urn:y> <urn:z> }",
    "DELETE WHERE { ?s ?p ?o }",
    "CLEAR ALL",
    "DROP DEFAULT",
    "LOAD <http://example.org/evil.ttl>",
    PL + "DELETE { ?c pl:traceId ?id } WHERE { ?c pl:traceId ?id }",
])
def test_updates_are_refused_and_change_nothing(client: TestClient, store: GenealogyStore, update: str) -> None:
    size = len(store)
    for r in (client.post("/api/sparql", content=update, headers={"Content-Type": "application/sparql-update"}),
              client.post("/api/sparql", data={"update": update}),
              client.post("/api/sparql", content=update, headers={"Content-Type": "application/sparql-query"}),
              client.get("/api/sparql", params={"query": update})):
        assert r.status_code == 403 and "read-only" in r.json()["error"]
    assert len(store) == size


def test_crafted_ids_are_inert(client: TestClient, store: GenealogyStore) -> None:
    size = len(store)
    crafted = ['CELL-000001" } ; DROP ALL ; #', "CELL-000001> ?p ?o } #", "CELL-000001'", "CELL-000001\\",
               'X-1" || true || "']
    for text in crafted:
        r = client.get(f"/api/cells/{quote(text, safe='')}/genealogy")
        assert r.status_code in (400, 404), (text, r.status_code)
        r = client.get("/api/trace/downstream", params={"id": text})
        assert r.status_code == 400 and "must match" in r.json()["error"]
    # the line is free text: it reaches the query only as an escaped literal
    for line in ['PL1" } UNION { ?entity ?p ?o } #', "PL1\\", 'PL1"""', "PL1\n} INSERT"]:
        r = client.get("/api/cells/CELL-000001/genealogy", params={"line": line})
        assert r.status_code == 404 and "CELL-000001" in r.json()["error"]
    assert len(store) == size


def test_router_takes_the_twins_auth_dependencies(store: GenealogyStore) -> None:
    def require_token(authorization: str | None = Header(default=None)) -> None:
        if authorization != "Bearer s3cret":
            raise HTTPException(status_code=401, detail="no token")

    app = FastAPI()
    app.include_router(make_router(store, dependencies=[Depends(require_token)]))
    c = TestClient(app)
    assert c.get("/api/cells/CELL-000001/genealogy").status_code == 401
    assert c.get("/api/cells/CELL-000001/genealogy", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_export_whole_graph(client: TestClient, store: GenealogyStore) -> None:
    r = client.get("/api/genealogy/export", params={"format": "nt"})
    assert r.status_code == 200 and len(Graph().parse(data=r.text, format="nt")) == len(store)
    assert client.get("/api/genealogy/export", params={"format": "csv"}).status_code == 400
    assert client.get("/api/genealogy/status").json()["lines"]["PL1"]["missing_seq"] == 0


def test_cli_load_and_serve_as_real_processes(tmp_path: Path) -> None:
    from deploy.localstack import free_port

    events = tmp_path / "events.jsonl"
    h = PlantHistory(cells=3, roll_length_m=5.0, segment_m=5.0)
    listed = list(h.events())
    events.write_text("".join(json.dumps(e) + "\n" for e in listed), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    store_dir = tmp_path / "store"
    loaded = subprocess.run([sys.executable, "-m", "ontology", "load", str(events), "--store", str(store_dir)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout)["placed"] == len(listed)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "ontology", "serve", "--store", str(store_dir), "--port",
                               str(port)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/cells/CELL-000002/genealogy", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None, server.stderr.read().decode()  # type: ignore[union-attr]
                time.sleep(0.2)
        assert r.status_code == 200 and {e["id"] for e in r.json()["entities"]} == h.truth.upstream["CELL-000002"]
    finally:
        server.terminate()
        server.wait(timeout=10)
