"""What ``compare`` shows on the terminal: one line per stage and per cell, while Ultralytics' own output (training
epochs, exports, dataset scans) goes to a log file in the run folder."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

_terminal = None  # the real stdout while ``quiet`` redirects sys.stdout to a log file


def say(message: str) -> None:
    """Print a progress line on the terminal, also from inside ``quiet``."""
    print(message, file=_terminal or sys.stdout, flush=True)


def interactive() -> bool:
    """True when progress goes to a terminal (a progress bar), not to a pipe or file (plain lines)."""
    stream = _terminal or sys.stdout
    return hasattr(stream, "isatty") and stream.isatty()


@contextlib.contextmanager
def quiet(log: Path, verbose: bool = False) -> Iterator[None]:
    """Send stdout, stderr and Ultralytics' logger to ``log`` (appended) for the duration; ``say`` still reaches the
    terminal. With ``verbose`` nothing is redirected."""
    global _terminal
    if verbose or _terminal is not None:  # nested: already quiet
        yield
        return
    from ultralytics.utils import LOGGER

    log.parent.mkdir(parents=True, exist_ok=True)
    handlers = [h for h in LOGGER.handlers if type(h) is logging.StreamHandler]
    with open(log, "a", encoding="utf-8") as f:
        previous = [h.setStream(f) for h in handlers]
        _terminal = sys.stdout
        try:
            with contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
                yield
        finally:
            _terminal = None
            for h, stream in zip(handlers, previous):
                if stream is not None:
                    h.setStream(stream)
