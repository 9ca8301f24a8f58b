"""Means over seeds with 95% intervals, and the paired difference of two arms.

An experiment trains each backbone once per seed; a cell of the results table is the mean
over seeds with Student's t interval (small samples: three seeds by default). Two arms are
compared by seed, as pairs (the same seed gives both arms the same initialisation and data
order), so the difference's interval leaves out the variation that the pair shares. A
difference is called significant when its interval excludes zero. With one seed there is no
interval, and the results say so rather than guess.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """A mean over ``n`` values and its interval (``None`` with fewer than two values)."""

    mean: float
    low: float | None
    high: float | None
    n: int

    @property
    def significant(self) -> bool | None:
        """Whether the interval excludes zero (``None`` when there is no interval)."""
        if self.low is None or self.high is None:
            return None
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, float | int | bool | None]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n, "significant": self.significant}


def estimate(values: Sequence[float], level: float = LEVEL) -> Estimate:
    """The mean of ``values`` with its ``level`` t interval."""
    if not values:
        raise ValueError("an estimate needs at least one value")
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return Estimate(mean, None, None, n)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half, n)


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Estimate:
    """``a - b`` paired value by value (by seed), with its interval."""
    if len(a) != len(b):
        raise ValueError(f"paired values differ in number: {len(a)} and {len(b)}")
    return estimate([x - y for x, y in zip(a, b)], level)
