"""A Sparkplug B edge node described in a line description reaches the database in the twin's names: the description's
``sources.sparkplug`` -> the pipeline's Sparkplug source -> validation -> spool -> a real influxd. The edge node is a
separate process written with the library (tests/ingest/sparkplug_edge.py), through a real mosquitto."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ingest.conftest import influx_rows, until
from tests.ingest.test_sparkplug import RULES, Edge
from twin.config import load_config
from twin.ingest import IngestPipeline

pytestmark = pytest.mark.timeout(120)


async def test_a_described_sparkplug_group_is_stored_in_the_twins_names(tmp_path: Path, influxd: Any,
                                                                         mosquitto: Any) -> None:
    group = f"G{uuid.uuid4().hex[:6]}"
    desc = {"schema": "pilotline.line.v1", "line": {"id": "SPB1"},
            "sources": {"sparkplug": [{"mqtt": {"url": mosquitto.url}, "group_id": group, "signals": RULES}],
                        "mqtt": {"url": mosquitto.url, "client_id": f"twin-{group}", "topics": []}}}
    (tmp_path / "line.yaml").write_text(yaml.safe_dump(desc))
    database = f"t_{uuid.uuid4().hex[:10]}"
    cfg = load_config(None, {"PILOTLINE__LINE__DESCRIPTION": str(tmp_path / "line.yaml"),
                             "PILOTLINE__INFLUX__URL": influxd.url, "PILOTLINE__INFLUX__DATABASE": database,
                             "PILOTLINE__INFLUX__FLUSH_INTERVAL_S": "0.2", "PILOTLINE__SPOOL__DIR": str(tmp_path / "s"),
                             "PILOTLINE__QUARANTINE__DIR": str(tmp_path / "q")})
    assert not cfg.opcua.enabled and [s.group_id for s in cfg.sparkplug] == [group]
    pipeline = IngestPipeline(cfg)
    await pipeline.start()
    edge = Edge(mosquitto.url.removeprefix("mqtt://"), group, tmp_path / "edge.json")
    try:
        await until(lambda: pipeline.status().connectors.get(f"sparkplug:{group}") is True, 30, "host connected")

        def stored() -> list[dict[str, Any]]:
            try:
                return influx_rows(influxd.url, database, 'SELECT * FROM "Coating" WHERE "signal"=\'WetFilmThickness\'')
            except AssertionError:  # no database before the first write
                return []

        await until(lambda: len(stored()) >= 5, 60, "Sparkplug samples in InfluxDB")
        rows = stored()
        assert all(r["line"] == "SPB1" and r["lane"] == "Cathode" and r["unit"] == "um" for r in rows)
    finally:
        edge.kill()
        await pipeline.stop(drain_timeout_s=1)
