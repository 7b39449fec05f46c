"""The manual stays true: every link in README.md and docs/ resolves, every command its shell examples show exists
(its CLI accepts the subcommand, its test paths and make targets are there), and the cheap ones run as written.
Examples that need running servers are run by the tests named beside them (the simulator client example in
tests/simulator/test_sim_opcua.py, the address-space table in tests/simulator/test_sim_config.py)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "connectors" / "opcua" / "README.md"]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
SHELL = re.compile(r"```(?:sh|bash|console)\n(.*?)```", re.S)
PY_MODULE = re.compile(r"\.venv/bin/python -m ([\w.]+)((?:\s+[a-z][\w-]*)?)")
#: examples that run in a second or two with nothing else running, exactly as the manual shows them
RUN_AS_WRITTEN = (
    "echo '{\"line_load_N_mm\": 90}' | .venv/bin/python -m models.process_chain --json -",
    ".venv/bin/python -m models.process_chain --list-inputs",
    ".venv/bin/python -m simulator nodes --markdown",
)


def _commands() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for page in PAGES:
        for block in SHELL.findall(page.read_text(encoding="utf-8")):
            for line in block.replace("\\\n", " ").splitlines():
                cmd = line.split("  #", 1)[0].strip()
                if cmd:
                    out.append((page.name, cmd))
    return out


def test_every_link_resolves() -> None:
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, broken


def test_every_python_command_the_manual_shows_exists() -> None:
    """`python -m MODULE [SUBCOMMAND]` answers --help with exit 0: the module, and the subcommand where the module
    has subcommands, are real (a renamed subcommand would leave a dead example behind)."""
    seen: set[tuple[str, str]] = set()
    failed = []
    for _, cmd in _commands():
        for module, sub in PY_MODULE.findall(cmd):
            sub = sub.strip()
            if module == "pytest" or (module, sub) in seen:
                continue
            seen.add((module, sub))
            argv = [sys.executable, "-m", module, *([sub] if sub else []), "--help"]
            r = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                failed.append(f"{' '.join(argv[2:])}: exit {r.returncode}: {r.stderr.strip()[-300:]}")
    assert len(seen) >= 10, seen
    assert not failed, failed


def test_test_paths_and_make_targets_the_manual_shows_exist() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    missing = []
    for page, cmd in _commands():
        words = shlex.split(cmd.split("|")[0]) if "'" not in cmd else cmd.split()
        if words and words[0] == "make" and len(words) > 1 and not words[1].startswith(("-", "PYTEST")):
            if words[1] not in targets:
                missing.append(f"{page}: make {words[1]}")
        for w in words:
            if w.startswith("tests/") and not (REPO / w.split("::")[0]).exists():
                missing.append(f"{page}: {w}")
    assert not missing, missing


@pytest.mark.parametrize("cmd", RUN_AS_WRITTEN)
def test_cheap_examples_run_as_written(cmd: str) -> None:
    assert any(cmd == c for _, c in _commands()), f"no longer in the manual: {cmd}"
    r = subprocess.run(cmd.replace(".venv/bin/python", shlex.quote(sys.executable)), shell=True, cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-500:]
    assert r.stdout.strip(), "the example printed nothing"
