"""How many user queries may run at once: in total and per user. Admission never waits: over a cap the caller is told
at once (HTTP 429 with Retry-After), so a crowd of slow queries cannot pile up threads, processes or memory.

A ticket is given back when the query's work has really ended, not when its caller stopped waiting: a query thread
that cannot be killed keeps its place until it finishes, so the caps count every query that still uses a CPU.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass


class Busy(RuntimeError):
    """Over a concurrency cap; the message says which, `retry_after_s` when a place is expected to free up."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(eq=False)
class Ticket:
    user: str
    deadline: float  # time.monotonic() when the query's own time limit ends
    _gate: QueryGate
    _left: bool = False

    def leave(self) -> None:
        """Give the place back (idempotent; safe from any thread)."""
        self._gate._leave(self)


class QueryGate:
    """At most `total` queries at once, at most `per_user` of them for one user."""

    def __init__(self, total: int, per_user: int) -> None:
        if total < 1 or per_user < 1:
            raise ValueError(f"caps must be >= 1, got total={total}, per_user={per_user}")
        self.total = total
        self.per_user = per_user
        self._lock = threading.Lock()
        self._running: list[Ticket] = []
        self.refused = 0

    def enter(self, user: str, timeout_s: float) -> Ticket:
        """A place for a query of `user` that may run `timeout_s`; Busy if over a cap."""
        with self._lock:
            mine = [t for t in self._running if t.user == user]
            if len(mine) >= self.per_user:
                self.refused += 1
                raise Busy(f"{user} already has {len(mine)} queries running (at most {self.per_user} per user); "
                           "retry when one has answered", self._retry_after(mine))
            if len(self._running) >= self.total:
                self.refused += 1
                raise Busy(f"{len(self._running)} queries are running (at most {self.total} at once); retry later",
                           self._retry_after(self._running))
            ticket = Ticket(user, time.monotonic() + timeout_s, self)
            self._running.append(ticket)
            return ticket

    def _leave(self, ticket: Ticket) -> None:
        with self._lock:
            if not ticket._left:
                ticket._left = True
                self._running.remove(ticket)

    @staticmethod
    def _retry_after(running: list[Ticket]) -> int:
        """Whole seconds until the first of `running` reaches its time limit (at least 1)."""
        soonest = min(t.deadline for t in running) - time.monotonic()
        return max(1, math.ceil(soonest))

    def running(self) -> int:
        with self._lock:
            return len(self._running)
