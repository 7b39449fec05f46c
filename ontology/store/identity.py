"""Event identity: is this trace event new, a replay, or another event reusing a seq, and what is its step called.

An event is identified by (line, seq, digest of its content), not by its seq alone: a replay of the same event is a
duplicate (counted, nothing changes), a different event that reuses a seq is judged on its own (placed as its own step
`event/<seq>-<digest>`, or quarantined if it conflicts), so a stray or forged event cannot hide the line's real one.
Recent seqs are judged by the line's window (ontology/seqwindow.py); older ones by what the store, the quarantine and
the batches not written yet know. The last is why this keeps the judgements of the (at most two) batches in flight:
the store cannot answer for them, and the window may have moved on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rdflib import XSD, Literal

from ontology.builder import GraphBuilder
from ontology.events import TraceEvent
from ontology.quarantine import Quarantine
from ontology.seqwindow import Seen
from ontology.store.backend import GraphBackend

if TYPE_CHECKING:
    from ontology.store.seqstate import SeqState


def stored_identities(backend: GraphBackend, line: str, seq: int) -> list[tuple[str, str | None]]:
    """(step IRI, digest or None for steps written before digests were kept) of the placed events with this seq."""
    bindings = {"seq": Literal(int(seq), datatype=XSD.integer), "line": Literal(line)}
    return [(str(r["p"]), r.get("digest")) for r in backend.select("event_identity", **bindings)]


class EventIdentity:
    """Judges events by identity. `batch_no` is the batch the placer is placing, `written_no` the last one written."""

    def __init__(self, backend: GraphBackend, builder: GraphBuilder, seqs: SeqState, quarantine: Quarantine) -> None:
        self.backend = backend
        self.builder = builder
        self.seqs = seqs
        self.quarantine = quarantine
        # events judged in batches not written yet (the store cannot answer for them; the window may have moved on):
        # (line, seq) -> (batch number, [(digest, owns the plain step IRI)]); at most the two batches in flight
        self.unwritten: dict[tuple[str, int], tuple[int, list[tuple[str, bool]]]] = {}
        self.batch_no = 0  # placer: the batch being placed
        self.written_no = 0  # writer: the last batch written

    def _identities_of_old(self, line: str, seq: int) -> list[tuple[str, bool | None]]:
        """(digest or "" if unknown, owns the plain step IRI) of every event with this seq the store has judged before,
        for a seq older than the window: recent ones not written yet, the store's, the quarantine's."""
        pending = self.unwritten.get((line, seq))
        out: list[tuple[str, bool | None]] = list(pending[1]) if pending is not None else []
        plain = self.builder._process(line, seq)
        out += [(digest or "", node == plain) for node, digest in stored_identities(self.backend, line, seq)]
        out += [(digest, None) for digest in self.quarantine.digests(line, seq)]
        return out

    def judge(self, event: TraceEvent, digest: str) -> Seen:
        seqs = self.seqs.line(event.line)
        # while the start-up recount runs, the window knows only this run: the store judges every event
        seen = seqs.check(event.seq, int(digest, 16)) if self.seqs.ready.is_set() else Seen.UNKNOWN
        if seen is not Seen.UNKNOWN:
            return seen
        known = self._identities_of_old(event.line, event.seq)
        if not known:
            return Seen.NEW
        # "" is a step written before digests were kept: as before, its seq alone makes a replay a duplicate
        return Seen.SAME if any(d in (digest, "") for d, _ in known) else Seen.REUSED

    def record(self, event: TraceEvent, digest: str, seen: Seen) -> None:
        self.seqs.line(event.line).add(event.seq, int(digest, 16), new_seq=seen is Seen.NEW)
        self.remember(event.line, event.seq, digest, None)

    def remember(self, line: str, seq: int, digest: str, plain: bool | None) -> None:
        """Keep a judgement until its batch is written (`plain` None: keep what was known)."""
        _, entries = self.unwritten.get((line, seq), (0, []))
        was = next((p for d, p in entries if d == digest), False)
        entries = [e for e in entries if e[0] != digest] + [(digest, was if plain is None else plain)]
        self.unwritten[(line, seq)] = (self.batch_no, entries)

    def forget_written(self) -> None:
        written = self.written_no
        if self.unwritten:
            self.unwritten = {k: v for k, v in self.unwritten.items() if v[0] > written}

    def variant(self, event: TraceEvent, digest: str) -> str | None:
        """None: the event's step is `event/<seq>`; else the digest naming `event/<seq>-<digest>`, because another
        event took the plain name first (the first seen within the window; the one placed with it, beyond)."""
        seqs = self.seqs.line(event.line)
        first = seqs.first(event.seq) if self.seqs.ready.is_set() else None
        if first is not None:
            if first != int(digest, 16):
                return digest
        else:
            owners = {d for d, plain in self._identities_of_old(event.line, event.seq) if plain}
            if owners and owners != {digest}:
                return digest
        self.remember(event.line, event.seq, digest, True)
        return None

    def memory_bytes(self) -> int:
        """What the judgements of the batches in flight hold (an estimate: 128 bytes each)."""
        return 128 * len(self.unwritten)
