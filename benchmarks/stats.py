"""Timing a callable and summarising the latencies: what every row of ``flare bench`` holds.

Latency percentiles use numpy's default (linear) interpolation between the measured
iterations, so p99 of 50 iterations lies between the two slowest. Throughput is images over
the summed time of the timed iterations, the rate a loop of such calls sustains.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from flare.runtime.foundation.errors import UsageError


@dataclass(frozen=True)
class LatencyStats:
    """Summary of ``iterations`` timed calls, each on a batch of ``batch`` images."""

    batch: int
    iterations: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    images_per_second: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def summarize(latencies_s: list[float] | np.ndarray, batch: int) -> LatencyStats:
    """Percentiles and throughput of per-call latencies given in seconds."""
    times = np.asarray(latencies_s, dtype=np.float64)
    if times.ndim != 1 or len(times) == 0 or not np.all(np.isfinite(times)) or np.any(times <= 0):
        raise UsageError("latencies must be a non-empty list of positive seconds")
    if batch < 1:
        raise UsageError(f"batch must be at least 1, got {batch}")
    p50, p90, p99 = np.percentile(times, [50, 90, 99]) * 1e3
    return LatencyStats(batch=batch, iterations=len(times), p50_ms=float(p50), p90_ms=float(p90),
                        p99_ms=float(p99), mean_ms=float(times.mean() * 1e3), min_ms=float(times.min() * 1e3),
                        max_ms=float(times.max() * 1e3), images_per_second=float(batch * len(times) / times.sum()))


#: Timed calls a row keeps even when its time budget runs out, so percentiles mean something.
MIN_ITERATIONS = 5


def time_calls(call: Callable[[], object], warmup: int, iterations: int,
               sync: Callable[[], None] | None = None, budget_s: float | None = None) -> tuple[list[float], float]:
    """Run ``call`` ``warmup`` times untimed, then ``iterations`` times timed.

    Returns the timed latencies (seconds) and how long the first warm-up call took (the
    compile or engine-build cost a user pays once). ``sync`` waits for queued device work
    (a CUDA stream) so a call's time is its whole run, not its launch. With ``budget_s``,
    timing stops once that much time was spent on timed calls and at least
    :data:`MIN_ITERATIONS` were made (a large model on a small CPU); the count is reported.
    """
    def once() -> float:
        start = time.perf_counter()
        call()
        if sync is not None:
            sync()
        return time.perf_counter() - start

    first = once() if warmup > 0 else 0.0
    for _ in range(max(warmup - 1, 0)):
        once()
    latencies: list[float] = []
    while len(latencies) < iterations:
        latencies.append(once())
        if budget_s is not None and len(latencies) >= MIN_ITERATIONS and sum(latencies) > budget_s:
            break
    return latencies, first
