"""The genealogy's quarantine is bounded: an outsider sending forged or malformed trace events, or a line whose events
keep arriving out of order (each one added, then released), cannot grow its log or its memory without limit."""

from __future__ import annotations

from pathlib import Path

from ontology import quarantine as q
from ontology.quarantine import Quarantine


def test_adds_and_releases_do_not_grow_the_log_forever(tmp_path: Path) -> None:
    path = tmp_path / "quarantine.jsonl"
    quar = Quarantine(path)
    payload = {"junk": "x" * 400}
    kept = quar.add("stays: an engineer looks at it", payload)
    for i in range(6000):  # out-of-order events: each waits for its input, which then arrives
        entry = quar.add("waiting for its input", payload, waiting_for=[f"PL1\x00CR-C-{i:06d}"])
        assert quar.release_waiting(f"PL1\x00CR-C-{i:06d}") == [entry]
    # ~6 000 adds and releases of ~550 bytes would be ~3.5 MB uncompacted; the bound is 2x the held + 1 MiB
    assert path.stat().st_size <= 2 * 600 + q.COMPACT_SLACK_BYTES + 2000
    reopened = Quarantine(path)
    assert [e.qid for e in reopened] == [kept.qid] and next(iter(reopened)).payload == payload


def test_at_most_max_entries_are_held_the_oldest_make_room_and_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "quarantine.jsonl"
    quar = Quarantine(path, max_entries=100)
    for i in range(250):
        quar.add(f"forged {i}", {"seq": i})
    assert len(quar) == 100 and quar.dropped == 150
    assert [e.payload["seq"] for e in quar] == list(range(150, 250))  # the newest are kept
    assert [e.payload["seq"] for e in Quarantine(path, max_entries=100)] == list(range(150, 250))
