"""Implausible events held in the quarantine until their line catches up.

An event whose seq jumps more than `max_seq_jump` ahead of its line is quarantined as implausible (a forged or corrupt
seq must not move the line's figures a million seqs on), waiting for the key `line\\0seq>=N`: once the line's highest
seq reaches N it is released and judged again as new. Per line a heap of (N, quarantine id) says which to release,
in O(log n) per placed event; it is rebuilt from the quarantine at start-up, the quarantine being the record.
"""

from __future__ import annotations

import heapq

from ontology.quarantine import Entry, Quarantine

_SEQ_AT_LEAST = "seq>="


def held_key(line: str, seq: int) -> str:
    """The quarantine's waiting key of an implausible event: released when the line reaches `seq`."""
    return f"{line}\x00{_SEQ_AT_LEAST}{seq}"


def waits_for_seq(entry: Entry) -> bool:
    """True for an implausible event held until its line reaches a seq (judged again as new once released)."""
    return any(k.partition("\x00")[2].startswith(_SEQ_AT_LEAST) for k in entry.waiting_for)


class HeldEvents:
    """line -> heap of (release at seq, quarantine id)."""

    def __init__(self) -> None:
        self.heaps: dict[str, list[tuple[int, int]]] = {}

    def rebuild(self, quarantine: Quarantine) -> set[int]:
        """The heaps from the quarantine's entries; returns the quarantine ids of the held events."""
        held: set[int] = set()
        for entry in quarantine:
            for key in entry.waiting_for:
                line, _, rest = key.partition("\x00")
                if rest.startswith(_SEQ_AT_LEAST):
                    heapq.heappush(self.heaps.setdefault(line, []), (int(rest[len(_SEQ_AT_LEAST):]), entry.qid))
                    held.add(entry.qid)
        return held

    def hold(self, line: str, at: int, qid: int) -> None:
        heapq.heappush(self.heaps.setdefault(line, []), (at, qid))

    def release(self, line: str, highest: int, quarantine: Quarantine) -> list[Entry]:
        """Implausible events of this line that its highest seq has come within max_seq_jump of."""
        heap = self.heaps.get(line)
        out: list[Entry] = []
        while heap and heap[0][0] <= highest:
            _, qid = heapq.heappop(heap)
            entry = quarantine.release(qid)
            if entry is not None:
                out.append(entry)
        return out

    def count(self, line: str) -> int:
        return len(self.heaps.get(line, ()))
