"""The service's log: JSON lines, and libraries that log every request kept at WARNING."""

from __future__ import annotations

import json
import logging

import pytest

from twin.logs import QUIET_LOGGERS, setup_logging


def test_json_lines_and_no_per_request_library_lines(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("INFO")
        logging.getLogger("httpx").info('HTTP Request: POST http://127.0.0.1:8086/write "HTTP/1.1 204"')
        logging.getLogger("twin.test").info("hello", extra={"line": "PL1"})
        logging.getLogger("httpx").warning("a slow write")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert [(x["logger"], x["level"], x["msg"]) for x in lines] == [("twin.test", "INFO", "hello"),
                                                                   ("httpx", "WARNING", "a slow write")]
