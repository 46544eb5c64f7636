"""Test-only hold points: interruption tests make a run stop at a named point and wait there for their signal.

``YOLO_LEAKY_TEST_HOLD=<point>`` is for tests only, never for normal use. With it set, the hold point of that name
prints ``marker(point)`` on the process's real stdout (flushed, also while ``console.quiet`` redirects output) and
then blocks until the process is interrupted (SIGINT raises ``KeyboardInterrupt`` out of the wait) or killed. A
kill test waits for the marker and then signals, so the signal lands in the middle of the stage on any CPU, however
fast the stage would otherwise finish. Unset, or naming another point, a hold point returns at once.

Points: ``cell:<key>`` (after the cell's first training batch, e.g. ``cell:relu-s0``), ``benchmark:<runtime>``
(after the first timed block, e.g. ``benchmark:ort-cpu``), ``report`` (after results.json is written, before
results.csv and report.md). This module imports nothing from the package, so any layer may call it.
"""

from __future__ import annotations

import os
import sys
import time

ENV = "YOLO_LEAKY_TEST_HOLD"


def requested(point: str) -> bool:
    """True when the test-only variable names ``point``."""
    return os.environ.get(ENV) == point


def marker(point: str) -> str:
    """The line a hold point prints before it blocks."""
    return f"[test-hold] {point}: holding until interrupted"


def hold_point(point: str) -> None:
    """Block here for good when ``YOLO_LEAKY_TEST_HOLD`` names ``point`` (tests only); else return at once."""
    if not requested(point):
        return
    print(marker(point), file=sys.__stdout__ or sys.stdout, flush=True)
    while True:
        time.sleep(0.05)
