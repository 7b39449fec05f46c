"""connectors/backoff.py: the one bounded exponential backoff (OPC UA reconnects use it; retry loops elsewhere can)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.backoff import Backoff


def test_doubles_up_to_the_cap_and_starts_over_after_a_reset() -> None:
    b = Backoff(0.2, 1.0)
    assert [b.next_delay() for _ in range(5)] == pytest.approx([0.2, 0.4, 0.8, 1.0, 1.0])
    assert b.current_s == pytest.approx(1.0)
    b.reset()
    assert b.current_s == 0.2 and b.next_delay() == 0.2


def test_a_first_delay_above_the_cap_is_kept_once() -> None:
    b = Backoff(3.0, 1.0)
    assert [b.next_delay() for _ in range(3)] == [3.0, 1.0, 1.0]


@pytest.mark.parametrize(("initial", "cap", "factor"), [(0.0, 1.0, 2.0), (0.1, 0.0, 2.0), (0.1, 1.0, 0.5)])
def test_nonsense_is_refused(initial: float, cap: float, factor: float) -> None:
    with pytest.raises(ValueError, match="backoff needs"):
        Backoff(initial, cap, factor)


@given(initial=st.floats(0.001, 100), cap=st.floats(0.001, 100), factor=st.floats(1, 10),
       steps=st.lists(st.booleans(), max_size=40))
def test_delays_stay_bounded_and_grow_until_a_success(initial: float, cap: float, factor: float,
                                                      steps: list[bool]) -> None:
    """``steps``: True = a failure (wait next_delay), False = a success (reset)."""
    b = Backoff(initial, cap, factor)
    previous: float | None = None
    for failed in steps:
        if not failed:
            b.reset()
            previous = None
            continue
        delay = b.next_delay()
        if previous is None:
            assert delay == initial
        else:
            assert delay <= cap and (delay >= previous or delay == cap)
        previous = delay
