"""Where a comparison's jobs run: on this machine (``local``), or as Ray tasks on a cluster (``ray``).

A job is a module-level function ``fn(args, folder) -> result`` that writes files only under ``folder`` and returns
a JSON-able result. Both executors end the same way: the job's files in its folder on this machine, then its result
written atomically as ``result_file`` (``cell.json``) last, so a folder whose result file exists is complete.

With Ray no filesystem is assumed to be shared. The files a job reads (``args["inputs"]``: ``{name: path}``, a
file or a folder) are shipped by value through Ray's object store, each once per run, and materialised in a temp
folder on the worker, where ``args["inputs"]`` is rewritten to point at them. The job runs in its own temp folder
there and returns its result with the bytes of every file it wrote; the driver writes them into the job's folder.
A worker that dies mid-job is retried by Ray (``max_retries``); a job's own exception is not retried.

Locally, ``workers=1`` runs the jobs in this process, one after another. ``workers>1`` runs up to that many at once,
each in a worker process of its own (``spawn``: a fresh interpreter, no state forked from this one), kept for the
next job. A worker starts each job with this process's torch thread count, as the in-process path would, writes the
job's files into its folder and sends its result back; this process writes the result file. A worker ignores SIGINT
(this process handles it, and terminates its workers) and dies with this process (SIGKILL included: Linux's
``PR_SET_PDEATHSIG``, elsewhere a thread watching its parent), so no job outlives an interrupted run. A worker that
dies mid-job (killed, out of memory) loses that job only: it is recorded with ``Job.failure``.

Threads: a CPU-trained cell depends on the number of threads that trained it (measured: the same cell trained with
1 and with 2 threads on one machine ends with different weights; with the same count, bit-identical ones). Ray gives
a worker ``OMP_NUM_THREADS`` (its ``num_cpus``, unless the driver's environment already set it), but Ultralytics'
``select_device`` sets torch's threads to ``min(8, cores - 1)`` for every CPU training and validation, in any
process; so on one machine both executors, and any number of local workers, train with the same count, and each
result records it (``executor.torch_threads``). ``default_workers`` fits as many cells at that count as the cores
hold: 2 on 2 cores (1 thread each) and on 16 (8 each), 1 on 4.
"""

from __future__ import annotations

import atexit
import ctypes
import io
import multiprocessing
import os
import pickle
import re
import shutil
import signal
import socket
import sys
import tarfile
import tempfile
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml as pyyaml

from ..utils import atomic
from ..utils.console import quiet
from ..utils.errors import UserError

RAY_MISSING = "executor=ray needs Ray: pip install 'yolo-leaky[ray]'"
FORWARDED_ENV = ("YOLO_OFFLINE", "YOLO_AUTOINSTALL")  # settings a worker must share with the driver; not paths


@dataclass(frozen=True)
class Job:
    """One independent unit of work.

    Attributes:
        key: Unique name, e.g. ``silu-s0``.
        fn: A module-level function ``fn(args, folder) -> dict`` (Ray ships it by reference: every worker needs
            yolo-leaky installed). It writes files only under ``folder``.
        args: Plain picklable values; ``args["inputs"]`` maps names to the files or folders the job reads.
        folder: Where the job's files belong on this machine.
        result_file: The result's JSON file in ``folder``, written last.
        log: The file in ``folder`` that receives the job's stdout, stderr and Ultralytics' log.
        own_folder: The folder belongs to this job alone: an earlier, unfinished attempt's files are removed before a
            Ray result lands (a shared folder such as the run folder is never emptied).
        failure: Fields of the result recorded when the job is lost for good (its worker died on every attempt);
            None raises instead.
    """

    key: str
    fn: Callable[[dict, Path], dict]
    args: dict
    folder: Path
    result_file: str = "cell.json"
    log: str = "log.txt"
    own_folder: bool = True
    failure: dict | None = None


def execute(
    jobs: Iterable[Job],
    executor: str = "local",
    *,
    ray_address: str | None = None,
    cell_cpus: int = 1,
    cell_gpus: float = 0,
    max_retries: int = 3,
    workers: int = 1,
    verbose: bool = False,
    on_start: Callable[[Job], None] | None = None,
    on_done: Callable[[Job, dict, dict], None] | None = None,
) -> dict[str, dict]:
    """Run every job and return ``{key: result}``; each result is on disk (``folder/result_file``) when it returns.

    Args:
        jobs: The jobs, in the order the local executor starts them (and Ray submits them).
        executor: ``local`` (on this machine, started in order; Ray is not imported) or ``ray``.
        ray_address: A running Ray cluster to use (``auto``, ``ray://head:10001``); None starts a local instance.
            A connection this process already holds is used as it is.
        cell_cpus: CPUs each Ray task reserves.
        cell_gpus: GPUs each Ray task reserves (fractions pack several tasks on one GPU).
        max_retries: Times Ray reruns a task whose worker process died.
        workers: ``local``: jobs at once. 1 runs them in this process; more run each in a worker process
            (``default_workers`` gives the count the cores hold).
        verbose: Let the jobs' output reach the terminal instead of their log files.
        on_start: Called as a job starts (local) or is submitted (Ray).
        on_done: Called as each job finishes, in completion order, with the job, its result and
            ``{"seconds", "node", "torch_threads", "executor"}`` (also stored under the result's ``executor`` key).

    Raises:
        UserError: Ray is missing, or a job raised one.
        RuntimeError: A local worker died mid-job and the job has no ``failure`` to record.

    >>> from yolo_leaky.harness.executor import execute
    >>> execute([], "local", workers=2)
    {}
    """
    jobs = list(jobs)
    keys = [job.key for job in jobs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"job keys repeat: {keys}")
    if executor == "local":
        if workers > 1 and len(jobs) > 1:
            return _execute_workers(jobs, workers, verbose, on_start, on_done)
        return _execute_local(jobs, verbose, on_start, on_done)
    if executor == "ray":
        return _execute_ray(jobs, ray_address, cell_cpus, cell_gpus, max_retries, verbose, on_start, on_done)
    raise UserError(f"executor={executor!r} is not one of local, ray")


# ---------------------------------------------------------------- local


def _execute_local(jobs, verbose, on_start, on_done) -> dict[str, dict]:
    results = {}
    for job in jobs:
        if on_start:
            on_start(job)
        start = time.perf_counter()
        with quiet(job.folder / job.log, verbose):
            result = job.fn(job.args, job.folder)
        results[job.key] = _finish(job, result, _info("local", start))
        if on_done:
            on_done(job, results[job.key], results[job.key]["executor"])
    return results


def default_workers(device) -> int:
    """How many cells train at once on this machine with the local executor.

    Ultralytics gives every CPU training ``min(8, cores - 1)`` torch threads (``NUM_THREADS``), whatever else runs,
    so one cell at a time leaves cores idle: 1 of 2 on a 2-core machine. This is as many cells as the cores hold at
    that count (at least 1). A GPU (any device but ``cpu``) trains one cell at a time.

    Args:
        device: The cells' training device (``cells.pick_device``).

    >>> default_workers(0)
    1
    >>> default_workers("cpu") >= 1
    True
    """
    if str(device).strip().lower() != "cpu":
        return 1
    from ultralytics.utils import NUM_THREADS

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // NUM_THREADS)


class _Worker:
    """A local worker process and the driver's end of its pipe."""

    def __init__(self, context):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child, os.getpid()), name="yolo-leaky worker")
        self.process.start()
        child.close()
        self.job: Job | None = None

    def stop(self, now: bool) -> None:
        self.conn.close()  # an idle worker reads EOF and returns
        if now:
            self.process.terminate()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def _execute_workers(jobs, workers, verbose, on_start, on_done) -> dict[str, dict]:
    from multiprocessing.connection import wait

    import torch

    context = multiprocessing.get_context("spawn")
    queue, idle, busy, everyone, results = deque(jobs), [], [], [], {}
    clean = False
    try:
        while queue or busy:
            while queue and len(busy) < workers:
                worker = idle.pop() if idle else _Worker(context)
                if worker not in everyone:
                    everyone.append(worker)
                worker.job = queue.popleft()
                threads = torch.get_num_threads()  # what the in-process path would start the job with
                worker.conn.send((worker.job.fn, worker.job.args, worker.job.folder, worker.job.log, verbose, threads))
                busy.append(worker)
                if on_start:
                    on_start(worker.job)
            ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy]))
            for worker in [w for w in busy if w.conn in ready or w.process.sentinel in ready]:
                job, message = worker.job, _receive(worker)
                busy.remove(worker)
                if message is None:  # the worker died mid-job
                    everyone.remove(worker)
                    worker.stop(now=True)
                    result, info = _lost(job, worker.process.exitcode)
                elif message[0] == "raised":
                    _reraise(job, *message[1:])
                else:
                    result, info = message[1], message[2]
                    idle.append(worker)
                results[job.key] = _finish(job, result, info)
                if on_done:
                    on_done(job, results[job.key], info)
        clean = True
    finally:
        for worker in everyone:  # done: idle workers exit; interrupted or failed: every worker is stopped now
            worker.stop(now=not clean)
    return {job.key: results[job.key] for job in jobs}


def _receive(worker: _Worker):
    """The worker's message, or None when it died without sending one."""
    try:
        return worker.conn.recv() if worker.conn.poll() else None
    except (EOFError, OSError):
        return None


def _lost(job: Job, exitcode: int | None) -> tuple[dict, dict]:
    """The result of a job whose worker process died: ``job.failure`` marked failed, or a one-line error."""
    if exitcode is not None and exitcode < 0:
        how = f"killed by {signal.Signals(-exitcode).name}"
        how += " (out of memory? try cell_workers=1)" if exitcode == -signal.SIGKILL else ""
    else:
        how = f"exit code {exitcode}"
    error = f"WorkerDied: the worker process running {job.key} died ({how})"
    if job.failure is None:
        raise RuntimeError(f"{error}; its log: {job.folder / job.log}")
    info = {"executor": "local", "seconds": None, "node": socket.gethostname(), "torch_threads": None}
    return {**job.failure, "status": "failed", "error": error}, info


def _reraise(job: Job, error: bytes | None, text: str, formatted: str):
    """A job's own exception, raised here as the in-process path would raise it (the worker's traceback chained)."""
    try:
        e = pickle.loads(error) if error is not None else None
    except Exception:  # an exception type that does not unpickle
        e = None
    if isinstance(e, UserError):
        raise UserError(str(e)) from None
    if e is None:
        e = RuntimeError(text)
    raise e from _RemoteTraceback(f"in the worker process running {job.key}:\n{formatted}")


class _RemoteTraceback(Exception):
    pass


def _worker_main(conn, parent: int) -> None:
    """A worker process: run the jobs the driver sends, one at a time, until it closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the driver, which stops its workers
    _die_with(parent)
    import torch

    while True:
        try:
            fn, args, folder, log, verbose, threads = conn.recv()
        except (EOFError, OSError):
            return
        torch.set_num_threads(threads)
        start = time.perf_counter()
        try:
            with quiet(folder / log, verbose):
                result = fn(args, folder)
        except Exception as e:
            try:
                error = pickle.dumps(e)
            except Exception:
                error = None
            conn.send(("raised", error, f"{type(e).__name__}: {e}", traceback.format_exc()))
            continue
        conn.send(("ok", result, _info("local", start)))


def _die_with(parent: int) -> None:
    """End this process when ``parent`` dies, however it dies: no orphan keeps training into a run folder."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(1, int(signal.SIGKILL)) == 0:  # PR_SET_PDEATHSIG
                if os.getppid() != parent:  # it died before the call
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _info(executor: str, start: float) -> dict:
    import torch

    return {
        "executor": executor,
        "seconds": time.perf_counter() - start,
        "node": socket.gethostname(),
        "torch_threads": torch.get_num_threads(),  # after the job: Ultralytics sets it for CPU training and val
    }


def _finish(job: Job, result: dict, info: dict) -> dict:
    result = {**result, "executor": info}
    atomic.write_json(job.folder / job.result_file, result)  # last: the folder is complete once this exists
    return result


# ---------------------------------------------------------------- ray


def import_ray():
    """Ray, or a one-line ``UserError`` naming the install command."""
    try:
        import ray
    except ImportError:
        raise UserError(RAY_MISSING) from None
    return ray


def connect(ray_address: str | None, verbose: bool = False):
    """Connect to ``ray_address``, or start a quiet local Ray instance (no dashboard, no worker output on the
    terminal unless ``verbose``, logs in a temp folder) when it is None; a connection this process already holds is
    reused."""
    ray = import_ray()
    if ray.is_initialized():
        return ray  # an earlier stage's connection, or one the caller made
    import logging

    options = {"include_dashboard": False, "log_to_driver": verbose, "logging_level": logging.ERROR}
    if ray_address is None:
        # a short path: Ray's socket paths must stay under the OS limit of ~107 characters
        temp_dir = tempfile.mkdtemp(prefix="yolo-leaky-ray-")
        ray.init(address="local", _temp_dir=temp_dir, **options)
        _local["temp_dir"] = temp_dir
        atexit.register(_stop_local, ray, temp_dir)  # after Ray's own exit hook is registered: runs before it
    else:
        try:
            ray.init(address=ray_address, **options)
        except ConnectionError as e:
            raise UserError(
                f"cannot reach the Ray cluster at ray_address={ray_address!r} ({e}); check the address"
            ) from None
    return ray


_local: dict = {}  # the local Ray instance this process started: {"temp_dir": its logs' folder}
_keep_logs: set[str] = set()  # Ray temp folders kept after exit: a worker died there for good, its logs explain why


def _stop_local(ray, temp_dir: str) -> None:
    ray.shutdown()
    if temp_dir not in _keep_logs:
        shutil.rmtree(temp_dir, ignore_errors=True)


def _execute_ray(jobs, ray_address, cell_cpus, cell_gpus, max_retries, verbose, on_start, on_done) -> dict[str, dict]:
    ray = connect(ray_address, verbose)
    _check_resources(ray, cell_cpus, cell_gpus)
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    task = ray.remote(
        num_cpus=cell_cpus,
        num_gpus=cell_gpus,
        max_retries=max_retries,
        retry_exceptions=False,
        runtime_env={"env_vars": env} if env else None,
    )(_run_on_worker)
    shipped: dict[str, object] = {}  # one object per input path, shared by every job that reads it
    pending, results, run = {}, {}, uuid.uuid4().hex[:12]
    try:
        for job in jobs:
            inputs = {}
            for name, path in (job.args.get("inputs") or {}).items():
                if path is None:
                    continue
                source = str(Path(path).resolve())
                if source not in shipped:
                    shipped[source] = ray.put(_pack(Path(path)))
                inputs[name] = shipped[source]
            safe = re.sub(r"[^\w.-]", "_", job.key)
            workdir = f"yolo-leaky-job-{run}-{safe}"  # the same on every attempt of the job
            ref = task.options(name=f"yolo-leaky {job.key}").remote(
                job.fn, job.args, inputs, workdir, job.log, job.result_file, verbose
            )
            pending[ref] = job
            if on_start:
                on_start(job)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                result, files, info = ray.get(ready[0])
            except ray.exceptions.RayTaskError as e:
                if isinstance(e.cause, UserError):
                    raise UserError(str(e.cause)) from None
                raise
            except ray.exceptions.RayError as e:  # the worker died on every attempt (out of memory, node lost)
                if job.failure is None:
                    raise
                first = (str(e).strip().splitlines() or [""])[0]
                logs = _local.get("temp_dir")  # a cluster keeps its logs on its nodes
                if logs:
                    _keep_logs.add(logs)
                where = f" (Ray's logs: {logs}/session_latest/logs)" if logs else ""
                error = f"{type(e).__name__}: {first}{where}"
                result, files = {**job.failure, "status": "failed", "error": error}, {}
                info = {"executor": "ray", "seconds": None, "node": None, "torch_threads": None}
            _land(job, files)
            results[job.key] = _finish(job, result, info)
            if on_done:
                on_done(job, results[job.key], info)
    finally:
        for ref in pending:  # interrupted: stop what still runs (their results would land nowhere)
            ray.cancel(ref, force=True)
    return {job.key: results[job.key] for job in jobs}


def _check_resources(ray, cell_cpus: float, cell_gpus: float) -> None:
    """A task that asks for more than any node has would wait forever: say so instead."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if not any(r.get("CPU", 0) >= cell_cpus and r.get("GPU", 0) >= cell_gpus for r in nodes):
        have = ", ".join(f"{r.get('CPU', 0):g} CPU/{r.get('GPU', 0):g} GPU" for r in nodes) or "no node"
        raise UserError(
            f"no Ray node has cell_cpus={cell_cpus} and cell_gpus={cell_gpus} (nodes: {have}); lower them "
            "or add such a node"
        )


def _land(job: Job, files: dict[str, bytes]) -> None:
    """Write a Ray job's files into its folder, each atomically; the result file comes after (``_finish``)."""
    if job.own_folder and job.folder.exists():
        shutil.rmtree(job.folder)  # an earlier attempt that never completed (no result file, or a failed one)
    root = job.folder.resolve()
    for rel, data in sorted(files.items()):
        target = (job.folder / rel).resolve()
        if root not in target.parents or rel == job.result_file:
            raise ValueError(f"job {job.key} returned a file outside its folder or over its result: {rel}")
        atomic.write_file(target, lambda tmp, data=data: _write_bytes(tmp, data))


def _write_bytes(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _pack(path: Path) -> dict:
    """An input by value: a file's bytes; a folder as an uncompressed tar in memory; a dataset YAML with the
    folder its ``path:`` names, so that the YAML can point at the copy on the worker."""
    if path.is_dir():
        return {"kind": "dir", "name": path.name, "data": _tar(path)}
    if not path.is_file():
        raise UserError(f"input {path} does not exist on this machine; Ray ships inputs from the driver")
    root = _dataset_root(path)
    if root is None:
        return {"kind": "file", "name": path.name, "data": path.read_bytes()}
    return {"kind": "dataset", "name": path.name, "data": path.read_bytes(), "root": _tar(root), "root_name": root.name}


def _tar(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", dereference=True) as tar:  # linked files travel as files
        tar.add(folder, arcname=folder.name)
    return buffer.getvalue()


def _dataset_root(path: Path) -> Path | None:
    """The folder a dataset YAML's splits live in, resolved as Ultralytics resolves ``path:`` (absolute; else
    relative to the working folder, else to its datasets_dir; no ``path:`` means the YAML's folder). None for any
    other file. Splits given as absolute paths outside that folder cannot be shipped with it: a ``UserError``."""
    if path.suffix not in (".yaml", ".yml"):
        return None
    try:
        cfg = pyyaml.safe_load(path.read_text())
    except (pyyaml.YAMLError, UnicodeDecodeError):
        return None
    if not isinstance(cfg, dict) or not ("train" in cfg or "val" in cfg) or "backbone" in cfg:
        return None  # not a dataset YAML (a model YAML ships as a plain file)
    from ultralytics.utils import DATASETS_DIR

    root = Path(cfg.get("path") or path.parent)
    if not root.exists() and not root.is_absolute():
        root = Path(DATASETS_DIR) / root
    root = root.resolve()
    if not root.is_dir():
        raise UserError(f"dataset {path} names path: {root}, which is not a folder here; Ray ships it from the driver")
    for split in ("train", "val", "test"):
        entries = cfg.get(split) or []
        for entry in entries if isinstance(entries, list) else [entries]:
            if root not in (root / str(entry)).resolve().parents:  # an absolute entry replaces root
                raise UserError(
                    f"dataset {path}: {split}: {entry} lies outside its path: {root}, so Ray cannot ship it with the "
                    "dataset; put the splits inside path: and name them relative to it"
                )
    return root


def _unpack(packed: dict, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    target = into / packed["name"]
    if packed["kind"] == "dir":
        _untar(packed["data"], into)
        return target
    if packed["kind"] == "dataset":
        _untar(packed["root"], into / "root")
        cfg = pyyaml.safe_load(packed["data"].decode())
        cfg["path"] = str(into / "root" / packed["root_name"])
        target.write_text(pyyaml.safe_dump(cfg, sort_keys=False))
        return target
    target.write_bytes(packed["data"])
    return target


def _untar(data: bytes, into: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.10.12+ and 3.11.4+
            tar.extractall(into, filter="data")  # refuses absolute paths and links out of the folder
        else:
            tar.extractall(into)  # our own archive of the driver's folder


def _run_on_worker(fn, args: dict, inputs: dict, workdir: str, log: str, result_file: str, verbose: bool):
    """The Ray task: inputs materialised in a temp folder, the job run in its own temp folder, every file it
    wrote returned as bytes (paths relative to that folder); the result travels as the return value.

    The temp folder's name is the same on every attempt of a job, so an attempt removes what a dead earlier attempt
    left on this node (a worker killed mid-job cannot clean up after itself)."""
    import ray

    start = time.perf_counter()
    tmp = Path(tempfile.gettempdir()) / workdir
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        local = {name: str(_unpack(ray.get(ref), tmp / "inputs" / name)) for name, ref in inputs.items()}
        folder = tmp / "job"
        folder.mkdir(parents=True)
        with quiet(folder / log, verbose):
            result = fn({**args, "inputs": {**(args.get("inputs") or {}), **local}}, folder)
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        files.pop(result_file, None)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result, files, _info("ray", start)
