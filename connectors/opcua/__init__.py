"""OPC UA connector (asyncua): browse-based discovery, one subscription, trace context, reconnects by itself.

A folder by job (README.md beside this file says what the connector does and lists every option; sample.yaml is the
commented sample configuration):

- ``connector.py``: ``OpcuaConnector``, its lifecycle, subscription and dispatch of notifications to the sinks;
- ``asyncua_adapter.py``: the session layer, every use of asyncua internals (pinned to the asyncua version it was
  checked against);
- ``browse.py``: discovery and the configured nodes (``NodeInfo``);
- ``trace.py``: the trace context (``TraceContext``) and which clock an ID goes by;
- ``values.py``: DataValue -> ``Sample``, events -> ``TraceEvent``;
- ``setpoints.py``: one setpoint write, checked against EURange and the line's grant;
- ``sample_config.py``: the commented sample configuration, generated from ``OpcuaConfig``.

The names importers use are re-exported here.
"""

from __future__ import annotations

from connectors.opcua.asyncua_adapter import ensure_client_certificate
from connectors.opcua.browse import ANALOG_ITEM_TYPES, NodeInfo, station_and_signal
from connectors.opcua.connector import Ack, LiveSink, OpcuaConnector, OpcuaError, OpcuaState, Sink
from connectors.opcua.setpoints import SetpointResult
from connectors.opcua.trace import EARLIEST_NS, TraceContext, _History
from connectors.opcua.values import quality_of

__all__ = [
    "ANALOG_ITEM_TYPES", "EARLIEST_NS", "Ack", "LiveSink", "NodeInfo",
    "OpcuaConnector", "OpcuaError", "OpcuaState", "SetpointResult", "Sink", "TraceContext", "_History",
    "ensure_client_certificate", "quality_of", "station_and_signal",
]
