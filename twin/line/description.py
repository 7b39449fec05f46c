"""The schema of a line description (``pilotline.line.v1``): equipment, sources, signals, trace, setpoints, products.

Why one file: a new line must be connected by describing it, not by changing code. Everything the twin used to take
from the simulator's names (which node is the roll ID, which station a gauge belongs to, which node is a setpoint and
which grants it, where the gauges sit along the web) is said here, and every part of the twin reads it from here.

The twin's own vocabulary stays fixed: stations such as ``Coating/Cathode``, ``Calendering/Anode``, ``DryRoom``,
``Formation/CH-01``, and signal names such as ``MassLoading``, ``WetFilmThickness``, ``CoatingDensity``,
``WebSpeed``, ``PumpFlowRate``, ``LineLoad``, ``DewPoint`` (docs/line-description.md lists them). Models, SPC and the
control loops speak it; a description maps a vendor's names onto it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connectors.settings import EventTrace, MqttConfig, OpcuaConfig, SignalRange, TraceNode
from connectors.sparkplug import SparkplugSource
from twin.service_settings import Product, SpecLimits, WorkUnit


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LineId(_Strict):
    id: str = Field(default="PL1", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
                    description="The line's id: the line tag of every sample and the line of its trace events")
    name: str = Field(default="", description="Shown in the dashboard")


class Equipment(_Strict):
    """ISA-95 levels above the work units (names only: the twin tags nothing with them yet)."""

    enterprise: str = Field(default="", description="ISA-95 enterprise")
    site: str = Field(default="", description="ISA-95 site")
    area: str = Field(default="", description="ISA-95 area")
    units: list[WorkUnit] = Field(default=[], description="Work units in process-flow order")


class Sources(_Strict):
    opcua: list[OpcuaConfig] = Field(
        default=[], description="OPC UA servers, each its own connector and supervision (coater, dryer, calender, "
                                "dry room are often separate servers); names must differ")
    sparkplug: list[SparkplugSource] = Field(
        default=[], description="Sparkplug B groups (edge nodes, devices) and how their metrics map onto the twin "
                                "(connectors/sparkplug)")
    mqtt: MqttConfig | None = Field(default=None, description="The MQTT broker: the twin's own topics, JSON device "
                                                              "topics (json) and trace-event topics; null = defaults")

    @model_validator(mode="after")
    def _names(self) -> Sources:
        names = [s.name for s in self.opcua]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"OPC UA source names must differ; repeated: {dup}")
        return self


class LineDescription(_Strict):
    """``pilotline.line.v1``: see deploy/lines/sample.yaml for every key with its default."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: Literal["pilotline.line.v1"] = Field(alias="schema", description="Always pilotline.line.v1")
    line: LineId = Field(default_factory=LineId, description="The line's id and name")
    equipment: Equipment = Field(default_factory=Equipment, description="ISA-95 equipment and the stations")
    sources: Sources = Field(default_factory=Sources, description="Where the line's data comes from")
    trace: list[TraceNode] = Field(
        default=[], description="ID nodes (roll, batch, position, cell ...) and the stations whose samples they tag; "
                                "every OPC UA source looks for them (TraceNode.source narrows it to one)")
    trace_events: list[EventTrace] = Field(
        default=[], description="Trace events that set a station's trace context (an MES naming the roll a machine "
                                "without an ID node unwinds)")
    ranges: dict[str, SignalRange] = Field(
        default={}, description="Physical ranges by Signal or Station/Signal (the longer key wins), over the twin's "
                                "defaults; a sample outside, or in another unit than given, is quarantined")
    specs: dict[str, SpecLimits] = Field(default={}, description="Specification limits by Station/Signal (SPC, Cpk, "
                                                                  "out-of-spec alarms)")
    products: dict[str, Product] = Field(
        default={}, description="Products (recipes): targets, tolerances, gauge and actuator positions along the web, "
                                "the setpoints the loops may move (node, source, grant, bounds, step)")
    product: str = Field(default="", description="The product running now; empty = none (no recommendations). "
                                                 "Switching it is also an API action, audited")

    @model_validator(mode="after")
    def _consistent(self) -> LineDescription:
        if self.product and self.product not in self.products:
            raise ValueError(f"product {self.product!r} is not among products {sorted(self.products)}")
        names = {s.name for s in self.sources.opcua}
        for t in self.trace:
            if t.source and t.source not in names:
                raise ValueError(f"trace node {t.node!r} names source {t.source!r}, not among {sorted(names)}")
        for pname, prod in self.products.items():
            for lname, loop in prod.loops.items():
                for m in loop.manipulated:
                    if m.source and m.source not in names:
                        raise ValueError(f"products.{pname}.loops.{lname}: setpoint {m.setpoint_node!r} names source "
                                         f"{m.source!r}, not among {sorted(names)}")
        return self
