"""Cells of a comparison: one (variant, seed) each, trained and validated under identical settings, and the
networks that later stages time and inspect."""

from __future__ import annotations

import copy
import hashlib
import math
import shutil
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from ultralytics.utils import TQDM

from ..core.census import take_census
from ..core.loading import load, save_checkpoint
from ..core.partial import compact
from ..core.repair import REPAIRS, applicable_repair, calibration_set, files_digest, ls_leaky_slope, repaired
from ..core.spec import ActSpec
from ..core.swap import trained_network
from ..core.tasks import METRICS, headline, task_metrics
from ..data.datasets import file_digest
from ..measure.diagnostics import track_unit_health
from ..utils import atomic
from ..utils.console import interactive, say
from ..utils.errors import UserError
from ..utils.testhold import hold_point, requested
from .config import CompareConfig, MixedSpec, parse_variant, recovery_methods, variant_act, variant_sites
from .executor import Job, default_workers, execute


def cached_stage(path: Path, compute, reuse=lambda cached: True) -> dict:
    """Read ``path`` if it holds a reusable result, else compute, write atomically and return the result.

    Args:
        path: The stage's JSON file in the run folder.
        compute: Called with no argument when the cache is missing or not reusable.
        reuse: Decides whether a cached result may be reused.
    """
    cached = atomic.read_json(path)
    if cached is not None and reuse(cached):
        return cached
    result = compute()
    atomic.write_json(path, result)
    return result


def cell_key(spec: ActSpec, seed: int, recovery: str | None = None) -> str:
    """A cell's name and folder: ``relu-s0`` (scratch) or ``relu-finetune-s0`` (recovery protocol)."""
    return f"{spec.label}-s{seed}" if recovery is None else f"{spec.label}-{recovery}-s{seed}"


def cell_order(c: CompareConfig) -> list[tuple[ActSpec, int, str | None]]:
    """Every (variant, seed, recovery) cell, seed by seed; the variant order rotates by one per seed, so no variant
    always runs first (the first cell of a process pays for cold caches)."""
    specs = c.specs
    methods = recovery_methods(c) if c.protocol == "recover" else [None]
    return [
        (specs[(i + k) % len(specs)], seed, method)
        for i, seed in enumerate(c.seeds)
        for k in range(len(specs))
        for method in methods
    ]


def cell_jobs(c: CompareConfig, data: str, device, swap: dict | None = None, teacher: str | None = None) -> list:
    """The cells as self-contained jobs for ``run_cell``, in ``cell_order``.

    Args:
        c: The config (plain data: a job can be pickled and run elsewhere).
        data: The dataset YAML.
        device: The training device.
        swap: Recovery protocol: the swap stage's result (``swap_stage``); the cell of variant v and seed s starts
            from ``start_checkpoint(swap, v, s)``.
        teacher: Recovery protocol: the SiLU checkpoint, the teacher of ``distill`` cells.
    """
    jobs = []
    for spec, seed, method in cell_order(c):
        inputs = {"data": str(data)}
        if method is not None:
            inputs["start"] = start_checkpoint(swap, spec.label, seed)["path"]
            if method == "distill":
                inputs["teacher"] = str(teacher)
        elif Path(c.model).is_file():
            inputs["start"] = str(c.model)
        jobs.append(
            {
                "key": cell_key(spec, seed, method),
                "act": str(spec),
                "seed": seed,
                "recovery": method,
                "model": c.model,
                "config": c,
                "device": device,
                "diagnostics": c.diagnostics and seed == c.seeds[0] and method in (None, c.recovery[0]),
                "inputs": inputs,
            }
        )
    return jobs


def input_digests(job: dict) -> dict:
    """SHA-256 of each file a cell starts from (``start``: the repaired start checkpoint or the model file;
    ``teacher``: the distillation teacher), by input name. A completed cell is reused only when these match: a start
    checkpoint made again with other bytes (another calibration draw, another repair, another machine) retrains the
    cell. The dataset is pinned by the run folder's fingerprint."""
    return {name: file_digest(path) for name, path in sorted(job["inputs"].items()) if name != "data"}


def run_cells(c: CompareConfig, data: str, device, swap: dict | None = None, teacher: str | None = None) -> dict:
    """Train and validate every cell, on this machine (``c.cell_workers`` at once, ``default_workers`` when 0) or as
    Ray tasks (``c.executor``); a failing cell is recorded and the others go on. A completed cell is reused when it
    started from the same files (``input_digests``)."""
    if c.executor == "ray" and c.device in (None, "", "auto"):
        device = 0 if c.cell_gpus else "cpu"  # the worker's device: Ray shows a task its reserved GPU as device 0
    cells, jobs, todo, number = {}, cell_jobs(c, data, device, swap, teacher), [], {}
    bar = TQDM(total=len(jobs), desc="cells", disable=not interactive(), file=sys.stdout)
    for k, job in enumerate(jobs, 1):
        key, folder = job["key"], c.run_dir / "cells" / job["key"]
        done = atomic.read_json(folder / "cell.json")
        if done is not None and done.get("status") == "ok" and done.get("input_digests") == input_digests(job):
            _progress(bar, f"[cell {k}/{len(jobs)}] {key}: reusing completed result")
            cells[key] = with_paths(done, folder)
            continue
        failure = {"variant": parse_variant(job["act"]).label, "act": job["act"], "seed": job["seed"]}
        todo.append(Job(key, run_cell, job, folder, failure={**failure, "recovery": job["recovery"]}))
        number[key] = k
    clock = {"spent": 0.0, "trained": 0}
    workers = (c.cell_workers or default_workers(device)) if c.executor == "local" else 1

    def started(job: Job) -> None:
        k, spent, trained = number[job.key], clock["spent"], clock["trained"]
        # the cells not finished yet (this one and any in flight included), a round of `workers` at a time
        left = (spent / trained) * math.ceil((len(todo) - trained) / workers) if trained else None
        eta = (
            "" if left is None else f", about {left / 60:.0f} min left" if left >= 90 else f", about {left:.0f} s left"
        )
        what = "training" if job.args["recovery"] is None else f"recovering by {job.args['recovery']},"
        where = " (queued on Ray)" if c.executor == "ray" else eta
        _progress(bar, f"[cell {k}/{len(jobs)}] {job.key}: {what} {c.epochs} epoch(s) at imgsz {c.imgsz}{where}")

    def finished(job: Job, result: dict, info: dict) -> None:
        clock["spent"], clock["trained"] = clock["spent"] + (info["seconds"] or 0.0), clock["trained"] + 1
        cells[job.key] = with_paths(result, job.folder)
        key, name = headline(c.task)  # the task's headline metric (core.tasks)
        outcome = (
            f"{name} {result['metrics'][key]:.3f}"
            if result["status"] == "ok"
            else f"FAILED: {result['error']} (see {job.folder / 'log.txt'})"
        )
        seconds = "" if info["seconds"] is None else f", {info['seconds']:.0f} s"
        _progress(bar, f"  {job.key}: {outcome}{seconds}", advance=1)

    execute(
        todo,
        c.executor,
        ray_address=c.ray_address,
        cell_cpus=c.cell_cpus,
        cell_gpus=c.cell_gpus,
        workers=workers,
        verbose=c.verbose,
        on_start=started,
        on_done=finished,
    )
    bar.close()
    return {job["key"]: cells[job["key"]] for job in jobs}  # in cell order, whichever finished first


def busy_seconds(cells: list[dict]) -> float:
    """Wall seconds in which at least one of ``cells`` was training or validating: their seconds summed when they ran
    one at a time, less when some ran at once (the union of their ``train_span`` and ``validate_span``). A cell
    without spans (written by an older version) counts its ``train_seconds`` and ``validate_seconds`` in full.

    >>> busy_seconds([{"train_span": [0, 10], "validate_span": [10, 12]}, {"train_span": [5, 15]}])
    15.0
    """
    spans, alone = [], 0.0
    for cell in cells:
        if "train_span" in cell:
            spans += [cell["train_span"]] + ([cell["validate_span"]] if "validate_span" in cell else [])
        else:
            alone += cell.get("train_seconds", 0.0) + cell.get("validate_seconds", 0.0)
    busy, end = 0.0, float("-inf")
    for start, stop in sorted(spans):
        if stop > end:
            busy += stop - max(start, end)
            end = stop
    return float(busy + alone)


CELL_FILES = ("weights", "results_csv")  # a cell's file entries, stored relative to its folder


def with_paths(result: dict, folder: Path) -> dict:
    """A cell result with its file entries resolved against the cell's folder (cell.json stores them relative, so a
    run folder can be moved, or filled by workers that do not share its filesystem)."""
    out = dict(result)
    for k in CELL_FILES:
        if k in out and not Path(out[k]).is_absolute():
            out[k] = str(Path(folder).resolve() / out[k])
    return out


def _progress(bar, line: str, advance: int = 0) -> None:
    """A progress bar on a terminal (Ultralytics' TQDM), plain lines in a pipe or log."""
    if bar.disable:
        say(line)
    else:
        bar.set_description(line.strip())
    if advance:
        bar.update(advance)


def run_cell(job: dict, folder: Path) -> dict:
    """Train and validate one cell (a job of ``cell_jobs``), writing files only under ``folder``.

    The job is plain, picklable data; its input files are listed in ``job["inputs"]`` (``data``: the dataset YAML;
    ``start``: the checkpoint or model YAML training starts from, absent for a stock YAML name; ``teacher``: the
    SiLU checkpoint of a ``distill`` cell). An executor that runs the job elsewhere may rewrite those paths.

    Returns:
        The cell's result (JSON-able); its file entries (``CELL_FILES``) are relative to ``folder``. An error in the
        cell is recorded as ``status: failed`` with the error, so one bad cell does not lose the others.
    """
    c: CompareConfig = job["config"]
    spec, seed, method, inputs, device = (
        parse_variant(job["act"]),
        job["seed"],
        job["recovery"],
        job["inputs"],
        job["device"],
    )
    data = inputs["data"]
    folder = Path(folder).resolve()  # Ultralytics nests a relative project in its runs_dir
    train_dir = folder / "train"
    result = {"variant": spec.label, "act": str(spec), "seed": seed, "recovery": method, "status": "failed"}
    result["input_digests"] = input_digests(job)  # before training: what this cell's result is keyed on
    try:
        if train_dir.exists():
            shutil.rmtree(train_dir)  # an interrupted attempt: start the cell again from scratch
        start = inputs.get("start") or job["model"]
        yolo = load(start) if method is not None else load(start, act=spec)  # a start checkpoint is swapped already
        yolo.add_callback("on_train_start", _record_census(result))
        if requested(f"cell:{job['key']}"):  # tests only: stop after the first training batch (testhold)
            yolo.add_callback("on_train_batch_end", lambda trainer: hold_point(f"cell:{job['key']}"))
        extra = {}
        if method == "distill":
            extra["distill_model"] = inputs["teacher"]
            _watch_teacher(yolo, result)
        if job["diagnostics"]:
            yolo.add_callback("on_fit_epoch_end", track_unit_health(data, imgsz=min(c.imgsz, 128)))
        result.update(_train(yolo, c, data, device, train_dir, seed, extra))
        _check_census(result, spec, c.mixes.get(spec.label))
        final = load(folder / result["weights"])
        start_s, started = time.perf_counter(), time.time()
        result["metrics"] = validate_metrics(final, c, data, device)  # the final epoch, scored like before/after swap
        result["validate_seconds"] = time.perf_counter() - start_s
        result["validate_span"] = [started, time.time()]
        result["status"] = "ok"
    except KeyboardInterrupt:
        raise
    except UserError:
        raise
    except Exception as e:  # one bad cell must not lose the others
        result["error"] = f"{type(e).__name__}: {e}"
        result["traceback"] = traceback.format_exc(limit=8)
        print(f"  cell {job['key']} FAILED: {result['error']}", file=sys.stderr, flush=True)  # into the cell's log
    return result


def _record_census(result: dict):
    """A callback that takes the census of the network the trainer really optimises."""

    def record(trainer):
        census = take_census(trained_network(trainer))
        result["census_in_trainer"] = dict(census.sites)
        result["mix_in_trainer"] = census.mix()  # {type: layers holding it}: a mixed variant's kept layers

    return record


def _watch_teacher(yolo, result: dict) -> None:
    """Record the distillation teacher at the start and the end of training: its activation sites, whether any of
    its parameters can be trained, and a digest of its weights (frozen means the digest does not change)."""

    def teacher(trainer):
        return getattr(trainer.model, "teacher_model", None)

    def digest(net) -> str:
        h = hashlib.sha256()
        for k, v in net.state_dict().items():
            h.update(k.encode() + v.detach().float().cpu().numpy().tobytes())
        return h.hexdigest()

    def at_start(trainer):
        net = teacher(trainer)
        if net is None:
            raise RuntimeError("distill cell: the trainer did not build Ultralytics' DistillationModel")
        result["teacher"] = {
            "sites": dict(take_census(net).sites),
            "trainable_parameters": sum(p.numel() for p in net.parameters() if p.requires_grad),
            "digest_start": digest(net),
        }

    def at_end(trainer):
        net = teacher(trainer)
        if net is not None and "teacher" in result:
            result["teacher"]["digest_end"] = digest(net)
            result["teacher"]["training_mode_at_end"] = net.training

    yolo.add_callback("on_train_start", at_start)
    yolo.add_callback("on_train_end", at_end)


def _check_census(result: dict, spec: ActSpec, keep: list | None = None) -> None:
    """The trainer optimised the variant's network: every site ``spec`` (a mixed variant: SiLU in exactly the kept
    layers ``keep``, its activation in every other layer)."""
    sites = result.get("census_in_trainer", {})
    expected = type(spec.build(channels=1)).__name__
    if isinstance(spec, MixedSpec):
        mix = result.get("mix_in_trainer", {})
        if mix.get("SiLU") != compact(keep or []) or not sites.get(expected):
            raise RuntimeError(
                f"the trainer did not train the {spec} network (SiLU in layer {compact(keep or [])} only): "
                f"mix by layer {mix}"
            )
        return
    if not sites.get(expected) or (spec.name != "silu" and sites.get("SiLU")):
        raise RuntimeError(f"the trainer did not train the {spec} network: activation sites {sites}")


def _train(yolo, c: CompareConfig, data: str, device, train_dir: Path, seed: int, extra: dict | None = None) -> dict:
    cuda = _is_cuda(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    timer = EpochTimer()
    timer.attach(yolo)
    start, started = time.perf_counter(), time.time()
    yolo.train(
        **{
            "workers": 0,
            "amp": cuda,
            "plots": False,
            "verbose": False,
            "deterministic": True,
            **c.train_args,
            **(extra or {}),
            "data": data,
            "epochs": c.epochs,
            "imgsz": c.imgsz,
            "batch": c.batch,
            "device": device,
            "seed": seed,
            "project": str(train_dir.parent),
            "name": train_dir.name,
            "exist_ok": True,
        }
    )
    wall = time.perf_counter() - start
    out = {
        # best.pt's figures, kept for reference only: its epoch was selected on the same images it is scored on
        "metrics_best_selected_on_val": {
            k: float(yolo.trainer.metrics.get(v, float("nan"))) for k, v in METRICS[yolo.task].items()
        },
        "train_seconds": wall,
        "train_span": [started, time.time()],  # wall clock: cells trained at once overlap (busy_seconds)
        "epoch_train_seconds": timer.seconds,
        "epoch_seconds": timer.typical(),
        "weights": f"{train_dir.name}/weights/last.pt",
        "results_csv": f"{train_dir.name}/results.csv",
    }
    if cuda:
        out["peak_cuda_bytes"] = int(torch.cuda.max_memory_allocated())
    return out


class EpochTimer:
    """Seconds of each epoch's training loop alone: from ``on_train_epoch_start`` to ``on_train_epoch_end``.

    Validation, checkpoint saving and ``on_fit_epoch_end`` callbacks (unit-health tracking) all run after
    ``on_train_epoch_end``, so none of them lands in the figure.
    """

    def __init__(self) -> None:
        self.intervals: list[tuple[float, float]] = []  # (start, end) perf_counter of each epoch's training loop
        self._start: float | None = None

    @property
    def seconds(self) -> list[float]:
        return [end - start for start, end in self.intervals]

    def attach(self, yolo) -> None:
        yolo.add_callback("on_train_epoch_start", self._begin)
        yolo.add_callback("on_train_epoch_end", self._end)

    def _begin(self, trainer) -> None:
        self._start = time.perf_counter()

    def _end(self, trainer) -> None:
        if self._start is not None:
            self.intervals.append((self._start, time.perf_counter()))
            self._start = None

    def typical(self) -> float:
        """Median seconds per epoch, leaving out the first (allocator and cache warm-up) when there are more."""
        kept = self.seconds[1:] if len(self.seconds) > 1 else self.seconds
        return float(np.median(kept)) if kept else float("nan")


VAL_ARGS = dict(rect=False, workers=0, plots=False, verbose=False)
"""How every accuracy figure is validated. ``rect=False``: each image is letterboxed to a square imgsz x imgsz, the
input an exported static-shape model sees. Ultralytics' default rect batches pad to a multiple of the stride plus
half a stride, so at imgsz 64 a 64 px image sat in a 96 px canvas; that cost the 16-epoch shapes models mAP50-95
0.051 (SiLU) and 0.235 (ReLU): unequal across activations, so unusable for comparing them."""


def validate_metrics(yolo, c: CompareConfig, data: str, device) -> dict:
    metrics = yolo.val(data=data, imgsz=c.imgsz, batch=c.batch, device=device, **VAL_ARGS)
    return task_metrics(metrics.results_dict, yolo.task)  # the model's own task's metrics (core.tasks.METRICS)


def _is_cuda(device) -> bool:
    return torch.cuda.is_available() and str(device) not in ("cpu", "None", "")


def pick_device(c: CompareConfig):
    if c.device not in (None, "", "auto"):
        return c.device
    return 0 if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------- before and right after the swap (recover)


def pretrained_baseline(c: CompareConfig, data: str, device) -> dict | None:
    """mAP of the SiLU checkpoint before any swap (recovery protocol), computed once."""
    if c.protocol != "recover":
        return None

    def compute() -> dict:
        say(f"[before] validating {c.weights} before any swap")
        return validate_metrics(load(c.weights), c, data, device)

    return cached_stage(c.run_dir / "pretrained.json", compute)


def repairs_for(spec: ActSpec) -> list[str]:
    """The repairs that differ for this activation: the slope fit only changes PReLU, so ReLU, LeakyReLU and the
    SiLU control get ``bn`` alone. SiLU gets it too: BatchNorm re-estimation on a calibration draw moves the
    *unswapped* network's mAP as well, so "SiLU + the same repair" is the reference a repaired variant is judged
    against (``summary.recovery_tables``)."""
    return [r for r in REPAIRS if r != "none" and (spec.name == "prelu" or "fit" not in r)]


def start_repair(spec: ActSpec, repair: str) -> str:
    """The repair a variant's recovery starts from: ``repair`` where it applies, ``fit+bn`` is ``bn`` alone where
    there is no slope to fit (SiLU included: the control starts from SiLU + the same repair, so that the recovered
    rows differ in the activation alone)."""
    return applicable_repair(spec, repair)


def start_checkpoint(swap: dict, label: str, seed: int) -> dict:
    """Where the recovery cell of ``label`` and ``seed`` starts: ``{"repair", "path", "digest", "metrics"}`` of the
    swapped (and repaired, on seed ``seed``'s calibration draw) checkpoint in ``swap`` (``swap_stage``'s result);
    ``metrics`` are its scores, measured in the precision it was saved in."""
    try:
        return swap["variants"][label]["seeds"][str(seed)]["start"]
    except KeyError:
        raise RuntimeError(f"swap stage has no start checkpoint for {label} seed {seed}: a bug") from None


def swap_stage(c: CompareConfig, data: str, device) -> dict:
    """Every variant swapped into the SiLU checkpoint with no training: mAP right after the swap, and per seed
    after each training-free repair and the checkpoint that seed's recovery starts from (``c.repair`` applied),
    written once to ``swap.json`` and ``swap/<variant>/s<seed>/start.pt``.

    Seed ``s`` calibrates the repairs on its own draw of training images (``calibration_set(seed=s)``, the draw its
    INT8 calibration uses too), the same images for every variant; so the spread over seeds of a repair's score,
    and of everything recovered from it, includes the calibration draw. The swap itself needs no images: its
    score is one number per variant.

    Returns:
        ``{"seeds", "calibration": {"images", "by_seed": {seed: {"files", "digest"}}}, "ls_leaky_slope"`` (mean over
        draws) ``, "ls_leaky_slope_by_seed", "repair", "variants"}``; per variant: ``after_swap`` (metrics),
        ``seeds`` (seed -> ``repairs`` {repair: metrics and what was done} and ``start``, see ``start_checkpoint``),
        ``repairs`` (repair -> ``metrics``: the mean over seeds, ``metrics_std``) and ``start`` (``repair``).
        Keys of ``by_seed`` and ``seeds`` are strings (JSON).
    """

    def compute() -> dict:
        silu = load(c.weights)
        swapped = {spec.label: load(c.weights, act=variant_act(spec), sites=variant_sites(c, spec)) for spec in c.specs}
        out = {
            "seeds": list(c.seeds),
            "calibration": {"images": None, "by_seed": {}},
            "ls_leaky_slope_by_seed": {},
            "repair": c.repair,
            "mixes": dict(c.mixes),  # the layers each mixed variant keeps SiLU in (mixed.rank_stage)
            "variants": {},
        }
        for spec in c.specs:
            say(f"[swap] {spec.label}: validating right after the swap")
            row = {"after_swap": validate_metrics(copy.deepcopy(swapped[spec.label]), c, data, device), "seeds": {}}
            out["variants"][spec.label] = row
        for seed in c.seeds:
            files, array, _ = calibration_set(data, n=c.calib_images, imgsz=c.imgsz, seed=seed, task=c.task)
            images = torch.from_numpy(array)
            out["calibration"]["images"] = len(files)
            out["calibration"]["by_seed"][str(seed)] = {
                "files": [Path(f).name for f in files],
                "digest": files_digest(files),
            }
            out["ls_leaky_slope_by_seed"][str(seed)] = ls_leaky_slope(silu, images)
            for spec in c.specs:
                say(f"[swap] {spec.label}, seed {seed}: each repair on calibration draw {seed}")
                row = out["variants"][spec.label]
                start_model, applied = swapped[spec.label], start_repair(spec, c.repair)
                per = {"repairs": {}}
                for repair in repairs_for(spec):
                    model, done = repaired(silu, swapped[spec.label], repair, images)
                    per["repairs"][repair] = {
                        "metrics": validate_metrics(copy.deepcopy(model), c, data, device),
                        **done,
                    }
                    if repair == applied:
                        start_model = model
                path = c.run_dir / "swap" / spec.label / f"s{seed}" / "start.pt"
                path.parent.mkdir(parents=True, exist_ok=True)
                save_checkpoint(start_model, path)  # float32, as scored
                scored = per["repairs"][applied]["metrics"] if applied != "none" else row["after_swap"]
                per["start"] = {"repair": applied, "path": str(path), "digest": file_digest(path), "metrics": scored}
                row["seeds"][str(seed)] = per
        slopes = [v for v in out["ls_leaky_slope_by_seed"].values() if v is not None]
        out["ls_leaky_slope"] = float(np.mean(slopes)) if slopes else None
        for spec in c.specs:
            row = out["variants"][spec.label]
            row["repairs"] = {
                r: _over_seeds([p["repairs"][r]["metrics"] for p in row["seeds"].values()]) for r in repairs_for(spec)
            }
            row["start"] = {"repair": start_repair(spec, c.repair)}
        return out

    def reusable(cached: dict) -> bool:
        rows = cached.get("variants", {})
        if set(rows) != {s.label for s in c.specs} or cached.get("seeds") != list(c.seeds):
            return False
        if cached.get("mixes", {}) != dict(c.mixes):  # a mixed variant's start must hold the layers ranked now
            return False
        starts = [p.get("start", {}) for r in rows.values() for p in r.get("seeds", {}).values()]
        return len(starts) == len(rows) * len(c.seeds) and all(
            Path(s.get("path", "")).is_file() and file_digest(s["path"]) == s.get("digest") for s in starts
        )

    return cached_stage(c.run_dir / "swap.json", compute, reuse=reusable)


class Models(dict):
    """``{label: YOLO}`` as ``variant_models`` returns it, with ``sources``: what each network is (``model_source``),
    so that every stage that measures them records, and reuses only for, exactly these networks."""

    def __init__(self, models: dict, sources: dict) -> None:
        super().__init__(models)
        self.sources = sources


def model_source(weights: str | Path, act: str | None = None, cell: str | None = None, trained: bool = True) -> dict:
    """What a measured network is, keyed by content, never by label.

    Args:
        weights: The file it was loaded from: a trained cell's checkpoint, or for an untrained network its source
            (the SiLU checkpoint, or the model YAML / stock name).
        act: The activation swapped in at load (None: the checkpoint's own).
        cell: The cell whose weights these are (trained), or whose failure this network stands in for (untrained).
        trained: False for an untrained stand-in network (its cell failed, or none completed).

    Returns:
        A JSON-able record; its ``key`` (``<sha256>``, ``<sha256>:<act>``, or ``untrained:<sha256 or stock name>:
        <act>``) changes whenever the bytes measured would.
    """
    digest = file_digest(weights) or str(weights)  # a stock name (yolo11n.yaml) is pinned by the run's versions
    key = digest if act is None else f"{digest}:{act}"
    return {
        "kind": "trained" if trained else "untrained",
        "key": key if trained else f"untrained:{key}",
        "weights": str(weights),
        "act": act,
        "cell": cell,
    }


def model_keys(models: dict) -> dict | None:
    """``{label: source key}`` of a ``Models``; None for a plain dict (unknown networks: never reused)."""
    sources = getattr(models, "sources", None) or {}
    if any(label not in sources for label in models):
        return None
    return {label: sources[label]["key"] for label in models}


def _over_seeds(metrics: list[dict]) -> dict:
    """Mean (``metrics``) and sample std (``metrics_std``, None with one seed) of per-seed metrics."""
    keys = metrics[0].keys()
    mean = {k: float(np.mean([m[k] for m in metrics])) for k in keys}
    std = {k: float(np.std([m[k] for m in metrics], ddof=1)) if len(metrics) > 1 else None for k in keys}
    return {"metrics": mean, "metrics_std": std}


def variant_models(c: CompareConfig, cells: dict) -> Models:
    """One network per variant (seed 0's trained weights, first recovery method, where available) plus an identity
    floor, with what each one is (``Models.sources``): a trained cell's checkpoint, or an untrained network where
    the cell failed.

    The floor is the same network as the variants, activations aside: the baseline's trained weights (else any
    completed variant's) with every activation site set to identity, so architecture, ``nc`` and weights match.
    """
    models, trained, sources = {}, {}, {}
    untrained = c.weights if c.protocol == "recover" else c.model
    method = recovery_methods(c)[0] if c.protocol == "recover" else None
    for spec in c.specs:
        key = cell_key(spec, c.seeds[0], method)
        cell = cells.get(key, {})
        if cell.get("status") != "ok":
            say(f"[speed] {spec.label}: cell {key} failed; timing an untrained {spec} model")
            models[spec.label] = load(untrained, act=variant_act(spec), sites=variant_sites(c, spec))
            act = str(spec) if not isinstance(spec, MixedSpec) else f"{spec.base} {variant_sites(c, spec)}"
            sources[spec.label] = model_source(untrained, act=act, cell=key, trained=False)
        elif not Path(cell["weights"]).is_file():
            raise UserError(
                f"weights of completed cell {key} are missing ({cell['weights']}); "
                f"rerun with --force to start {c.run_dir} again"
            )
        else:
            models[spec.label] = load(cell["weights"])
            trained[spec.label] = cell["weights"]
            sources[spec.label] = model_source(cell["weights"], cell=key)
    floor = trained.get(c.baseline) or next(iter(trained.values()), untrained)
    models["identity"] = load(floor, act="identity")
    cell = next((s["cell"] for s in sources.values() if s["kind"] == "trained" and s["weights"] == floor), None)
    sources["identity"] = model_source(floor, act="identity", cell=cell, trained=bool(trained))
    return Models(models, sources)
