"""Timing of a pipeline's steps, reported as they start and end (the CLI shows a spinner)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable


class Steps:
    """Times each step and tells ``report(step, seconds_or_None)`` when it starts and ends.

    Use as ``steps = Steps(report)`` then ``with steps("features"): ...``; ``steps.seconds``
    holds each finished step's wall time."""

    def __init__(self, report: Callable[[str, float | None], None] | None):
        self.report = report or (lambda step, seconds: None)
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, step: str):
        self.report(step, None)
        start = time.perf_counter()
        yield
        self.seconds[step] = time.perf_counter() - start
        self.report(step, self.seconds[step])
