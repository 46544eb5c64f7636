"""The local executor with ``workers>1`` (``cell_workers``): jobs at once, each in a spawned worker process. Jobs
really overlap, results land as in-process ones do, a job's exception and a dead worker are reported, an interrupted
or killed driver takes its workers with it, and real cells train bit-identically to the in-process path."""

import contextlib
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import kill_at, sigint_default

from yolo_leaky.harness.executor import Job, default_workers, execute
from yolo_leaky.utils.errors import UserError
from yolo_leaky.utils.testhold import ENV as HOLD_ENV
from yolo_leaky.utils.testhold import hold_point, marker

WAIT = 300  # seconds a job waits for another's sign before failing the test (a deadline, never a pace)


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + WAIT
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.02)


# ---------------------------------------------------------------- toy jobs (module-level: workers import them)


def toy(args: dict, folder: Path) -> dict:
    """Writes its pid and start time, does what ``args`` says, prints into its log, returns its times."""
    own = Path(args["own"])
    (own / f"{args['key']}.pid").write_text(str(os.getpid()))
    start = time.time()
    (own / f"{args['key']}.started").touch()
    if args.get("wait_for"):
        _wait_for(own / f"{args['wait_for']}.started")  # returns only if the other job runs at the same time
    if args.get("wait_for_result"):
        _wait_for(folder.parent / args["wait_for_result"] / "cell.json")
    if args.get("raise") == "user":
        raise UserError(f"job {args['key']} was given a bad value; fix it")
    if args.get("raise") == "bug":
        raise ValueError(f"job {args['key']} went wrong")
    if args.get("die"):
        os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would
    (folder / "partial.txt").write_text("some work")
    print(f"training {args['key']}")  # into the job's log file
    hold_point(f"cell:{args['key']}")  # tests only: blocks here when the hold names this job
    import torch

    return {"status": "ok", "key": args["key"], "start": start, "end": time.time(), "threads": torch.get_num_threads()}


def toy_jobs(tmp_path: Path, specs: dict, failure: bool = True) -> list[Job]:
    own = tmp_path / "own"
    own.mkdir(parents=True, exist_ok=True)
    return [
        Job(
            key,
            toy,
            {"own": str(own), "key": key, **extra},
            tmp_path / "run/cells" / key,
            failure={"variant": key} if failure else None,
        )
        for key, extra in specs.items()
    ]


def events_of(jobs, **options):
    events = []
    results = execute(
        jobs,
        "local",
        on_start=lambda job: events.append(("start", job.key)),
        on_done=lambda job, result, info: events.append(("done", job.key, info["executor"])),
        **options,
    )
    return results, events


def test_default_workers_fit_the_cores_at_ultralytics_thread_count(monkeypatch):
    from ultralytics.utils import NUM_THREADS

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert default_workers("cpu") == max(1, cores // NUM_THREADS) >= 1
    assert default_workers(0) == default_workers("0") == default_workers("mps") == 1  # an accelerator: one at a time
    if hasattr(os, "sched_getaffinity"):
        import ultralytics.utils

        for cores, threads, workers in ((2, 1, 2), (16, 8, 2), (4, 3, 1), (1, 1, 1)):
            monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cores: set(range(n)))
            monkeypatch.setattr(ultralytics.utils, "NUM_THREADS", threads)  # Ultralytics' min(8, cores - 1)
            assert default_workers("cpu") == workers, (cores, threads)


@pytest.mark.slow  # worker processes (each imports torch and Ultralytics)
def test_two_jobs_run_at_once_and_land_like_in_process_ones(tmp_path):
    """Each job returns only once the other has started, so the run completes only if both ran at the same time
    (one after another, the first would wait for good); ``a`` also waits for ``b``'s result, so ``b`` is reported
    first (completion order, not start order); each job's output is in its own log."""
    import torch

    jobs = toy_jobs(tmp_path, {"a": {"wait_for": "b", "wait_for_result": "b"}, "b": {"wait_for": "a"}})
    results, events = events_of(jobs, workers=2)
    assert events == [("start", "a"), ("start", "b"), ("done", "b", "local"), ("done", "a", "local")]
    a, b = results["a"], results["b"]
    assert a["start"] < b["end"] and b["start"] < a["end"]  # the two spans overlap
    pids = {(tmp_path / f"own/{k}.pid").read_text() for k in ("a", "b")}
    assert len(pids) == 2 and str(os.getpid()) not in pids  # each in a worker process of its own
    for key in ("a", "b"):
        folder = tmp_path / "run/cells" / key
        assert json.loads((folder / "cell.json").read_text()) == results[key]
        assert (folder / "log.txt").read_text() == f"training {key}\n"
        # started with this process's thread count, as the in-process path would start it; recorded as there
        assert results[key]["threads"] == results[key]["executor"]["torch_threads"] == torch.get_num_threads()
    for pid in pids:
        assert not psutil.pid_exists(int(pid))  # the workers exited with the run


@pytest.mark.slow
@pytest.mark.parametrize("kind, error", [("user", UserError), ("bug", ValueError)])
def test_a_job_that_raises_is_reported_as_in_process(tmp_path, kind, error):
    """The same exception, message and files as the in-process path: a UserError stays one line, a bug keeps its
    type (and the worker's traceback as its cause); no result file for the job."""
    raised = {}
    for workers in (1, 2):
        where = tmp_path / str(workers)
        where.mkdir()
        with pytest.raises(error) as caught:
            # in parallel, ``a`` raises once ``b`` runs beside it (waiting for ``a``'s result, which never comes)
            a = {"raise": kind, **({"wait_for": "b"} if workers == 2 else {})}
            execute(toy_jobs(where, {"a": a, "b": {"wait_for_result": "a"}}), "local", workers=workers)
        raised[workers] = (type(caught.value), str(caught.value))
        assert not (where / "run/cells/a/cell.json").exists()
        assert not (where / "run/cells/b/cell.json").exists()  # b waited for a's result: stopped with the run
        if workers == 2:
            assert (kind == "bug") == ("in the worker process running a" in str(caught.value.__cause__))
            assert not psutil.pid_exists(int((where / "own/b.pid").read_text()))
    assert raised[1] == raised[2]


@pytest.mark.slow  # worker processes (each imports torch and Ultralytics)
def test_a_worker_that_dies_mid_job_is_recorded_failed_and_the_rest_go_on(tmp_path):
    """A worker SIGKILLed mid-job (as by the OOM killer): its job is recorded failed (``Job.failure``) with the
    cause, a fresh worker takes the next job, and the run does not hang."""
    jobs = toy_jobs(tmp_path, {"a": {"die": True}, "b": {}, "c": {}})
    results, events = events_of(jobs, workers=2)
    assert results["a"]["status"] == "failed" and results["a"]["variant"] == "a"
    cause = "killed by SIGKILL (out of memory? try cell_workers=1)"
    assert results["a"]["error"] == f"WorkerDied: the worker process running a died ({cause})"
    assert json.loads((tmp_path / "run/cells/a/cell.json").read_text()) == results["a"]
    assert results["b"]["status"] == results["c"]["status"] == "ok"
    assert sorted(e[1] for e in events if e[0] == "done") == ["a", "b", "c"]
    # without a failure record to write, the run stops with one line naming the job and its log
    with pytest.raises(RuntimeError) as caught:
        execute(toy_jobs(tmp_path / "x", {"a": {"die": True}, "b": {}}, failure=False), "local", workers=2)
    assert str(caught.value).startswith("WorkerDied: the worker process running a died (killed by SIGKILL")
    assert "\n" not in str(caught.value) and str(tmp_path / "x/run/cells/a/log.txt") in str(caught.value)


def _gone(pid: int) -> None:
    """Wait (with a deadline) until ``pid`` has exited: gone, or a zombie that no one has reaped yet."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError(f"worker {pid} outlived its driver")


DRIVER = """
import sys
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from test_executor_parallel import toy_jobs
from yolo_leaky.harness.executor import execute
jobs = toy_jobs(Path(sys.argv[1]), {"a": {}, "b": {"wait_for_result": "a"}})
try:
    execute(jobs, "local", workers=2)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_a_signalled_driver_stops_its_workers_and_leaves_whole_files(tmp_path, sig):
    """The driver signalled while job ``b`` holds inside its worker (after ``a`` landed): SIGINT stops the workers
    and exits; SIGKILL takes them down with it (no orphan trains on). ``a``'s result is whole, ``b`` has its
    partial files and no result file."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", HOLD_ENV: "cell:b"}
    tests = str(Path(__file__).parent)
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(tmp_path), tests],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        preexec_fn=sigint_default,  # the session may have SIGINT ignored (a background job)
    )
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if marker("cell:b") in line:
                proc.send_signal(sig)
                break
        out, _ = proc.communicate(timeout=120)  # the pipe closes once the driver and its workers are gone
    except subprocess.TimeoutExpired:
        out = "(the driver or a worker still held the output pipe after 120 s)"
    finally:
        if proc.poll() is None:
            proc.kill()
    out = "".join(seen) + out
    assert proc.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), out[-3000:]
    if sig == signal.SIGINT:
        assert "interrupted" in out and "Traceback" not in out, out[-3000:]
    _gone(int((tmp_path / "own/b.pid").read_text()))  # SIGKILL: it dies at once (PR_SET_PDEATHSIG), not later
    assert json.loads((tmp_path / "run/cells/a/cell.json").read_text())["status"] == "ok"
    assert (tmp_path / "run/cells/b/partial.txt").exists() and not (tmp_path / "run/cells/b/cell.json").exists()
    assert [p.name for p in (tmp_path / "run/cells").rglob(".*")] == []  # no temp file left from a write


# ---------------------------------------------------------------- real cells: one at a time vs two at once

SMALL = [
    "protocol=scratch",
    "variants=[silu,relu]",
    "seeds=[0]",
    "epochs=1",
    "imgsz=64",
    "batch=4",
    "diagnostics=False",
]


@pytest.fixture(scope="module")
def grids(tmp_path_factory):
    """The same two real cells (yolo11n, COCO8, 1 epoch at imgsz 64) trained one after another in this process, and
    two at once through the CLI: interrupted (SIGINT) while ``relu-s0`` holds after its first batch, then resumed
    with two workers."""
    from yolo_leaky.data.datasets import resolve_data
    from yolo_leaky.harness.cells import run_cells
    from yolo_leaky.harness.compare import prepare_run_dir
    from yolo_leaky.harness.config import load_config

    project = tmp_path_factory.mktemp("parallel")
    seq = load_config([f"project={project}", "name=seq", *SMALL, "cell_workers=1"])
    prepare_run_dir(seq, force=False)
    run_cells(seq, resolve_data(seq.data, out_dir=seq.run_dir), "cpu")
    cmd = [
        sys.executable,
        "-m",
        "yolo_leaky.cli",
        "compare",
        f"project={project}",
        "name=par",
        *SMALL,
        "cell_workers=2",
    ]

    def workers(pid: int) -> list[int]:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]

    code, out, held, pids = kill_at(cmd, project, "cell:relu-s0", signal.SIGINT, while_held=workers)
    killed = {
        "code": code,
        "out": out,
        "held": held,
        "pids": pids,
        "cells": {p.parent.name: p.stat().st_mtime_ns for p in (project / "par").glob("cells/*/cell.json")},
        "relu_train": (project / "par/cells/relu-s0/train").exists(),
    }
    for path in (project / "par").rglob("*.json"):
        json.loads(path.read_text())  # every JSON whole
    par = load_config([f"project={project}", "name=par", *SMALL, "cell_workers=2"])
    lines = io.StringIO()
    with contextlib.redirect_stdout(lines):
        run_cells(par, resolve_data(par.data, out_dir=par.run_dir), "cpu")
    return project, killed, lines.getvalue()


@pytest.mark.slow
def test_an_interrupted_parallel_run_stops_its_workers_and_resumes(grids):
    project, killed, resumed = grids
    assert killed["held"] and killed["code"] == 130, killed["out"][-3000:]
    assert "interrupted" in killed["out"] and "Traceback" not in killed["out"], killed["out"][-3000:]
    assert len(killed["pids"]) >= 2  # the two cell workers (and multiprocessing's resource tracker)
    for pid in killed["pids"]:
        _gone(pid)
    assert "relu-s0" not in killed["cells"] and killed["relu_train"]  # stopped mid-training, no result file
    assert resumed.count("reusing completed result") == len(killed["cells"]), resumed
    for key, stamp in killed["cells"].items():  # a cell that had landed was reused, not rewritten
        assert (project / "par/cells" / key / "cell.json").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_cells_trained_two_at_once_equal_cells_trained_one_at_a_time(grids):
    """Same seeds, same thread count: the metrics, every results.csv value but the time, and every weight tensor
    are identical."""
    import torch

    project = grids[0]
    for key in ("silu-s0", "relu-s0"):
        one, two = (json.loads((project / name / "cells" / key / "cell.json").read_text()) for name in ("seq", "par"))
        assert one["status"] == two["status"] == "ok"
        assert one["metrics"] == two["metrics"]
        rows = [
            [{k.strip(): v for k, v in r.items() if k.strip() != "time"} for r in csv.DictReader(open(path))]
            for path in (project / name / "cells" / key / c["results_csv"] for name, c in (("seq", one), ("par", two)))
        ]
        assert rows[0] == rows[1]
        nets = [
            torch.load(project / name / "cells" / key / c["weights"], weights_only=False)
            for name, c in (("seq", one), ("par", two))
        ]
        sd = [(n["ema"] or n["model"]).state_dict() for n in nets]
        assert sd[0].keys() == sd[1].keys()
        for name in sd[0]:
            assert torch.equal(sd[0][name], sd[1][name]), (key, name)
        assert one["executor"]["torch_threads"] == two["executor"]["torch_threads"]  # what made them equal


def test_busy_seconds_count_overlapping_cells_once():
    """The report's "cells' own training and validation" share of the wall time: cells one after another add up,
    cells at once count once (else the harness overhead, the rest of the wall time, would shrink or vanish)."""
    from yolo_leaky.harness.cells import busy_seconds

    one_by_one = [
        {"train_seconds": 10, "validate_seconds": 2, "train_span": [0, 10], "validate_span": [10.5, 12.5]},
        {"train_seconds": 10, "validate_seconds": 2, "train_span": [13, 23], "validate_span": [23, 25]},
    ]
    assert busy_seconds(one_by_one) == pytest.approx(24.0)
    at_once = [
        {"train_seconds": 10, "validate_seconds": 2, "train_span": [0, 10], "validate_span": [10, 12]},
        {"train_seconds": 11, "validate_seconds": 2, "train_span": [1, 12], "validate_span": [12, 14]},
    ]
    assert busy_seconds(at_once) == pytest.approx(14.0)
    assert busy_seconds([{"train_seconds": 10, "validate_seconds": 2}, at_once[0]]) == pytest.approx(24.0)  # no spans
    assert busy_seconds([]) == 0.0


@pytest.mark.parametrize("value", ["-1", "1.5", "two"])
def test_cell_workers_must_be_a_count_and_does_not_change_the_fingerprint(value):
    """A bad count is one line naming the key; a good one only says how cells run, so a rerun with another count
    reuses the completed cells (it is not part of the run folder's fingerprint)."""
    from yolo_leaky.harness.config import load_config

    with pytest.raises(UserError) as raised:
        load_config(["protocol=scratch", f"cell_workers={value}"])
    assert str(raised.value).startswith(f"cell_workers={value!r}" if value == "two" else f"cell_workers={value}")
    assert "must be an integer >= 0" in str(raised.value) and "\n" not in str(raised.value)
    here = load_config(["protocol=scratch"])
    assert (
        here.cell_workers == 0
        and here.fingerprint() == load_config(["protocol=scratch", "cell_workers=3"]).fingerprint()
    )


def test_cell_workers_with_ray_is_refused_in_one_line():
    from yolo_leaky.harness.config import load_config

    with pytest.raises(UserError) as raised:
        load_config(["protocol=scratch", "executor=ray", "cell_workers=2"])
    assert str(raised.value) == (
        "cell_workers=2 is for executor=local; on Ray, cell_cpus and cell_gpus decide how many cells run at once"
    )
