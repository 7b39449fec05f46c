"""A quick training run shared by the models tests (32 DFN points: the CI-sized pipeline end to end)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from models import train


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("quick_artifacts")
    cards = train.train(train.QUICK, out, log=lambda _msg: None)
    return out, cards


@pytest.fixture(scope="session")
def cell_model() -> Any:
    from models.cell import CellModel

    return CellModel()
