"""Statistical process control per roll: EWMA chart with time-varying limits and process capability (Cpk).

EWMA (Montgomery, Introduction to SPC, ch. 9): z_i = lambda x_i + (1 - lambda) z_{i-1}, z_0 = target;
limits target +- L sigma sqrt(lambda / (2 - lambda) * (1 - (1 - lambda)^(2 i))). Sigma is the short-term
(within-roll) sigma from the average moving range, MR-bar / d2 with d2 = 1.128, so slow drift between samples does
not inflate it. Cpk = min(USL - mean, mean - LSL) / (3 sigma_overall) over the roll's samples (Welford running moments).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

D2_N2 = 1.128  # d2 for moving ranges of two consecutive samples


@dataclass
class EwmaChart:
    target: float
    lsl: float
    usl: float
    lam: float = 0.2
    L: float = 3.0
    n: int = 0
    z: float = math.nan
    mean: float = 0.0
    _m2: float = 0.0
    _mr_sum: float = 0.0
    _last: float | None = None
    out_of_control: bool = False
    points: list[tuple[float, float, float, float, float]] = field(default_factory=list)  # pos, x, z, lcl, ucl
    max_points: int = 2000

    def add(self, x: float, position_m: float | None = None) -> None:
        if not math.isfinite(x):
            raise ValueError("SPC needs finite values; filter bad-quality samples before charting")
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self._m2 += delta * (x - self.mean)
        if self._last is not None:
            self._mr_sum += abs(x - self._last)
        self._last = x
        prev = self.target if self.n == 1 else self.z
        self.z = self.lam * x + (1.0 - self.lam) * prev
        lcl, ucl = self.limits()
        self.out_of_control = bool(self.n >= 2 and not (lcl <= self.z <= ucl))
        if position_m is None:
            return  # counted in the statistics, but a roll map needs the position on the roll
        if len(self.points) >= self.max_points:
            del self.points[: self.max_points // 2 : 2]  # thin the older half, keep the shape of the whole roll
        self.points.append((float(position_m), x, self.z, lcl, ucl))

    @property
    def sigma_short(self) -> float:
        """Within-roll sigma from the moving range; falls back to a tenth of the spec width before two samples."""
        if self.n < 2 or self._mr_sum == 0.0:
            return (self.usl - self.lsl) / 10.0
        return (self._mr_sum / (self.n - 1)) / D2_N2

    @property
    def sigma_overall(self) -> float:
        return math.sqrt(self._m2 / (self.n - 1)) if self.n >= 2 else math.nan

    def limits(self) -> tuple[float, float]:
        s = self.sigma_short
        width = self.L * s * math.sqrt(self.lam / (2.0 - self.lam) * (1.0 - (1.0 - self.lam) ** (2 * max(self.n, 1))))
        return self.target - width, self.target + width

    @property
    def cpk(self) -> float | None:
        s = self.sigma_overall
        if self.n < 2 or not math.isfinite(s) or s <= 0:
            return None
        return min(self.usl - self.mean, self.mean - self.lsl) / (3.0 * s)

    def summary(self) -> dict[str, Any]:
        lcl, ucl = self.limits()
        return {
            "n": self.n, "mean": self.mean if self.n else None, "ewma": None if math.isnan(self.z) else self.z,
            "lcl": lcl, "ucl": ucl, "target": self.target, "lsl": self.lsl, "usl": self.usl,
            "sigma_short": self.sigma_short, "sigma_overall": None if self.n < 2 else self.sigma_overall,
            "cpk": self.cpk, "out_of_control": self.out_of_control,
        }
