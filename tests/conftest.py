"""Shared test setup: offline Ultralytics, a private settings dir, and a writable COCO8 copy."""

import importlib
import os
import shutil
import tempfile
from pathlib import Path

os.environ["YOLO_OFFLINE"] = "1"
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-leaky-cfg-"))
os.environ.setdefault("YOLO_AUTOINSTALL", "False")
# The offline stand-in checkpoint (standin.py) is trained once per test session (~2 min) into this cache; a
# developer may point it at a warm cache (entries are checked against their recorded SHA-256).
os.environ.setdefault("YOLO_LEAKY_CACHE", tempfile.mkdtemp(prefix="yolo-leaky-cache-"))

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_COCO8 = REPO.parent / "shared/datasets/coco8"


def require(module: str, extra: str):
    """Import an optional dependency: without it, skip here, but fail in CI, which installs ``.[dev]`` and with it
    every extra (a skipped test in CI is a test that did not run)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        message = f"{module} is not installed: pip install 'yolo-leaky[{extra}]'"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI installs .[dev], which brings it: CI must run every test, not skip it)")
        pytest.skip(message)


@pytest.fixture(scope="session")
def coco8(tmp_path_factory) -> Path:
    """A writable copy of COCO8 (Ultralytics writes labels/*.cache beside the labels)."""
    if not SHARED_COCO8.is_dir():
        message = f"COCO8 not found at {SHARED_COCO8}: put the shared datasets beside the checkout"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must run every test, not skip half the suite)")
        pytest.skip(message)
    dst = tmp_path_factory.mktemp("data") / "coco8"
    shutil.copytree(SHARED_COCO8, dst)
    for p in [dst, *dst.rglob("*")]:
        p.chmod(p.stat().st_mode | 0o200)
    return dst


@pytest.fixture(scope="session")
def coco8_yaml(coco8, tmp_path_factory) -> Path:
    from yolo_leaky.core.offline import write_coco8_yaml

    return write_coco8_yaml(coco8, tmp_path_factory.mktemp("datayaml"))


# Tiny training settings shared by every real training test: real Ultralytics training, seconds on 2 cores.
TRAIN_KW = dict(
    epochs=1, imgsz=64, batch=4, workers=0, plots=False, amp=False, seed=0, deterministic=True, verbose=False
)


@pytest.fixture(scope="session")
def standin():
    """The offline stand-in: (checkpoint path, record), trained on first use in the session's cache."""
    from yolo_leaky.data.standin import standin_checkpoint

    return standin_checkpoint(log=lambda line: None)


def require_target(name: str):
    """A deployment target (``yolo_leaky.targets``) whose toolchain may be absent, such as one in a venv of its own
    that no import can probe: its backend when ``missing()`` finds nothing; otherwise skip here and fail in CI, which
    installs every toolchain (``scripts/setup.sh``)."""
    from yolo_leaky.targets.base import backends

    backend = backends()[name]()
    problem = backend.missing()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem + " (CI runs scripts/setup.sh, which installs it: CI must run every test, not skip it)")
        pytest.skip(problem)
    return backend
