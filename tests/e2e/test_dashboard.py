"""The dashboard in headless Chromium at 1366x768 against the running twin (``python -m twin run``) and the real
simulator (with cross-web gauge tracks): the line is drawn as the process flow of the line description with each
station's state and the formation channels as one grid, values update live, an operator approves a recommendation
and the setpoint arrives at the line over OPC UA, a viewer cannot approve; the trend page shows spec limits and that
setpoint write; the roll map draws a roll's machine-direction x cross-web map with its segments, and a click on a
segment opens its record; the genealogy graph's nodes open their records. A screenshot of every page is saved under
the test's tmp dir (``screenshots/``)."""

from __future__ import annotations

import asyncio
import json
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
                                  "--users", str(users), "--profile-points", "8"], start=False)
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
               "influx": influxd.url, "shots": tmp_path / "screenshots"}
    finally:
        twin.stop()


def _metrics(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:  # noqa: S310 - loopback
        return r.read().decode()


def test_dashboard_live_approve_viewer_genealogy(stack: Any) -> None:
    from playwright.sync_api import sync_playwright

    url, tokens, sim = stack["url"], stack["tokens"], stack["sim"]
    SCREENSHOT_DIR = stack["shots"]  # noqa: N806 - the test's tmp dir
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
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
            deadline = time.monotonic() + 180  # the first roll must be complete (approval can come sooner)
            while not (seg_preds := [p for p in _api(f"{url}/api/predictions?limit=50", tokens["viewer"])[1]
                                     if p["subject_type"] == "RollSegment"]):
                assert time.monotonic() < deadline, "no roll segment was predicted"
                time.sleep(1.0)
            seg_pred = seg_preds[0]  # the newest
            seg, version = seg_pred["subject"], seg_pred["model_version"].split("@")[-1]
            deadline = time.monotonic() + 20
            while _api(f"{url}/api/genealogy/{seg}", tokens["viewer"])[0] != 200:
                assert time.monotonic() < deadline, f"{seg} never reached the genealogy graph"
                time.sleep(0.5)
            _line_overview(page, SCREENSHOT_DIR)
            _trends(page, stack, proposal, SCREENSHOT_DIR)
            roll = _rollmap_and_records(page, SCREENSHOT_DIR)
            # the segment the twin predicted: its genealogy lists the prediction and the model version that made it
            page.goto(f"{url}/#/genealogy/{seg}")
            page.wait_for_function(f"document.querySelector('#genealogy').textContent.includes({json.dumps(version)})",
                                   timeout=20_000)
            # the roll's genealogy as a graph down to the raw-material lots; a node opens its record
            page.goto(f"{url}/#/genealogy/{roll}")
            page.wait_for_selector("#genealogy-graph a.node[data-id^='SB-']", timeout=20_000)
            types = page.eval_on_selector_all("#genealogy-graph a.node title", "ns => ns.map(n => n.textContent)")
            assert {t.split()[0] for t in types} >= {"CoatedRoll", "SlurryBatch", "RawMaterialLot"}, types
            page.screenshot(path=str(SCREENSHOT_DIR / "genealogy.png"))
            batch = page.get_attribute("#genealogy-graph a.node[data-id^='SB-']", "data-id")
            page.click(f"#genealogy-graph a.node[data-id='{batch}']")
            page.wait_for_function(f"location.hash === '#/record/{batch}' && "
                                   "document.querySelector('#record').textContent.includes('cells made from it')",
                                   timeout=20_000)
            page.screenshot(path=str(SCREENSHOT_DIR / "record-batch.png"))
            # a roll named in the URL opens on the gauge that measured it (the first gauge listed is another lane's)
            page.goto(f"{url}/#/rollmap/CR-C-000001")
            page.wait_for_function("document.querySelector('#rm-roll').value === 'CR-C-000001' && "
                                   "document.querySelector('#rm-signal').value.startsWith('Drying/Cathode/') && "
                                   "document.querySelector('#rm-info').textContent.includes('track')", timeout=30_000)
            assert _api(f"{url}/api/genealogy/NOT-AN-ID-1", tokens["viewer"])[0] == 404
            assert _api(f"{url}/api/genealogy/bad%20id", tokens["viewer"])[0] == 422
            # every call the pages made answered, and none took long (the slowest is printed for the record)
            timings = page.evaluate("window.twinTimings")
            assert timings and all(status < 500 for _, _, status in timings), timings
            print("slowest dashboard call:", max(timings, key=lambda t: t[1]))
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
    print("screenshots:", stack["shots"])


def _line_overview(page: Any, shots: Path) -> None:
    """The process flow in the line description's order, each unit with a state, the cycler's channels as a grid,
    and no sensor_missing alarm for a station that says it is idle."""
    page.goto(page.url.split("#")[0] + "#/line")
    page.wait_for_selector("#flow .unit[data-station='Calendering/Cathode']", timeout=20_000)
    desc = yaml.safe_load((REPO / "deploy" / "lines" / "simulator.yaml").read_text())
    expected_steps = list(dict.fromkeys(u["step"] for u in desc["equipment"]["units"]))
    steps = page.eval_on_selector_all("#flow .step", "s => s.map(x => x.dataset.step)")
    assert steps == expected_steps, steps
    stations = page.eval_on_selector_all("#flow .unit", "s => s.map(x => x.dataset.station)")
    assert stations == [u["station"] for u in desc["equipment"]["units"]], stations
    states = page.eval_on_selector_all("#flow .unit", "s => s.map(x => x.dataset.state)")
    assert set(states) <= {"running", "idle", "fault", "no_data"} and "running" in states, states
    live = _page_state(page)
    print("page state keys:", sorted(live), "texts:", len(live.get("texts") or {}))
    channels = sorted(k for k in live["station_states"] if k.startswith("Formation/"))
    assert len(channels) >= 2, channels
    page.wait_for_function(f"document.querySelectorAll('#formation-grid .ch').length === {len(channels)}",
                           timeout=30_000)
    channel_states = page.eval_on_selector_all("#formation-grid .ch", "s => s.map(x => x.className)")
    assert all(c.split()[1] in ("running", "idle", "fault", "no_data") for c in channel_states), channel_states
    idle = page.eval_on_selector_all("#flow .unit[data-state='idle'], #formation-grid .ch.idle",
                                     "s => s.map(x => x.dataset.station || x.dataset.channel)")
    missing = page.eval_on_selector_all("#alarms tr[data-kind='sensor_missing'] td:nth-child(2)",
                                        "s => s.map(x => x.textContent)")
    assert not [m for m in missing if m.rsplit("/", 1)[0] in idle], (missing, idle)
    # usable at 1366x768: the flow fits the width (no page-wide horizontal scroll)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.screenshot(path=str(shots / "line.png"))
    page.screenshot(path=str(shots / "dashboard.png"))


def _page_state(page: Any) -> dict[str, Any]:
    """The live state the page was last sent (the stream's payload)."""
    return page.evaluate("JSON.parse(JSON.stringify(state.last))")  # type: ignore[no-any-return]


def _trends(page: Any, stack: Any, proposal: dict[str, Any], shots: Path) -> None:
    """Mass loading and the written setpoint's actual value from the simulator's start to now: spec band and target
    on the gauge, the approved write marked on the actuator's trend."""
    base = page.url.split("#")[0]
    moved = next(sp for sp in proposal["setpoints"] if sp["after"] != sp["before"])
    cfg = yaml.safe_load((REPO / "deploy" / "lines" / "simulator.yaml").read_text())
    actual = next(m["actual_signal"] for product in cfg["products"].values() for loop in product["loops"].values()
                  for m in loop["manipulated"] if m["setpoint_node"] == moved["node"])
    page.goto(base + "#/trends")
    page.wait_for_selector("#trend-signals option", timeout=20_000)
    page.select_option("#trend-signals", ["Drying/Cathode/MassLoading", actual])
    start_ms = int(iso_ns(stack["start"]) / 1e6)
    page.evaluate("""([a, b]) => {
        const f = (ms) => { const d = new Date(ms); return new Date(d - d.getTimezoneOffset() * 60000)
            .toISOString().slice(0, 19); };
        document.querySelector('#trend-start').value = f(a); document.querySelector('#trend-end').value = f(b); }""",
                  [start_ms, int(time.time() * 1000) + 60_000])
    page.click("#trend-form button[type=submit]")
    try:
        page.wait_for_selector("svg.trend[data-signal='Drying/Cathode/MassLoading'] path.mean", timeout=30_000)
    except Exception as exc:  # noqa: BLE001 - say what the page said
        raise AssertionError(f"trend page: {page.inner_text('#trend-info')!r}, "
                             f"{page.inner_text('#trend-charts')[:300]!r}") from exc
    assert page.query_selector("svg.trend[data-signal='Drying/Cathode/MassLoading'] rect.spec-band")
    page.wait_for_selector(f"svg.trend[data-signal='{actual}'] g.setpoint-mark", state="attached", timeout=20_000)
    marks = page.eval_on_selector_all(f"svg.trend[data-signal='{actual}'] g.setpoint-mark title",
                                      "s => s.map(x => x.textContent)")
    assert any("olga" in m for m in marks), marks
    page.screenshot(path=str(shots / "trends.png"))


def _rollmap_and_records(page: Any, shots: Path) -> str:
    """A complete roll's map from the cross-web tracks with its segments; a click on a segment opens its record.
    Returns the roll."""
    base = page.url.split("#")[0]
    page.goto(base + "#/rollmap")
    deadline = time.monotonic() + 120
    while True:
        page.wait_for_function("document.querySelector('#rm-info').textContent.length > 0", timeout=30_000)
        if page.query_selector("#rm-overlay g.segment") and "cross-web" in page.inner_text("#rm-info"):
            break
        assert time.monotonic() < deadline, page.inner_text("#rm-info")
        page.wait_for_timeout(3000)
        page.evaluate("document.querySelector('#rm-info').textContent = ''; loadRolls()")
    info = page.inner_text("#rm-info")
    assert "8 track(s)" in info, info
    page.screenshot(path=str(shots / "rollmap.png"))
    roll = page.input_value("#rm-roll")
    seg = page.get_attribute("#rm-overlay g.segment", "data-segment")
    page.click(f"#rm-overlay g.segment[data-segment='{seg}'] rect")
    page.wait_for_function(f"location.hash === '#/record/{seg}' && "
                           "document.querySelector('#record').textContent.includes('RollSegment')", timeout=20_000)
    page.screenshot(path=str(shots / "record-segment.png"))
    return roll


def iso_ns(text: str) -> int:
    from connectors.records import iso_to_ns

    return iso_to_ns(text)
