"""A synthetic plant for the quality tests: a genealogy store fed with tests/ontology/synthetic.py's trace events and
a real influxd holding the process data those materials were made with (tests/quality/linedata.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from ontology.store import GenealogyStore, StoreConfig
from tests.ontology.synthetic import PlantHistory
from tests.quality.linedata import line_data
from twin.quality.influx import InfluxReader

LOW_ROLL = "CR-C-000001"
LOW_FROM_M, LOW_TO_M = 5.0, 12.0


def low_stretch_loading(roll: str, pos: float) -> float:
    """Cathode mass loading with a low stretch on one roll: the injected cause of the synthetic plant."""
    if roll == LOW_ROLL and LOW_FROM_M <= pos < LOW_TO_M:
        return 13.2 + 0.02 * ((pos * 7.3) % 1.0)
    return (14.31 if "-C-" in roll else 7.43) + 0.05 * ((pos * 7.3) % 1.0 - 0.5)


@dataclass
class Plant:
    history: PlantHistory
    events: list[dict[str, Any]]
    store: GenealogyStore
    influx: InfluxReader
    url: str
    database: str


@pytest.fixture(scope="module")
def plant(influxd: Any) -> Iterator[Plant]:
    history = PlantHistory(cells=40, roll_length_m=20.0, segment_m=5.0, pitch_m=0.5)
    events = list(history.events())
    store = GenealogyStore(StoreConfig())
    for e in events:
        store.add_event(e)
    assert store.flush(timeout=60)
    db = f"q_{uuid.uuid4().hex[:10]}"
    influx = InfluxReader(influxd.url, db)
    influx.query([f'CREATE DATABASE "{db}"'])
    influx.write(("\n".join(line_data(events, mass_loading=low_stretch_loading)) + "\n").encode())
    yield Plant(history, events, store, influx, influxd.url, db)
    influx.close()
    store.close()
