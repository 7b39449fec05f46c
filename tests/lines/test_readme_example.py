"""The README's "Connect your own line" runs as written: discover on the vendor line's coater prints a draft that
loads and marks its guesses, check-line passes on the edited description against the live servers, and the last step
names the description the whole-twin test (test_vendor_twin.py) runs on. The servers listen where the README says
(4841, 4842, and a broker on 1883), so this test needs those ports free."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from deploy.localstack import Mosquitto
from tests.lines import VendorLine
from twin.line.load import parse_line

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(180)


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Connect your own line"):text.index("## Layout")]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    return [line.split("  #", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_connect_your_own_line_as_written(tmp_path: Path) -> None:
    busy = [p for p in (1883, 4841, 4842) if not _free(p)]
    assert not busy, f"the README's example needs ports {busy} free (something else listens there)"
    discover, check, run = _readme_commands()
    broker = Mosquitto(tmp_path / "mosquitto", 1883).start()
    line = VendorLine(tmp_path / "vendor", coater_port=4841, calender_port=4842,
                      mqtt_url="mqtt://127.0.0.1:1883").start()
    try:
        out: Any = subprocess.run(["bash", "-c", discover.replace(".venv/bin/python", str(REPO / ".venv/bin/python"))],
                                  cwd=REPO, capture_output=True, text=True, timeout=90)
        assert out.returncode == 0, out.stderr
        draft = (REPO / "var" / "coater-draft.yaml").read_text()
        assert "# GUESS" in draft
        desc = parse_line(draft, "coater-draft.yaml")
        assert desc.sources.opcua[0].namespace_uri == "urn:vendor:coater"
        assert any(r.signal == "MassLoading" and r.station.startswith("Drying") for r in desc.sources.opcua[0].signals)
        out = subprocess.run(["bash", "-c", check.replace(".venv/bin/python", str(REPO / ".venv/bin/python"))],
                             cwd=REPO, capture_output=True, text=True, timeout=90)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "ERROR" not in out.stdout
    finally:
        line.stop()
        broker.stop()
    assert run == "PILOTLINE_LINE=tests/lines/vendor.yaml make run"
    whole_twin = (REPO / "tests" / "lines" / "test_vendor_twin.py").read_text()
    assert 'VENDOR = Path(__file__).with_name("vendor.yaml")' in whole_twin
