"""Which trace events of a line have been seen, by identity, in memory that does not grow with the seq.

A trace event is identified by (line, seq, digest of its content), not by its seq alone: a stray or forged event
must not make the line's real event with the same seq look like a duplicate. Per line this keeps

* `highest`: the highest seq seen, and `distinct`: how many different seqs were seen (so `highest - distinct` is the
  number of seqs never received, the gap the status endpoint reports, in O(1));
* a ring of the last `size` seqs below `highest` with the digest of the first event seen with each (two fixed arrays of
  8-byte slots: slot `seq % size` holds that seq or an older one that is no longer in the window), plus the rare
  further events that reused a seq in `extra`.

Seqs at or below `low` (older than the ring, or placed before a restart) are not known here: the caller asks the
store (`Verdict.UNKNOWN`). The previous structure, a bitmap indexed by seq, grew with the highest seq ever seen: one
event with seq 10^9 cost 125 MB.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

DEFAULT_SIZE: Final = 65_536  # 1 MiB per line
_PER_SEQ_MAX: Final = 8  # further events remembered per reused seq (beyond: the store answers)


class Seen(Enum):
    NEW = "new"  # no event with this seq was seen
    SAME = "same"  # this very event (same digest) was seen: a duplicate
    REUSED = "reused"  # other event(s) with this seq were seen, not this one
    UNKNOWN = "unknown"  # older than the window: ask the store


@dataclass
class LineSeqs:
    """The seqs of one line; see the module docstring. `low` starts at the highest seq known at start-up."""

    size: int = DEFAULT_SIZE
    highest: int = 0
    distinct: int = 0
    low: int = 0
    _seqs: array = field(init=False, repr=False)
    _digests: array = field(init=False, repr=False)
    extra: dict[int, tuple[int, ...]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"seq window size must be >= 1, got {self.size}")
        self._seqs = array("q", bytes(8 * self.size))
        self._digests = array("Q", bytes(8 * self.size))

    @property
    def extra_max(self) -> int:
        return max(16, self.size // 16)

    @property
    def missing(self) -> int:
        return max(0, self.highest - self.distinct)

    def in_window(self, seq: int) -> bool:
        return seq > self.low and seq > self.highest - self.size

    def first(self, seq: int) -> int | None:
        """Digest of the first event seen with `seq` while it is in the window (the owner of its plain step IRI)."""
        slot = seq % self.size
        return self._digests[slot] if self.in_window(seq) and self._seqs[slot] == seq else None

    def check(self, seq: int, digest: int) -> Seen:
        if seq > self.highest:
            return Seen.NEW
        if not self.in_window(seq):
            return Seen.UNKNOWN
        first = self.first(seq)
        if first is None:
            return Seen.NEW
        if first == digest or digest in self.extra.get(seq, ()):
            return Seen.SAME
        if len(self.extra) >= self.extra_max or len(self.extra.get(seq, ())) >= _PER_SEQ_MAX:
            return Seen.UNKNOWN  # no room to remember more reused seqs here: the store answers exactly
        return Seen.REUSED

    def add(self, seq: int, digest: int, *, new_seq: bool) -> None:
        """Record an event judged not a duplicate; `new_seq`: no event with this seq was seen before (counts it)."""
        if new_seq:
            self.distinct += 1
        if seq > self.highest:
            self.highest = seq
            if len(self.extra) >= self.extra_max:
                self.extra = {s: d for s, d in self.extra.items() if self.in_window(s)}
        if not self.in_window(seq):
            return  # the store keeps it; the window only holds recent seqs
        slot = seq % self.size
        if self._seqs[slot] != seq:
            self._seqs[slot] = seq
            self._digests[slot] = digest
        elif self._digests[slot] != digest and digest not in self.extra.get(seq, ()) \
                and (len(self.extra.get(seq, ())) < _PER_SEQ_MAX if seq in self.extra
                     else len(self.extra) < self.extra_max):
            self.extra[seq] = self.extra.get(seq, ()) + (digest,)

    def memory_bytes(self) -> int:
        """What the tracking holds: the two rings plus the reused-seq entries (at most extra_max seqs)."""
        return (self._seqs.itemsize + self._digests.itemsize) * self.size + 64 * sum(1 + len(d)
                                                                                    for d in self.extra.values())
