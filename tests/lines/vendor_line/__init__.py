"""A vendor-style pilot line: the second, differently shaped line that "bring your own line" (issue 12) is tested on.

The bundled simulator names its address space the way the twin thinks (``PilotLine/Coating/Cathode/...``, string
NodeIds, a ``RollId`` node beside every gauge). A real line does not, so this one is written directly with asyncua
and paho and imports nothing of ``simulator/``; only the physics (``models.process_chain``) and the trace-event
format (``contract.trace``) are shared, so that its numbers are the numbers the twin's models expect. What it does
differently, on purpose:

- two OPC UA servers (coater, calender), each its own namespace (``urn:vendor:coater``, ``urn:vendor:calender``)
  with **numeric** NodeIds and an OPC 40001 Machinery-like tree ``Machines/<Machine>/{Identification, Monitoring,
  Control}``; analog values are AnalogItemType with UNECE EngineeringUnits and EURange;
- the beta gauge reports areal weight in g/m2 (``GM``), not the twin's mg/cm2, and sits 6 m downstream of the slot
  die whose roll the String node ``CurrentRollID`` names; the roll position node is optional (``--no-position``);
- the calender has no roll ID node at all: the MES tells which coated roll it unwinds (a ``consumed`` event when it
  starts), and its position must be integrated from its web speed;
- setpoints are granted by ``Control/RemoteControlEnabled`` (only the ``admin`` user or ``--grant`` may set it), an
  out-of-range setpoint is clamped (``GoodClamped``) rather than refused;
- a dry-room dew-point sensor publishes vendor JSON on MQTT, and an MES publishes ``pilotline.trace.v1`` events for
  slurry batches, coated and calendered rolls, sheets, cells and formation runs on a vendor topic.

Modules: ``address_space`` (the two machines' nodes, as data), ``opcua_server`` (one asyncua server per machine,
users and guarded writes), ``physics`` (coater and calender on ``models.process_chain``), ``mes`` (trace events),
``__main__`` (the clock, MQTT, the command line). Run ``python -m tests.lines.vendor_line --help``; the address
space is documented in tests/lines/README.md. The process prints one JSON line with ``"ready": true`` once both
servers accept connections and runs until SIGTERM.
"""

from __future__ import annotations

from tests.lines.vendor_line.address_space import (
    CALENDER,
    CALENDER_NAMESPACE,
    COATER,
    COATER_NAMESPACE,
    GAUGE_OFFSET_M,
    UNECE_NAMESPACE,
    UNITS,
    Item,
    MachineSpec,
    node_id,
    unece_unit_id,
)

__all__ = [
    "CALENDER", "CALENDER_NAMESPACE", "COATER", "COATER_NAMESPACE", "GAUGE_OFFSET_M", "UNECE_NAMESPACE", "UNITS",
    "Item", "MachineSpec", "node_id", "unece_unit_id",
]
