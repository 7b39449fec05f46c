"""The dashboard's quality pages in headless Chromium (1366x768) on the synthetic plant of tests/quality (a genealogy
store and a real influxd with the process data, one stretch of one cathode roll coated low): the cell record page
shows the mass-loading statistics over the cell's stretch as the API computes them, the root-cause page ranks the
low stretch's gauge first with its supporting plots; screenshots under the test's tmp dir."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from deploy.localstack import free_port
from tests.e2e.test_dashboard import ARGS, CHROMIUM
from tests.quality.conftest import LOW_FROM_M, LOW_ROLL, LOW_TO_M, Plant, plant  # noqa: F401 - fixture
from tests.twin.test_api import Env
from twin.api import create_app

pytestmark = [pytest.mark.timeout(240)]


@pytest.fixture
def served(plant: Plant, tmp_path: Path) -> Iterator[tuple[str, Env]]:  # noqa: F811 - the imported fixture
    env = Env(tmp_path)
    env.ctx.genealogy = plant.store
    settings = env.ctx.settings.model_dump(mode="json")
    env.ctx.config_dump = lambda: {"influx": {"url": plant.url, "database": plant.database, "version": 1},
                                   "service": settings}
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(env.ctx), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the app did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", env
    finally:
        server.should_exit = True
        thread.join(10)


def test_cell_record_and_root_cause_pages(served: tuple[str, Env], plant: Plant, tmp_path: Path) -> None:  # noqa: F811
    from playwright.sync_api import sync_playwright

    url, env = served
    shots = tmp_path / "screenshots"
    shots.mkdir()
    truth = plant.history.truth
    low = sorted(c for c, (sheet, _) in truth.cell_sheets.items()
                 if LOW_FROM_M <= truth.sheet_stretch[sheet][2] < LOW_TO_M)
    cell = low[0]
    expected = env.client.get(f"/api/cells/{cell}/record", headers=env.h("viewer")).json()
    roll = next(m for m in expected["materials"] if m["id"] == LOW_ROLL)
    mean = roll["signals"]["Drying/Cathode/MassLoading"]["mean"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto(url + "/")
            page.evaluate("t => localStorage.setItem('twin.token', t)", env.tok["viewer"])
            page.goto("about:blank")
            page.goto(f"{url}/#/record/{cell}")
            page.wait_for_selector(".rec-section[data-section='material'] table.stats", timeout=30_000)
            text = page.inner_text("#record")
            assert f"CoatedRoll {LOW_ROLL}" in text and "predicted vs measured" in text
            # the record page shows the stretch's statistics as the API computed them (4 significant digits)
            row = page.locator(".rec-section[data-section='material']", has_text=f"CoatedRoll {LOW_ROLL}") \
                .locator("tr", has_text="Drying/Cathode/MassLoading").first
            assert row.locator("td").nth(1).inner_text() == f"{float(f'{mean:.4g}'):g}"
            # usable at 1366x768: wide tables scroll inside their section, the page does not scroll sideways
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            page.screenshot(path=str(shots / "record-cell.png"), full_page=True)
            # lab import as an operator: the good rows are stored and shown in the record, the bad one is listed
            # with its reason
            page.evaluate("t => localStorage.setItem('twin.token', t)", env.tok["operator"])
            page.goto("about:blank")
            page.goto(f"{url}/#/record/{cell}")
            page.wait_for_selector(".rec-section[data-section='lab']", timeout=30_000)
            csv = tmp_path / "lab.csv"
            csv.write_text("trace_id,quantity,value,unit,method,time,operator\n"
                           f"{cell},cell_impedance,21.5,mOhm,EIS 1 kHz,2026-11-22T08:00:00Z,lab-anna\n"
                           f"{LOW_ROLL},peel_strength,0.41,N/mm,90 deg peel,2026-11-22T09:00:00Z,lab-anna\n"
                           f"{cell},sparkle,1.0,1,eyes,2026-11-22T09:30:00Z,lab-anna\n")
            page.set_input_files("#lab-file", str(csv))
            page.click("#lab-form button[type=submit]")
            page.wait_for_selector("#lab-result .lab-summary", timeout=30_000)
            assert page.inner_text("#lab-result .lab-summary").startswith("2 rows stored, 1 quarantined")
            assert "unknown_quantity" in page.inner_text("#lab-refused")
            # the record is read again after the import (the section is absent while it loads)
            page.wait_for_function("(document.querySelector(\".rec-section[data-section='lab']\")?.textContent || '')"
                                   ".includes('cell_impedance')", timeout=30_000)
            # root cause: the cells cut from the low stretch, their gauge ranked first, with its box plot
            page.goto(f"{url}/#/rootcause")
            page.check("input[name=rc-sel][value=list]")
            page.fill("#rc-cells", ", ".join(low))
            page.click("#rc-form button[type=submit]")
            page.wait_for_selector("#rc-table tr:nth-child(2)", timeout=60_000)
            first = page.inner_text("#rc-table tr:nth-child(2)")
            assert "Drying/Cathode/MassLoading" in first.split("\t")[1], first
            assert page.locator("#rc-plots svg.rc-plot rect").count() >= 2
            assert f"{len(low)} cells selected" in page.inner_text("#rootcause")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            page.screenshot(path=str(shots / "rootcause.png"), full_page=True)
        finally:
            browser.close()
    print("screenshots:", shots)
