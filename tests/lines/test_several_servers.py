"""Several OPC UA servers on one line, each supervised on its own: one that is down (never up, then killed) leaves
the other flowing, raises ``connector_down`` for that one alone, and the alarm clears when it comes back. Real
simulator processes; the second is described as a second source of the same line description."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.localstack import free_port
from tests.twin.simstack import wait_for
from twin.config import SIMULATOR_LINE, load_config
from twin.service import TwinService

pytestmark = [pytest.mark.slow, pytest.mark.timeout(200)]


async def test_one_server_down_leaves_the_others_flowing(tmp_path: Path, influxd: Any,
                                                         simulator_factory: Any) -> None:
    first = simulator_factory(args=["--security", "none", "--speed", "20"])
    second_port = free_port()
    desc = yaml.safe_load(SIMULATOR_LINE.read_text())
    main = desc["sources"]["opcua"][0]
    main.update(endpoint=first.endpoint, auth_method="anonymous", username="")
    # the same simulator's dry room as a second server of the line (another endpoint, its own connector)
    desc["sources"]["opcua"].append({
        "name": "dryroom", "endpoint": f"opc.tcp://127.0.0.1:{second_port}", "namespace_uri": "urn:pilotline:simulator",
        "discovery": {"browse_path": "PilotLine/DryRoom"}, "unmapped": "ignore", "trace_events": False,
        "reconnect_max_s": 1.0,
        "signals": [{"match": "PilotLine/DryRoom/DewPoint", "station": "DryRoom", "signal": "DewPoint2"}]})
    (tmp_path / "line.yaml").write_text(yaml.safe_dump(desc, sort_keys=False))
    cfg = load_config(None, {
        "PILOTLINE__LINE__DESCRIPTION": str(tmp_path / "line.yaml"), "PILOTLINE__INFLUX__URL": influxd.url,
        "PILOTLINE__INFLUX__DATABASE": f"t_{uuid.uuid4().hex[:10]}", "PILOTLINE__SPOOL__DIR": str(tmp_path / "s"),
        "PILOTLINE__QUARANTINE__DIR": str(tmp_path / "q"), "PILOTLINE__MQTT__ENABLED": "false",
        "PILOTLINE__SERVICE__AUTH__TOKEN_FILE": str(tmp_path / "tokens.json"),
        "PILOTLINE__SERVICE__HTTP__PORT": "0", "PILOTLINE__SERVICE__GENEALOGY__ENABLED": "false",
        "PILOTLINE__VALIDATION__MAX_FUTURE_S": "31536000"})
    svc = TwinService(cfg, mqtt=False)
    await svc.start()
    try:
        await wait_for(lambda: svc._connector_states().get("opcua") is True, 60, "the first server connected")
        await wait_for(lambda: svc.alarms.is_active("connector_down", "opcua:dryroom"), 30, "alarm for the one down")
        assert not svc.alarms.is_active("connector_down", "opcua")
        before = svc.live.samples_total
        await wait_for(lambda: svc.live.samples_total > before + 50, 30, "the first server's samples flowing")
        second = simulator_factory(args=["--security", "none", "--speed", "20"], port=second_port)
        await wait_for(lambda: svc._connector_states().get("opcua:dryroom") is True, 60, "the second reconnects")
        await wait_for(lambda: not svc.alarms.is_active("connector_down", "opcua:dryroom"), 20, "its alarm clears")
        await wait_for(lambda: svc.live.value("DryRoom/DewPoint2") is not None, 30, "the second's samples")
        second.kill()
        await wait_for(lambda: svc.alarms.is_active("connector_down", "opcua:dryroom"), 30, "alarm again")
        before = svc.live.samples_total
        await wait_for(lambda: svc.live.samples_total > before + 50, 30, "the first still flowing")
        assert svc._connector_states().get("opcua") is True
    finally:
        await svc.stop()
