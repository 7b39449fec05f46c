"""Structured logs for the service: one JSON object per line, so a log shipper needs no parser of its own."""

from __future__ import annotations

import json
import logging
from typing import Any

# libraries that log one INFO line per request (httpx: every InfluxDB write) would drown the twin's own log
QUIET_LOGGERS = ("httpx", "httpcore", "asyncua")


class JsonFormatter(logging.Formatter):
    """Structured logs: one JSON object per line (time, level, logger, message, and any ``extra`` fields)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
                               "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_libraries()


def quiet_libraries() -> None:
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
