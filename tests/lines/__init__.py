"""Lines other than the bundled simulator, for testing that the twin runs on any described line (issue 12).

``VendorLine`` starts ``python -m tests.lines.vendor_line`` (see vendor_line.py and README.md) on free ports as a
real process, waits for its ``ready`` line and stops it (SIGTERM, then SIGKILL), like the other servers of
deploy/localstack.py; ``kill()`` and ``restart()`` make faults real. ``vendor_line_factory`` is the pytest fixture:
import it into a test module or conftest (``from tests.lines import vendor_line_factory  # noqa: F401``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from deploy.localstack import LOOPBACK, PythonService, free_port

__all__ = ["VendorLine", "past_start_time", "vendor_line_factory"]


def past_start_time(hours: float = 12.0) -> str:
    """With --speedup > 1 the line clock runs ahead of the wall: start it in the past (the twin refuses samples
    from the future)."""
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=hours)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class VendorLine(PythonService):
    """The vendor-style line: coater OPC UA server on ``port``, calender on ``calender_port``, MQTT when given."""

    name = "vendor-line"
    start_timeout_s = 60.0

    def __init__(self, data_dir: Path, args: Sequence[str] = (), *, coater_port: int | None = None,
                 calender_port: int | None = None, mqtt_url: str | None = None) -> None:
        super().__init__(data_dir, coater_port, args)
        self.calender_port = calender_port or free_port()
        self.mqtt_url = mqtt_url
        self.info: dict[str, Any] = {}
        self._log_offset = 0

    @property
    def coater_endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}"

    @property
    def calender_endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.calender_port}"

    @property
    def passwords(self) -> dict[str, str]:
        """{"operator": ..., "admin": ...} (random per data dir unless given on the command line)."""
        return dict(json.loads((self.data_dir / "passwords.json").read_text()))

    @property
    def trace_record(self) -> Path:
        """Every trace event the MES published, one JSON per line (the truth a test compares the twin with)."""
        return self.data_dir / "trace.jsonl"

    def command(self) -> list[str]:
        mqtt = ["--mqtt-url", self.mqtt_url] if self.mqtt_url else []
        return [sys.executable, "-m", "tests.lines.vendor_line", "--host", LOOPBACK, "--coater-port", str(self.port),
                "--calender-port", str(self.calender_port), "--data-dir", str(self.data_dir), *mqtt, *self.args]

    def start(self) -> VendorLine:
        self._log_offset = self.log_path.stat().st_size if self.log_path.is_file() else 0
        self.info = {}
        super().start()
        return self

    def ready(self) -> bool:
        """Ready when this start printed its ``{"ready": true, ...}`` line (both servers listen by then)."""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(self._log_offset)
                text = fh.read().decode("utf-8", errors="replace")
        except OSError:
            return False
        for line in text.splitlines():
            if line.startswith('{"ready": true'):
                self.info = json.loads(line)
                return True
        return False


@pytest.fixture
def vendor_line_factory(tmp_path: Path) -> Iterator[Callable[..., VendorLine]]:
    """``vendor_line_factory(args=[...], mqtt_url=None)`` starts a vendor line and stops every one at teardown."""
    started: list[VendorLine] = []

    def make(args: Sequence[str] = (), mqtt_url: str | None = None, start: bool = True) -> VendorLine:
        line = VendorLine(tmp_path / f"vendor-line{len(started)}", args, mqtt_url=mqtt_url)
        started.append(line)
        return line.start() if start else line

    yield make
    for line in reversed(started):
        try:
            line.stop()
        except Exception:  # noqa: BLE001 - teardown must reach every process
            line.kill()
