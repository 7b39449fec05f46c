"""Online calibration in the running twin: the simulator over OPC UA (a plant 5-15 % off the literature parameters,
accelerated simulated time) and the twin service in-process with its API. The estimates move towards the plant's,
a version is accepted on the residual test's alarm, the API serves estimates and history, predictions are made with
the calibrated version, and an engineer's accept through the API is audited."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.twin.simstack import sim_args, start_time_in_past, twin_config, wait_for
from twin.auth import Role
from twin.service import TwinService

from .linerun import MISMATCH

pytestmark = [pytest.mark.timeout(420)]


def _scenario(tmp: Path) -> Path:
    path = tmp / "mismatch.yaml"
    path.write_text(yaml.safe_dump({"name": "mismatch", "line": {"roll_length_m": 5.0, "segment_length_m": 5.0},
                                    "plant": MISMATCH}))
    return path


async def test_estimates_move_and_are_served(tmp_path: Path, influxd: Any, simulator_factory: Any) -> None:
    sim = simulator_factory(args=sim_args(300, 5, start_time_in_past(), scenario=_scenario(tmp_path), tick=2.0))
    cfg = twin_config(tmp_path / "twin", influxd, sim, extra={
        "PILOTLINE__SERVICE__CALIBRATION__STATE_FILE": str(tmp_path / "twin" / "calibration.json")})
    svc = TwinService(cfg, mqtt=False)
    await svc.start()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://twin")
    try:
        cal = svc.calibration
        await wait_for(lambda: cal.get("cathode").observations >= 6 and cal.get("cathode").accepted >= 1,
                       300, "six cathode roll records and an accepted version")
        viewer = {"Authorization": f"Bearer {svc.tokens.create(Role.viewer, 'dashboard')}"}
        r = await client.get("/api/calibration", headers=viewer)
        assert r.status_code == 200, r.text
        body = r.json()
        cathode = next(c for c in body["calibrations"] if c["electrode"] == "cathode")
        assert cathode["key"] == f"{svc.line}/{cfg.service.control.product}/cathode"
        assert cathode["accepted"]["number"] >= 1
        # moved from the literature (1.0, 0.70) towards the plant's (0.93, 0.66)
        eta = cathode["candidate"]["values"]["pump_delivery_efficiency"]
        x = cathode["candidate"]["values"]["solid_content"]
        assert abs(eta - 0.93) < abs(1.0 - 0.93) / 3, eta
        assert abs(x - 0.66) < abs(0.70 - 0.66) / 2, x
        hist = (await client.get("/api/calibration/history", params={"electrode": "cathode"},
                                 headers=viewer)).json()["versions"]
        assert hist[0]["number"] == 0 and hist[0]["who"] == "literature" and any(v["accepted"] for v in hist[1:])
        # segment predictions made after the acceptance carry the calibration's version
        await wait_for(lambda: any(str(p.get("model_version", "")).startswith("calibration:")
                                   for p in svc.ctx.predictions), 120, "a prediction with the calibrated model")
        # an engineer accepts the current candidate through the API: audited with who and why
        token = svc.tokens.create(Role.engineer, "process-engineer")
        refused = await client.post("/api/calibration/cathode/accept", json={"note": "x"}, headers=viewer)
        assert refused.status_code == 403
        r = await client.post("/api/calibration/cathode/accept", json={"note": "lab slurry density agrees"},
                              headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        entry = next(e for e in svc.audit.list() if e.action == "calibration" and e.who == "process-engineer")
        assert entry.why == "lab slurry density agrees" and entry.after == r.json()["number"]
        missing = await client.post("/api/calibration/separator/accept", json={},
                                    headers={"Authorization": f"Bearer {token}"})
        assert missing.status_code == 404 and "no calibration" in missing.json()["detail"]
    finally:
        await client.aclose()
        await svc.stop()
        await asyncio.sleep(0)
