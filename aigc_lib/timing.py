"""Timing a piece of code the way the book reports it: the best of a few runs (and, for
``make bench``, the median and worst beside it)."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable


def best_time(fn: Callable[[], Any], repeats: int = 3) -> tuple[float, Any]:
    """``(seconds, result)``: the fastest of ``repeats`` calls of ``fn()`` (the least disturbed by the
    machine) and the last call's result."""
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def spread(fn: Callable[[], Any], repeats: int = 5) -> dict[str, float]:
    """Seconds of ``fn()`` over ``repeats`` calls after one untimed warm-up call: ``best``,
    ``median`` and ``worst``. A benchmark reports all three: on a shared machine they differ."""
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"best": min(times), "median": statistics.median(times), "worst": max(times)}
