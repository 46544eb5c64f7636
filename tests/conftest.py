"""Shared test setup: offline Ultralytics, a private settings dir, and a writable COCO8 copy."""

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ["YOLO_OFFLINE"] = "1"
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-leaky-cfg-"))
os.environ.setdefault("YOLO_AUTOINSTALL", "False")
# The offline stand-in checkpoint (standin.py) is trained once per test session (~2 min) into this cache; a
# developer may point it at a warm cache (entries are checked against their recorded SHA-256).
os.environ.setdefault("YOLO_LEAKY_CACHE", tempfile.mkdtemp(prefix="yolo-leaky-cache-"))

import pytest  # noqa: E402

from yolo_leaky.utils.testhold import ENV as HOLD_ENV  # noqa: E402
from yolo_leaky.utils.testhold import marker  # noqa: E402

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


# Runs many CLI commands, each in a process of its own, for the price of one interpreter start: a server imports
# the CLI (torch, Ultralytics, the whole package) once, then forks one child per command. A child is a fresh copy of
# a process that has only imported modules: it chdirs, takes its environment, points file descriptors 1 and 2 at
# files of its own and calls the console entry point (``yolo_leaky.cli:main``) as ``yolo-leaky`` does; an exception
# escaping it prints its traceback and exits 1, as the interpreter would. Nothing a command does reaches another.
# Imports dominate a failing command's time (~6 s each on 2 cores), so a batch of refusals costs seconds, not minutes.
_FORK_SERVER = """
import json, os, sys, traceback
jobs, workers = json.loads(open(sys.argv[1]).read()), int(sys.argv[2])
import yolo_leaky.cli as cli
sys.stdout.flush()
sys.stderr.flush()
running = {}

def reap():
    pid, status = os.wait()
    job = running.pop(pid, None)
    if job is None:  # not a command's process (a library's helper): nothing to record
        return
    with open(job["rc"], "w") as f:
        f.write(str(os.waitstatus_to_exitcode(status)))

for job in jobs:
    while len(running) >= workers:
        reap()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for fd, name in ((1, "stdout"), (2, "stderr")):
                os.dup2(os.open(job[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
            os.chdir(job["cwd"])
            os.environ.update(job["env"])
            sys.argv = ["yolo-leaky", *job["args"]]
            try:
                code = cli.main(job["args"])
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:
                traceback.print_exc()
                code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    running[pid] = job
while running:
    reap()
"""


def sigint_default() -> None:
    """In the child, before exec: SIGINT back to its default. A shell's background job (``pytest ... &``) starts with
    SIGINT ignored and every child inherits that, so the child's Python would never raise KeyboardInterrupt and a
    SIGINT kill test would wait forever (seen in fresh-clone runs started in the background, 2026-11/12)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def kill_at(cmd, cwd, hold, sig, while_held=None, timeout: float = 300):
    """Start ``cmd`` with the test-only hold point ``hold`` (``yolo_leaky.utils.testhold``): the run stops inside the
    stage, part of its work done, prints the hold's marker and blocks. Once the marker is seen, call
    ``while_held(pid)``, then send ``sig``. The run waits for the signal, so it lands mid-stage on any CPU. The child
    starts with SIGINT at its default whatever the test process inherited (``sigint_default``).

    Returns:
        The exit code, the output, whether the hold was reached, and what ``while_held`` returned."""
    # faulthandler: a run that outlives its signal is sent SIGABRT below and dumps every thread's stack
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1", HOLD_ENV: hold}
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        preexec_fn=sigint_default,
    )
    seen, held, during, out = [], False, None, ""
    try:
        for line in proc.stdout:
            seen.append(line)
            if marker(hold) in line:
                held = True
                during = while_held(proc.pid) if while_held else None
                proc.send_signal(sig)
                break
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            out, _ = proc.communicate(timeout=60)
            stuck = f"the run did not exit within {timeout} s of {sig!r} at {hold}; stacks:\n{out[-6000:]}"
            raise AssertionError(stuck) from None
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, "".join(seen) + (out or ""), held, during


def run_clis(jobs: dict, workers: int = 2, timeout: float = 1200) -> dict:
    """Run CLI commands, each in its own forked process (see ``_FORK_SERVER``), ``workers`` at a time.

    ``jobs`` maps a key to ``(args, cwd, extra_env)`` (``extra_env`` may be None); returns the key's
    ``subprocess.CompletedProcess`` (exit code, stdout and stderr as text), as ``subprocess.run`` of
    ``yolo-leaky *args`` would."""
    folder = Path(tempfile.mkdtemp(prefix="yolo-leaky-clis-"))
    specs = []
    for i, (args, cwd, env) in enumerate(jobs.values()):
        paths = {name: str(folder / f"{i}.{name}") for name in ("stdout", "stderr", "rc")}
        specs.append({"args": [str(a) for a in args], "cwd": str(cwd), "env": dict(env or {}), **paths})
    (folder / "jobs.json").write_text(json.dumps(specs))
    server = subprocess.run(
        [sys.executable, "-c", _FORK_SERVER, str(folder / "jobs.json"), str(workers)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )
    assert server.returncode == 0, server.stderr[-3000:]
    results = {}
    for key, spec in zip(jobs, specs):
        rc_path = Path(spec["rc"])
        assert rc_path.is_file(), f"{key}: no exit code: the fork server lost it ({server.stderr[-2000:]})"
        results[key] = subprocess.CompletedProcess(
            ["yolo-leaky", *spec["args"]],
            int(rc_path.read_text()),
            Path(spec["stdout"]).read_text(errors="replace"),
            Path(spec["stderr"]).read_text(errors="replace"),
        )
    shutil.rmtree(folder, ignore_errors=True)
    return results
