"""The analysis time budget: analysis runs on a worker thread and is abandoned when it overruns."""
from __future__ import annotations

import concurrent.futures
from typing import Any, Callable


class AnalysisTimeout(Exception):
    """Analysis did not finish within analysis.time_budget_seconds."""


# Analysis runs on a pool of long-lived workers rather than a new thread per message; the
# pool grows with concurrent messages (libmilter serves each connection in its own thread).
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="otpguard-analyse")


def run_with_deadline(fn: Callable[[], Any], seconds: float) -> Any:
    """Run fn on an analysis worker; raise AnalysisTimeout if it takes longer than seconds.

    A Python thread cannot be killed: an overrunning analysis finishes in the background
    and its result is dropped; the message has long been answered by then.
    """
    future = _POOL.submit(fn)
    try:
        return future.result(timeout=seconds)
    except concurrent.futures.TimeoutError:
        raise AnalysisTimeout(f"analysis exceeded {seconds:g}s") from None
