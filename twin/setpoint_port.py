"""The controller's way to the line: setpoint writes and grants, routed to the OPC UA source that has each node.

A line has several servers (coater, calender ...), each maybe with its own grant node; the line description says for
every setpoint which source has it and which node grants it (``Manipulated.source`` / ``grant_node``), so nothing
here knows a server's names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from twin.ingest import IngestPipeline
from twin.service_settings import Manipulated


class SetpointPort:
    """Write a setpoint and read the grants, through the OPC UA connectors.

    The connector's writer checks EURange and the grant itself and never retries blindly; here we only route, adapt
    its answer to ``(ok, status text)``, and treat a missing connector as a refused write. ``setpoints`` gives the
    running product's manipulated variables (it changes when the product does)."""

    def __init__(self, pipeline: IngestPipeline, setpoints: Callable[[], Iterable[Manipulated]]) -> None:
        self.pipeline = pipeline
        self.setpoints = setpoints

    def _route(self, node: str) -> tuple[Any, str | None]:
        """The connector that has ``node``, and its grant node (None = the source's own)."""
        for m in self.setpoints():
            if m.setpoint_node == node:
                return self.pipeline.opcua_source(m.source), m.grant_node
        return self.pipeline.opcua_source(""), None

    async def write(self, node: str, value: float) -> tuple[bool, str]:
        client, grant = self._route(node)
        if client is None:
            return False, "no OPC UA connection: setpoints cannot be written"
        result = await client.write_setpoint(node, float(value), grant)
        status = f"{result.status} {result.message}".strip()
        return bool(result.ok), status

    async def read_grant(self) -> bool:
        """The line grants remote setpoints when every grant of the running product's setpoints says so (a source
        without a grant node counts as granting); False when a source is missing or unreadable."""
        asked: set[tuple[str, str | None]] = set()
        for m in self.setpoints():
            asked.add((m.source, m.grant_node))
        if not asked:
            asked.add(("", None))
        for source, grant in sorted(asked, key=lambda x: (x[0], x[1] or "")):
            client = self.pipeline.opcua_source(source)
            if client is None or not await client.read_grant(grant):
                return False
        return True
