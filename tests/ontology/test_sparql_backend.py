"""The `sparql` backend against a real SPARQL 1.1 server: Oxigraph's own HTTP server (the `oxigraph` PyPI wheel ships
the server binary), started as a process, killed with SIGKILL and restarted.

It must answer exactly what the embedded Oxigraph store answers, and a server that is down must only delay writes.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.localstack import LOOPBACK, ManagedProcess
from ontology.store import GenealogyStore, StoreConfig
from tests.ontology.conftest import load
from tests.ontology.synthetic import PlantHistory


def oxigraph_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "oxigraph"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    return shutil.which("oxigraph")


class OxigraphServer(ManagedProcess):
    """`oxigraph serve` on loopback with a persistent location (pyproject pins the `oxigraph` wheel)."""

    name = "oxigraph-server"

    @property
    def query_url(self) -> str:
        return f"http://{self.host}:{self.port}/query"

    @property
    def update_url(self) -> str:
        return f"http://{self.host}:{self.port}/update"

    def command(self) -> list[str]:
        binary = oxigraph_binary()
        assert binary is not None
        return [binary, "serve", "--location", str(self.data_dir / "db"), "--bind", f"{LOOPBACK}:{self.port}"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[OxigraphServer]:
    if oxigraph_binary() is None:
        pytest.skip("the oxigraph server binary is not installed (pip install oxigraph==0.5.13, see pyproject)")
    s = OxigraphServer(tmp_path / "server")
    s.start()
    try:
        yield s
    finally:
        s.stop()


def remote(server: OxigraphServer) -> GenealogyStore:
    return GenealogyStore(StoreConfig(backend="sparql", query_endpoint=server.query_url,
                                      update_endpoint=server.update_url, batch_size=200))


def test_remote_endpoint_answers_like_the_embedded_store(server: OxigraphServer, tmp_path: Path) -> None:
    history = PlantHistory(cells=8, roll_length_m=5.0, segment_m=2.5, seed=21)
    events = list(history.events())
    with remote(server) as far, GenealogyStore(StoreConfig(path=tmp_path / "near")) as near:
        load(far, events)
        load(near, events)
        assert len(far) == len(near) > 1000
        for cell in ("CELL-000001", "CELL-000008"):
            g = far.genealogy(cell)
            assert g == near.genealogy(cell)
            assert {e["id"] for e in g["entities"]} == history.truth.upstream[cell]
        assert far.downstream("CR-C-000001", 0.5, 2.0) == near.downstream("CR-C-000001", 0.5, 2.0)
        assert far.downstream("SB-A-000001") == near.downstream("SB-A-000001")


def test_writes_wait_for_a_killed_server_and_land_after_its_restart(server: OxigraphServer) -> None:
    history = PlantHistory(cells=6, roll_length_m=5.0, segment_m=2.5, seed=22)
    events = list(history.events())
    cut = next(i for i, e in enumerate(events) if e["id"] == "CELL-000004")
    with remote(server) as far:
        load(far, events[:cut])
        server.kill()  # SIGKILL: the endpoint is gone mid-stream
        for event in events[cut:]:
            far.add_event(event)  # never blocks, never raises
        deadline = time.monotonic() + 20
        while far.counters.write_errors == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert far.counters.write_errors > 0 and not far.flush(timeout=0.5)
        server.start()  # same location and port: what was written before the kill is still there
        assert far.flush(timeout=60)
        assert far.status()["quarantined_now"] == 0
        for cell in ("CELL-000003", "CELL-000006"):
            assert {e["id"] for e in far.genealogy(cell)["entities"]} == history.truth.upstream[cell]
