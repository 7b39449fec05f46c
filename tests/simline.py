"""The bundled simulator's line description, for tests that point a connector straight at the simulator."""

from __future__ import annotations

from typing import Any

from connectors.settings import OpcuaConfig
from twin.config import SIMULATOR_LINE
from twin.line import load_line
from twin.service_settings import SpecLimits


def sim_opcua(**overrides: Any) -> OpcuaConfig:
    """The simulator's OPC UA source as its line description has it (trace names, grant, root), with overrides."""
    desc = load_line(SIMULATOR_LINE)
    data = desc.sources.opcua[0].model_dump()
    data["trace"] = [t.model_dump() for t in desc.trace]
    # the line logs in as its operator (to write setpoints); a test connects anonymously unless it says otherwise
    data.update(auth_method="anonymous", username="")
    data.update(overrides)
    return OpcuaConfig.model_validate(data)


def sim_specs() -> dict[str, SpecLimits]:
    """The simulator line's specification limits (seed 001's ProZell cathode and graphite anode)."""
    return dict(load_line(SIMULATOR_LINE).specs)
