"""Seed 002's scalarised objective (eq. 3), shared by the inverse design and the twin's recommender.

Duquesnoy et al. (seed 002) turn a multi-objective electrode problem into one function to minimise: every property is
first scaled to [0, 1] by a fitness function (so no property dominates by its order of magnitude), then

    Cf = 1/n ( sum_{i in Ym} y_i^2 + sum_{i in YM} (1 - y_i)^2 )        (eq. 3; n = number of properties)

with Ym the properties to minimise and YM those to maximise, all weighted equally. The seed's scaling maps each
property's range over the design to [0, 1]; here each term carries its own ``low`` / ``high`` (e.g. a surrogate
output's range over its design space, from the model card or a screen).

A twin tracking targets also needs properties "to match": a third kind of term, y = |value - target| / scale clipped
to [0, 1], that belongs to Ym (minimised). That is how ``twin.recommend``'s ``scalarised`` objective reads today
(deviation / (4 tol)); with ``Term`` it can add maximise terms (areal capacity, density) beside its targets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

Sense = Literal["minimise", "maximise", "match"]


@dataclass(frozen=True)
class Term:
    """One property of eq. 3.

    minimise / maximise: scaled y = (value - low) / (high - low), clipped to [0, 1].
    match: scaled y = |value - target| / scale, clipped to [0, 1] (``scale`` > 0, e.g. 4 x tolerance), minimised.
    """

    output: str
    sense: Sense
    low: float = 0.0
    high: float = 1.0
    target: float = 0.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.sense not in ("minimise", "maximise", "match"):
            raise ValueError(f"term {self.output!r}: sense must be minimise, maximise or match, not {self.sense!r}")
        if self.sense == "match":
            if not self.scale > 0:
                raise ValueError(f"term {self.output!r}: scale must be positive")
        elif not self.high > self.low:
            raise ValueError(f"term {self.output!r}: high ({self.high}) must exceed low ({self.low})")

    def scaled(self, value: ArrayLike) -> NDArray[np.float64]:
        v = np.asarray(value, dtype=float)
        if self.sense == "match":
            return np.clip(np.abs(v - self.target) / self.scale, 0.0, 1.0)
        return np.clip((v - self.low) / (self.high - self.low), 0.0, 1.0)


def eq3(minimised: Sequence[ArrayLike], maximised: Sequence[ArrayLike] = ()) -> NDArray[np.float64]:
    """Seed 002 eq. 3 on properties already scaled to [0, 1]: 1/n (sum y^2 over Ym + sum (1 - y)^2 over YM)."""
    n = len(minimised) + len(maximised)
    if n == 0:
        raise ValueError("eq. 3 needs at least one property")
    total = sum((np.asarray(y, dtype=float) ** 2 for y in minimised), start=np.zeros(()))
    total = total + sum(((1.0 - np.asarray(y, dtype=float)) ** 2 for y in maximised), start=np.zeros(()))
    return np.asarray(total / n, dtype=float)


def scalarised(terms: Sequence[Term], values: Mapping[str, ArrayLike]) -> NDArray[np.float64]:
    """Cf of eq. 3 for ``values`` ({output: array}); match and minimise terms are Ym, maximise terms YM."""
    missing = [t.output for t in terms if t.output not in values]
    if missing:
        raise KeyError(f"eq. 3 needs outputs {missing}")
    ym = [t.scaled(values[t.output]) for t in terms if t.sense != "maximise"]
    ymax = [t.scaled(values[t.output]) for t in terms if t.sense == "maximise"]
    return eq3(ym, ymax)
