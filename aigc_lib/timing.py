"""Timing a piece of code the way the book reports it: the best of a few runs."""
from __future__ import annotations

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
