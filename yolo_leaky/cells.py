"""Cells of a comparison: one (variant, seed) each, trained and validated under identical settings, and the
networks that later stages time and inspect."""

from __future__ import annotations

import shutil
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from ultralytics.utils import TQDM

from . import atomic
from .census import take_census
from .config import CompareConfig
from .console import interactive, quiet, say
from .diagnostics import track_unit_health
from .errors import UserError
from .loading import load
from .spec import ActSpec
from .swap import swap_activations

METRIC_KEYS = {
    "precision": "metrics/precision(B)",
    "recall": "metrics/recall(B)",
    "map50": "metrics/mAP50(B)",
    "map50_95": "metrics/mAP50-95(B)",
}


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


def cell_key(spec: ActSpec, seed: int) -> str:
    return f"{spec.label}-s{seed}"


def cell_order(c: CompareConfig) -> list[tuple[ActSpec, int]]:
    """Every (variant, seed) cell, seed by seed; the variant order rotates by one per seed, so no variant always runs
    first (the first cell of a process pays for cold caches)."""
    specs = c.specs
    return [(specs[(i + k) % len(specs)], seed) for i, seed in enumerate(c.seeds) for k in range(len(specs))]


def run_cells(c: CompareConfig, data: str, device) -> dict:
    """Train and validate every (variant, seed) cell; a failing cell is recorded and the others go on."""
    cells, todo, spent, trained = {}, cell_order(c), 0.0, 0
    bar = TQDM(total=len(todo), desc="cells", disable=not interactive(), file=sys.stdout)
    for k, (spec, seed) in enumerate(todo, 1):
        key = cell_key(spec, seed)
        folder = c.run_dir / "cells" / key
        done = atomic.read_json(folder / "cell.json")
        if done is not None and done.get("status") == "ok":
            _progress(bar, f"[cell {k}/{len(todo)}] {key}: reusing completed result")
            cells[key] = done
            continue
        left = (spent / trained) * (len(todo) - k + 1) if trained else None
        eta = (
            "" if left is None else f", about {left / 60:.0f} min left" if left >= 90 else f", about {left:.0f} s left"
        )
        _progress(bar, f"[cell {k}/{len(todo)}] {key}: training {c.epochs} epoch(s) at imgsz {c.imgsz}{eta}")
        start = time.perf_counter()
        with quiet(folder / "log.txt", c.verbose):
            cells[key] = _run_one_cell(c, spec, seed, data, device)
        spent, trained = spent + time.perf_counter() - start, trained + 1
        atomic.write_json(folder / "cell.json", cells[key])
        result = cells[key]
        outcome = (
            f"mAP50-95 {result['metrics']['map50_95']:.3f}"
            if result["status"] == "ok"
            else f"FAILED: {result['error']} (see {folder / 'log.txt'})"
        )
        _progress(bar, f"  {key}: {outcome}, {time.perf_counter() - start:.0f} s", advance=1)
    bar.close()
    return cells


def _progress(bar, line: str, advance: int = 0) -> None:
    """A progress bar on a terminal (Ultralytics' TQDM), plain lines in a pipe or log."""
    if bar.disable:
        say(line)
    else:
        bar.set_description(line.strip())
    if advance:
        bar.update(advance)


def _run_one_cell(c: CompareConfig, spec: ActSpec, seed: int, data: str, device) -> dict:
    key = cell_key(spec, seed)
    train_dir = (c.run_dir / "cells" / key / "train").resolve()  # Ultralytics nests a relative project in its runs_dir
    result = {"variant": spec.label, "act": str(spec), "seed": seed, "status": "failed"}
    try:
        if train_dir.exists():
            shutil.rmtree(train_dir)  # an interrupted attempt: start the cell again from scratch
        yolo = load(c.weights if c.protocol == "finetune" else c.model)
        if c.protocol == "finetune":
            result["after_swap"] = validate_metrics(yolo_swapped(yolo, spec), c, data, device)
        else:
            yolo_swapped(yolo, spec)
        yolo.add_callback("on_train_start", _record_census(result))
        if c.diagnostics and seed == c.seeds[0]:
            yolo.add_callback("on_fit_epoch_end", track_unit_health(data, imgsz=min(c.imgsz, 128)))
        result.update(_train(yolo, c, data, device, train_dir, seed))
        _check_census(result, spec)
        final = load(result["weights"])
        start = time.perf_counter()
        result["metrics"] = validate_metrics(final, c, data, device)  # the final epoch, scored like before/after swap
        result["validate_seconds"] = time.perf_counter() - start
        result["status"] = "ok"
    except KeyboardInterrupt:
        raise
    except UserError:
        raise
    except Exception as e:  # one bad cell must not lose the others
        result["error"] = f"{type(e).__name__}: {e}"
        result["traceback"] = traceback.format_exc(limit=8)
        print(f"  cell {key} FAILED: {result['error']}", file=sys.stderr, flush=True)  # into the cell's log
    return result


def _record_census(result: dict):
    """A callback that takes the census of the network the trainer really optimises."""

    def record(trainer):
        result["census_in_trainer"] = dict(take_census(trainer.model).sites)

    return record


def _check_census(result: dict, spec: ActSpec) -> None:
    sites = result.get("census_in_trainer", {})
    expected = type(spec.build(channels=1)).__name__
    if not sites.get(expected) or (spec.name != "silu" and sites.get("SiLU")):
        raise RuntimeError(f"the trainer did not train the {spec} network: activation sites {sites}")


def yolo_swapped(yolo, spec: ActSpec):
    swap_activations(yolo, spec)
    return yolo


def _train(yolo, c: CompareConfig, data: str, device, train_dir: Path, seed: int) -> dict:
    cuda = _is_cuda(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    timer = EpochTimer()
    timer.attach(yolo)
    start = time.perf_counter()
    yolo.train(
        **{
            "workers": 0,
            "amp": cuda,
            "plots": False,
            "verbose": False,
            "deterministic": True,
            **c.train_args,
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
            k: float(yolo.trainer.metrics.get(v, float("nan"))) for k, v in METRIC_KEYS.items()
        },
        "train_seconds": wall,
        "epoch_train_seconds": timer.seconds,
        "epoch_seconds": timer.typical(),
        "weights": str(train_dir / "weights/last.pt"),
        "results_csv": str(train_dir / "results.csv"),
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


def validate_metrics(yolo, c: CompareConfig, data: str, device) -> dict:
    metrics = yolo.val(data=data, imgsz=c.imgsz, batch=c.batch, device=device, workers=0, plots=False, verbose=False)
    return {k: float(metrics.results_dict.get(v, float("nan"))) for k, v in METRIC_KEYS.items()}


def _is_cuda(device) -> bool:
    return torch.cuda.is_available() and str(device) not in ("cpu", "None", "")


def pick_device(c: CompareConfig):
    if c.device not in (None, "", "auto"):
        return c.device
    return 0 if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------- baseline (finetune)


def pretrained_baseline(c: CompareConfig, data: str, device) -> dict | None:
    """mAP of the SiLU checkpoint before any swap (finetune protocol), computed once."""
    if c.protocol != "finetune":
        return None

    def compute() -> dict:
        say(f"[baseline] validating {c.weights} before any swap")
        return validate_metrics(load(c.weights), c, data, device)

    return cached_stage(c.run_dir / "pretrained.json", compute)


def variant_models(c: CompareConfig, cells: dict) -> dict:
    """One network per variant (seed 0's trained weights where available) plus an identity floor.

    The floor is the same network as the variants, activations aside: the baseline's trained weights (else any
    completed variant's) with every activation site set to identity, so architecture, ``nc`` and weights match.
    """
    models, trained = {}, {}
    for spec in c.specs:
        cell = cells.get(cell_key(spec, c.seeds[0]), {})
        if cell.get("status") != "ok":
            say(f"[speed] {spec.label}: seed {c.seeds[0]} failed; timing an untrained {spec} model")
            models[spec.label] = load(c.weights if c.protocol == "finetune" else c.model, act=spec)
        elif not Path(cell["weights"]).is_file():
            raise UserError(
                f"weights of completed cell {cell_key(spec, c.seeds[0])} are missing ({cell['weights']}); "
                f"rerun with --force to start {c.run_dir} again"
            )
        else:
            models[spec.label] = load(cell["weights"])
            trained[spec.label] = cell["weights"]
    untrained = c.weights if c.protocol == "finetune" else c.model
    models["identity"] = load(trained.get(c.baseline) or next(iter(trained.values()), untrained), act="identity")
    return models
