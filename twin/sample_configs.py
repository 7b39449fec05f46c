"""The twin's commented sample files, generated from the settings models (``connectors/sample_config.py`` writes them).

- ``config/ingest.example.yaml`` from ``twin.config.Config``: every section, ``service:`` included;
- ``deploy/lines/sample.yaml`` from ``twin.line.description.LineDescription``: every key of a line description;
- ``connectors/opcua/sample.yaml`` and the option table of ``connectors/opcua/README.md`` from ``OpcuaConfig``.

``python -m twin.sample_configs`` writes them; ``--check`` only compares and exits 1 naming the stale ones (the tests
do the same). An option is documented once, in its ``Field(description=...)``; edit the models, not these files.

The samples show the models' defaults. ``Config`` also merges the line description that ``line.description`` names
(the bundled simulator's by default) under the file: the sample leaves ``line.description`` at that default, so it
loads as is, and with ``line.description: null`` it is exactly ``Config``'s defaults.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from connectors.opcua import sample_config as opcua_sample
from connectors.sample_config import commented_yaml
from twin.config import Config
from twin.line.description import LineDescription

REPO = Path(__file__).resolve().parents[1]
INGEST_EXAMPLE = REPO / "config" / "ingest.example.yaml"
LINE_SAMPLE = REPO / "deploy" / "lines" / "sample.yaml"
OPCUA_SAMPLE = REPO / "connectors" / "opcua" / "sample.yaml"
OPCUA_README = REPO / "connectors" / "opcua" / "README.md"

INGEST_HEADER = """\
# Pilot-line twin: the configuration file (python -m twin run|ingest --config FILE). Every option with its default
# and what it does; copy it, delete what you do not change. Unknown keys are an error.
# Environment overrides win over this file: PILOTLINE__<SECTION>__<KEY>=value (__ nests; JSON for lists), e.g.
#   PILOTLINE__INFLUX__URL=http://db:8086  PILOTLINE__OPCUA__ENDPOINT=opc.tcp://plc:4840
#   PILOTLINE__MQTT__TOPICS='["a/#"]'  PILOTLINE__SERVICE__HTTP__PORT=8001
# The line description that line.description names is the base under this file: its sources, trace nodes, ranges,
# specs and products fill the opcua, validation and service sections, and what this file (or the environment) says
# wins; a key this file sets to its default therefore overrides the description's value. Relative paths are relative
# to the working directory (run from the repository root).
# Generated from the settings models (twin/config.py, connectors/settings.py, twin/service_settings.py) by
# `python -m twin.sample_configs`: edit the Field descriptions there, not this file.
"""

LINE_HEADER = """\
# A line description (pilotline.line.v1): every key with its default and what it does. A line is connected by
# describing it, not by changing code: its equipment and stations, OPC UA servers and MQTT broker, the mapping of the
# vendor's nodes onto the twin's stations and signals, the trace-ID nodes, ranges, specs, and the products with their
# setpoints. Copy this file, fill in what your line has, and point line.description of the twin's configuration at it.
# deploy/lines/simulator.yaml describes the bundled simulator the same way; docs/line-description.md explains.
# Generated from twin/line/description.py (and the models it uses) by `python -m twin.sample_configs`: edit the Field
# descriptions there, not this file.
"""


def ingest_example() -> str:
    """``config/ingest.example.yaml``: ``Config``'s options with their defaults."""
    return commented_yaml(Config, INGEST_HEADER, relative_to=REPO)


def line_sample() -> str:
    """``deploy/lines/sample.yaml``: a line description's keys with their defaults (it loads: ``parse_line``)."""
    return commented_yaml(LineDescription, LINE_HEADER, relative_to=REPO)


def _opcua_readme() -> str:
    return opcua_sample.readme_with_table(OPCUA_README.read_text(encoding="utf-8"))


#: each generated file and what it should hold
GENERATED: dict[Path, Callable[[], str]] = {
    INGEST_EXAMPLE: ingest_example,
    LINE_SAMPLE: line_sample,
    OPCUA_SAMPLE: opcua_sample.sample_yaml,
    OPCUA_README: _opcua_readme,
}


def stale() -> list[Path]:
    """The generated files whose committed text is not what the models generate now."""
    return [p for p, make in GENERATED.items() if not p.is_file() or p.read_text(encoding="utf-8") != make()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m twin.sample_configs", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 naming the files that are stale")
    args = ap.parse_args(argv)
    if args.check:
        old = stale()
        for p in old:
            print(f"stale: {p.relative_to(REPO)} (regenerate with python -m twin.sample_configs)", file=sys.stderr)
        return 1 if old else 0
    for p, make in GENERATED.items():
        text = make()
        if not p.is_file() or p.read_text(encoding="utf-8") != text:
            p.write_text(text, encoding="utf-8")
            print(f"wrote {p.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
