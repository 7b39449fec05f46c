"""Bounded exponential backoff, the one helper for every retry loop (OPC UA reconnects, database writes ...).

Arithmetic only, no clock and no sleeping: the caller waits the way it must (on a stop event, ``asyncio.sleep``), so
one helper fits a loop that has to stay stoppable and one that does not. It imports nothing of the project.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Backoff:
    """``initial_s``, then doubled (``factor``) after every failure, never more than ``max_s``; ``reset`` on success.

    The first delay is ``initial_s`` even when it exceeds ``max_s`` (as the loops it replaces did); every later one is
    capped."""

    initial_s: float
    max_s: float
    factor: float = 2.0
    _next_s: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.max_s <= 0 or self.factor < 1:
            raise ValueError(f"backoff needs initial_s > 0, max_s > 0 and factor >= 1, got {self.initial_s}, "
                             f"{self.max_s}, {self.factor}")
        self._next_s = self.initial_s

    @property
    def current_s(self) -> float:
        """The delay the next failure waits (``next_delay`` returns it)."""
        return self._next_s

    def next_delay(self) -> float:
        """The delay to wait now; the one after it grows by ``factor`` up to ``max_s``."""
        delay = self._next_s
        self._next_s = min(delay * self.factor, self.max_s)
        return delay

    def reset(self) -> None:
        """After a success: the next failure waits ``initial_s`` again."""
        self._next_s = self.initial_s
