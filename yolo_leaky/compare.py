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
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import ultralytics
from ultralytics.utils.torch_utils import get_flops, get_num_params

from . import atomic
from .bench import benchmark, export_onnx
from .cells import cached_stage, cell_key, pick_device, pretrained_baseline, run_cells, swap_stage, variant_models
from .config import CompareConfig, load_config
from .console import quiet, say
from .data import dataset_info, file_digest, locate_data, resolve_data, write_coco8_yaml
from .diagnostics import prelu_slopes, summarize_slopes, unit_health
from .errors import UserError
from .executor import Job, execute
from .loading import check_model_source, load
from .memory import saved_tensor_bytes
from .onnx_check import check_export
from .quant import measure_int8
from .report import write_report
from .standin import STANDIN, cache_root, recipe_key, standin_checkpoint
from .summary import Summary, headline_recovery, summarize
from .synthetic import FORMAT_VERSION
from .version import __version__

# ---------------------------------------------------------------- run folder


# ---------------------------------------------------------------- run folder


def content_fingerprint(c: CompareConfig, located) -> dict:
    """What a path alone does not pin down: digests of the model YAML, the weights and the dataset, and versions.

    Args:
        c: The config.
        located: What ``data.locate_data`` found for ``c.data`` (a COCO8 root, a dataset YAML, or ``shapes``).
    """
    if located == "shapes":
        data_digest = f"synthetic shapes v{FORMAT_VERSION}"
    else:
        with tempfile.TemporaryDirectory() as tmp:  # a COCO8 root needs a dataset YAML to be resolved
            yaml_path = write_coco8_yaml(located, tmp) if isinstance(located, Path) else located
            data_digest = dataset_info(yaml_path).get("digest")
    return {
        "model_digest": file_digest(c.model),
        # the stand-in is named by its recipe: it is trained after this check, and another CPU gives other bytes
        "weights_digest": f"standin {recipe_key()}" if c.weights == STANDIN else file_digest(c.weights),
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
        raise UserError(
            f"{run} exists but is not a yolo-leaky compare run; use name=<new name>, or --force to replace it"
        )
    elif saved is None and run.exists() and force:
        shutil.rmtree(run)
    atomic.write_json(run / "settings.json", wanted)
    return run


# ---------------------------------------------------------------- cost, speed, diagnostics


def measure_cost(c: CompareConfig, models: dict) -> dict:
    """Parameters, GFLOPs and (on CPU) saved-tensor bytes of one training step, per variant."""

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
            }
        return cost

    return cached_stage(c.run_dir / "cost.json", compute, reuse=lambda cached: set(cached) == set(models))


def measure_speed(c: CompareConfig, models: dict) -> dict:
    """Export each variant with Ultralytics' exporter, check the graphs, and time all variants side by side."""

    def compute() -> dict:
        onnx_dir = c.run_dir / "onnx"
        onnx = {label: str(export_onnx(yolo, onnx_dir / label, c.bench_imgsz)) for label, yolo in models.items()}
        acts = {s.label: s.name for s in c.specs} | {"identity": "identity"}
        exports = {label: check_export(p, acts[label]) for label, p in onnx.items()}
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
        return {"onnx": onnx, "exports": exports, "timings": timings}

    return cached_stage(c.run_dir / "speed.json", compute, reuse=lambda cached: _speed_reusable(cached, models))


def _speed_reusable(cached: dict, models: dict) -> bool:
    return set(cached.get("exports", {})) == set(models)


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
    result = measure_speed(c, {label: load(path) for label, path in args["inputs"].items()})
    onnx = {label: str(Path(args["run_dir"]) / Path(p).relative_to(folder)) for label, p in result["onnx"].items()}
    return {**result, "onnx": onnx}


def _checkpoint(yolo, path: Path) -> str:
    """The network exactly as held in memory (float32, its activations as swapped) in a checkpoint ``load`` reads
    back; Ultralytics' ``Model.save`` would store it in half precision."""
    torch.save({"model": yolo.model, "train_args": (getattr(yolo, "ckpt", None) or {}).get("train_args", {})}, path)
    return str(path)


def measure_units(c: CompareConfig, models: dict, data: str) -> dict:
    """Dead / negative-only units and PReLU slopes for each trained variant."""
    if not c.diagnostics:
        return {}

    def compute() -> dict:
        units = {}
        for spec in c.specs:
            yolo = models[spec.label]
            say(f"[diagnostics] {spec.label}: unit health on the validation images")
            units[spec.label] = {"health": unit_health(yolo, data, imgsz=min(c.imgsz, 128), batch=c.batch)}
            if spec.name == "prelu":
                slopes = prelu_slopes(yolo)
                units[spec.label]["prelu"] = {"layers": slopes, "summary": summarize_slopes(slopes)}
        return units

    return cached_stage(
        c.run_dir / "units.json", compute, reuse=lambda cached: set(cached) == {s.label for s in c.specs}
    )


def measure_int8_stage(c: CompareConfig, cells: dict, data: str) -> dict:
    """INT8 post-training quantization of every completed cell (headline recovery method), seed by seed, with the
    same calibration images for every variant; FP32 and INT8 timed side by side on the first seed's models
    (``quant.measure_int8``). Only with ``int8=true``. Here, or with ``executor=ray`` as ONE Ray task (``int8_job``)
    that quantizes, scores and times on one node, like ``speed_stage``: the checkpoints travel as its inputs, and
    int8.json and the exported files come back into the run folder."""
    if not c.int8:
        return {}
    method = headline_recovery(c)

    def weights_of(seed: int) -> dict:
        found = {s.label: cells.get(cell_key(s, seed, method), {}) for s in c.specs}
        return {label: cell["weights"] for label, cell in found.items() if cell.get("status") == "ok"}

    ran = []

    def compute() -> dict:
        ran.append(True)
        inputs, labels = {"data": str(data)}, {}
        for seed in c.seeds:
            weights = weights_of(seed)
            labels[str(seed)] = list(weights)
            inputs.update({_int8_input(seed, label): str(pt) for label, pt in weights.items()})
        args = {
            "config": c,
            "run_dir": str(c.run_dir),
            "inputs": inputs,
            "driver_inputs": dict(inputs),
            "labels": labels,
        }
        if c.executor != "ray":
            return int8_job(args, c.run_dir)
        say("[int8] one Ray task: every variant quantized and scored, and timed against FP32 on one node")
        job = Job("int8", int8_job, args, c.run_dir, result_file="int8.json", log="int8-log.txt", own_folder=False)
        cpus = max(c.cell_cpus, c.bench_threads)
        options = {"ray_address": c.ray_address, "cell_cpus": cpus, "cell_gpus": c.cell_gpus, "verbose": c.verbose}
        return execute([job], "ray", **options)["int8"]

    result = cached_stage(c.run_dir / "int8.json", compute, reuse=lambda cached: len(cached.get("seeds", {})) > 0)
    return {**result, "fresh": bool(ran)}  # timed rounds count in this invocation's clock only when run now


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
            imgsz=c.imgsz,
            batch=c.batch,
            n_calib=c.calib_images,
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


def check_weights(c: CompareConfig, located) -> None:
    """Check the recovery protocol's SiLU checkpoint before anything is written: the user's checkpoint is loaded
    once, so that a missing (offline), corrupt or non-YOLO file stops here with one line; the stand-in needs the
    data it was pretrained on."""
    if c.protocol != "recover":
        return
    if c.weights != STANDIN:
        load(c.weights)
    elif located != "shapes":
        raise UserError(
            f"weights=standin was pretrained on the synthetic shapes data, not {c.data}; use data=shapes, "
            "or weights=<a SiLU .pt trained on your data>"
        )


def resolve_weights(c: CompareConfig) -> tuple[str | None, dict | None]:
    """The file of the SiLU checkpoint and, for the stand-in, its record (the stand-in is trained on first use)."""
    if c.protocol != "recover":
        return None, None
    if c.weights != STANDIN:
        return c.weights, None
    with quiet(cache_root() / "standin-log.txt", c.verbose):  # Ultralytics' epochs go to the log, not the screen
        path, record = standin_checkpoint(log=say)
    return str(path), record


def run_compare(c: CompareConfig, force: bool = False) -> Path:
    """Run the whole comparison and return the report path."""
    located = locate_data(c.data)  # every check that can fail on user input runs before anything is written
    check_model_source(c.model)  # a missing file, or a YAML that carries code, stops here
    if c.path_note:
        say(f"yolo-leaky compare: weights=auto -> {c.weights} on {c.data}: {c.path_note}")
    check_weights(c, located)
    run = prepare_run_dir(c, force, contents=content_fingerprint(c, located))
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
        data = resolve_data(c.data, out_dir=run)
    device = pick_device(c)
    started = time.time()
    clock = StageClock()
    with quiet(log, c.verbose), clock("swap"):
        baseline = pretrained_baseline(c, data, device)
        swap = swap_stage(c, data, device) if c.protocol == "recover" else None
    before = {k for k, v in cells_on_disk(c).items() if v.get("status") == "ok"}
    with clock("cells"):
        starts = {label: row["start"]["path"] for label, row in swap["variants"].items()} if swap else None
        cells = run_cells(c, data, device, starts=starts, teacher=weights)
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
        say("[report] writing report.md, results.csv, results.json and plots")
        fresh = [v for k, v in cells.items() if k not in before and v.get("status") == "ok"]
        clock.work = sum(v["train_seconds"] + v.get("validate_seconds", 0.0) for v in fresh)
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
    lines = [f"{'variant':<16} {'mAP50-95':>15}  {'accuracy vs ' + c.baseline:<44} {'speed (' + str(runtime) + ')'}"]
    for label, r in summary.rows.items():
        std = r["map50_95_std"]
        acc = f"{r['map50_95_mean']:.3f} ± {'n/a' if std is None else f'{std:.3f}'}"
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
