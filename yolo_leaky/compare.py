"""``yolo-leaky compare``: train and validate each activation variant on the same data and seeds, time them side
by side, check their exports, and write an honest report.

Data flow: config -> cells (variant x seed: train, validate) -> cost -> speed (export, interleaved benchmark,
export check) -> diagnostics -> report. Every stage writes its result atomically; a rerun reuses what is complete.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml as pyyaml

from . import atomic
from .errors import UserError
from .spec import ActSpec, parse_act

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "cfg/compare.yaml"
PROTOCOLS = ("scratch", "finetune")
METRIC_KEYS = {
    "precision": "metrics/precision(B)",
    "recall": "metrics/recall(B)",
    "map50": "metrics/mAP50(B)",
    "map50_95": "metrics/mAP50-95(B)",
}


@dataclass
class CompareConfig:
    """Everything that defines an experiment. All fields can be set in a YAML (``cfg=``) or as ``key=value``."""

    model: str = "yolo11n.yaml"
    data: str = "coco8.yaml"
    protocol: str = "scratch"
    weights: str | None = None
    variants: list = field(default_factory=lambda: ["silu", "relu", "leaky_relu:0.1", "prelu"])
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    epochs: int = 10
    imgsz: int = 320
    batch: int = 4
    device: str | None = None
    bench_imgsz: int = 320
    bench_seconds: float = 60.0
    bench_threads: int = 1
    runtimes: list = field(default_factory=lambda: ["torch-cpu", "ort-cpu"])
    diagnostics: bool = True
    name: str = "coco8"
    project: str = "runs/compare"
    train_args: dict = field(default_factory=dict)  # any other Ultralytics train argument, applied to every cell

    # fields that do not change results: a rerun with other values may reuse completed cells
    NON_RESULT_FIELDS = ("name", "project")

    @property
    def run_dir(self) -> Path:
        return Path(self.project) / self.name

    @property
    def specs(self) -> list[ActSpec]:
        return [parse_act(v) for v in self.variants]

    @property
    def baseline(self) -> str:
        labels = [s.label for s in self.specs]
        return "silu" if "silu" in labels else labels[0]

    def fingerprint(self, contents: dict | None = None) -> dict:
        """Everything that decides the results: settings, plus ``contents`` (file digests and versions) if given."""
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in self.NON_RESULT_FIELDS}
        data["variants"] = [str(s) for s in self.specs]
        return {**data, **(contents or {})}


QUICK = dict(epochs=1, imgsz=64, seeds=[0], bench_imgsz=64, bench_seconds=3.0, name="quick")


# Ultralytics train arguments that compare sets itself for every cell (or that would break the protocol).
MANAGED_TRAIN_ARGS = {"model", "data", "epochs", "imgsz", "batch", "device", "seed", "project", "name", "exist_ok",
                      "resume", "mode", "task", "save_dir", "pretrained", "cfg"}


def train_arg_keys() -> set[str]:
    """Ultralytics train arguments that ``compare`` passes through to every cell (``lr0=``, ``optimizer=`` ...)."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    return set(DEFAULT_CFG_DICT) - MANAGED_TRAIN_ARGS


def load_config(tokens: list[str], quick: bool = False) -> CompareConfig:
    """Build the config: defaults < cfg/compare.yaml (or ``cfg=FILE``) < ``--quick`` < ``key=value`` tokens.

    Keys that are not compare's own but are Ultralytics train arguments (``lr0``, ``optimizer``, ``mosaic`` ...)
    are validated the way Ultralytics validates them and go into ``train_args``, applied identically to every cell.
    """
    from .cli import check_ultralytics_args, parse_kv

    fields = {f.name for f in dataclasses.fields(CompareConfig)} - {"train_args"}
    passthrough = train_arg_keys() - fields
    overrides = parse_kv(tokens, fields | passthrough | {"cfg"})
    cfg_file = Path(overrides.pop("cfg", None) or DEFAULT_CONFIG)
    values = _read_config_file(cfg_file)
    if quick:
        values.update(QUICK)
    values.update(overrides)
    unknown = set(values) - fields - passthrough - {"cfg"}
    if unknown:
        raise UserError(f"unknown key '{sorted(unknown)[0]}' in {cfg_file}; valid keys: {', '.join(sorted(fields))} "
                        "or any Ultralytics train argument")
    train_args = {k: values.pop(k) for k in sorted(set(values) & passthrough)}
    check_ultralytics_args(train_args)
    config = CompareConfig(**{k: v for k, v in values.items() if k != "cfg"}, train_args=train_args)
    return _validated(config)


def _read_config_file(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"experiment config {path} does not exist; pass cfg=cfg/compare.yaml or omit cfg=")
    try:
        values = pyyaml.safe_load(path.read_text()) or {}
    except pyyaml.YAMLError:
        raise UserError(f"experiment config {path} has a YAML syntax error; fix it") from None
    if not isinstance(values, dict):
        raise UserError(f"experiment config {path} must be a mapping of key: value")
    return values


def _validated(c: CompareConfig) -> CompareConfig:
    c.variants = [str(v) for v in (c.variants if isinstance(c.variants, list) else str(c.variants).split(","))]
    c.seeds = [int(s) for s in (c.seeds if isinstance(c.seeds, list) else str(c.seeds).split(","))]
    c.runtimes = [str(r) for r in (c.runtimes if isinstance(c.runtimes, list) else str(c.runtimes).split(","))]
    labels = [s.label for s in c.specs]  # parses every variant: a bad one fails before any work
    if len(set(labels)) != len(labels):
        raise UserError(f"variants repeat an activation: {c.variants}; list each once")
    if c.protocol not in PROTOCOLS:
        raise UserError(f"protocol={c.protocol!r} is not one of {', '.join(PROTOCOLS)}")
    if c.protocol == "finetune" and not c.weights:
        raise UserError("protocol=finetune needs weights=<SiLU checkpoint>, e.g. weights=yolo11n.pt (or a best.pt you trained)")
    for key in ("epochs", "imgsz", "batch", "bench_imgsz", "bench_threads"):
        if not isinstance(getattr(c, key), int) or getattr(c, key) < 1:
            raise UserError(f"{key}={getattr(c, key)!r} must be a positive integer")
    if not c.seeds:
        raise UserError("seeds must list at least one seed, e.g. seeds=[0,1,2]")
    from .bench import RUNTIMES

    bad = [r for r in c.runtimes if r not in RUNTIMES]
    if bad:
        raise UserError(f"unknown runtime {bad[0]!r}; runtimes are {', '.join(RUNTIMES)}")
    return c


# ---------------------------------------------------------------- run folder


def content_fingerprint(c: CompareConfig, located) -> dict:
    """What a path alone does not pin down: digests of the model YAML, the weights and the dataset, and versions.

    Args:
        c: The config.
        located: What ``data.locate_data`` found for ``c.data`` (a COCO8 root, a dataset YAML, or ``shapes``).
    """
    import torch
    import ultralytics

    from . import __version__
    from .data import dataset_info, file_digest, write_coco8_yaml

    if located == "shapes":
        from .synthetic import FORMAT_VERSION

        data_digest = f"synthetic shapes v{FORMAT_VERSION}"
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:  # a COCO8 root needs a dataset YAML to be resolved
            yaml_path = write_coco8_yaml(located, tmp) if isinstance(located, Path) else located
            data_digest = dataset_info(yaml_path).get("digest")
    return {
        "model_digest": file_digest(c.model),
        "weights_digest": file_digest(c.weights),
        "data_digest": data_digest,
        "versions": {"yolo_leaky": __version__, "ultralytics": ultralytics.__version__, "torch": torch.__version__},
    }


def prepare_run_dir(c: CompareConfig, force: bool, contents: dict | None = None) -> Path:
    """Create or reopen the run folder; refuse to mix results from different settings or file contents."""
    run = c.run_dir
    saved = atomic.read_json(run / "settings.json")
    wanted = c.fingerprint(contents)
    if saved is not None and saved != wanted:
        if not force:
            diff = ", ".join(f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in wanted.items() if saved.get(k) != v)
            raise UserError(
                f"{run} holds results from different settings ({diff}); use name=<new name>, or --force to discard them"
            )
        shutil.rmtree(run)
    elif saved is None and run.exists() and any(run.iterdir()) and not force:
        raise UserError(f"{run} exists but is not a yolo-leaky compare run; use name=<new name>, or --force to replace it")
    elif saved is None and run.exists() and force:
        shutil.rmtree(run)
    atomic.write_json(run / "settings.json", wanted)
    return run


# ---------------------------------------------------------------- cells


def cell_key(spec: ActSpec, seed: int) -> str:
    return f"{spec.label}-s{seed}"


def cell_order(c: CompareConfig) -> list[tuple[ActSpec, int]]:
    """Every (variant, seed) cell, seed by seed; the variant order rotates by one per seed, so no variant always runs
    first (the first cell of a process pays for cold caches)."""
    specs = c.specs
    return [(specs[(i + k) % len(specs)], seed) for i, seed in enumerate(c.seeds) for k in range(len(specs))]


def run_cells(c: CompareConfig, data: str, device) -> dict:
    """Train and validate every (variant, seed) cell; a failing cell is recorded and the others go on."""
    cells = {}
    todo = cell_order(c)
    for k, (spec, seed) in enumerate(todo, 1):
        key = cell_key(spec, seed)
        path = c.run_dir / "cells" / key / "cell.json"
        done = atomic.read_json(path)
        if done is not None and done.get("status") == "ok":
            print(f"[cell {k}/{len(todo)}] {key}: reusing completed result", flush=True)
            cells[key] = done
            continue
        print(f"[cell {k}/{len(todo)}] {key}: training {c.epochs} epoch(s) at imgsz {c.imgsz}", flush=True)
        cells[key] = _run_one_cell(c, spec, seed, data, device)
        atomic.write_json(path, cells[key])
    return cells


def _run_one_cell(c: CompareConfig, spec: ActSpec, seed: int, data: str, device) -> dict:
    from .loading import load

    key = cell_key(spec, seed)
    train_dir = (c.run_dir / "cells" / key / "train").resolve()  # Ultralytics nests a relative project in its runs_dir
    result = {"variant": spec.label, "act": str(spec), "seed": seed, "status": "failed"}
    try:
        if train_dir.exists():
            shutil.rmtree(train_dir)  # an interrupted attempt: start the cell again from scratch
        yolo = load(c.weights if c.protocol == "finetune" else c.model)
        if c.protocol == "finetune":
            result["after_swap"] = _validate(yolo_swapped(yolo, spec), c, data, device)
        else:
            yolo_swapped(yolo, spec)
        yolo.add_callback("on_train_start", _record_census(result))
        if c.diagnostics and seed == c.seeds[0]:
            from .diagnostics import track_unit_health

            yolo.add_callback("on_fit_epoch_end", track_unit_health(data, imgsz=min(c.imgsz, 128)))
        result.update(_train(yolo, c, data, device, train_dir, seed))
        _check_census(result, spec)
        final = load(result["weights"])
        result["metrics"] = _validate(final, c, data, device)  # the final epoch, scored like before/after swap
        result["status"] = "ok"
    except KeyboardInterrupt:
        raise
    except UserError:
        raise
    except Exception as e:  # one bad cell must not lose the others
        result["error"] = f"{type(e).__name__}: {e}"
        result["traceback"] = traceback.format_exc(limit=8)
        print(f"  cell {key} FAILED: {result['error']}", file=sys.stderr, flush=True)
    return result


def _record_census(result: dict):
    """A callback that takes the census of the network the trainer really optimises."""
    from .census import take_census

    def record(trainer):
        result["census_in_trainer"] = dict(take_census(trainer.model).sites)

    return record


def _check_census(result: dict, spec: ActSpec) -> None:
    sites = result.get("census_in_trainer", {})
    expected = type(spec.build(channels=1)).__name__
    if not sites.get(expected) or (spec.name != "silu" and sites.get("SiLU")):
        raise RuntimeError(f"the trainer did not train the {spec} network: activation sites {sites}")


def yolo_swapped(yolo, spec: ActSpec):
    from .swap import swap_activations

    swap_activations(yolo, spec)
    return yolo


def _train(yolo, c: CompareConfig, data: str, device, train_dir: Path, seed: int) -> dict:
    import torch

    cuda = _is_cuda(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    timer = EpochTimer()
    timer.attach(yolo)
    start = time.perf_counter()
    yolo.train(**{
        "workers": 0, "amp": cuda, "plots": False, "verbose": False, "deterministic": True, **c.train_args,
        "data": data, "epochs": c.epochs, "imgsz": c.imgsz, "batch": c.batch, "device": device, "seed": seed,
        "project": str(train_dir.parent), "name": train_dir.name, "exist_ok": True,
    })
    wall = time.perf_counter() - start
    out = {
        # best.pt's figures, kept for reference only: its epoch was selected on the same images it is scored on
        "metrics_best_selected_on_val": {k: float(yolo.trainer.metrics.get(v, float("nan"))) for k, v in METRIC_KEYS.items()},
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


def _validate(yolo, c: CompareConfig, data: str, device) -> dict:
    metrics = yolo.val(data=data, imgsz=c.imgsz, batch=c.batch, device=device, workers=0, plots=False, verbose=False)
    return {k: float(metrics.results_dict.get(v, float("nan"))) for k, v in METRIC_KEYS.items()}


def _is_cuda(device) -> bool:
    import torch

    return torch.cuda.is_available() and str(device) not in ("cpu", "None", "")


def pick_device(c: CompareConfig):
    import torch

    if c.device not in (None, "", "auto"):
        return c.device
    return 0 if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------- baseline (finetune)


def pretrained_baseline(c: CompareConfig, data: str, device) -> dict | None:
    """mAP of the SiLU checkpoint before any swap (finetune protocol), computed once."""
    if c.protocol != "finetune":
        return None
    path = c.run_dir / "pretrained.json"
    cached = atomic.read_json(path)
    if cached is not None:
        return cached
    from .loading import load

    print(f"[baseline] validating {c.weights} before any swap", flush=True)
    result = _validate(load(c.weights), c, data, device)
    atomic.write_json(path, result)
    return result


# ---------------------------------------------------------------- cost, speed, export


def variant_models(c: CompareConfig, cells: dict) -> dict:
    """One network per variant (seed 0's trained weights where available) plus an identity floor.

    The floor is the same network as the variants, activations aside: the baseline's trained weights (else any
    completed variant's) with every activation site set to identity, so architecture, ``nc`` and weights match.
    """
    from .loading import load

    models, trained = {}, {}
    for spec in c.specs:
        cell = cells.get(cell_key(spec, c.seeds[0]), {})
        if cell.get("status") != "ok":
            print(f"[speed] {spec.label}: seed {c.seeds[0]} failed; timing an untrained {spec} model", flush=True)
            models[spec.label] = load(c.weights if c.protocol == "finetune" else c.model, act=spec)
        elif not Path(cell["weights"]).is_file():
            raise UserError(f"weights of completed cell {cell_key(spec, c.seeds[0])} are missing ({cell['weights']}); "
                            f"rerun with --force to start {c.run_dir} again")
        else:
            models[spec.label] = load(cell["weights"])
            trained[spec.label] = cell["weights"]
    untrained = c.weights if c.protocol == "finetune" else c.model
    models["identity"] = load(trained.get(c.baseline) or next(iter(trained.values()), untrained), act="identity")
    return models


def measure_cost(c: CompareConfig, models: dict) -> dict:
    """Parameters, GFLOPs and (on CPU) saved-tensor bytes of one training step, per variant."""
    import torch
    from ultralytics.utils.torch_utils import get_flops, get_num_params

    from .memory import saved_tensor_bytes

    path = c.run_dir / "cost.json"
    cached = atomic.read_json(path)
    if cached is not None and set(cached) == set(models):
        return cached
    cost = {}
    for label, yolo in models.items():
        net = copy.deepcopy(yolo.model).float().cpu().requires_grad_(True)  # loaded checkpoints come frozen
        example = torch.randn(min(c.batch, 2), 3, c.imgsz, c.imgsz)
        cost[label] = {
            "params": int(get_num_params(net)),
            "gflops": float(get_flops(net, imgsz=c.imgsz)),
            "saved_tensor_bytes": saved_tensor_bytes(net, example),
            "saved_tensor_batch": example.shape[0],
        }
    atomic.write_json(path, cost)
    return cost


def measure_speed(c: CompareConfig, models: dict) -> dict:
    """Export each variant with Ultralytics' exporter, check the graphs, and time all variants side by side."""
    import torch

    from .bench import benchmark, export_onnx
    from .onnx_check import check_export

    path = c.run_dir / "speed.json"
    cached = atomic.read_json(path)
    if cached is not None and set(cached.get("exports", {})) == set(models):
        return cached
    onnx_dir = c.run_dir / "onnx"
    onnx = {label: str(export_onnx(yolo, onnx_dir / label, c.bench_imgsz)) for label, yolo in models.items()}
    acts = {s.label: s.name for s in c.specs} | {"identity": "identity"}
    exports = {label: check_export(p, acts[label]) for label, p in onnx.items()}
    runtimes = list(c.runtimes) + (["torch-cuda-fp16"] if torch.cuda.is_available() and "torch-cuda-fp16" not in c.runtimes else [])
    nets = {label: yolo.model for label, yolo in models.items()}
    timings = {}
    for runtime in runtimes:
        print(f"[speed] {runtime}: {len(nets)} models interleaved, {c.bench_seconds:g} s, {c.bench_threads} thread(s)", flush=True)
        result = benchmark(
            nets, imgsz=c.bench_imgsz, runtime=runtime, seconds=c.bench_seconds, threads=c.bench_threads,
            baseline=c.baseline, onnx_paths=onnx,
        )
        timings[runtime] = result.to_dict()
    speed = {"onnx": onnx, "exports": exports, "timings": timings}
    atomic.write_json(path, speed)
    return speed


def measure_units(c: CompareConfig, models: dict, data: str) -> dict:
    """Dead / negative-only units and PReLU slopes for each trained variant."""
    if not c.diagnostics:
        return {}
    from .diagnostics import prelu_slopes, summarize_slopes, unit_health

    path = c.run_dir / "units.json"
    cached = atomic.read_json(path)
    if cached is not None and set(cached) == {s.label for s in c.specs}:
        return cached
    units = {}
    for spec in c.specs:
        yolo = models[spec.label]
        print(f"[diagnostics] {spec.label}: unit health on the validation images", flush=True)
        units[spec.label] = {"health": unit_health(yolo, data, imgsz=min(c.imgsz, 128), batch=c.batch)}
        if spec.name == "prelu":
            slopes = prelu_slopes(yolo)
            units[spec.label]["prelu"] = {"layers": slopes, "summary": summarize_slopes(slopes)}
    atomic.write_json(path, units)
    return units


# ---------------------------------------------------------------- entry points


def run_compare(c: CompareConfig, force: bool = False) -> Path:
    """Run the whole comparison and return the report path."""
    from .data import locate_data, resolve_data
    from .report import write_report

    from .loading import check_model_source, load

    located = locate_data(c.data)  # every check that can fail on user input runs before anything is written
    check_model_source(c.model)  # a missing file, or a YAML that carries code, stops here
    if c.protocol == "finetune":
        load(c.weights)  # a missing (offline), corrupt or non-YOLO checkpoint stops here, clearly
    run = prepare_run_dir(c, force, contents=content_fingerprint(c, located))
    data = resolve_data(c.data, out_dir=run)
    device = pick_device(c)
    started = time.time()
    baseline = pretrained_baseline(c, data, device)
    cells = run_cells(c, data, device)
    models = variant_models(c, cells)
    cost = measure_cost(c, models)
    speed = measure_speed(c, models)
    units = measure_units(c, models, data)
    print("[report] writing report.md, results.csv, results.json and plots", flush=True)
    report = write_report(c, run, cells=cells, baseline=baseline, cost=cost, speed=speed, units=units, data=data, started=started)
    print(f"report: {report}", flush=True)
    return report


def compare_from_cli(tokens: list[str], force: bool = False, quick: bool = False) -> int:
    config = load_config(tokens, quick=quick)
    report = run_compare(config, force=force)
    failed = [k for k, v in (json.loads((report.parent / "results.json").read_text())["cells"]).items() if v["status"] != "ok"]
    if failed:
        print(f"yolo-leaky: {len(failed)} cell(s) failed: {', '.join(failed)}; see {report}", file=sys.stderr)
        return 1
    return 0
