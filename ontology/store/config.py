"""What a genealogy store is set up with (`StoreConfig`) and what it counts (`Counters`).

Kept apart from the code that uses them, so that every part of the store (backend, placer, writer, views) takes them
without importing the store itself, and a reader finds every knob with its default in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from ontology import iris
from ontology.seqwindow import DEFAULT_SIZE

Backend = Literal["oxigraph", "memory", "sparql"]
DewPointPort = Callable[[str, datetime, datetime], "float | None"]
"""Answers "highest dew point (degC) on this line between start and end" from the time-series store, or None."""


@dataclass
class StoreConfig:
    path: Path | None = None
    backend: Backend = "oxigraph"
    base_iri: str = iris.DEFAULT_BASE_IRI
    query_endpoint: str | None = None
    update_endpoint: str | None = None
    batch_size: int = 2000
    queue_max: int = 1_000_000
    source_cache: int = 50_000
    bulk_threshold: int = 50_000  # triples per batch from which Oxigraph writes with bulk_extend; 0 = never
    # an event whose seq is more than this ahead of the highest seq of its line (0 for a line not seen yet) is held in
    # the quarantine as implausible and placed when the line reaches it; 0 = no check. A twin first attached to a line
    # whose counter is already past this needs it raised for that first start.
    max_seq_jump: int = 1_000_000
    # recent seqs per line judged in memory (16 bytes each); older: looked up in the store
    seq_window: int = DEFAULT_SIZE
    unresolved_max_ids: int = 10_000  # IDs listed in the unresolved-references view (samples naming unknown IDs)
    quarantine_max_entries: int = 100_000  # events held in the quarantine; the oldest is dropped (counted) past it
    unresolved_grace_s: float = 600.0  # an ID unknown for longer than this counts as unresolved, not just early
    # entities whose inputs the lineage (lineage.py) keeps for the predictions' walk; the oldest go first past it
    lineage_max_ids: int = 200_000


@dataclass
class Counters:
    received: int = 0
    placed: int = 0
    duplicates: int = 0
    quarantined: int = 0
    released: int = 0
    predictions: int = 0
    audits: int = 0
    write_errors: int = 0
    triples_written: int = 0
    seq_reused: int = 0  # events with a seq another event had (each judged on its own)
    implausible_seq: int = 0
    last_error: str | None = None
