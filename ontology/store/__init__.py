"""The genealogy store: places trace events in an RDF graph in the background and answers genealogy questions.

`add_event` only puts the event on a queue and returns: a placer thread checks and places events in batches and a
writer thread writes them, so a slow graph never blocks ingest. An event that cannot be placed is quarantined with the
reason; one that waits for an input that has not been created yet is placed automatically when it is.

A folder by job (README.md beside this file says what the store does, how it survives a restart and lists its
settings):

- ``genealogy.py``: ``GenealogyStore``, which composes the parts below, its life (open, close) and its public calls;
- ``config.py``: ``StoreConfig`` (every setting with its default) and the counters;
- ``backend.py``: the graph (Oxigraph, rdflib memory, a remote SPARQL endpoint): writing, the store's own queries,
  export; the only code that knows which backend it has;
- ``worker.py``: the placer and writer threads, the queue, write retries, ``flush``;
- ``placement.py``: the placement rules (where an event goes, or why it is quarantined);
- ``identity.py``: event identity (new, replay, reused seq) and the step's name;
- ``held.py``: implausible events held in the quarantine until their line catches up;
- ``seqstate.py``: the per-line seq figures and ``seqs.json`` (recounted after a crash);
- ``index.py``: the in-memory ID index, rebuilt in the background after a restart, and unresolved references;
- ``intake.py``: the checks of a prediction's and an audit record's arguments;
- ``views.py``: the answers as JSON and RDF (upstream, downstream, dew point), read-only.

Beside the folder: ``ontology/lineage.py`` (the walk from a cell back to its coated-roll stretches that predictions
use, kept by the store as ``GenealogyStore.lineage``), ``ontology/quarantine.py``, ``ontology/seqwindow.py``,
``ontology/oxstore.py`` and ``ontology/sandbox.py`` (user SPARQL), which the store uses.

The names importers use are re-exported here.
"""

from __future__ import annotations

from ontology.lineage import Lineage
from ontology.store.backend import _py
from ontology.store.config import Backend, Counters, DewPointPort, StoreConfig
from ontology.store.errors import QueryInputError, UnknownIdError
from ontology.store.genealogy import GenealogyStore
from ontology.store.index import IndexRef
from ontology.store.seqstate import SEQ_STATE_FILE
from ontology.store.views import ROLL_TYPES

__all__ = [
    "ROLL_TYPES", "SEQ_STATE_FILE", "Backend", "Counters", "DewPointPort", "GenealogyStore", "IndexRef", "Lineage",
    "QueryInputError", "StoreConfig", "UnknownIdError", "_py",
]
