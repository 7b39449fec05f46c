"""The line page draws whatever line the description gives, in its order, with no station name in the code: the
simulator's line and the vendor line (tests/lines/vendor.yaml: four units, another naming), in headless Chromium at
1366x768 against the API served from each description's settings (no line connected: every unit is 'no data')."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from deploy.localstack import REPO, free_port
from tests.e2e.test_dashboard import ARGS, CHROMIUM
from tests.twin.test_api import Env
from twin.api import create_app
from twin.line.apply import config_sections
from twin.line.load import load_line
from twin.service_settings import ServiceSettings

pytestmark = [pytest.mark.timeout(120)]
LINES = {"simulator": REPO / "deploy" / "lines" / "simulator.yaml", "vendor": REPO / "tests" / "lines" / "vendor.yaml"}


@pytest.fixture(params=sorted(LINES))
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Env, list[dict[str, str]]]]:
    desc = load_line(LINES[request.param])
    sections = config_sections(desc)
    env = Env(tmp_path)
    env.ctx.settings.dashboard = ServiceSettings.model_validate(
        {"dashboard": sections["service"]["dashboard"]}).dashboard
    dumped = env.ctx.settings.model_dump(mode="json")
    env.ctx.config_dump = lambda: {"line": sections["line"], "service": dumped}
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(env.ctx), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the app did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", env, [u.model_dump() for u in desc.equipment.units]
    finally:
        server.should_exit = True
        thread.join(10)


def test_the_flow_is_the_descriptions(served: tuple[str, Env, list[dict[str, str]]], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    url, env, units = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto(url + "/")
            page.evaluate("t => localStorage.setItem('twin.token', t)", env.tok["viewer"])
            page.goto("about:blank")
            page.goto(url + "/#/line")
            page.wait_for_selector("#flow .unit", timeout=30_000)
            steps = page.eval_on_selector_all("#flow .step", "s => s.map(x => x.dataset.step)")
            assert steps == list(dict.fromkeys(u["step"] for u in units))
            drawn = page.eval_on_selector_all("#flow .unit", "s => s.map(x => [x.dataset.station, "
                                                             "x.querySelector('h4').firstChild.textContent])")
            assert drawn == [[u["station"], u["name"]] for u in units]
            assert set(page.eval_on_selector_all("#flow .unit", "s => s.map(x => x.dataset.state)")) == {"no_data"}
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            page.screenshot(path=str(tmp_path / "line.png"))
        finally:
            browser.close()
