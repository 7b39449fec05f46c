"""Trace events are told apart by identity (line, seq, content), not by seq alone; seq tracking is bounded.

Issue 10 item 3: well-formed events with seqs the line had not reached yet made the line's real events with those seqs
count as duplicates (the real entities went missing), and one event with seq 10^9 grew the twin by ~120 MB.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from rdflib import URIRef

from ontology.iris import PL
from ontology.store import GenealogyStore, StoreConfig
from tests.ontology.conftest import load
from tests.ontology.synthetic import PlantHistory


def real_ids(events: list[dict[str, Any]]) -> set[str]:
    """Every entity a valid stream makes: what its events create, and the raw-material lots they receive."""
    out = {e["id"] for e in events if e["kind"] == "created"}
    out |= {i["id"] for e in events for i in e.get("inputs", []) if i["type"] == "RawMaterialLot"}
    return out


def stored_ids(store: GenealogyStore) -> set[str]:
    return {str(o) for o in store.graph.objects(None, PL.traceId)}


def forged(seq: int, n: int, line: str = "PL1") -> dict[str, Any]:
    """A well-formed event from nowhere: a slurry batch nobody mixed, with a seq the line will use for a real event."""
    return {"schema": "pilotline.trace.v1", "seq": seq, "line": line, "time": "2026-11-21T05:00:00Z",
            "kind": "created", "id": f"SB-C-9{n:05d}", "type": "SlurryBatch", "step": "Mixing",
            "station": "Mixing/Cathode", "inputs": [{"id": "LOT-FAKE-0001", "type": "RawMaterialLot"}],
            "parameters": {}, "properties": {}}


def test_forged_future_seqs_do_not_hide_the_real_events(tmp_path: Path) -> None:
    events = list(PlantHistory(cells=3, roll_length_m=5.0, segment_m=5.0, seed=2).events())
    with GenealogyStore(StoreConfig(path=tmp_path / "g")) as s:
        load(s, [forged(seq, seq) for seq in range(2, 13)])  # seqs 2..12 before the line got there
        load(s, events)
        assert real_ids(events) <= stored_ids(s)  # CELL-000002, STK-000002, ES-C-000002, ... all there
        st = s.status()
        assert st["duplicates"] == 0 and st["seq_reused"] == 11 and st["quarantined_now"] == 0
        for cell in ("CELL-000001", "CELL-000002", "CELL-000003"):
            assert {e["id"] for e in s.genealogy(cell)["entities"]} >= {cell, "STK-" + cell[5:]}
        # each of the two events with seq 5 is its own step; the real one's inputs are linked to its own step
        steps = {str(p) for p in s.graph.subjects(PL.seq, None) if str(p).split("/")[-1].split("-")[0] == "5"}
        assert len(steps) == 2
        assert st["lines"]["PL1"]["missing_seq"] == 0


def test_a_replayed_event_is_a_counted_duplicate_and_changes_nothing(tmp_path: Path) -> None:
    events = list(PlantHistory(cells=6, roll_length_m=5.0, segment_m=5.0, seed=4).events())
    path = tmp_path / "g"
    with GenealogyStore(StoreConfig(path=path, seq_window=16)) as s:
        load(s, events)
        before = sorted(s.export("nt").splitlines())
        recent, old = events[-3], events[4]  # one inside the 16-seq window, one older than it (asked of the store)
        load(s, [copy.deepcopy(recent), copy.deepcopy(old), copy.deepcopy(old)])
        assert s.status()["duplicates"] == 3
        assert sorted(s.export("nt").splitlines()) == before
        # a changed event that reuses an old seq is not a duplicate: judged on its own (here a conflicting creation)
        changed = copy.deepcopy(old)
        changed["time"] = "2026-11-21T23:59:00Z"
        load(s, [changed])
        assert s.status()["duplicates"] == 3 and s.status()["seq_reused"] == 1
        assert any(e.reason.startswith(f"duplicate ID: {old['id']}") for e in s.quarantine)
        assert sorted(s.export("nt").splitlines()) == before
    with GenealogyStore(StoreConfig(path=path, seq_window=16)) as s:  # after a restart the store answers
        load(s, [copy.deepcopy(events[-1]), copy.deepcopy(old), copy.deepcopy(changed)])
        st = s.status()
        assert st["duplicates"] == 3 and st["placed"] == 0 and st["lines"]["PL1"]["missing_seq"] == 0
        assert sorted(s.export("nt").splitlines()) == before


def test_an_implausible_seq_is_held_with_its_reason_and_costs_no_memory(tmp_path: Path) -> None:
    events = list(PlantHistory(cells=2, roll_length_m=5.0, segment_m=5.0, seed=5).events())
    with GenealogyStore(StoreConfig(path=tmp_path / "g")) as s:
        load(s, events)
        highest = max(e["seq"] for e in events)
        stray = copy.deepcopy(events[0])
        stray.update(seq=1_000_000_000, id="SB-C-777777")
        load(s, [stray])
        st = s.status()
        assert st["implausible_seq"] == 1 and st["placed"] == len(events)
        (entry,) = [e for e in s.quarantine if e.payload["seq"] == 1_000_000_000]
        assert entry.reason.startswith("implausible seq: 1000000000 is ") and "max_seq_jump 1000000" in entry.reason
        line = st["lines"]["PL1"]
        assert line["highest_seq"] == highest and line["missing_seq"] == 0 and line["held_implausible"] == 1
        # what tracks the seqs is the fixed window (16 bytes a slot), not a structure that grows with the seq
        assert s.seq_tracking_bytes() <= 16 * s.config.seq_window + 64 * 1024
        assert "SB-C-777777" not in stored_ids(s)


def test_a_held_event_is_placed_when_the_line_gets_there(tmp_path: Path) -> None:
    events = list(PlantHistory(cells=2, roll_length_m=5.0, segment_m=5.0, seed=6).events())
    early, later = events[:5], events[5:]
    ahead = later[-1]  # the last event arrives long before the others: more than max_seq_jump ahead
    with GenealogyStore(StoreConfig(path=tmp_path / "g", max_seq_jump=len(later) - 2)) as s:
        load(s, early + [ahead])
        assert s.status()["implausible_seq"] == 1 and s.status()["lines"]["PL1"]["highest_seq"] == 5
        load(s, later[:-1])
        st = s.status()
        assert st["released_from_quarantine"] >= 1 and st["quarantined_now"] == 0
        assert real_ids(events) <= stored_ids(s)
        assert st["lines"]["PL1"]["highest_seq"] == ahead["seq"] and st["lines"]["PL1"]["missing_seq"] == 0
    assert st["duplicates"] == 0


def test_the_step_of_a_reused_seq_is_named_apart_and_survives_a_restart(tmp_path: Path) -> None:
    """The real event that comes after a forged one with its seq gets step event/<seq>-<digest>; its outputs link to
    that step (pl:createdByEvent), also after the index is rebuilt from the store."""
    events = list(PlantHistory(cells=2, roll_length_m=5.0, segment_m=5.0, seed=8).events())
    first_batch = events[0]
    with GenealogyStore(StoreConfig(path=tmp_path / "g")) as s:
        load(s, [forged(first_batch["seq"], 1), first_batch])
    with GenealogyStore(StoreConfig(path=tmp_path / "g")) as s:
        assert s.wait_index(timeout=60)
        load(s, events[1:])
        assert s.status()["quarantined_now"] == 0
        g = s.genealogy("CELL-000001")
        assert first_batch["id"] in {e["id"] for e in g["entities"]}
        node = URIRef(s.builder.entity("PL1", first_batch["id"]))
        (ref,) = list(s.graph.objects(node, PL.createdByEvent))
        assert str(ref).startswith(f"{first_batch['seq']}-")
