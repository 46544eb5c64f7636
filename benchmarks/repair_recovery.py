"""Does a training-free repair speed up recovery? Recovery from the naive swap vs from the repaired swap.

Runs ``yolo-leaky compare`` twice on the same checkpoint, seeds and recipe, with ``recovery=[finetune]``: once with
``repair=none`` and once with ``repair=fit+bn`` (the default). Each pair of cells shares a variant and a seed, so
the figure per variant is the paired difference (repaired − naive) after the same recovery epochs, with a 95%
t-interval over seeds. Completed cells of either run are reused on a rerun.

    python benchmarks/repair_recovery.py                      # the offline stand-in, default recipe
    python benchmarks/repair_recovery.py epochs=4 seeds=[0,1,2,3]   # any compare key=value is passed on
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from yolo_leaky.harness.summary import difference, verdicts

FIXED = ["recovery=[finetune]", "diagnostics=False", "runtimes=[ort-cpu]", "bench_seconds=2", "bench_imgsz=64"]


def run(repair: str, extra: list[str]) -> dict:
    name = f"repair-{repair.replace('+', '')}"
    cmd = [sys.executable, "-m", "yolo_leaky.cli", "compare", f"repair={repair}", f"name={name}", *FIXED, *extra]
    subprocess.run(cmd, check=True)
    project = next((a.split("=", 1)[1] for a in extra if a.startswith("project=")), "runs/compare")
    return json.loads((Path(project) / name / "results.json").read_text())


def main(extra: list[str]) -> None:
    naive, fixed = run("none", extra), run("fit+bn", extra)
    n_val = fixed["dataset"].get("val_images")
    rec_n, rec_f = naive["recovery"], fixed["recovery"]
    print(f"\nRecovery from the naive swap vs from the repaired swap (repair=fit+bn), {n_val} val images")
    print(f"{'variant':<16}{'start (naive -> repaired) mAP50-95':<38}{'after recovery: repaired - naive [95% CI]':<46}")
    lines = []
    for label, row in rec_f["no_training"].items():
        if label == "silu":
            continue  # the control: no swap cost, no repair
        start_fixed = row["repairs"].get(row["start"], {}).get("metrics", row["after_swap"])["map50_95"]
        a = rec_f["recovered"][f"{label}/finetune"]["map50_95_values"]
        b = rec_n["recovered"][f"{label}/finetune"]["map50_95_values"]
        lines.append((label, f"{row['after_swap']['map50_95']:.3f} -> {start_fixed:.3f}", a, b))
    entries = [(difference(a, b, paired=True), a + b) for _, _, a, b in lines]
    for (label, start, a, b), (d, _), verdict in zip(lines, entries, verdicts(entries, n_val)):  # Holm over variants
        ci = "n/a" if d is None or d["no_spread"] else f"{d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
        print(f"{label:<16}{start:<38}{ci:<46}{verdict}")
        print(f"{'':<16}naive {' '.join(f'{x:.3f}' for x in b)}  repaired {' '.join(f'{x:.3f}' for x in a)}")


if __name__ == "__main__":
    main(sys.argv[1:])
