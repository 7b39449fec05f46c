"""User SPARQL and export under load: reads beside a writing line, concurrency caps, export pages, the event loop.

Everything runs against a real persistent Oxigraph store (RocksDB on disk) fed by the genealogy writer thread, and the
real query processes; the HTTP side is the ontology router in a FastAPI app served by uvicorn on a free port, so the
event loop under test is a real one.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Header
from rdflib import Graph

from ontology.api import make_router
from ontology.store import GenealogyStore, StoreConfig
from tests.asgi_server import Server
from tests.ontology.conftest import load
from tests.ontology.synthetic import PlantHistory

COUNT = "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }"
WORST = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"  # a cross product: runs to its limit


def _user(x_user: str = Header("anonymous")) -> str:
    return x_user


def _app(store: GenealogyStore, **limits: object) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(make_router(store, user_of=_user, **limits))  # type: ignore[arg-type]
    return app


@pytest.fixture
def small_store(tmp_path: Path) -> Iterator[GenealogyStore]:
    store = GenealogyStore(StoreConfig(path=tmp_path / "genealogy"))
    load(store, list(PlantHistory(cells=20, roll_length_m=20.0, segment_m=5.0, pitch_m=0.5, seed=5).events()))
    yield store
    store.close()


def test_queries_while_the_line_writes_never_read_a_compacted_file(tmp_path: Path) -> None:
    """Issue 10 item 7: the query process opened the live RocksDB directory read-only beside the writer; compaction
    deleted SST files its manifest listed and queries answered 400 "Corruption: IO error: No such file"."""
    from fastapi.testclient import TestClient

    store = GenealogyStore(StoreConfig(path=tmp_path / "genealogy", batch_size=200))
    lines = [PlantHistory(cells=300, roll_length_m=20.0, segment_m=5.0, pitch_m=0.5, seed=3, line=f"PL{i}")
             for i in range(1, 7)]
    fed = threading.Event()

    def feed() -> None:
        for history in lines:
            for event in history.events():
                store.add_event(event)
        fed.set()

    answers: list[tuple[int, str]] = []

    def ask() -> None:
        client = TestClient(_app(store, sparql_timeout_s=60.0, sparql_max_concurrent=3))
        mine = 0
        while not (fed.is_set() and store.flush(timeout=0.01)) or mine < 5:
            r = client.get("/api/sparql", params={"query": COUNT})
            answers.append((r.status_code, r.text))
            mine += 1

    writer = threading.Thread(target=feed)
    readers = [threading.Thread(target=ask) for _ in range(3)]
    try:
        writer.start()
        for reader in readers:
            reader.start()
        for thread in (writer, *readers):
            thread.join(timeout=300)
        final = TestClient(_app(store)).get("/api/sparql", params={"query": COUNT})
        assert final.status_code == 200
    finally:
        store.close()
    failures = [(code, text[:300]) for code, text in answers if code != 200]
    assert not failures, f"{len(failures)} of {len(answers)} queries failed: {failures[:3]}"
    counted = int(final.json()["results"]["bindings"][0]["n"]["value"])
    assert max(int(json.loads(t)["results"]["bindings"][0]["n"]["value"]) for _, t in answers) <= counted


def test_a_worst_case_query_leaves_the_event_loop_free(small_store: GenealogyStore) -> None:
    """Issue 10 item 2: /sparql waited for its query on the event loop, so /health stalled until the limit."""
    server = Server(_app(small_store, sparql_timeout_s=10.0))

    async def scenario() -> tuple[int, list[int], bool]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            query = asyncio.create_task(client.get("/api/sparql", params={"query": WORST}))
            await asyncio.sleep(0.5)  # the query has reached the server
            codes = []
            for _ in range(5):
                codes.append((await client.get("/health")).status_code)
            still_running = not query.done()
            return (await query).status_code, codes, still_running

    try:
        query_status, health, query_was_running = asyncio.run(scenario())
    finally:
        server.stop()
    assert health == [200] * 5
    assert query_was_running, "the worst-case query ended before /health answered five times"
    assert query_status == 503  # stopped at its limit


def test_concurrency_caps_answer_429_with_retry_after(small_store: GenealogyStore) -> None:
    server = Server(_app(small_store, sparql_timeout_s=8.0, sparql_max_concurrent=3, sparql_max_per_user=2))

    async def scenario() -> dict[str, object]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            def q(user: str) -> asyncio.Task[httpx.Response]:
                return asyncio.create_task(client.get("/api/sparql", params={"query": WORST},
                                                      headers={"X-User": user}))

            alice = [q("alice"), q("alice")]
            await asyncio.sleep(1.0)
            third = await client.get("/api/sparql", params={"query": "ASK { ?s ?p ?o }"}, headers={"X-User": "alice"})
            bob = q("bob")
            await asyncio.sleep(1.0)
            carol = await client.get("/api/sparql", params={"query": "ASK { ?s ?p ?o }"}, headers={"X-User": "carol"})
            running = [t.done() for t in (*alice, bob)]
            done = await asyncio.gather(*alice, bob)
            after = await client.get("/api/sparql", params={"query": "ASK { ?s ?p ?o }"}, headers={"X-User": "alice"})
            return {"third": third, "carol": carol, "running": running, "done": done, "after": after}

    try:
        out = asyncio.run(scenario())
    finally:
        server.stop()
    third, carol, after = out["third"], out["carol"], out["after"]
    assert isinstance(third, httpx.Response) and third.status_code == 429
    assert "alice" in third.json()["error"] and "2 queries" in third.json()["error"]
    assert int(third.headers["retry-after"]) >= 1
    assert isinstance(carol, httpx.Response) and carol.status_code == 429
    assert "3 queries" in carol.json()["error"] and int(carol.headers["retry-after"]) >= 1
    assert out["running"] == [False, False, False]
    assert [r.status_code for r in out["done"]] == [503, 503, 503]  # type: ignore[union-attr]
    assert isinstance(after, httpx.Response) and after.status_code == 200  # the slots were given back


def test_export_pages_hold_every_triple_exactly_once_while_the_line_writes(tmp_path: Path) -> None:
    store = GenealogyStore(StoreConfig(path=tmp_path / "genealogy", batch_size=200))
    history = PlantHistory(cells=120, roll_length_m=20.0, segment_m=5.0, pitch_m=0.5, seed=9)
    events = list(history.events())
    half = len(events) // 2
    load(store, events[:half])
    from fastapi.testclient import TestClient

    client = TestClient(_app(store, export_max_triples=5000))
    try:
        before = Graph().parse(data=store.export("nt").decode(), format="nt")
        first = client.get("/api/genealogy/export", params={"format": "nt", "limit": 2000})
        assert first.status_code == 200, first.text
        pages = [first.text]
        cursor = first.headers.get("x-next-cursor")
        for event in events[half:]:  # the line goes on writing between pages
            store.add_event(event)
        while cursor:
            r = client.get("/api/genealogy/export", params={"format": "nt", "limit": 2000, "cursor": cursor})
            assert r.status_code == 200, r.text
            pages.append(r.text)
            cursor = r.headers.get("x-next-cursor")
        assert store.flush(timeout=120)
        lines = [line for page in pages for line in page.splitlines() if line]
        assert len(pages) == -(-len(before) // 2000)
        assert len(lines) == len(set(lines)) == len(before)
        assert len(Graph().parse(data="\n".join(lines), format="nt")) == len(before)
        # over the limit: refused, saying what to do
        r = client.get("/api/genealogy/export", params={"format": "nt", "limit": 5001})
        assert r.status_code == 400 and "5000" in r.json()["error"] and "cursor" in r.json()["error"]
        r = client.get("/api/genealogy/export", params={"format": "turtle"})
        assert r.status_code == 413 and "format=nt" in r.json()["error"]
        r = client.get("/api/genealogy/export", params={"format": "nt", "cursor": "not-a-cursor"})
        assert r.status_code == 400 and "cursor" in r.json()["error"]
    finally:
        store.close()


def test_small_graph_exports_whole_in_any_format(small_store: GenealogyStore) -> None:
    from fastapi.testclient import TestClient

    client = TestClient(_app(small_store))
    nt = client.get("/api/genealogy/export", params={"format": "nt"})
    assert nt.status_code == 200 and "x-next-cursor" not in nt.headers
    size = len(Graph().parse(data=nt.text, format="nt"))
    assert size == len(small_store)
    ttl = client.get("/api/genealogy/export")
    assert ttl.status_code == 200 and len(Graph().parse(data=ttl.text, format="turtle")) == size


def test_a_query_thread_past_its_limit_keeps_its_place_until_it_ends(tmp_path: Path) -> None:
    """rdflib evaluates in a thread that cannot be killed: past the limit the caller gets 503 at once, but the thread's
    place stays taken (429 for the next query) until the thread really ends; then it is given back."""
    from fastapi.testclient import TestClient

    store = GenealogyStore(StoreConfig(path=tmp_path / "g", backend="memory"))
    try:
        client = TestClient(_app(store, sparql_timeout_s=0.5, sparql_max_concurrent=1, sparql_max_per_user=1))
        pairs = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f }"  # seconds in rdflib over the vocabulary
        first = client.get("/api/sparql", params={"query": pairs})
        assert first.status_code == 503 and "0.5 s" in first.json()["error"]
        refused = client.get("/api/sparql", params={"query": "ASK { ?s ?p ?o }"})
        assert refused.status_code == 429 and "1 queries" in refused.json()["error"]
        for _ in range(600):  # the abandoned thread ends in a few seconds; its place comes back then
            answer = client.get("/api/sparql", params={"query": "ASK { ?s ?p ?o }"})
            if answer.status_code != 429:
                break
            time.sleep(0.2)
        assert answer.status_code == 200 and answer.json()["boolean"] is True
    finally:
        store.close()


def test_a_query_past_its_memory_cap_fails_alone(small_store: GenealogyStore) -> None:
    """Bound every resource an outsider can push: an ORDER BY over a cross product materialises every row before it
    sorts; under the query process's heap cap it ends that process (503), the next query is answered as usual."""
    hungry = "SELECT * WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i } ORDER BY ?c ?f ?i"
    server = Server(_app(small_store, sparql_timeout_s=60.0, sparql_max_memory_mb=256))
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            refused = client.get("/api/sparql", params={"query": hungry})
            after = client.get("/api/sparql", params={"query": COUNT})
            health = client.get("/health")
    finally:
        server.stop()
    assert refused.status_code == 503, refused.text
    assert "memory" in refused.text, refused.text
    assert after.status_code == 200 and int(after.json()["results"]["bindings"][0]["n"]["value"]) > 0
    assert health.status_code == 200
