"""Atomic file writes: a reader (or a run killed half-way) never sees a half-written file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import UserError


def write_file(path: str | Path, write: Callable[[str], None], suffix: str = ".tmp") -> Path:
    """The one atomic writer: ``write(tmp)`` fills a temp file beside ``path``, which is then renamed over ``path``.

    Raises:
        UserError: When the folder cannot be written or the disk is full (the earlier ``path`` is kept).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise UserError(f"cannot write to {path.parent} ({e.strerror}); choose a writable project= folder") from None
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(
            f"cannot write {path} ({e.strerror}); free disk space or choose another project= folder"
        ) from None
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` atomically (fsynced before the rename)."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    return write_file(path, write)


def write_json(path: str | Path, data) -> Path:
    return write_text(path, json.dumps(data, indent=2, default=_jsonable) + "\n")


def read_json(path: str | Path):
    """The JSON at ``path``, or None if missing or unreadable (a file from a killed run is never half-written,
    but a user may have edited it)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
