"""``yolo-leaky compare``: train and validate each activation variant on the same data and seeds, time them side
by side, check their exports, and write an honest report.

Data flow: config -> cells (variant x seed: train, validate) -> cost -> speed (export, interleaved benchmark,
export check) -> diagnostics -> summary -> report. Every stage writes its result atomically (``cached_stage``); a
rerun reuses what is complete. The terminal shows one line per stage and per cell; Ultralytics' own output goes to
``log.txt`` files in the run folder (``verbose=True`` shows it).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch
import ultralytics
from ultralytics.utils.torch_utils import get_flops, get_num_params

from ..core.loading import load, model_task, save_checkpoint
from ..core.memory import saved_tensor_bytes
from ..core.tasks import NO_DISTILL, TASKS, headline
from ..data.datasets import dataset_info, file_digest, locate_data, resolve_data, write_coco8_yaml
from ..data.standin import STANDIN, cache_root, recipe_key, standin_checkpoint
from ..data.standin import TASKS as STANDIN_DATA
from ..data.synthetic import FORMAT_VERSION
from ..measure.bench import benchmark, export_onnx
from ..measure.diagnostics import prelu_slopes, summarize_slopes, unit_health
from ..measure.onnx_check import check_export
from ..measure.quant import measure_int8
from ..targets.base import backends
from ..utils import atomic
from ..utils.console import quiet, say
from ..utils.errors import UserError
from ..version import __version__
from .cells import (
    Models,
    busy_seconds,
    cached_stage,
    cell_key,
    model_keys,
    pick_device,
    pretrained_baseline,
    run_cells,
    swap_stage,
    variant_models,
)
from .config import AUTO, AUTO_RECOVERY, CompareConfig, load_config, recovery_methods
from .executor import Job, execute
from .mixed import check_mixed, mixed_specs, rank_stage
from .report import write_report
from .summary import Summary, headline_recovery, summarize
from .target_compare import target_tables, targets_stage

try:
    import fcntl
except ImportError:  # Windows: no flock, run folders are not locked
    fcntl = None

# ---------------------------------------------------------------- run folder


def content_fingerprint(c: CompareConfig, located) -> dict:
    """What a path alone does not pin down: digests of the model YAML, the weights and the dataset, and versions.

    Args:
        c: The config.
        located: What ``data.locate_data`` found for ``c.data`` (a COCO8 root, a dataset YAML, a classifier's folder,
            or ``shapes``: the synthetic data of ``c.task``).
    """
    if located == "shapes":  # detection's words as before: earlier runs' fingerprints stay valid
        data_digest = f"synthetic shapes v{FORMAT_VERSION}" if c.task == "detect" else STANDIN_DATA[c.task]["ident"]
    else:
        with tempfile.TemporaryDirectory() as tmp:  # a COCO8 root needs a dataset YAML to be resolved
            yaml_path = write_coco8_yaml(located, tmp) if isinstance(located, Path) else located
            data_digest = dataset_info(yaml_path).get("digest")
    return {
        "model_digest": file_digest(c.model),
        # the stand-in is named by its recipe: it is trained after this check, and another CPU gives other bytes
        "weights_digest": f"standin {recipe_key(c.model)}" if c.weights == STANDIN else file_digest(c.weights),
        "data_digest": data_digest,
        "versions": {"yolo_leaky": __version__, "ultralytics": ultralytics.__version__, "torch": torch.__version__},
    }


def prepare_run_dir(c: CompareConfig, force: bool, contents: dict | None = None) -> Path:
    """Create or reopen the run folder; refuse to mix results from different settings or file contents."""
    if c.protocol == "recover":
        recovery_methods(c)  # settings.json records the task's methods, never an unresolved recovery=auto
    run = c.run_dir
    saved = atomic.read_json(run / "settings.json")
    wanted = c.fingerprint(contents)
    if saved is not None and saved != wanted:
        if not force:
            diff = ", ".join(f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in wanted.items() if saved.get(k) != v)
            raise UserError(
                f"{run} holds results from different settings ({diff}); use name=<new name>, or --force to discard them"
            )
        _empty(run)
    elif saved is None and run.exists() and any(run.iterdir()) and not force:
        raise UserError(
            f"{run} exists but is not a yolo-leaky compare run; use name=<new name>, or --force to replace it"
        )
    elif saved is None and run.exists() and force:
        _empty(run)
    atomic.write_json(run / "settings.json", wanted)
    return run


def take_run_dir(c: CompareConfig, force: bool, contents: dict | None = None) -> Path:
    """``prepare_run_dir`` under this process's lock on the folder (``lock_run_dir``), taken first: a folder in use
    is refused before it is read, removed (``--force``) or written."""
    lock_run_dir(c.run_dir)
    run = prepare_run_dir(c, force, contents)
    record_holder(run)
    return run


def _empty(folder: Path) -> None:
    """Remove what ``folder`` holds but keep the folder: ``lock_run_dir``'s lock is on the folder itself."""
    for p in folder.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


HOLDER = "lock.json"  # who holds the run folder: read only when another run finds it locked
_held: dict[Path, int] = {}  # run folders this process holds: resolved path -> descriptor of the locked folder


def _drop_in_child() -> None:
    # a forked child (a DataLoader worker) shares the lock; holding it past the parent's death would leave it stuck
    for fd in _held.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


if fcntl is not None:
    os.register_at_fork(after_in_child=_drop_in_child)


def lock_run_dir(run: Path) -> None:
    """Take the run folder for this process before anything in it is read, removed or written.

    An exclusive ``flock`` on the folder itself (created if missing; nothing is written into it), held until
    ``release_run_dir``. The OS drops it when the process dies, SIGKILL included, so a killed run never leaves the
    folder locked. A folder that another live process holds is refused in one line naming that process (``HOLDER``,
    written by ``record_holder``). Ray workers write into their own temp folders; only the driver takes the lock.

    Raises:
        UserError: Another process holds the folder, or it cannot be created.
    """
    key = Path(run).resolve()
    if key in _held or fcntl is None:
        return
    try:
        run.mkdir(parents=True, exist_ok=True)
        fd = os.open(run, os.O_RDONLY)
    except OSError as e:
        raise UserError(f"cannot create {run} ({e.strerror}); choose a writable project= folder") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(_in_use(run)) from None
    except OSError as e:  # a file system without flock (some network mounts): run, but say it is unguarded
        os.close(fd)
        say(f"yolo-leaky compare: cannot lock {run} ({e.strerror}); make sure no other run uses this name")
        return
    _held[key] = fd


def record_holder(run: Path) -> None:
    """Write who holds ``run`` (PID, host, start time) for a refused run to name."""
    if Path(run).resolve() in _held:
        started = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())
        atomic.write_json(run / HOLDER, {"pid": os.getpid(), "host": socket.gethostname(), "started": started})


def release_run_dir(run: Path) -> None:
    """Give up the lock that ``lock_run_dir`` took (no-op when this process does not hold ``run``)."""
    fd = _held.pop(Path(run).resolve(), None)
    if fd is not None:
        with contextlib.suppress(OSError):
            (run / HOLDER).unlink(missing_ok=True)
        os.close(fd)


def _in_use(run: Path) -> str:
    """The refusal of a folder that another process holds, naming it from ``HOLDER`` when it is recorded."""
    info, who, wait = atomic.read_json(run / HOLDER), "", "it"
    with contextlib.suppress(TypeError, KeyError, ValueError):
        pid, host, started = int(info["pid"]), str(info["host"]), str(info["started"])
        alive = True
        if host == socket.gethostname():  # a dead holder's record: the live one has not written its own yet
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                alive = False
            except PermissionError:
                pass
        if alive:
            who, wait = f" (PID {pid} on {host}, started {started})", f"PID {pid}"
    return (
        f"{run} is in use by another yolo-leaky compare run{who}; use name=<another name>, or wait for {wait} to finish"
    )


# ---------------------------------------------------------------- cost, speed, diagnostics


def measure_cost(c: CompareConfig, models: dict) -> dict:
    """Parameters, GFLOPs and (on CPU) saved-tensor bytes of one training step, per variant; each entry records the
    network it measured (``checkpoint``: ``cells.model_source``), and cost.json is reused only for the same ones."""
    sources = getattr(models, "sources", {})

    def compute() -> dict:
        cost = {}
        for label, yolo in models.items():
            net = copy.deepcopy(yolo.model).float().cpu().requires_grad_(True)  # loaded checkpoints come frozen
            example = torch.randn(min(c.batch, 2), 3, c.imgsz, c.imgsz)
            cost[label] = {
                "params": int(get_num_params(net)),
                "gflops": float(get_flops(net, imgsz=c.imgsz)),
                "saved_tensor_bytes": saved_tensor_bytes(net, example),
                "saved_tensor_batch": example.shape[0],
                "checkpoint": sources.get(label),
            }
        return cost

    return cached_stage(c.run_dir / "cost.json", compute, reuse=lambda cached: _entries_reusable(cached, models))


def _entries_reusable(cached: dict, models: dict) -> bool:
    """A per-variant stage result (``{label: {..., "checkpoint": source}}``) measured exactly these networks."""
    keys = model_keys(models)
    return keys is not None and {label: (v.get("checkpoint") or {}).get("key") for label, v in cached.items()} == keys


def measure_speed(c: CompareConfig, models: dict) -> dict:
    """Export each variant with Ultralytics' exporter, check the graphs, and time all variants side by side."""

    def compute() -> dict:
        onnx_dir = c.run_dir / "onnx"
        onnx = {label: str(export_onnx(yolo, onnx_dir / label, c.bench_imgsz)) for label, yolo in models.items()}
        acts = {s.label: s.name for s in c.specs} | {"identity": "identity"}
        exports = {label: check_export(p, acts[label], net=models[label].model) for label, p in onnx.items()}
        cuda = torch.cuda.is_available() and "torch-cuda-fp16" not in c.runtimes
        runtimes = list(c.runtimes) + (["torch-cuda-fp16"] if cuda else [])
        nets = {label: yolo.model for label, yolo in models.items()}
        timings = {}
        for runtime in runtimes:
            say(
                f"[speed] {runtime}: {len(nets)} models interleaved, {c.bench_seconds:g} s in {c.bench_blocks} "
                f"blocks, {c.bench_threads} thread(s)"
            )
            result = benchmark(
                nets,
                imgsz=c.bench_imgsz,
                runtime=runtime,
                seconds=c.bench_seconds,
                threads=c.bench_threads,
                baseline=c.baseline,
                onnx_paths=onnx,
                blocks=c.bench_blocks,
            )
            timings[runtime] = result.to_dict(samples=True)  # raw samples: the table can be recomputed
        checkpoints = getattr(models, "sources", {})  # what was exported and timed: reuse keys on it, not labels
        return {"onnx": onnx, "exports": exports, "timings": timings, "checkpoints": checkpoints}

    return cached_stage(c.run_dir / "speed.json", compute, reuse=lambda cached: _speed_reusable(cached, models))


def _speed_reusable(cached: dict, models: dict) -> bool:
    """speed.json exported, checked and timed exactly these networks (every variant's checkpoint digest matches)."""
    keys = model_keys(models)
    recorded = {label: s.get("key") for label, s in (cached.get("checkpoints") or {}).items()}
    return keys is not None and recorded == keys


def speed_stage(c: CompareConfig, models: dict) -> dict:
    """``measure_speed`` here; with ``executor=ray``, as ONE Ray task (``cell_gpus``: it lands on a node with the
    accelerator) that exports, checks and times every variant side by side, so speed is never compared across
    machines. The networks travel as checkpoints; speed.json and the ONNX files come back into the run folder."""
    if c.executor != "ray":
        return measure_speed(c, models)

    def compute() -> dict:
        say("[speed] one Ray task: every variant exported, checked and timed side by side on one node")
        with tempfile.TemporaryDirectory(prefix="yolo-leaky-speed-") as tmp:
            inputs = {label: _checkpoint(yolo, Path(tmp) / f"{label}.pt") for label, yolo in models.items()}
            args = {"config": c, "run_dir": str(c.run_dir), "inputs": inputs}
            args["sources"] = getattr(models, "sources", {})
            job = Job(
                "speed", speed_job, args, c.run_dir, result_file="speed.json", log="speed-log.txt", own_folder=False
            )
            cpus = max(c.cell_cpus, c.bench_threads)
            options = {"ray_address": c.ray_address, "cell_cpus": cpus, "cell_gpus": c.cell_gpus, "verbose": c.verbose}
            return execute([job], "ray", **options)["speed"]

    return cached_stage(c.run_dir / "speed.json", compute, reuse=lambda cached: _speed_reusable(cached, models))


def speed_job(args: dict, folder: Path) -> dict:
    """The Ray task of ``speed_stage``: load the shipped networks and run ``measure_speed`` in ``folder`` on the
    worker; the ONNX paths it returns are where the files will lie in the driver's run folder."""
    c = dataclasses.replace(args["config"], project=str(folder.parent), name=folder.name)
    models = Models({label: load(path) for label, path in args["inputs"].items()}, args.get("sources", {}))
    result = measure_speed(c, models)
    onnx = {label: str(Path(args["run_dir"]) / Path(p).relative_to(folder)) for label, p in result["onnx"].items()}
    return {**result, "onnx": onnx}


def _checkpoint(yolo, path: Path) -> str:
    """The network exactly as held in memory, in a checkpoint ``load`` reads back (``loading.save_checkpoint``)."""
    return save_checkpoint(yolo, path)


def measure_units(c: CompareConfig, models: dict, data: str) -> dict:
    """Dead / negative-only units and PReLU slopes for each trained variant."""
    if not c.diagnostics:
        return {}

    def compute() -> dict:
        units = {}
        for spec in c.specs:
            yolo = models[spec.label]
            say(f"[diagnostics] {spec.label}: unit health on the validation images")
            units[spec.label] = {
                "health": unit_health(yolo, data, imgsz=min(c.imgsz, 128), batch=c.batch),
                "checkpoint": getattr(models, "sources", {}).get(spec.label),
            }
            if spec.name == "prelu":
                slopes = prelu_slopes(yolo)
                units[spec.label]["prelu"] = {"layers": slopes, "summary": summarize_slopes(slopes)}
        return units

    variants = {s.label: models[s.label] for s in c.specs}  # the identity floor has no unit health
    measured = Models(variants, models.sources) if hasattr(models, "sources") else variants
    return cached_stage(c.run_dir / "units.json", compute, reuse=lambda cached: _entries_reusable(cached, measured))


def measure_int8_stage(c: CompareConfig, cells: dict, data: str) -> dict:
    """INT8 post-training quantization of every completed cell (headline recovery method), seed by seed, with the
    same calibration images for every variant (seed s: draw s, the images its repairs used); FP32 and INT8 timed
    side by side on the first seed's models (``quant.measure_int8``). Only with ``int8=true``. Here, or with
    ``executor=ray`` as ONE Ray task (``int8_job``) that quantizes, scores and times on one node, like
    ``speed_stage``: the checkpoints travel as its inputs, and int8.json and the exported files come back into the
    run folder.

    Each seed's result records the SHA-256 of every checkpoint it quantized (``checkpoints``); a rerun reuses a
    seed only when its cells' checkpoints are exactly those (a retrained or newly completed cell redoes its seed)."""
    if not c.int8:
        return {}
    method = headline_recovery(c)

    def weights_of(seed: int) -> dict:
        found = {s.label: cells.get(cell_key(s, seed, method), {}) for s in c.specs}
        return {label: cell["weights"] for label, cell in found.items() if cell.get("status") == "ok"}

    path = c.run_dir / "int8.json"
    digests = {str(seed): {label: file_digest(w) for label, w in weights_of(seed).items()} for seed in c.seeds}
    current = {seed: d for seed, d in digests.items() if d}
    before = (atomic.read_json(path) or {}).get("seeds", {})
    ran = []

    def compute() -> dict:
        seeds, todo = {}, {}
        for seed in c.seeds:
            weights = weights_of(seed)
            if not weights:
                continue
            if before.get(str(seed), {}).get("checkpoints") == current[str(seed)]:
                say(f"[int8] seed {seed}: reusing the result measured on these exact checkpoints")
                seeds[str(seed)] = before[str(seed)]
            else:
                todo[str(seed)] = weights
        ran.extend(seed == str(c.seeds[0]) for seed in todo)  # the first seed's result carries the timing
        done: dict = {}
        if todo:
            inputs = {"data": str(data)}
            for seed, weights in todo.items():
                inputs.update({_int8_input(seed, label): str(pt) for label, pt in weights.items()})
            args = {
                "config": c,
                "run_dir": str(c.run_dir),
                "inputs": inputs,
                "driver_inputs": dict(inputs),
                "labels": {seed: list(weights) for seed, weights in todo.items()},
            }
            if c.executor != "ray":
                done = int8_job(args, c.run_dir)
            else:
                say("[int8] one Ray task: every variant quantized and scored, and timed against FP32 on one node")
                job = Job(
                    "int8", int8_job, args, c.run_dir, result_file="int8.json", log="int8-log.txt", own_folder=False
                )
                cpus = max(c.cell_cpus, c.bench_threads)
                options = {
                    "ray_address": c.ray_address,
                    "cell_cpus": cpus,
                    "cell_gpus": c.cell_gpus,
                    "verbose": c.verbose,
                }
                done = execute([job], "ray", **options)["int8"]
        for seed, result in done.get("seeds", {}).items():
            seeds[seed] = {**result, "checkpoints": current[seed]}
        seeds = {str(s): seeds[str(s)] for s in c.seeds if str(s) in seeds}
        latency = seeds.get(str(c.seeds[0]), {}).get("latency", {})
        extra = {k: v for k, v in done.items() if k not in ("seeds", "latency")}  # e.g. the Ray node (executor)
        return {"seeds": seeds, "latency": latency, **extra}

    def reusable(cached: dict) -> bool:
        return {seed: r.get("checkpoints") for seed, r in cached.get("seeds", {}).items()} == current

    result = cached_stage(path, compute, reuse=reusable)
    return {**result, "fresh": any(ran)}  # timed rounds count in this invocation's clock only when run now


def _int8_input(seed: int, label: str) -> str:
    return f"s{seed}-{label}"


def int8_job(args: dict, folder: Path) -> dict:
    """The INT8 stage's work (``measure_int8_stage``), in ``folder``: the run folder here, or a Ray task's own
    folder on a worker, whose files land in the run folder. The paths it returns are the driver's: the shipped
    checkpoints' original paths, and the exported files where they will lie in the run folder."""
    c: CompareConfig = args["config"]
    inputs, data = args["inputs"], args["inputs"]["data"]
    seeds = {}
    for seed in c.seeds:
        weights = {label: inputs[_int8_input(seed, label)] for label in args["labels"].get(str(seed), [])}
        if not weights:
            continue
        first = seed == c.seeds[0]
        say(
            f"[int8] seed {seed}: quantizing {len(weights)} variants (deploy and conv-only schemes), scoring them"
            + (", timing INT8 against FP32" if first else "")
        )
        seeds[str(seed)] = measure_int8(
            weights,
            data,
            Path(folder) / "int8" / f"s{seed}",
            imgsz=c.imgsz,  # scored at the training size, timed at the speed tables' size
            bench_imgsz=c.bench_imgsz,
            baseline=c.baseline,
            batch=c.batch,
            n_calib=c.calib_images,
            seed=seed,  # calibration draw ``seed``: the images this seed's repairs used (cells.swap_stage)
            seconds=c.bench_seconds,
            threads=c.bench_threads,
            blocks=c.bench_blocks,
            schemes=("deploy", "conv-only"),
            runtimes=("ort-cpu", "openvino-cpu") if first else (),
        )
    latency = seeds.get(str(c.seeds[0]), {}).get("latency", {})
    moved = {inputs[k]: args["driver_inputs"][k] for k in inputs}
    return _relocated({"seeds": seeds, "latency": latency}, moved, Path(folder), args["run_dir"])


def _relocated(value, moved: dict, folder: Path, run_dir: str):
    """``value`` with every string that names a shipped input (``moved``: worker path -> driver path) or a file under
    ``folder`` rewritten to the driver's path; unchanged when the job ran in the run folder on the driver."""
    if isinstance(value, dict):
        return {k: _relocated(v, moved, folder, run_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [_relocated(v, moved, folder, run_dir) for v in value]
    if isinstance(value, str):
        if value in moved:
            return moved[value]
        for root in dict.fromkeys((str(folder), str(folder.resolve()))):
            if value.startswith(root + "/"):
                return str(Path(run_dir) / value[len(root) + 1 :])
    return value


# ---------------------------------------------------------------- entry points


SUPPORTED_TASKS = TASKS  # every task core.tasks has metrics for: detect, segment, pose, obb, classify
TASK_NAMES = {
    "detect": "a detection",
    "segment": "a segmentation",
    "pose": "a pose",
    "classify": "a classification",
    "obb": "an oriented-box (OBB)",
}


def check_task(model: str | Path, task: str | None = None) -> str:
    """The task of ``model``, refused before any work when ``compare`` cannot measure it (a task ``core.tasks`` has
    no metrics for); the swap itself supports every task.

    Args:
        model: The model YAML or checkpoint, as the user named it.
        task: Its task if already known (a loaded checkpoint's ``.task``); read from ``model`` otherwise.

    Returns:
        The task.

    Raises:
        UserError: For a task outside ``SUPPORTED_TASKS``, or a model that cannot be read.

    >>> check_task("yolo11n-pose.yaml")
    'pose'
    """
    task = task or model_task(model)
    if task not in SUPPORTED_TASKS:
        kind = TASK_NAMES.get(task, f"a {task}")
        raise UserError(
            f"{model} is {kind} model ({task}); yolo-leaky compare supports {', '.join(SUPPORTED_TASKS)} models. "
            f"The swap itself works for every task: load('{model}', act='relu') in Python, or yolo-leaky train "
            f"model={model} act=relu"
        )
    return task


def check_weights(c: CompareConfig, located) -> str | None:
    """Check the recovery protocol's SiLU checkpoint before anything is written: the user's checkpoint is loaded
    once, so that a missing (offline), corrupt or non-YOLO file, or one of a task compare does not support, stops
    here with one line; the stand-in needs the data it was pretrained on.

    Returns:
        The checkpoint's task (None for the stand-in, which is pretrained for the model's task, or ``scratch``).
    """
    if c.protocol != "recover":
        return None
    if c.weights != STANDIN:
        return check_task(c.weights, load(c.weights).task)
    if located != "shapes":
        raise UserError(
            f"weights=standin was pretrained on the synthetic shapes data, not {c.data}; use data=shapes, "
            "or weights=<a SiLU .pt trained on your data>"
        )
    return None


def compare_task(c: CompareConfig) -> str:
    """The run's task (``CompareConfig.task``): the model's, or with ``weights=<.pt>`` the checkpoint's own.

    The model YAML only builds the scratch protocol's networks and the stand-in, so a checkpoint of another task than
    the default ``model=yolo11n.yaml`` decides the task; a model the user set to another task is one line.

    Raises:
        UserError: The model and the checkpoint are of different tasks, or either cannot be read or measured.
    """
    task = check_task(c.model)
    if c.protocol != "recover" or c.weights == STANDIN:
        return task
    weights_task = check_task(c.weights, load(c.weights).task)  # a missing (offline) or corrupt file stops here
    if weights_task != task and c.model != CompareConfig.model:
        suffix = {"detect": "", "segment": "-seg", "pose": "-pose", "obb": "-obb", "classify": "-cls"}[weights_task]
        raise UserError(
            f"model={c.model} is {TASK_NAMES[task]} model but weights={c.weights} is {TASK_NAMES[weights_task]} "
            f"checkpoint ({weights_task}); pass a model of the checkpoint's task, e.g. model=yolo11n{suffix}.yaml"
        )
    return weights_task


def with_task(c: CompareConfig, task: str) -> CompareConfig:
    """``c`` for a model of ``task``: ``recovery=auto`` becomes the task's methods (``config.AUTO_RECOVERY``); what
    compare cannot measure per task yet is refused in one line, and a task that distillation cannot recover
    (``core.tasks.NO_DISTILL``) drops a requested ``distill`` from the recovery methods, saying why.

    Raises:
        UserError: ``recovery=[distill]`` alone for such a task; a target in ``targets=`` whose back end does not
            build and score the task's models (``Backend.tasks``).

    >>> with_task(CompareConfig(recovery=["finetune"]), "pose").task
    'pose'
    >>> with_task(CompareConfig(recovery="auto"), "classify").recovery
    ['finetune']
    """
    recovery = list(AUTO_RECOVERY[task] if c.recovery == AUTO else c.recovery)
    if c.protocol == "recover" and task in NO_DISTILL and "distill" in recovery:
        if recovery == ["distill"]:
            raise UserError(
                f"recovery=[distill] cannot recover {TASK_NAMES[task]} model: {NO_DISTILL[task]}; use "
                "recovery=[finetune]"
            )
        recovery.remove("distill")
        say(f"yolo-leaky compare: no distill cells for {TASK_NAMES[task]} model: {NO_DISTILL[task]}; finetune only")
    known = backends()
    unable = [name for name in c.targets if task not in known[name].tasks]
    if unable:
        source = c.weights if c.protocol == "recover" and c.weights != STANDIN else c.model  # what set the task
        able = [name for name, cls in known.items() if task in cls.tasks]
        raise UserError(
            f"target {unable[0]} cannot score {TASK_NAMES[task]} model ({source} is {task}); targets that can: "
            f"{', '.join(able) or 'none'}"
        )
    return dataclasses.replace(c, task=task, recovery=recovery)


def task_data(c: CompareConfig, out_dir: str | Path) -> str:
    """What every stage of the run trains and validates on: ``data=shapes`` is the synthetic data of ``c.task``
    (its stand-in's, ``standin.TASKS[task]["data"]``: a YAML, or a classifier's folder of crops), made in
    ``out_dir``; anything else as ``datasets.resolve_data`` resolves it."""
    if locate_data(c.data, c.task) == "shapes":
        return str(STANDIN_DATA[c.task]["data"](Path(out_dir)))
    return resolve_data(c.data, out_dir=out_dir, task=c.task)


def resolve_weights(c: CompareConfig) -> tuple[str | None, dict | None]:
    """The file of the SiLU checkpoint and, for the stand-in, its record (the stand-in of ``c.model``, pretrained on
    its task's synthetic data on first use)."""
    if c.protocol != "recover":
        return None, None
    if c.weights != STANDIN:
        return c.weights, None
    with quiet(cache_root() / "standin-log.txt", c.verbose):  # Ultralytics' epochs go to the log, not the screen
        path, record = standin_checkpoint(log=say, model=c.model)
    return str(path), record


def run_compare(c: CompareConfig, force: bool = False) -> Path:
    """Run the whole comparison and return the report path; the run folder stays locked for this process until it
    returns (``lock_run_dir``), so a second run on it is refused before it touches anything."""
    try:
        return _run_compare(c, force)
    finally:
        release_run_dir(c.run_dir)


def _run_compare(c: CompareConfig, force: bool) -> Path:
    # every check that can fail on user input runs before anything is written: a missing file, a YAML that carries
    # code, a model and checkpoint of different tasks, or what compare cannot measure for the task stops here
    c = with_task(c, compare_task(c))
    located = locate_data(c.data, c.task)
    if c.path_note:
        say(f"yolo-leaky compare: weights=auto -> {c.weights} on {c.data}: {c.path_note}")
    check_weights(c, located)
    check_mixed(c, c.model if c.weights == STANDIN else c.weights)
    run = take_run_dir(c, force, contents=content_fingerprint(c, located))
    weights, standin = resolve_weights(c)
    if weights is not None:
        c = dataclasses.replace(c, weights=str(weights))  # the stages load the resolved file
    say(
        f"yolo-leaky compare: {len(c.specs)} variants x {len(c.seeds)} seed(s)"
        + (f" x {len(c.recovery)} recovery method(s)" if c.protocol == "recover" else "")
        + f", protocol {c.protocol}, data {c.data} -> {run}"
        + ("" if c.verbose else f" (Ultralytics' output: {run}/log.txt and cells/*/log.txt)")
    )
    log = run / "log.txt"
    with quiet(log, c.verbose):
        data = task_data(c, run)
    device = pick_device(c)
    started = time.time()
    clock = StageClock()
    mixed = None
    if mixed_specs(c):  # before the swap stage: it fixes which layers each mixed variant keeps SiLU in
        with quiet(log, c.verbose), clock("rank"):
            c, mixed = rank_stage(c, data)
    with quiet(log, c.verbose), clock("swap"):
        baseline = pretrained_baseline(c, data, device)
        swap = swap_stage(c, data, device) if c.protocol == "recover" else None
    before = {k for k, v in cells_on_disk(c).items() if v.get("status") == "ok"}
    with clock("cells"):
        cells = run_cells(c, data, device, swap=swap, teacher=weights)
    with quiet(log, c.verbose):
        with clock("cost"):
            models = variant_models(c, cells)
            say("[cost] parameters, GFLOPs, memory of one training step")
            cost = measure_cost(c, models)
        with clock("speed"):
            say("[speed] exporting to ONNX and checking the graphs")
            speed = speed_stage(c, models)
        with clock("diagnostics"):
            units = measure_units(c, models, data)
        with clock("int8"):
            int8 = measure_int8_stage(c, cells, data)
        with clock("targets"):
            targets = targets_stage(c, cells, data)
        say("[report] writing report.md, results.csv, results.json and plots")
        fresh = [v for k, v in cells.items() if k not in before and v.get("status") == "ok"]
        clock.work = busy_seconds(fresh)  # wall seconds: cells trained at once count once
        timed = sum(t["timing_s"] for t in speed.get("timings", {}).values())
        timed += sum(r["benchmark"]["timing_s"] for r in int8.get("latency", {}).values()) if int8.get("fresh") else 0
        clock.timed = timed if clock.seconds["speed"] >= timed else 0.0  # a reused speed.json took no timing now
        summary = summarize(
            c,
            cells,
            baseline,
            cost,
            speed,
            units,
            data,
            started,
            stages=clock.to_dict(),
            swap=swap,
            standin=standin,
            int8=int8,
        )
        summary.mixed = mixed
        summary.targets, summary.targets_raw = target_tables(c, targets, summary.n_val), targets or None
        report = write_report(c, run, summary)
    say(final_table(c, summary))
    say(f"report: {report}")
    return report


class StageClock:
    """Wall seconds per stage, and the harness overhead: everything but the cells' own training and validation
    (``work``) and the timing budget spent in timed rounds (``timed``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.work = 0.0
        self.timed = 0.0

    @contextlib.contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start

    def to_dict(self) -> dict:
        total = sum(self.seconds.values())
        overhead = max(0.0, total - self.work - self.timed)
        return {
            "stages": dict(self.seconds),
            "total": total,
            "training_and_validation": self.work,
            "timed_rounds": self.timed,
            "harness_overhead": overhead,
            "harness_overhead_share": overhead / total if total else None,
        }


def cells_on_disk(c: CompareConfig) -> dict:
    """The cells already completed in the run folder (before this run trains any)."""
    return {p.parent.name: atomic.read_json(p) or {} for p in (c.run_dir / "cells").glob("*/cell.json")}


def final_table(c: CompareConfig, summary: Summary) -> str:
    """The report's verdicts in a few lines, for the terminal."""
    runtime = summary.runtime
    key, name = headline(c.task)
    lines = [f"{'variant':<16} {name:>15}  {'accuracy vs ' + c.baseline:<44} {'speed (' + str(runtime) + ')'}"]
    for label, r in summary.rows.items():
        std = r[f"{key}_std"]
        acc = f"{r[f'{key}_mean']:.3f} ± {'n/a' if std is None else f'{std:.3f}'}"
        lines.append(f"{label:<16} {acc:>15}  {r['verdict_accuracy']:<44} {r.get(f'{runtime}_verdict', 'not timed')}")
    return "\n".join(lines)


def compare_from_cli(tokens: list[str], force: bool = False, quick: bool = False) -> int:
    config = load_config(tokens, quick=quick)
    report = run_compare(config, force=force)
    failed = [
        k for k, v in (json.loads((report.parent / "results.json").read_text())["cells"]).items() if v["status"] != "ok"
    ]
    if failed:
        print(f"yolo-leaky: {len(failed)} cell(s) failed: {', '.join(failed)}; see {report}", file=sys.stderr)
        return 1
    return 0
