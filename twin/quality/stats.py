"""Summary statistics of a signal over a stretch or a window, Cpk against its spec, and pooling of two summaries.

InfluxDB computes n, mean, min, max and the sample standard deviation (n - 1) server-side; a material that passed a
station twice (a slurry batch coated on two stretches) has its summaries pooled exactly here rather than re-queried.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    min: float
    max: float
    std: float  # sample standard deviation (n - 1); 0.0 for n == 1

    @classmethod
    def of(cls, values: np.ndarray) -> Summary | None:
        """The summary of an array of values (None when empty): the same figures InfluxDB gives."""
        n = int(values.size)
        if n == 0:
            return None
        return cls(n, float(values.mean()), float(values.min()), float(values.max()),
                   float(values.std(ddof=1)) if n > 1 else 0.0)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Summary | None:
        """From an InfluxQL row with columns n, mean, min, max, std (std is null for one point)."""
        n = row.get("n")
        if not n:
            return None
        std = row.get("std")
        return cls(int(n), float(row["mean"]), float(row["min"]), float(row["max"]),
                   float(std) if std is not None else 0.0)

    def pooled(self, other: Summary) -> Summary:
        """The summary of both samples together (exact: parallel variance formula)."""
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * other.n / n
        m2 = self.std ** 2 * (self.n - 1) + other.std ** 2 * (other.n - 1) + delta ** 2 * self.n * other.n / n
        return Summary(n, mean, min(self.min, other.min), max(self.max, other.max),
                       math.sqrt(m2 / (n - 1)) if n > 1 else 0.0)

    def cpk(self, lsl: float | None, usl: float | None) -> float | None:
        """Process capability against the spec limits; None without limits, with n < 2 or zero spread."""
        if self.n < 2 or self.std <= 0:
            return None
        sides = []
        if usl is not None:
            sides.append((usl - self.mean) / (3 * self.std))
        if lsl is not None:
            sides.append((self.mean - lsl) / (3 * self.std))
        return min(sides) if sides else None

    def to_dict(self, spec: Any = None, unit: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.n, "mean": self.mean, "min": self.min, "max": self.max, "std": self.std}
        if unit:
            out["unit"] = unit
        if spec is not None:
            lsl, usl = getattr(spec, "lsl", None), getattr(spec, "usl", None)
            out["spec"] = {"lsl": lsl, "usl": usl, "target": getattr(spec, "target", None)}
            out["cpk"] = self.cpk(lsl, usl)
        return out
