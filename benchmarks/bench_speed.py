"""Inference latency of yolo11n with SiLU, ReLU, Leaky ReLU, PReLU and an identity floor (no activation at all).

Builds each variant from ``yolo11n.yaml`` (untrained weights: latency does not depend on their values), exports it
with Ultralytics' exporter to a temporary folder, checks what ONNX Runtime fuses, then prints interleaved, paired
timings for ONNX Runtime (CPU) and eager PyTorch (CPU), and for PyTorch CUDA fp16 when a GPU is present.

    YOLO_OFFLINE=1 python benchmarks/bench_speed.py --imgsz 640 --seconds 60 --threads 1 [--json out.json]

Timings are only as quiet as the machine: run it on an idle one and read the load averages printed under each table.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "False")

import torch  # noqa: E402
from ultralytics.utils import LOGGER  # noqa: E402

from yolo_leaky import load, parse_act  # noqa: E402
from yolo_leaky.measure.bench import benchmark, export_onnx  # noqa: E402
from yolo_leaky.measure.onnx_check import check_export  # noqa: E402

ACTS = ("silu", "relu", "leaky_relu:0.1", "prelu", "identity")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="yolo11n.yaml", help="model YAML (untrained) or checkpoint")
    p.add_argument("--acts", nargs="+", default=list(ACTS), help="activation specs; the first is the baseline")
    p.add_argument(
        "--imgsz", type=int, default=640, help="640: the ratio of medians gets to +/-1%% in ~60 s on a quiet CPU"
    )
    p.add_argument("--seconds", type=float, default=60, help="timed wall seconds per runtime")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--runtimes", nargs="+", default=["ort-cpu", "torch-cpu", "torch-cuda-fp16"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write every result (with raw samples) to this file")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    LOGGER.setLevel("WARNING")  # keep the exporter's banners out of the tables
    yolos = {act: load(args.model, act=act) for act in args.acts}
    labels = {act: str(parse_act(act)) for act in args.acts}
    models = {labels[a]: yolos[a].model for a in args.acts}
    baseline = labels[args.acts[0]]
    results = {}
    with tempfile.TemporaryDirectory(prefix="yolo-leaky-bench-") as tmp:
        paths = {labels[a]: str(export_onnx(yolos[a], tmp, args.imgsz)) for a in args.acts}
        results["onnx"] = {label: fusion_line(path, label) for label, path in paths.items()}
        for runtime in args.runtimes:
            if runtime == "torch-cuda-fp16" and not torch.cuda.is_available():
                continue
            res = benchmark(
                models,
                imgsz=args.imgsz,
                runtime=runtime,
                seconds=args.seconds,
                threads=args.threads,
                warmup=args.warmup,
                baseline=baseline,
                onnx_paths=paths,
                seed=args.seed,
            )
            print(res.format_table(), "\n", flush=True)
            results[runtime] = res.to_dict(samples=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


def fusion_line(path: str, label: str) -> dict:
    """Print and return what the export holds and what ORT fuses into its convolutions."""
    info = check_export(path, label)
    ort = info["ort"]
    print(
        f"{label:<16} silu sites {info['silu_patterns']:>3} | ORT conv {ort['conv_total']} "
        f"fused {ort['fused_into_conv']} "
        f"standalone {ort['standalone']} reorders {ort['layout_reorders']}",
        flush=True,
    )
    return {k: v for k, v in info.items() if k != "op_counts"}


if __name__ == "__main__":
    main()
