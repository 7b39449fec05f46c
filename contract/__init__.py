"""The contract at the bottom of the project: the records that cross every boundary and the one trace-event parser.

``contract.records`` holds ``Sample``, ``TraceEvent`` (with ``TraceInput``) and ``Rejected``, the ID rule and the time
helpers; ``contract.trace`` holds the only parser of ``pilotline.trace.v1`` (``parse_trace_event``) and the type list
with its ID prefixes; ``contract/schema/pilotline.trace.v1.json`` states the same format as a JSON Schema for
producers in other languages. Connectors, ontology, models, simulator and twin may all import this package; it imports
none of them (tests/test_architecture.py), so the format has one owner and two consumers cannot drift apart again.
"""

from contract.records import (
    ID_MAX_LEN,
    ID_PATTERN,
    TRACE_EVENT_SCHEMA,
    RecordError,
    Rejected,
    Sample,
    TraceEvent,
    TraceInput,
    is_valid_id,
    iso_to_ns,
    ns_to_iso,
)
from contract.trace import SCHEMA_PATH, TraceEventError, parse_trace_event

__all__ = [
    "ID_MAX_LEN", "ID_PATTERN", "SCHEMA_PATH", "TRACE_EVENT_SCHEMA", "RecordError", "Rejected", "Sample",
    "TraceEvent", "TraceEventError", "TraceInput", "is_valid_id", "iso_to_ns", "ns_to_iso", "parse_trace_event",
]
