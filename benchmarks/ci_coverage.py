"""Coverage of the speed CIs across fresh runs: does one run's 95% CI contain what other runs measure?

Runs ``bench.benchmark`` (ONNX Runtime CPU) N times, each from a fresh Python process, on the same ONNX files, once
per mode asked for. For each run and variant it checks whether the run's CI of the paired ratio contains the pooled
estimate of the other runs (geometric mean of their point estimates), and prints the share of runs that pass: a
nominal 95% CI that covers what varies between runs should pass in about 95% of them (fewer with few runs, since
the pooled estimate of the others is itself noisy; one run is 100/N points).

Modes:
    process      ``blocks`` blocks, each in a fresh worker process: what ``compare`` reports.
    one-process  ``blocks`` blocks in the run's one process (``isolate=False``): the design before.
    session      one block, bootstrap over its rounds: what a single session can see.

The models come from a compare run's ``onnx/`` folder (``--onnx-dir``) or are exported here from ``--weights`` (a
checkpoint or a model YAML) swapped to each of ``--variants``. The machine's load is printed before and after,
since a busy machine widens every interval and moves estimates between runs.

    python benchmarks/ci_coverage.py --onnx-dir runs/compare/default/onnx --runs 8 --seconds 20
    python benchmarks/ci_coverage.py --weights yolo11n.yaml --imgsz 320 --runs 6 --seconds 10
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODES = ("process", "one-process", "session")
RUN = """
import json, os, sys
from yolo_leaky.measure.bench import benchmark
paths, baseline, imgsz, seconds, blocks, isolate, seed = json.loads(sys.argv[1])
result = benchmark(dict.fromkeys(paths), imgsz=imgsz, runtime="ort-cpu", seconds=seconds, threads=1,
                   baseline=baseline, onnx_paths=paths, blocks=blocks, seed=seed, isolate=isolate)
stats = {k: [s.paired_ratio, s.paired_ci_low, s.paired_ci_high] for k, s in result.stats.items()}
print(json.dumps({"stats": stats, "pids": result.settings["block_pids"], "pid": os.getpid(),
                  "overhead_s": result.settings["overhead_s"]}))
"""


def one_run(paths: dict, baseline: str, imgsz: int, seconds: float, mode: str, blocks: int, seed: int) -> dict:
    """One benchmark from a fresh Python process; its paired ratios and CIs, and the processes its blocks ran in."""
    n = 1 if mode == "session" else blocks
    args = json.dumps([paths, baseline, imgsz, seconds, n, mode == "process", seed])
    out = subprocess.run([sys.executable, "-c", RUN, args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def coverage(runs: list[dict], label: str) -> tuple[float, list[float], list[float]]:
    """Share of runs whose CI contains the geometric mean of the other runs' point estimates; the point estimates;
    each run's half-width in percent."""
    points = np.array([r["stats"][label][0] for r in runs])
    hits, widths = [], []
    for i, r in enumerate(runs):
        _, lo, hi = r["stats"][label]
        others = np.exp(np.log(np.delete(points, i)).mean())
        hits.append(lo <= others <= hi)
        widths.append(100 * (hi - lo) / 2)
    return float(np.mean(hits)), points.tolist(), widths


def export_variants(weights: str, variants: list[str], imgsz: int, out: Path) -> dict[str, str]:
    """ONNX files of ``weights`` swapped to each variant (label -> path), with Ultralytics' exporter."""
    from yolo_leaky import load, parse_act
    from yolo_leaky.measure.bench import export_onnx

    return {parse_act(v).label: str(export_onnx(load(weights, act=v), out, imgsz)) for v in variants}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--onnx-dir", help="a compare run's onnx/ folder: <label>/<file>.onnx")
    src.add_argument("--weights", help="a checkpoint or model YAML to swap and export at --imgsz")
    p.add_argument("--variants", default="silu,relu,leaky_relu:0.1,prelu,identity", help="with --weights")
    p.add_argument("--baseline", default="silu")
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--runs", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20, help="timed seconds per run")
    p.add_argument("--blocks", type=int, default=8)
    p.add_argument("--modes", nargs="+", choices=MODES, default=["process", "one-process"])
    p.add_argument("--json", help="also write the raw results here")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="ci-coverage-") as tmp:
        if a.onnx_dir:
            found = sorted(Path(a.onnx_dir).iterdir())
            paths = {d.name: str(next(d.glob("*.onnx"))) for d in found if d.is_dir()}
        else:
            paths = export_variants(a.weights, a.variants.split(","), a.imgsz, Path(tmp))
        paths = {a.baseline: paths.pop(a.baseline), **paths}
        print(
            f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
            f"load average (1/5/15 min) {' / '.join(f'{x:.2f}' for x in os.getloadavg())}\n"
            f"command: python {' '.join(sys.argv)}"
        )
        raw = {}
        for mode in a.modes:
            start = time.perf_counter()
            runs = [one_run(paths, a.baseline, a.imgsz, a.seconds, mode, a.blocks, seed) for seed in range(a.runs)]
            raw[mode] = runs
            kind = {
                "process": f"t-interval over {a.blocks} blocks, each in a fresh process",
                "one-process": f"t-interval over {a.blocks} blocks in one process",
                "session": "bootstrap over the rounds of one session",
            }[mode]
            distinct = all(len(set(r["pids"]) | {r["pid"]}) == len(r["pids"]) + 1 for r in runs)
            print(
                f"\n{kind}: {a.runs} runs x {a.seconds:g} s timed, {time.perf_counter() - start:.0f} s wall, "
                f"median overhead per run {np.median([r['overhead_s'] for r in runs]):.1f} s"
                + (", every block in its own process" if distinct else "")
                + f"; load average now {os.getloadavg()[0]:.2f}"
            )
            print(
                f"{'variant':<16} {'coverage':>8}  {'median half-width':>17}  {'spread of runs':>14}  point estimates"
            )
            for label in paths:
                if label == a.baseline:
                    continue
                cov, points, widths = coverage(runs, label)
                spread = 100 * (max(points) - min(points)) / 2
                shown = ", ".join(f"{x:.3f}" for x in sorted(points))
                print(f"{label:<16} {cov:>8.0%}  {np.median(widths):>16.2f}%  {spread:>13.2f}%  {shown}")
        if a.json:
            Path(a.json).write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
