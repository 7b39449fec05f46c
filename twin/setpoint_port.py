"""The controller's way to the line: the OPC UA connector's setpoint writer and the line's grant."""

from __future__ import annotations

from typing import Any

from twin.ingest import IngestPipeline
from twin.live import LiveState


class SetpointPort:
    """The controller's way to the line: write a setpoint and read the grant, through the OPC UA connector.

    The connector's writer checks EURange and the grant itself and never retries blindly; here we only adapt its
    answer to ``(ok, status text)`` and treat a missing connector as a refused write.
    """

    def __init__(self, pipeline: IngestPipeline, live: LiveState, grant_node: str) -> None:
        self.pipeline = pipeline
        self.live = live
        self.grant_node = grant_node

    def _client(self) -> Any:
        return getattr(self.pipeline, "opcua", None)

    async def write(self, node: str, value: float) -> tuple[bool, str]:
        client = self._client()
        if client is None or not hasattr(client, "write_setpoint"):
            return False, "no OPC UA connection: setpoints cannot be written"
        result = await client.write_setpoint(node, float(value))
        ok = bool(getattr(result, "ok", result is True))
        status = str(getattr(result, "status", "Good" if ok else "refused"))
        message = getattr(result, "message", "")
        return ok, f"{status} {message}".strip()

    async def read_grant(self) -> bool:
        client = self._client()
        if client is not None and hasattr(client, "read_grant"):
            return bool(await client.read_grant())
        # without a read path, the last sampled value of the grant node (the connector subscribes to it)
        key = self.grant_node.removeprefix("PilotLine/")
        last = self.live.value(key) or self.live.value(f"{key.rsplit('/', 1)[0]}/{key.rsplit('/', 1)[-1]}")
        return bool(last is not None and last.quality == "good" and last.value >= 0.5)
