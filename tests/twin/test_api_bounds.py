"""What an outsider can push at the twin's HTTP API is bounded: SPARQL per token and in total (429), live streams
(503), request bodies (413); and worst-case SPARQL leaves /health answering. The app runs under uvicorn on a real
port (tests/asgi_server.py) with a real persistent genealogy store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from ontology.store import GenealogyStore, StoreConfig
from tests.asgi_server import Server
from tests.ontology.synthetic import PlantHistory
from tests.twin.test_api import Env
from twin.api import create_app
from twin.auth import Role

WORST = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"  # a cross product: runs to its limit


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Env, Server]]:
    env = Env(tmp_path)
    store = GenealogyStore(StoreConfig(path=tmp_path / "genealogy"))
    for event in PlantHistory(cells=3, roll_length_m=5.0, segment_m=5.0).events():
        store.add_event(event)
    assert store.flush(timeout=60)
    settings = env.ctx.settings
    settings.genealogy.sparql_timeout_s = 8.0
    settings.genealogy.sparql_max_concurrent = 2
    settings.genealogy.sparql_max_per_user = 1
    settings.http.sse_max_clients = 2
    settings.http.sse_interval_s = 0.1
    settings.http.max_body_bytes = 4096
    env.ctx.genealogy = store
    server = Server(create_app(env.ctx))
    yield env, server
    server.stop()
    store.close()


def test_worst_case_sparql_is_capped_per_token_and_in_total_and_health_answers(served: tuple[Env, Server]) -> None:
    env, server = served
    alice = {"Authorization": f"Bearer {env.tokens.create(Role.viewer, 'alice')}"}
    bob = {"Authorization": f"Bearer {env.tokens.create(Role.viewer, 'bob')}"}
    carol = {"Authorization": f"Bearer {env.tokens.create(Role.viewer, 'carol')}"}

    async def scenario() -> dict[str, object]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            def worst(headers: dict[str, str]) -> asyncio.Task[httpx.Response]:
                return asyncio.create_task(client.get("/api/sparql", params={"query": WORST}, headers=headers))

            first = worst(alice)
            await asyncio.sleep(0.5)
            again = await client.get("/api/sparql", params={"query": "ASK { ?s ?p ?o }"}, headers=alice)
            second = worst(bob)
            await asyncio.sleep(0.5)
            third = await client.get("/api/sparql", params={"query": "ASK { ?s ?p ?o }"}, headers=carol)
            health = [(await client.get("/health")).status_code for _ in range(5)]
            state = (await client.get("/api/state", headers=carol)).status_code
            running = [first.done(), second.done()]
            ended = await asyncio.gather(first, second)
            later = await client.get("/api/sparql", params={"query": "ASK { ?s ?p ?o }"}, headers=carol)
            return {"again": again, "third": third, "health": health, "state": state, "running": running,
                    "ended": ended, "later": later}

    out = asyncio.run(scenario())
    again, third, later = out["again"], out["third"], out["later"]
    assert isinstance(again, httpx.Response) and again.status_code == 429
    assert "alice already has 1 queries running" in again.json()["error"] and int(again.headers["retry-after"]) >= 1
    assert isinstance(third, httpx.Response) and third.status_code == 429
    assert "at most 2 at once" in third.json()["error"] and int(third.headers["retry-after"]) >= 1
    assert out["health"] == [200] * 5 and out["state"] == 200
    assert out["running"] == [False, False], "the worst-case queries ended before /health and /api/state answered"
    assert [r.status_code for r in out["ended"]] == [503, 503]  # type: ignore[union-attr]
    assert isinstance(later, httpx.Response) and later.status_code == 200 and later.json()["boolean"] is True


def test_live_streams_are_capped(served: tuple[Env, Server]) -> None:
    env, server = served
    viewer = env.h("viewer")

    async def first_event(client: httpx.AsyncClient, stack: list[AsyncIterator[str]]) -> httpx.Response:
        request = client.build_request("GET", "/api/stream", headers=viewer)
        response = await client.send(request, stream=True)
        if response.status_code == 200:
            lines = response.aiter_lines()
            async for line in lines:
                if line.startswith("event: state"):
                    break
            stack.append(lines)
        return response

    async def scenario() -> tuple[list[int], httpx.Response, int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            held: list[AsyncIterator[str]] = []
            opened = [await first_event(client, held), await first_event(client, held)]
            refused = await first_event(client, held)
            await refused.aread()
            await opened[0].aclose()  # a client goes away: its place frees up
            for _ in range(200):
                again = await first_event(client, held)
                if again.status_code == 200:
                    break
                await again.aread()
                await asyncio.sleep(0.05)
            codes = [r.status_code for r in opened]
            for r in (opened[1], again):
                await r.aclose()
            return codes, refused, again.status_code

    codes, refused, again = asyncio.run(scenario())
    assert codes == [200, 200]
    assert refused.status_code == 503 and "at most 2" in refused.json()["detail"] and refused.headers["retry-after"]
    assert again == 200


def test_request_bodies_are_capped(served: tuple[Env, Server]) -> None:
    env, server = served
    operator = {**env.h("operator"), "Content-Type": "application/json"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        big = client.put("/api/mode", content=b'{"mode": "advisory", "why": "' + b"x" * 10_000 + b'"}',
                         headers=operator)
        assert big.status_code == 413 and "4096 bytes" in big.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"mode": "advisory", "why": "'
            for _ in range(20):
                yield b"y" * 1000
            yield b'"}'

        chunked = client.put("/api/mode", content=chunks(), headers=operator)
        assert chunked.status_code == 413
        small = client.put("/api/mode", json={"mode": "advisory", "why": "test"}, headers=env.h("operator"))
        assert small.status_code == 200 and small.json()["mode"] == "advisory"
        sparql = client.post("/api/sparql", content=b"x" * 400_000,
                             headers={**env.h("viewer"), "Content-Type": "application/sparql-query"})
        assert sparql.status_code == 413
