"""Samples that name IDs the genealogy never saw are kept and flagged (issue 10 item 8, unknown cell IDs).

What was wrong: 300 formation samples naming well-formed but unknown cell IDs were stored with no flag at all. Now
the samples are still stored as they came, and the IDs are listed in the genealogy's unresolved-references view
(status()["unresolved_references"], served at /api/genealogy/status), resolved when a trace event creates them,
bounded in memory, and the twin raises the unresolved_reference alarm when many stay unknown.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from connectors.records import Sample
from ontology.store import GenealogyStore, StoreConfig
from tests.ingest.conftest import influx_rows
from tests.ontology.conftest import load
from tests.ontology.synthetic import PlantHistory
from twin.config import load_config
from twin.service import TwinService


def test_unknown_ids_are_listed_bounded_and_resolved_on_creation(tmp_path: Path) -> None:
    events = list(PlantHistory(cells=2, roll_length_m=5.0, segment_m=5.0, seed=3).events())
    cell2 = [e for e in events if e["id"] in ("CELL-000002", "FR-000002")]
    with GenealogyStore(StoreConfig(path=tmp_path / "g", unresolved_max_ids=5, unresolved_grace_s=0.0)) as s:
        load(s, [e for e in events if e not in cell2])
        assert s.note_reference("PL1", "CELL-000001", "cell_id", "Formation/CH-01/Voltage")
        assert not s.note_reference("PL1", "CELL-000002", "cell_id", "Formation/CH-02/Voltage")
        for n in range(10):  # more unknown IDs than the view holds: counted, not listed
            s.note_reference("PL1", f"CELL-{900000 + n}", "cell_id", "Formation/CH-03/Voltage")
        view = s.status()["unresolved_references"]
        assert view["ids"] == 5 and view["samples"] == 11 and view["dropped_samples"] == 6
        assert view["oldest"][0]["id"] == "CELL-000002" and view["oldest"][0]["sources"] == ["Formation/CH-02/Voltage"]
        assert s.unresolved_over_grace() == 5
        load(s, cell2)  # the cell's trace event arrives after its first samples: it leaves the view
        view = s.status()["unresolved_references"]
        assert view["ids"] == 4 and view["resolved"] == 1
        assert "CELL-000002" not in {r["id"] for r in view["oldest"]}


def formation_samples(t0: int, cells: list[str]) -> list[Sample]:
    return [Sample(t0 + i * 1_000_000, "PL1", "Formation/CH-01", "Voltage", 3.7, "V",
                   trace={"cell_id": cell, "channel": "CH-01"}) for i, cell in enumerate(cells)]


def test_the_twin_stores_samples_naming_unknown_cells_and_flags_them(tmp_path: Path, influxd: Any) -> None:
    db = f"unresolved_{uuid.uuid4().hex[:8]}"
    cfg = load_config(None, {
        "PILOTLINE__INFLUX__URL": influxd.url, "PILOTLINE__INFLUX__DATABASE": db,
        "PILOTLINE__INFLUX__FLUSH_INTERVAL_S": "0.1",
        "PILOTLINE__SPOOL__DIR": str(tmp_path / "spool"), "PILOTLINE__QUARANTINE__DIR": str(tmp_path / "quarantine"),
        "PILOTLINE__VALIDATION__MAX_FUTURE_S": str(10 * 365 * 86400.0),
        "PILOTLINE__SERVICE__AUTH__TOKEN_FILE": str(tmp_path / "tokens.json"),
        "PILOTLINE__SERVICE__AUTH__READ_REQUIRES_TOKEN": "false",
        "PILOTLINE__SERVICE__GENEALOGY__STORE_PATH": str(tmp_path / "genealogy"),
        "PILOTLINE__SERVICE__GENEALOGY__UNRESOLVED_GRACE_S": "0",
        "PILOTLINE__SERVICE__GENEALOGY__UNRESOLVED_ALARM_IDS": "100",
    })
    events = list(PlantHistory(cells=2, roll_length_m=5.0, segment_m=5.0, seed=3).events())
    unknown = [f"CELL-{500000 + n:06d}" for n in range(300)]
    t0 = time.time_ns() - 10**12

    async def go() -> None:
        svc = TwinService(cfg, opcua=False, mqtt=False)
        await svc.start()
        try:
            load(svc.genealogy, events)
            svc.pipeline.submit(formation_samples(t0, unknown + ["CELL-000001"] * 5))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not svc.alarms.is_active("unresolved_reference", "PL1"):
                await asyncio.sleep(0.1)
            assert svc.alarms.is_active("unresolved_reference", "PL1")
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://twin") as c:
                view = (await c.get("/api/genealogy/status")).json()["unresolved_references"]
            assert view["ids"] == 300 and view["samples"] == 300  # the five samples of the known cell are fine
            assert {r["id"] for r in view["oldest"]} <= set(unknown)
            while time.monotonic() < deadline and svc.pipeline.spool.depth_lines:
                await asyncio.sleep(0.1)
        finally:
            await svc.stop()

    asyncio.run(go())
    rows = influx_rows(influxd.url, db, 'SELECT * FROM "Formation"')
    assert len(rows) == 305  # every sample stored as it came, none dropped for its unknown ID
