"""Genealogy placement under a hostile delivery (hypothesis, stateful): the valid stream of a small plant arrives in
random order, with replays, with well-formed forged events that reuse the line's seqs, and with restarts of the store
(clean, and as after a crash: the seq figures are then recounted in the background while events are placed).

Whatever the interleaving, once every valid event has arrived the real entities in the graph are exactly those of the
valid stream, every cell's upstream tree is the generator's, nothing real is left in the quarantine, every replay was
counted as a duplicate, and the line's missing seqs are exactly those nobody sent. A small seq window (8) makes most
judgements go to the store (older than the window, or from before a restart).
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ontology.store import GenealogyStore, StoreConfig
from tests.ontology.synthetic import PlantHistory
from tests.ontology.test_event_identity import real_ids, stored_ids

HISTORY = PlantHistory(cells=3, roll_length_m=5.0, segment_m=5.0, seed=12)
EVENTS: list[dict[str, Any]] = list(HISTORY.events())
REAL = real_ids(EVENTS)
TOP = max(e["seq"] for e in EVENTS)


class Placement(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="genealogy-stateful-"))
        self.config = StoreConfig(path=self.dir / "g", seq_window=8, batch_size=5)
        self.store = GenealogyStore(self.config)
        self.pending = list(range(len(EVENTS)))  # indexes of valid events not delivered yet
        self.delivered: list[int] = []
        self.replays = 0
        self.duplicates_before = 0  # counted by the stores closed so far
        self.forged = 0
        self.forged_seqs: set[int] = set()

    def _send(self, event: dict[str, Any]) -> None:
        self.store.add_event(copy.deepcopy(event))

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        """The next valid event, or one from further on (a child before its parents: held, placed later)."""
        reach = data.draw(st.integers(0, min(6, len(self.pending) - 1)), label="skip ahead")
        index = self.pending.pop(reach)
        self.delivered.append(index)
        self._send(EVENTS[index])

    @precondition(lambda self: self.delivered)
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        """At-least-once delivery: an event that already arrived, again."""
        self._send(EVENTS[data.draw(st.sampled_from(self.delivered), label="replayed")])
        self.replays += 1

    @rule(seq=st.integers(1, TOP + 5), kind=st.sampled_from(["batch", "cell", "processed"]))
    def forge(self, seq: int, kind: str) -> None:
        """A well-formed event nobody on the line sent, with a seq the line uses (or will use) for a real event."""
        self.forged += 1
        self.forged_seqs.add(seq)
        n = self.forged
        base = {"schema": "pilotline.trace.v1", "seq": seq, "line": "PL1", "time": "2026-11-21T05:00:00Z",
                "station": "Forged", "parameters": {}, "properties": {"note_id": float(n)}}
        if kind == "batch":
            event = {**base, "kind": "created", "id": f"SB-C-9{n:05d}", "type": "SlurryBatch", "step": "Mixing",
                     "inputs": [{"id": "LOT-FAKE-0001", "type": "RawMaterialLot"}]}
        elif kind == "cell":  # made from a real stack: an extra cell, and a forged link to real history
            event = {**base, "kind": "created", "id": f"CELL-9{n:05d}", "type": "Cell", "step": "Assembly",
                     "inputs": [{"id": "STK-000001", "type": "CellStack"}]}
        else:  # a step on a real cell that never happened: adds a step, no entity
            event = {**base, "kind": "processed", "id": "CELL-000002", "type": "Cell", "step": "Inspection",
                     "inputs": []}
        self._send(event)

    @rule()
    def restart(self) -> None:
        assert self.store.flush(timeout=120)
        self.duplicates_before += self.store.status()["duplicates"]
        self.store.close()
        self.store = GenealogyStore(self.config)

    @rule()
    def crash_restart(self) -> None:
        """As after a crash: seqs.json not marked clean, so the next start recounts in the background while placing."""
        assert self.store.flush(timeout=120)
        self.duplicates_before += self.store.status()["duplicates"]
        self.store.close()
        (self.dir / "g" / "seqs.json").write_text('{"clean": false}')
        self.store = GenealogyStore(self.config)

    @invariant()
    def nothing_but_real_or_forged(self) -> None:
        assert self.store.flush(timeout=120)
        fakes = {i for i in stored_ids(self.store) if "-9" in i or i.startswith("LOT-FAKE")}
        assert stored_ids(self.store) - fakes <= REAL

    def teardown(self) -> None:
        try:
            for index in self.pending:
                self._send(EVENTS[index])
            assert self.store.flush(timeout=120)
            s = self.store
            ids = stored_ids(s)
            assert {i for i in ids if not ("-9" in i or i.startswith("LOT-FAKE"))} == REAL
            for cell, upstream in HISTORY.truth.upstream.items():
                tree = {e["id"] for e in s.genealogy(cell)["entities"]}
                assert {i for i in tree if "-9" not in i and not i.startswith("LOT-FAKE")} == upstream, cell
            assert not [e.reason for e in s.quarantine if e.reason.startswith("malformed")]  # forged = well-formed
            real_left = [e for e in s.quarantine if e.payload in EVENTS]
            assert real_left == [], [e.reason for e in real_left]
            st_ = s.status()
            sent = {e["seq"] for e in EVENTS} | self.forged_seqs  # forged seqs past the line's leave a visible gap
            assert st_["lines"]["PL1"]["highest_seq"] == max(sent)
            assert st_["lines"]["PL1"]["missing_seq"] == max(sent) - len(sent)
            assert st_["implausible_seq"] == 0
            assert self.duplicates_before + st_["duplicates"] == self.replays
        finally:
            self.store.close()
            shutil.rmtree(self.dir, ignore_errors=True)


TestPlacement = Placement.TestCase
TestPlacement.settings = settings(max_examples=4, stateful_step_count=20, deadline=None,
                                  suppress_health_check=[HealthCheck.too_slow])
