"""Fixtures for the genealogy tests: a synthetic plant history and stores loaded with it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ontology.store import GenealogyStore, StoreConfig
from tests.ontology.synthetic import PlantHistory


def load(store: GenealogyStore, events: list[dict]) -> GenealogyStore:
    for event in events:
        store.add_event(event)
    assert store.flush(timeout=120), "the genealogy worker did not drain its queue"
    return store


@pytest.fixture(scope="module")
def history() -> PlantHistory:
    h = PlantHistory(cells=100, roll_length_m=20.0, segment_m=5.0, pitch_m=0.5, seed=11)
    h.event_list = list(h.events())  # type: ignore[attr-defined]
    return h


@pytest.fixture(scope="module")
def store(history: PlantHistory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GenealogyStore]:
    s = GenealogyStore(StoreConfig(path=tmp_path_factory.mktemp("genealogy")))
    load(s, history.event_list)  # type: ignore[attr-defined]
    yield s
    s.close()
