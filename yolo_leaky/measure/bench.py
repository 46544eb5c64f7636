"""Side-by-side inference latency of activation variants, with paired, interleaved timing and bootstrap CIs.

Method (what ``benchmark`` does):

1. Preparation. Each network is deep-copied, switched to eval mode and fused (Conv+BN folded by Ultralytics'
   ``fuse()``); the caller's model is never touched. ``torch-cpu`` runs it eagerly under ``torch.inference_mode`` with
   ``torch.set_num_threads(threads)``; ``torch-cuda-fp16`` runs ``.half().cuda()`` and synchronizes around each call;
   ``ort-cpu`` runs the exported ONNX files in ONNX Runtime's CPU provider with ``ORT_ENABLE_ALL``,
   ``intra_op_num_threads=threads``, ``inter_op_num_threads=1``, sequential execution and thread-pool spinning off
   (a spinning pool of one session would otherwise steal cycles from the next session in the round);
   ``openvino-cpu`` compiles OpenVINO IR (or ONNX) files for the CPU plugin with ``openvino_config``: ``threads``
   inference threads, one stream, the LATENCY hint, no core pinning, and FP32 inference precision (left alone, the
   plugin runs an FP32 model in bf16 on CPUs with AMX or AVX512-BF16; an INT8 model's quantized layers run in INT8
   either way); ``litert-cpu`` runs ``.tflite`` files in the LiteRT interpreter (``ai_edge_litert``) with
   ``num_threads=threads`` and its default delegate (XNNPACK on x86 and Arm), the input set before every call.
   Every model gets the same seeded input of shape ``(1, 3, imgsz, imgsz)``.
2. Warm-up: ``warmup`` untimed calls per model.
3. Blocks. The timing budget is split into ``blocks`` independent blocks. Each block runs in a fresh worker process
   (a new Python interpreter started with ``subprocess``, not a fork: libraries are mapped at new addresses, the heap
   starts empty), which builds its runners anew (ONNX Runtime sessions or OpenVINO compiled models, or the networks
   loaded from a file the parent wrote and fused again), allocates a new input and uses its own interleaving seed.
   So what varies between processes (memory layout and allocation, code and cache aliasing: Mytkowicz et al. 2009,
   Curtsinger & Berger 2013) varies between blocks too, and the spread over blocks includes it. Measured on two
   2-core machines, blocks in one process did not: their interval contained other processes' estimates in 50-100%
   of runs depending on the variant (``benchmarks/ci_coverage.py``; figures in docs/methodology.md). A worker start
   costs about 2 s on an idle 2-core machine (Python, torch and ONNX Runtime imports), outside the timed rounds.
   ``isolate=False`` runs the blocks in this process instead (for tests of the protocol, not for reported figures;
   the result records which: ``settings["isolation"]`` and each block's ``settings["block_pids"]``). Within a block:
   Interleaved rounds. A round times every model once with ``time.perf_counter_ns``. Even rounds use a fresh seeded
   permutation of the models, odd rounds its reverse, so that every model sits equally often early and late and next
   to every other. Rounds go on until the block's share of ``seconds`` is spent, and for at least
   ``MIN_ROUNDS_PER_BLOCK``. The garbage
   collector is off while timing. Slow drift of the machine (clock, thermal, a neighbour's load) hits all models of a
   round alike, so pairing by round removes most of it from the ratios.
4. Statistics. Per model: the median latency (and mean, 10th/90th percentiles). Against ``baseline``: the ratio of
   medians, with a 95% percentile-bootstrap CI from ``RESAMPLES`` resamples of whole rounds (the same resampled rounds
   for the model and the baseline, so the pairing is kept). ``ratio_of_medians_half_width_pct`` is half the CI's
   width in percent of
   the baseline's latency (100 * (hi - lo) / 2). The baseline's own ratio is exactly 1 with a zero-width CI.
   The headline is the paired ratio: per block, the median over rounds of t(variant) / t(baseline) within the same
   round; overall, the geometric mean of the block ratios, with a 95% Student-t interval over blocks (on the log
   scale, B - 1 degrees of freedom: ``scipy.stats.ttest_1samp`` of the log block ratios, exponentiated). Why blocks
   and not rounds: measured on this project's 2-core machine, six single-session runs of the same ONNX files gave
   point estimates about 5x further apart than each run's round-bootstrap CI was wide, because rounds of one session
   never sample the session-to-session variation; the coverage benchmark (``benchmarks/ci_coverage.py``) measures
   how often each kind of CI covers the estimate of other runs in fresh processes (figures in docs/methodology.md). The
   round-bootstrap CI of the paired ratio is still computed (``paired_round_ci_*``), for that comparison only.

For comparison: Ultralytics' ``ProfileModels`` times each model in its own block (no interleaving) and reports
mean +/- std after sigma clipping, without a CI on differences between models.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.spec import parse_act
from ..core.swap import YAML_KEY
from ..utils.errors import UserError
from ..utils.testhold import hold_point

RUNTIMES = ("torch-cpu", "ort-cpu", "torch-cuda-fp16", "openvino-cpu", "litert-cpu")
FILE_RUNTIMES = ("ort-cpu", "openvino-cpu", "litert-cpu")  # they time model files; the torch runtimes time networks
MIN_ROUNDS = 30  # per benchmark with one block (and the floor of a block's share)
MIN_ROUNDS_PER_BLOCK = 10
DEFAULT_BLOCKS = 8
RESAMPLES = 4000
CI_LEVEL = 0.95


@dataclass
class ModelStats:
    """Latency of one variant and its ratio to the baseline.

    Attributes:
        label: The variant's label.
        median_ms: Median latency over all rounds.
        mean_ms: Mean latency.
        p10_ms: 10th percentile latency.
        p90_ms: 90th percentile latency.
        ratio_of_medians: median(variant) / median(baseline); below 1 is faster.
        ratio_of_medians_ci_low: Lower end of the 95% bootstrap CI of ``ratio_of_medians``.
        ratio_of_medians_ci_high: Upper end of that CI.
        ratio_of_medians_half_width_pct: 100 * (ci_high - ci_low) / 2, in percent of the baseline's latency.
        paired_ratio: Geometric mean over blocks of each block's median over rounds of t(variant) / t(baseline) in
            the same round (with one block: that block's median).
        paired_ci_low: Lower end of its 95% CI: Student-t over blocks (with one block: bootstrap over rounds).
        paired_ci_high: Upper end of that CI.
        paired_half_width_pct: 100 * (paired_ci_high - paired_ci_low) / 2.
        rounds: Number of paired rounds the statistics use.
        blocks: Independent blocks (fresh sessions or model copies, new input, new order seed).
        block_ratios: The paired ratio of each block.
        paired_round_ci_low: Lower end of the bootstrap-over-rounds CI of the pooled paired ratio (what a single
            session can see; kept to compare with the block CI).
        paired_round_ci_high: Upper end of that CI.
    """

    label: str
    median_ms: float
    mean_ms: float
    p10_ms: float
    p90_ms: float
    ratio_of_medians: float
    ratio_of_medians_ci_low: float
    ratio_of_medians_ci_high: float
    ratio_of_medians_half_width_pct: float
    paired_ratio: float
    paired_ci_low: float
    paired_ci_high: float
    paired_half_width_pct: float
    rounds: int
    blocks: int = 1
    block_ratios: list = field(default_factory=list)
    paired_round_ci_low: float = 1.0
    paired_round_ci_high: float = 1.0


@dataclass
class BenchResult:
    """Outcome of ``benchmark``.

    Attributes:
        runtime: ``torch-cpu``, ``ort-cpu``, ``torch-cuda-fp16``, ``openvino-cpu`` or ``litert-cpu``.
        imgsz: Square input size.
        threads: Intra-op threads.
        baseline: Label the ratios are taken against.
        rounds: Interleaved rounds timed.
        timing_s: Wall time spent in the timed rounds.
        stats: ``ModelStats`` by label, in the order the models were given.
        samples_ns: Per-model latencies in nanoseconds, one per round (index = round).
        block_of_round: The block each round belongs to.
        settings: Warm-up, seed, resamples and the like.
        env: Versions, CPU and load averages before and after.
    """

    runtime: str
    imgsz: int
    threads: int
    baseline: str
    rounds: int
    timing_s: float
    stats: dict[str, ModelStats]
    samples_ns: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    block_of_round: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=np.int64))
    settings: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)

    def to_dict(self, samples: bool = False) -> dict:
        """A JSON-ready dict; ``samples=True`` adds the raw per-round latencies (ns)."""
        out = {
            "runtime": self.runtime,
            "imgsz": self.imgsz,
            "threads": self.threads,
            "baseline": self.baseline,
            "rounds": self.rounds,
            "timing_s": self.timing_s,
            "stats": {k: asdict(v) for k, v in self.stats.items()},
            "settings": dict(self.settings),
            "env": dict(self.env),
        }
        if samples:
            out["samples_ns"] = {k: v.tolist() for k, v in self.samples_ns.items()}
            out["block_of_round"] = self.block_of_round.tolist()
        return out

    def format_table(self) -> str:
        """A plain-text table: one row per variant, the baseline's ratio being 1."""
        head = (
            f"{self.runtime} | imgsz {self.imgsz} | {self.threads} thread(s) | {self.rounds} interleaved rounds in "
            f"{self.timing_s:.1f} s | ratio = median / median({self.baseline}), "
            f"{CI_LEVEL:.0%} bootstrap CI over rounds ({self.settings.get('resamples', RESAMPLES)} resamples); "
            f"paired: {CI_LEVEL:.0%} t-interval over {self.settings.get('blocks', 1)} block(s)"
            + (", each in a fresh process" if self.settings.get("isolation") == "process" else " in one process")
        )
        width = max(8, *(len(k) for k in self.stats))
        cols = (
            f"{'variant':<{width}}  {'median ms':>9}  {'p10-p90 ms':>15}  {'ratio':>6}  {'95% CI':>15}  {'+/-%':>5}"
            f"  {'paired':>6}  {'95% CI':>15}  {'+/-%':>5}"
        )
        rows = [head, cols, "-" * len(cols)]
        for s in self.stats.values():
            spread = f"{s.p10_ms:.2f}-{s.p90_ms:.2f}"
            ci = f"[{s.ratio_of_medians_ci_low:.3f}, {s.ratio_of_medians_ci_high:.3f}]"
            pci = f"[{s.paired_ci_low:.3f}, {s.paired_ci_high:.3f}]"
            rows.append(
                f"{s.label:<{width}}  {s.median_ms:>9.2f}  {spread:>15}  {s.ratio_of_medians:>6.3f}  {ci:>15}  "
                f"{s.ratio_of_medians_half_width_pct:>5.2f}"
                f"  {s.paired_ratio:>6.3f}  {pci:>15}  {s.paired_half_width_pct:>5.2f}"
            )
        rows.append(
            "paired = per block, median over rounds of t(variant) / t(baseline) within the round; geometric mean"
        )
        load = self.env.get("loadavg_before"), self.env.get("loadavg_after")
        if all(x is not None for x in load):
            rows.append(
                f"load average (1 min) before/after: {load[0]:.2f}/{load[1]:.2f} on {self.env.get('cpus')} CPUs"
            )
        return "\n".join(rows)


def benchmark(
    models: dict[str, nn.Module],
    imgsz: int = 320,
    runtime: str = "torch-cpu",
    seconds: float = 20,
    threads: int = 1,
    warmup: int = 10,
    baseline: str = "silu",
    onnx_paths: dict[str, str] | None = None,
    seed: int = 0,
    blocks: int = DEFAULT_BLOCKS,
    openvino_paths: dict[str, str] | None = None,
    isolate: bool = True,
    litert_paths: dict[str, str] | None = None,
) -> BenchResult:
    """Time several variants side by side and compare each with ``baseline`` (method: module docstring).

    Args:
        models: Variant label -> Ultralytics network (``yolo.model``), already swapped; copied, never modified.
            For the file runtimes (``FILE_RUNTIMES``) only the labels are used.
        imgsz: Square input size.
        runtime: ``torch-cpu``, ``ort-cpu``, ``torch-cuda-fp16``, ``openvino-cpu`` or ``litert-cpu``.
        seconds: Wall time to spend in the timed rounds (at least ``MIN_ROUNDS`` rounds are run regardless).
        threads: Intra-op threads (torch, ORT or OpenVINO).
        warmup: Untimed calls per model before timing.
        baseline: The label that ratios are taken against; must be in ``models``.
        onnx_paths: Label -> exported ``.onnx`` file, required for ``ort-cpu``.
        seed: Seed of the input, of the round orders and of the bootstrap (block ``b`` uses ``seed + b``).
        blocks: Independent blocks the budget is split into; the paired ratio's CI is taken over them.
        openvino_paths: Label -> OpenVINO ``.xml`` (or ``.onnx``) file, required for ``openvino-cpu``.
        isolate: Run each block in a fresh worker process (the default; the interval then covers what varies
            between processes). False runs the blocks in this process: for tests of the protocol only.
        litert_paths: Label -> ``.tflite`` file, required for ``litert-cpu``.

    Returns:
        A ``BenchResult``; ``settings`` records the isolation, each block's process id and the time spent outside
        the timed rounds (``overhead_s``: worker starts, sessions, warm-up).

    Raises:
        ValueError: Unknown runtime, missing baseline or ONNX file, or an ONNX input shape that is not ``imgsz``.
        RuntimeError: ``torch-cuda-fp16`` without CUDA, or a worker process that died without a result.
        UserError: ``openvino-cpu`` without OpenVINO installed, ``litert-cpu`` without LiteRT.
    """
    _check_args(models, runtime, baseline, onnx_paths, threads, openvino_paths, litert_paths)
    if blocks < 1:
        raise ValueError(f"blocks must be >= 1, got {blocks}")
    labels = list(models)
    before = _loadavg()
    min_rounds = MIN_ROUNDS if blocks == 1 else MIN_ROUNDS_PER_BLOCK
    paths = {"openvino-cpu": openvino_paths, "litert-cpu": litert_paths}.get(runtime, onnx_paths)
    spec = {
        "runtime": runtime,
        "imgsz": imgsz,
        "threads": threads,
        "labels": labels,
        "paths": {k: str(paths[k]) for k in labels} if runtime in FILE_RUNTIMES else None,
        "warmup": warmup,
        "seconds": seconds / blocks,
        "min_rounds": min_rounds,
    }
    parts, block_of_round, wall, pids = [], [], 0.0, []
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if isolate:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="yolo-leaky-bench-")))
            if runtime not in FILE_RUNTIMES:  # the networks travel to each worker as one file, written once
                spec["models_file"] = str(folder / "models.pt")
                torch.save(dict(models), spec["models_file"])
        for block in range(blocks):
            block_spec = {**spec, "seed": seed + block}
            if isolate:
                out = _block_in_fresh_process(block_spec, folder, block)
            else:
                out = run_block(block_spec, models)
            parts.append(out["samples_ns"])
            block_of_round += [block] * len(out["samples_ns"][labels[0]])
            wall += out["timing_s"]
            pids.append(out["pid"])
            hold_point(f"benchmark:{runtime}")  # tests only (testhold): interrupted after a timed block
    elapsed = time.perf_counter() - started
    samples = {k: np.concatenate([p[k] for p in parts]) for k in labels}
    blocks_index = np.asarray(block_of_round, dtype=np.int64)
    stats = latency_stats(samples, baseline, seed=seed, block_of_round=blocks_index)
    return BenchResult(
        runtime=runtime,
        imgsz=imgsz,
        threads=threads,
        baseline=baseline,
        rounds=len(samples[labels[0]]),
        timing_s=wall,
        stats=stats,
        samples_ns=samples,
        block_of_round=blocks_index,
        settings={
            "warmup": warmup,
            "seed": seed,
            "resamples": RESAMPLES,
            "min_rounds": min_rounds,
            "seconds": seconds,
            "blocks": blocks,
            "isolation": "process" if isolate else "none",
            "block_pids": pids,
            "parent_pid": os.getpid(),
            "overhead_s": round(elapsed - wall, 3),
        },
        env={**_env(runtime), "loadavg_before": before, "loadavg_after": _loadavg()},
    )


def stats_from_dict(result: dict) -> dict[str, dict]:
    """Recompute the statistics of a ``BenchResult.to_dict(samples=True)`` from its raw samples (a check that the
    stored table follows from the stored data)."""
    samples = {k: np.asarray(v, dtype=np.int64) for k, v in result["samples_ns"].items()}
    blocks = np.asarray(result["block_of_round"], dtype=np.int64)
    stats = latency_stats(samples, result["baseline"], seed=result["settings"]["seed"], block_of_round=blocks)
    return {k: asdict(v) for k, v in stats.items()}


def _check_args(
    models: dict,
    runtime: str,
    baseline: str,
    onnx_paths: dict | None,
    threads: int,
    openvino_paths: dict | None = None,
    litert_paths: dict | None = None,
) -> None:
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if not models:
        raise ValueError("no models to benchmark")
    if baseline not in models:
        raise ValueError(f"baseline {baseline!r} is not among the models ({', '.join(models)})")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if runtime == "ort-cpu":
        missing = [k for k in models if not onnx_paths or k not in onnx_paths]
        if missing:
            raise ValueError(f"ort-cpu needs onnx_paths for every model; missing: {', '.join(missing)}")
    if runtime == "openvino-cpu":
        missing = [k for k in models if not openvino_paths or k not in openvino_paths]
        if missing:
            raise ValueError(f"openvino-cpu needs openvino_paths for every model; missing: {', '.join(missing)}")
        import_openvino()
    if runtime == "litert-cpu":
        missing = [k for k in models if not litert_paths or k not in litert_paths]
        if missing:
            raise ValueError(f"litert-cpu needs litert_paths for every model; missing: {', '.join(missing)}")
        import_litert()
    if runtime == "torch-cuda-fp16" and not torch.cuda.is_available():
        raise RuntimeError("torch-cuda-fp16 needs a CUDA device, and torch.cuda.is_available() is False")


# ------------------------------------------------------------------------------------------------------ blocks


def run_block(spec: dict, models: dict[str, nn.Module] | None = None) -> dict:
    """Time one block in this process: build the runners, warm up, time interleaved rounds.

    Args:
        spec: ``runtime``, ``imgsz``, ``threads``, ``labels``, ``paths`` (file runtimes), ``warmup``, ``seconds``
            (this block's share), ``min_rounds``, ``seed``; and ``models_file`` when ``models`` is not given to a
            torch runtime.
        models: Label -> network for the torch runtimes (None: loaded from ``spec["models_file"]``).

    Returns:
        ``{"samples_ns": label -> int64 array, "timing_s": seconds in the timed rounds, "pid": this process}``.
    """
    runtime = spec["runtime"]
    if models is None:
        if runtime in FILE_RUNTIMES:
            models = dict.fromkeys(spec["labels"])
        else:
            models = torch.load(spec["models_file"], map_location="cpu", weights_only=False)
    with _torch_threads(spec["threads"]):
        runners = _make_runners(models, runtime, spec["imgsz"], spec["threads"], spec["paths"], spec["seed"])
        try:
            with torch.inference_mode():
                samples, spent = _time_rounds(
                    runners, spec["seconds"], spec["warmup"], spec["seed"], spec["min_rounds"]
                )
        finally:
            runners.clear()
            if runtime == "torch-cuda-fp16":
                torch.cuda.empty_cache()
    return {"samples_ns": samples, "timing_s": spent, "pid": os.getpid()}


_WORKER = "import sys; from yolo_leaky.measure.bench import block_worker; block_worker(sys.argv[1], sys.argv[2])"
_REMOTE_ERRORS = {"ValueError": ValueError, "UserError": UserError, "RuntimeError": RuntimeError}


def block_worker(spec_file: str, out_file: str) -> None:
    """Entry point of a block's worker process: run the block in ``spec_file`` and write its samples (or the
    exception it raised) as JSON to ``out_file``."""
    spec = json.loads(Path(spec_file).read_text())
    try:
        out = run_block(spec)
        payload = {**out, "samples_ns": {k: v.tolist() for k, v in out["samples_ns"].items()}}
    except Exception as e:  # handed to the parent, which raises it there
        payload = {"error": type(e).__name__, "message": str(e), "traceback": traceback.format_exc()}
    tmp = Path(out_file).with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(out_file)


def _block_in_fresh_process(spec: dict, folder: Path, block: int) -> dict:
    """Run one block in a new Python interpreter (not a fork, so the address-space layout is drawn anew)."""
    spec_file, out_file = folder / f"block{block}.json", folder / f"block{block}-out.json"
    spec_file.write_text(json.dumps(spec))
    # The parent's import path, in its order: the worker imports the same yolo_leaky, torch and runtimes.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run(
        [sys.executable, "-c", _WORKER, str(spec_file), str(out_file)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
    )
    if not out_file.exists():
        raise RuntimeError(
            f"bug or crash: benchmark block {block}'s worker process exited with {proc.returncode} and no result; "
            f"its output ends: {(proc.stderr or proc.stdout).strip()[-1500:]}"
        )
    out = json.loads(out_file.read_text())
    if "error" in out:
        kind = _REMOTE_ERRORS.get(out["error"])
        if kind is None:
            raise RuntimeError(f"benchmark block {block} failed in its worker process:\n{out['traceback']}")
        raise kind(out["message"])
    out["samples_ns"] = {k: np.asarray(v, dtype=np.int64) for k, v in out["samples_ns"].items()}
    return out


# ----------------------------------------------------------------------------------------------------- runners


def _make_runners(models, runtime, imgsz, threads, paths, seed) -> dict[str, Callable[[], object]]:
    """One zero-argument callable per model that runs one inference (and waits for it to finish); ``paths`` holds
    the model files of the file-based runtimes."""
    if runtime == "ort-cpu":
        return _ort_runners({k: paths[k] for k in models}, imgsz, threads, seed)
    if runtime == "openvino-cpu":
        return _openvino_runners({k: paths[k] for k in models}, imgsz, threads, seed)
    if runtime == "litert-cpu":
        return _litert_runners({k: paths[k] for k in models}, imgsz, threads, seed)
    cuda = runtime == "torch-cuda-fp16"
    device, dtype = (torch.device("cuda"), torch.float16) if cuda else (torch.device("cpu"), torch.float32)
    x = _input(imgsz, seed).to(device, dtype)
    return {k: _torch_runner(prepare_network(m, device, dtype), x, cuda) for k, m in models.items()}


def file_runner(runtime: str, path: str | Path, imgsz: int, threads: int = 1, seed: int = 0) -> Callable[[], object]:
    """One inference of the model file ``path`` per call, set up exactly as a benchmark block sets it up
    (``ort-cpu``: ``ort_session``; ``openvino-cpu``: ``openvino_config``; ``litert-cpu``: the LiteRT interpreter),
    on the block's seeded input.

    Examples:
        >>> file_runner("torch-cpu", "m.onnx", 64)
        Traceback (most recent call last):
        ...
        ValueError: file_runner times model files on ort-cpu, openvino-cpu or litert-cpu, not 'torch-cpu'
    """
    if runtime not in FILE_RUNTIMES:
        known = f"{', '.join(FILE_RUNTIMES[:-1])} or {FILE_RUNTIMES[-1]}"
        raise ValueError(f"file_runner times model files on {known}, not {runtime!r}")
    return _make_runners({"model": None}, runtime, imgsz, threads, {"model": str(path)}, seed)["model"]


def prepare_network(
    model: nn.Module, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> nn.Module:
    """A deep copy of ``model`` in eval mode, Conv+BN fused (with Ultralytics' ``fuse``), on ``device``/``dtype``."""
    net = copy.deepcopy(model).eval()
    if callable(getattr(net, "fuse", None)):
        net = net.fuse(verbose=False)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.to(device=device, dtype=dtype).eval()


def _input(imgsz: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, imgsz, imgsz, generator=gen)


def _torch_runner(net: nn.Module, x: torch.Tensor, cuda: bool) -> Callable[[], object]:
    if cuda:

        def run() -> object:
            out = net(x)
            torch.cuda.synchronize()
            return out

        return run
    return lambda: net(x)


def ort_session(onnx_path: str | Path, threads: int = 1, save_optimized: str | Path | None = None):
    """The one ONNX Runtime CPU session setup: for latency measurement (see the module docstring) and for the export
    check, which saves the graph ORT optimised to ``save_optimized``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3  # the "hardware specific optimizations" warning is expected when saving
    if save_optimized is not None:
        opts.optimized_model_filepath = str(save_optimized)
    return ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])


def _ort_runners(paths: dict[str, str], imgsz: int, threads: int, seed: int) -> dict[str, Callable[[], object]]:
    x = _input(imgsz, seed).numpy()
    runners = {}
    for label, path in paths.items():
        sess = ort_session(path, threads)
        inp = sess.get_inputs()[0]
        static = [d for d in inp.shape if isinstance(d, int)]
        if len(static) == 4 and list(inp.shape) != list(x.shape):
            raise ValueError(
                f"{label}: {path} takes input {inp.shape}, not {list(x.shape)}; export it at imgsz={imgsz}"
            )
        runners[label] = _ort_runner(sess, inp.name, x)
    return runners


def _ort_runner(sess, name: str, x: np.ndarray) -> Callable[[], object]:
    feed = {name: x}
    return lambda: sess.run(None, feed)


def import_openvino():
    """The ``openvino`` module, or a one-line ``UserError`` naming the install command (it is an optional extra)."""
    try:
        import openvino
    except ImportError:
        raise UserError("OpenVINO is not installed; pip install yolo-leaky[openvino]") from None
    return openvino


def openvino_config(threads: int = 1) -> dict:
    """The one OpenVINO CPU compile setup (timing and fusion inspection): see the module docstring."""
    return {
        "INFERENCE_NUM_THREADS": threads,
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
        "ENABLE_CPU_PINNING": False,
        "INFERENCE_PRECISION_HINT": "f32",
    }


def _openvino_runners(paths: dict[str, str], imgsz: int, threads: int, seed: int) -> dict[str, Callable[[], object]]:
    ov = import_openvino()
    core = ov.Core()
    x = _input(imgsz, seed).numpy()
    runners = {}
    for label, path in paths.items():
        model = core.read_model(str(path))
        shape = model.input(0).get_partial_shape()
        if shape.is_static and list(shape.to_shape()) != list(x.shape):
            raise ValueError(f"{label}: {path} takes input {shape}, not {list(x.shape)}; export it at imgsz={imgsz}")
        request = core.compile_model(model, "CPU", openvino_config(threads)).create_infer_request()
        runners[label] = _openvino_runner(request, x)
    return runners


def _openvino_runner(request, x: np.ndarray) -> Callable[[], object]:
    feed = {0: x}
    return lambda: request.infer(feed, share_inputs=True)


def import_litert():
    """LiteRT's ``Interpreter`` class, or a one-line ``UserError`` naming the install command (an optional extra)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise UserError("LiteRT (ai-edge-litert) is not installed; pip install 'yolo-leaky[tflite]'") from None
    return Interpreter


def _litert_runners(paths: dict[str, str], imgsz: int, threads: int, seed: int) -> dict[str, Callable[[], object]]:
    interpreter_class = import_litert()
    x = _input(imgsz, seed).numpy()
    runners = {}
    for label, path in paths.items():
        interpreter = interpreter_class(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
        inp = interpreter.get_input_details()[0]
        if list(inp["shape"]) != list(x.shape):
            raise ValueError(
                f"{label}: {path} takes input {list(inp['shape'])}, not {list(x.shape)}; export it at imgsz={imgsz}"
            )
        feed = x
        if inp["dtype"] != np.float32:  # a model with an integer graph input: the input quantized as it expects
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            feed = np.clip(np.round(x / scale + zero), info.min, info.max).astype(inp["dtype"])
        runners[label] = _litert_runner(interpreter, inp["index"], feed)
    return runners


def _litert_runner(interpreter, index: int, x: np.ndarray) -> Callable[[], object]:
    def run() -> object:
        interpreter.set_tensor(index, x)
        interpreter.invoke()
        return interpreter

    return run


# ------------------------------------------------------------------------------------------------------ timing


def round_orders(labels: list[str], seed: int) -> Iterator[list[str]]:
    """Endless round orders: a seeded random permutation on even rounds, its reverse on the following odd round."""
    rng = np.random.default_rng(seed)
    while True:
        order = [labels[i] for i in rng.permutation(len(labels))]
        yield order
        yield order[::-1]


Runner = Callable[[], object]


def _time_rounds(
    runners: dict[str, Runner], seconds: float, warmup: int, seed: int, min_rounds: int = MIN_ROUNDS
) -> tuple[dict[str, np.ndarray], float]:
    for run in runners.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[int]] = {k: [] for k in runners}
    orders = round_orders(list(runners), seed)
    clock = time.perf_counter_ns
    with _gc_off():
        start = clock()
        deadline = start + int(seconds * 1e9)
        while len(times[next(iter(times))]) < min_rounds or clock() < deadline:
            for label in next(orders):
                t0 = clock()
                runners[label]()
                times[label].append(clock() - t0)
        wall = (clock() - start) / 1e9
    return {k: np.asarray(v, dtype=np.int64) for k, v in times.items()}, wall


@contextlib.contextmanager
def _gc_off() -> Iterator[None]:
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# -------------------------------------------------------------------------------------------------- statistics


def latency_stats(
    samples_ns: dict[str, np.ndarray],
    baseline: str,
    resamples: int = RESAMPLES,
    seed: int = 0,
    block_of_round: np.ndarray | None = None,
) -> dict[str, ModelStats]:
    """Per-model latency statistics, and bootstrap CIs of each variant's ratio to ``baseline`` (ratio of medians and
    paired ratio).

    Args:
        samples_ns: Label -> latencies in ns, index = round (all the same length).
        baseline: The reference label.
        resamples: Bootstrap resamples of rounds.
        seed: Bootstrap seed.
        block_of_round: The block of each round; with two or more blocks the paired ratio and its CI come from
            the blocks (module docstring), else from the rounds.
    """
    n = len(samples_ns[baseline])
    if any(len(v) != n for v in samples_ns.values()):
        raise ValueError("every model needs one sample per round")
    ratios = {k: v / samples_ns[baseline] for k, v in samples_ns.items()}  # per round, paired
    meds = _bootstrap_medians(samples_ns, resamples, seed)
    paired = _bootstrap_medians(ratios, resamples, seed)  # the same resampled rounds (same seed)
    base = np.median(samples_ns[baseline])
    out = {}
    for label, s in samples_ns.items():
        ms = s / 1e6
        is_base = label == baseline
        lo, hi = (1.0, 1.0) if is_base else _ci(meds[label] / meds[baseline])
        rlo, rhi = (1.0, 1.0) if is_base else _ci(paired[label])
        per_block = block_ratios(ratios[label], block_of_round)
        if len(per_block) > 1:
            point, plo, phi = (1.0, 1.0, 1.0) if is_base else block_interval(per_block)
        else:
            point, plo, phi = (1.0 if is_base else float(np.median(ratios[label]))), rlo, rhi
        out[label] = ModelStats(
            label=label,
            median_ms=float(np.median(ms)),
            mean_ms=float(ms.mean()),
            p10_ms=float(np.percentile(ms, 10)),
            p90_ms=float(np.percentile(ms, 90)),
            ratio_of_medians=1.0 if is_base else float(np.median(s) / base),
            ratio_of_medians_ci_low=lo,
            ratio_of_medians_ci_high=hi,
            ratio_of_medians_half_width_pct=100 * (hi - lo) / 2,
            paired_ratio=point,
            paired_ci_low=plo,
            paired_ci_high=phi,
            paired_half_width_pct=100 * (phi - plo) / 2,
            rounds=n,
            blocks=max(1, len(per_block)),
            block_ratios=[round(float(r), 6) for r in per_block],
            paired_round_ci_low=rlo,
            paired_round_ci_high=rhi,
        )
    return out


def block_ratios(round_ratios: np.ndarray, block_of_round: np.ndarray | None) -> np.ndarray:
    """Each block's median of the per-round paired ratios (one value when there are no blocks)."""
    if block_of_round is None or len(block_of_round) == 0:
        return np.asarray([np.median(round_ratios)])
    return np.asarray([np.median(round_ratios[block_of_round == b]) for b in np.unique(block_of_round)])


def block_interval(ratios: np.ndarray) -> tuple[float, float, float]:
    """Geometric mean of per-block ratios and its Student-t CI over blocks (log scale, B - 1 degrees of freedom)."""
    from scipy import stats

    logs = np.log(ratios)
    mean, half = float(logs.mean()), 0.0
    if len(logs) > 1:
        half = float(stats.t.ppf(0.5 + CI_LEVEL / 2, len(logs) - 1) * logs.std(ddof=1) / np.sqrt(len(logs)))
    return float(np.exp(mean)), float(np.exp(mean - half)), float(np.exp(mean + half))


def _ci(boot: np.ndarray) -> tuple[float, float]:
    alpha = (1 - CI_LEVEL) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    return float(lo), float(hi)


def _bootstrap_medians(
    samples_ns: dict[str, np.ndarray], resamples: int, seed: int, chunk: int = 500
) -> dict[str, np.ndarray]:
    """Median of each model over the same bootstrap resamples of rounds: label -> array of ``resamples`` medians."""
    rng = np.random.default_rng(seed)
    n = len(next(iter(samples_ns.values())))
    out: dict[str, list[np.ndarray]] = {k: [] for k in samples_ns}
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        for label, s in samples_ns.items():
            out[label].append(np.median(s[idx], axis=1))
    return {k: np.concatenate(v) for k, v in out.items()}


# ----------------------------------------------------------------------------------------------------- context


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def machine() -> dict:
    """The machine a measurement ran on: CPU (Ultralytics' ``get_cpu_info``), core count, Python and torch."""
    from ultralytics.utils.torch_utils import get_cpu_info

    return {
        "torch": torch.__version__,
        "cpu": get_cpu_info(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def _env(runtime: str) -> dict:
    env = machine()
    if runtime == "ort-cpu":
        import onnxruntime as ort

        env["onnxruntime"] = ort.__version__
    if runtime == "torch-cuda-fp16":
        env["gpu"] = torch.cuda.get_device_name(0)
    if runtime == "openvino-cpu":
        env["openvino"] = import_openvino().__version__
    if runtime == "litert-cpu":
        from importlib.metadata import version

        env["ai-edge-litert"] = version("ai-edge-litert")
    return env


# ------------------------------------------------------------------------------------------------------ export


def export_onnx(
    yolo, out_dir: str | Path, imgsz: int, opset: int | None = None, name: str | None = None, batch: int = 1
) -> Path:
    """Export a YOLO object to ONNX with Ultralytics' own exporter (fused, onnxslim-simplified, static shape, batch 1
    unless ``batch`` says otherwise).

    The exporter names its output after the model's ``pt_path``; that attribute is pointed into ``out_dir`` for the
    call and restored afterwards, so nothing is written beside the original checkpoint (or into the working directory,
    as a YAML-built model would). The exporter works on its own deep copy; ``yolo`` is left as it was.

    Args:
        yolo: An Ultralytics ``YOLO`` object (e.g. from ``yolo_leaky.load``).
        out_dir: Folder for the ``.onnx`` file (created if needed).
        imgsz: Square input size baked into the graph.
        opset: ONNX opset; None lets Ultralytics choose (18 with torch 2.14 and onnx 1.23).
        name: File stem; default ``<model>-<act label>`` such as ``yolo11n-leaky_relu0.1``.
        batch: The static batch baked into the graph (a scorer runs many images per call; timing uses 1).

    Returns:
        The path of the exported ``.onnx`` file in ``out_dir``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    net = yolo.model
    target = out_dir / f"{name or default_stem(net)}.onnx"
    missing = object()
    old = net.__dict__.get("pt_path", missing)
    net.pt_path = str(target.with_suffix(".pt"))  # only its name is used: nothing is written at this path
    try:
        produced = yolo.export(
            format="onnx", imgsz=imgsz, simplify=True, dynamic=False, opset=opset, batch=batch, device="cpu"
        )
    finally:
        if old is missing:
            del net.pt_path
        else:
            net.pt_path = old
    produced = Path(produced)
    if produced.resolve() != target.resolve():
        shutil.move(str(produced), target)
    return target


def default_stem(net: nn.Module) -> str:
    """``<model stem>-<act label>`` from the network's YAML, e.g. ``yolo11n-relu``."""
    yaml = getattr(net, "yaml", None) or {}
    base = Path(str(yaml.get("yaml_file") or getattr(net, "pt_path", "") or "model")).stem or "model"
    act = (yaml.get(YAML_KEY) or {}).get("act")
    return f"{base}-{parse_act(act).label}" if act else base
