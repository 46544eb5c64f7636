"""The kill tests' own harness: a SIGINT reaches the run however the test process was started."""

import signal
import sys

from conftest import kill_at

HOLDS = "from yolo_leaky.utils.testhold import hold_point; hold_point('probe')"


def test_sigint_reaches_a_held_run_when_the_test_process_ignores_sigint(tmp_path):
    """A test session started as a shell's background job (``pytest ... &``) runs with SIGINT ignored, and children
    inherit that: the held run never raised KeyboardInterrupt and the kill tests' fixture waited out its timeout
    (fresh-clone runs of 2026-11/12, 9 errors each). ``kill_at`` must start its child with SIGINT at its default."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        code, out, held, _ = kill_at([sys.executable, "-c", HOLDS], tmp_path, "probe", signal.SIGINT, timeout=60)
    finally:
        signal.signal(signal.SIGINT, before)
    assert held, out
    assert code == -signal.SIGINT and "KeyboardInterrupt" in out, (code, out[-2000:])
