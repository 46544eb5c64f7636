"""Choose the recovery learning rate on the shapes data's *tune* split, never on the validation images that the
report's verdicts score.

The default run's stand-in path (``cfg/compare.yaml``, ``auto.standin``) with ``lr0`` replaced by each value of a
grid: per variant and seed, the stand-in is swapped and repaired on calibration draw s (the compare swap stage),
fine-tuned for ``epochs`` epochs from that start (``run_cell``, the job every compare cell runs) and scored on the
tune split (64 images drawn from their own RNG stream: ``synthetic.tune_yaml``). Every validation in this script,
the swap stage's included, sees the tune images only. Prints each lr0's mAP50-95 per variant and seed and the lr0
with the highest mean over variants and seeds; writes ``tune_lr0.json`` in the output folder. Completed cells are
reused on a rerun.

    python benchmarks/tune_lr0.py                                   # relu, prelu; seed 0; lr0 0.0002 0.0005 0.001
    python benchmarks/tune_lr0.py seeds=0,1 variants=relu,prelu lr0=0.0002,0.0005,0.001 epochs=2 out=runs/tune-lr0
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import yaml

from yolo_leaky.data.standin import standin_checkpoint
from yolo_leaky.data.synthetic import make_shapes_dataset, tune_yaml
from yolo_leaky.harness.cells import cell_jobs, run_cell, swap_stage
from yolo_leaky.harness.config import DEFAULT_CONFIG, load_config
from yolo_leaky.utils import atomic
from yolo_leaky.utils.console import quiet

DEFAULTS = {"variants": "relu,prelu", "seeds": "0", "lr0": "0.0002,0.0005,0.001", "epochs": "2", "out": "runs/tune-lr0"}


def main(argv: list[str]) -> dict:
    args = {**DEFAULTS, **dict(a.split("=", 1) for a in argv)}
    out = Path(args["out"]).resolve()
    grid = [float(x) for x in args["lr0"].split(",")]
    block = yaml.safe_load(Path(DEFAULT_CONFIG).read_text())["auto"]["standin"]  # the default's offline path
    base = load_config([*(f"{k}={v}" for k, v in block.items()), f"epochs={args['epochs']}"])
    weights, _ = standin_checkpoint()
    c = dataclasses.replace(
        base,
        weights=str(weights),
        variants=["silu", *[v for v in args["variants"].split(",") if v != "silu"]],  # silu: the swap stage's reference
        seeds=[int(s) for s in args["seeds"].split(",")],
        recovery=["finetune"],
        diagnostics=False,
        project=str(out),
        name="swap",
    )
    tune = str(tune_yaml(make_shapes_dataset(out / "shapes")))
    with quiet(out / "log.txt", False):
        swap = swap_stage(c, tune, "cpu")  # repairs scored on the tune split too
    scores: dict = {}
    for lr0 in grid:
        c_lr = dataclasses.replace(c, train_args={**c.train_args, "lr0": lr0}, name=f"lr{lr0:g}")
        for job in cell_jobs(c_lr, tune, "cpu", swap=swap):
            label = job["key"].split("-finetune-")[0]
            if label == "silu" and "silu" not in args["variants"].split(","):
                continue
            folder = c_lr.run_dir / "cells" / job["key"]
            result = atomic.read_json(folder / "cell.json")
            if result is None or result.get("status") != "ok":
                print(f"lr0 {lr0:g}: {job['key']} fine-tuning {c.epochs} epoch(s)", flush=True)
                with quiet(folder / "log.txt", False):
                    result = run_cell(job, folder)
                atomic.write_json(folder / "cell.json", result)
            if result.get("status") != "ok":
                raise SystemExit(f"{job['key']} at lr0 {lr0:g} failed: {result.get('error')}")
            scores.setdefault(lr0, {}).setdefault(label, {})[job["seed"]] = result["metrics"]["map50_95"]
    starts = {
        label: {s: row["seeds"][s]["start"]["metrics"]["map50_95"] for s in row["seeds"]}
        for label, row in swap["variants"].items()
    }
    means = {lr0: float(np.mean([v for per in by.values() for v in per.values()])) for lr0, by in scores.items()}
    chosen = max(means, key=means.get)
    print(f"\nRecovery lr0 on the tune split ({c.epochs} epochs of finetune, mAP50-95 on 64 tune images)")
    for label, per in starts.items():
        print(f"  start ({swap['variants'][label]['start']['repair']}) {label}: {per}")
    for lr0, by in scores.items():
        cells = "  ".join(f"{label} {' '.join(f'{v:.3f}' for v in per.values())}" for label, per in by.items())
        print(f"  lr0 {lr0:<8g} mean {means[lr0]:.3f}   {cells}")
    print(f"chosen: lr0 {chosen:g}")
    summary = {"grid": grid, "scores": scores, "means": means, "chosen": chosen, "starts": starts, "epochs": c.epochs}
    atomic.write_json(out / "tune_lr0.json", json.loads(json.dumps(summary)))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
