"""Fixtures that start real servers (influxd, mosquitto, victoria-metrics, the simulator) on free ports.

Every server runs in a temporary directory and is stopped afterwards whatever the test did; fault tests take their
own instance from a factory so that killing it harms nobody else.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("PYBAMM_DISABLE_TELEMETRY", "true")

from deploy.localstack import (  # noqa: E402
    Influxd,
    ManagedProcess,
    Mosquitto,
    Simulator,
    VictoriaMetrics,
)

SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (ontologies, seeds); tests that need it skip cleanly when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is not present (it holds the ontologies and seeds beside the repo)")
    return SHARED


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influxd]:
    """One InfluxDB 1.x for the session: use a unique database per test."""
    server = Influxd(tmp_path_factory.mktemp("influxd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One Mosquitto for the session: use unique topics / client ids per test."""
    server = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    server.start()
    yield server
    server.stop()


class _Factory:
    """Starts servers on demand and stops all of them at teardown."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.started: list[ManagedProcess] = []

    def track(self, server: ManagedProcess) -> ManagedProcess:
        self.started.append(server)
        return server

    def close(self) -> None:
        for s in reversed(self.started):
            try:
                s.stop()
            except Exception:  # noqa: BLE001 - teardown must reach every server
                s.kill()


@pytest.fixture
def influxd_factory(tmp_path: Path) -> Iterator[Callable[..., Influxd]]:
    f = _Factory(tmp_path)

    def make(**kw: Any) -> Influxd:
        server = Influxd(tmp_path / f"influxd{len(f.started)}", **kw)
        f.track(server)
        return server.start()  # type: ignore[return-value]

    yield make
    f.close()


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    f = _Factory(tmp_path)

    def make(**kw: Any) -> Mosquitto:
        server = Mosquitto(tmp_path / f"mosquitto{len(f.started)}", **kw)
        f.track(server)
        return server.start()  # type: ignore[return-value]

    yield make
    f.close()


@pytest.fixture
def victoria_metrics(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    server = VictoriaMetrics(tmp_path / "vm")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def simulator_factory(tmp_path: Path) -> Iterator[Callable[..., Simulator]]:
    """``simulator_factory(args=[...], port=None)`` starts ``python -m simulator`` and waits for its OPC UA port."""
    f = _Factory(tmp_path)

    def make(args: list[str] | None = None, port: int | None = None, start: bool = True) -> Simulator:
        sim = Simulator(tmp_path / f"simulator{len(f.started)}", port, args or ["--security", "none"])
        f.track(sim)
        return sim.start() if start else sim  # type: ignore[return-value]

    yield make
    f.close()
