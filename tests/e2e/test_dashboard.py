"""The dashboard in headless Chromium against the running twin (``python -m twin run``) and the real simulator:
it loads, values update live, an operator approves a recommendation and the setpoint arrives at the line over
OPC UA, a viewer cannot approve, the genealogy explorer answers, and a screenshot is saved."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from asyncua import Client, ua

from deploy.localstack import REPO, Twin, free_port
from tests.twin.simstack import sim_args, start_time_in_past

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOT_DIR = REPO / "var" / "e2e"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _token(cfg: Path, role: str, name: str) -> str:
    out = subprocess.run([sys.executable, "-m", "twin", "token", "create", "--role", role, "--name", name,
                          "--config", str(cfg)], cwd=REPO, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _api(url: str, token: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


async def _read_setpoint(endpoint: str, path: str) -> float:
    async with Client(endpoint) as c:
        ns = await c.get_namespace_index("urn:pilotline:simulator")
        return float(await c.get_node(ua.NodeId(path, ns)).read_value())


@pytest.fixture
def stack(tmp_path: Path, influxd: Any, mosquitto: Any, simulator_factory: Any) -> Any:
    from simulator.users import make_hash

    users = tmp_path / "users.yaml"
    users.write_text(yaml.safe_dump({"users": {"operator": {"password_hash": make_hash("e2e-operator", 1000),
                                                            "role": "operator"}}}))
    start = start_time_in_past(12)
    sim = simulator_factory(args=[*sim_args(60, 5, start, mqtt_url=mosquitto.url),
                                  "--users", str(users)], start=False)
    port = free_port()
    cfg = {
        "line": {"id": "PL1"},
        "influx": {"url": influxd.url, "database": (db := f"e2e_{int(time.time())}")},
        "spool": {"dir": str(tmp_path / "spool"), "fsync": "never"},
        "quarantine": {"dir": str(tmp_path / "q")},
        "opcua": {"endpoint": sim.endpoint, "auth_method": "username", "username": "operator",
                  "certificate": str(tmp_path / "pki/c.der"), "private_key": str(tmp_path / "pki/k.pem")},
        "mqtt": {"url": mosquitto.url, "client_id": f"twin-e2e-{port}"},
        "service": {"http": {"port": port, "sse_interval_s": 0.5},
                    "auth": {"token_file": str(tmp_path / "tokens.json")},
                    "genealogy": {"store_path": str(tmp_path / "genealogy")},
                    "control": {"interval_s": 1.0, "recommendation_ttl_s": 120}},
    }
    cfg_path = tmp_path / "twin.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    (tmp_path / "opcua-password").write_text("e2e-operator\n")
    tokens = {"operator": _token(cfg_path, "operator", "olga"), "viewer": _token(cfg_path, "viewer", "victor")}
    twin = Twin(tmp_path / "twin", port, ["--config", str(cfg_path), "--opcua-password-file",
                                          str(tmp_path / "opcua-password")])
    twin.start()
    try:
        # the twin's MQTT session exists before the line starts, so it hears every trace event from seq 1
        deadline = time.monotonic() + 20
        while 'twin_connector_up{connector="mqtt"} 1.0' not in _metrics(twin.url):
            assert time.monotonic() < deadline, "the twin never connected to mosquitto"
            time.sleep(0.2)
        time.sleep(0.5)
        sim.start()
        yield {"url": twin.url, "sim": sim, "tokens": tokens, "twin": twin, "start": start, "db": db,
               "influx": influxd.url}
    finally:
        twin.stop()


def _metrics(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:  # noqa: S310 - loopback
        return r.read().decode()


def test_dashboard_live_approve_viewer_genealogy(stack: Any) -> None:
    from playwright.sync_api import sync_playwright

    url, tokens, sim = stack["url"], stack["tokens"], stack["sim"]
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1300})
            page.goto(url + "/")
            page.fill("#token", tokens["operator"])
            page.click("#login button")
            page.wait_for_function("document.querySelector('#who').textContent.includes('operator')", timeout=15_000)
            page.wait_for_function("document.querySelector('#conn').textContent === 'live'", timeout=20_000)
            sig = '[data-signal="Drying/Cathode/MassLoading"] .v'
            page.wait_for_selector(sig, timeout=60_000)
            first = page.inner_text(sig)
            page.wait_for_function(f"document.querySelector('{sig}') && "
                                   f"document.querySelector('{sig}').textContent !== {json.dumps(first)}",
                                   timeout=30_000)  # values update live

            # the drift pulls mass loading off target: a recommendation appears with its expected effect; the
            # operator approves it (a newer proposal may supersede one between reading and clicking: try again)
            vpage = browser.new_page()
            vpage.goto(url + "/")
            vpage.fill("#token", tokens["viewer"])
            vpage.click("#login button")
            vpage.wait_for_function("document.querySelector('#who').textContent.includes('viewer')")
            applied = None
            for _attempt in range(8):
                btn = page.wait_for_selector("button.approve:not([disabled])", timeout=120_000)
                rec_id = int(btn.get_attribute("data-id") or 0)
                status, rec = _api(f"{url}/api/recommendations?limit=50", tokens["viewer"])
                item = next((r for r in rec["items"] if r["id"] == rec_id), None)
                if item is None or item["state"] != "proposed":
                    continue
                proposal = item["proposal"]
                assert proposal["expected"] and 0 <= proposal["confidence"] <= 1
                # the live recommendation of each loop is shown beside the queue, as the API reports it
                live = rec["live"]
                assert live and all(v["kind"] for v in live.values())
                page.wait_for_function("document.querySelector('#refusals').textContent.includes(' now: ') || "
                                       "/: [a-z ]+$/.test(document.querySelector('#refusals').textContent)")
                # a viewer sees the same queue, but the button is disabled and the API answers 403
                vpage.wait_for_selector(f"button.approve[data-id='{rec_id}'][disabled]", timeout=20_000)
                assert _api(f"{url}/api/recommendations/{rec_id}/approve", tokens["viewer"], "POST", {})[0] == 403
                page.screenshot(path=str(SCREENSHOT_DIR / "dashboard-before-approve.png"), full_page=True)
                page.click(f"button.approve[data-id='{rec_id}']")
                try:
                    page.wait_for_selector(f"tr[data-rec='{rec_id}'] td.state-applied", timeout=15_000)
                except Exception:  # noqa: BLE001 - superseded before the click landed, or the write was refused
                    continue  # (e.g. the OPC UA session dropped on an overloaded box): the toast says which
                applied = (rec_id, proposal)
                break
            assert applied is not None, "no recommendation could be approved through the dashboard"
            rec_id, proposal = applied
            for sp in proposal["setpoints"]:
                if sp["after"] == sp["before"]:
                    continue
                node_id = sp["node"].replace("/", ".")
                with ThreadPoolExecutor(1) as pool:  # playwright's sync API owns this thread's event loop
                    value = pool.submit(asyncio.run, _read_setpoint(sim.endpoint, node_id)).result(30)
                assert value == pytest.approx(sp["after"], abs=1e-6), (node_id, value, sp)
            status, audit = _api(f"{url}/api/audit?recommendation_id={rec_id}", tokens["viewer"])
            assert {"approved", "write"} <= {a["action"] for a in audit}
            assert all(a["who"] == "olga" for a in audit if a["action"] in ("approved", "write"))

            # genealogy explorer: a roll segment the twin predicted is in the graph, with the prediction and the
            # model version that made it
            status, preds = _api(f"{url}/api/predictions?limit=50", tokens["viewer"])
            seg_pred = next(p for p in reversed(preds) if p["subject_type"] == "RollSegment")
            seg, version = seg_pred["subject"], seg_pred["model_version"].split("@")[-1]
            deadline = time.monotonic() + 20
            while _api(f"{url}/api/genealogy/{seg}", tokens["viewer"])[0] != 200:
                assert time.monotonic() < deadline, f"{seg} never reached the genealogy graph"
                time.sleep(0.5)
            page.fill("#cell-id", seg)
            page.click("#genealogy-form button")
            page.wait_for_function(f"document.querySelector('#genealogy').textContent.includes({json.dumps(version)})",
                                   timeout=20_000)
            assert _api(f"{url}/api/genealogy/NOT-AN-ID-1", tokens["viewer"])[0] == 404
            assert _api(f"{url}/api/genealogy/bad%20id", tokens["viewer"])[0] == 422
            page.wait_for_timeout(1500)
            shot = SCREENSHOT_DIR / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 20_000
        finally:
            browser.close()
    # history from InfluxDB through the API (bound-parameter InfluxQL), and the predictions stored there too
    start = stack["start"]
    status, hist = _api(f"{url}/api/history?signal=Drying/Cathode/MassLoading&start={start}&limit=500",
                        tokens["viewer"])
    assert status == 200 and len(hist["points"]) > 10, hist
    assert all(p["quality"] in ("good", "bad", "uncertain") for p in hist["points"])
    from twin.store.query import InfluxQuery

    async def stored_predictions() -> int:
        async with InfluxQuery(stack["influx"], stack["db"]) as q:
            rows = await q.influxql('SELECT count("value") FROM "twin_predictions" WHERE "kind" = $k',
                                    {"k": "structure"})
        return int(rows[0]["count"]) if rows else 0

    assert asyncio.run(stored_predictions()) > 0
    # metrics of the running service
    text = _metrics(url)
    assert 'twin_connector_up{connector="opcua"} 1.0' in text
    assert 'twin_recommendations{state="applied"}' in text
    with urllib.request.urlopen(f"{url}/ready", timeout=5) as r:  # noqa: S310
        assert json.loads(r.read())["ready"] is True
    shutil.copy(SCREENSHOT_DIR / "dashboard.png", SCREENSHOT_DIR / "dashboard-last.png")
