"""Coverage of the speed CIs across fresh processes: does one run's 95% CI contain what other runs measure?

Runs ``bench.benchmark`` (ONNX Runtime CPU) N times, each in a fresh Python process, on the same ONNX files, once
per block count asked for. For each run and variant it checks whether the run's CI of the paired ratio contains the
pooled estimate of the other runs (geometric mean of their point estimates), and prints the share of runs that
pass: a nominal 95% CI that covers what varies between runs should pass in about 95% of them.

With ``--blocks 1`` the CI is today's within-session bootstrap over rounds; with more blocks it is the Student-t
interval over independent blocks (fresh sessions, new input, new order), which the report uses.

    python benchmarks/ci_coverage.py --onnx-dir runs/compare/coco8/onnx --runs 8 --seconds 20 --blocks 1 8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RUN = """
import json, sys
from yolo_leaky.bench import benchmark
paths, baseline, imgsz, seconds, blocks, seed = json.loads(sys.argv[1])
result = benchmark({k: None for k in paths}, imgsz=imgsz, runtime="ort-cpu", seconds=seconds, threads=1,
                   baseline=baseline, onnx_paths=paths, blocks=blocks, seed=seed)
print(json.dumps({k: [s.paired_ratio, s.paired_ci_low, s.paired_ci_high] for k, s in result.stats.items()}))
"""


def one_run(paths: dict, baseline: str, imgsz: int, seconds: float, blocks: int, seed: int) -> dict:
    args = json.dumps([paths, baseline, imgsz, seconds, blocks, seed])
    out = subprocess.run([sys.executable, "-c", RUN, args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def coverage(runs: list[dict], label: str) -> tuple[float, list[float], list[float]]:
    """Share of runs whose CI contains the geometric mean of the other runs' point estimates."""
    points = np.array([r[label][0] for r in runs])
    hits, widths = [], []
    for i, r in enumerate(runs):
        others = np.exp(np.log(np.delete(points, i)).mean())
        hits.append(r[label][1] <= others <= r[label][2])
        widths.append(100 * (r[label][2] - r[label][1]) / 2)
    return float(np.mean(hits)), points.tolist(), widths


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--onnx-dir", required=True, help="a compare run's onnx/ folder: <label>/<file>.onnx")
    p.add_argument("--baseline", default="silu")
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--runs", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20, help="timed seconds per run")
    p.add_argument("--blocks", type=int, nargs="+", default=[1, 8])
    p.add_argument("--json", help="also write the raw results here")
    a = p.parse_args()
    paths = {d.name: str(next(d.glob("*.onnx"))) for d in sorted(Path(a.onnx_dir).iterdir()) if d.is_dir()}
    paths = {a.baseline: paths.pop(a.baseline), **paths}
    raw = {}
    for blocks in a.blocks:
        start = time.perf_counter()
        runs = [one_run(paths, a.baseline, a.imgsz, a.seconds, blocks, seed) for seed in range(a.runs)]
        raw[blocks] = runs
        kind = "bootstrap over rounds (one session)" if blocks == 1 else f"t-interval over {blocks} blocks"
        print(f"\n{kind}: {a.runs} fresh processes x {a.seconds:g} s, {time.perf_counter() - start:.0f} s wall")
        print(f"{'variant':<16} {'coverage':>8}  {'median half-width':>17}  point estimates")
        for label in paths:
            if label == a.baseline:
                continue
            cov, points, widths = coverage(runs, label)
            shown = ", ".join(f"{x:.3f}" for x in sorted(points))
            print(f"{label:<16} {cov:>8.0%}  {np.median(widths):>16.2f}%  {shown}")
    if a.json:
        Path(a.json).write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
