"""How many epochs? mAP50-95 after each epoch of each recovery method, per variant, and the epochs each variant needs
to come within the practical band of the SiLU control.

Runs ``yolo-leaky compare`` with ``save_period=1`` (an Ultralytics train argument, applied to every cell): each cell
keeps ``epoch<k>.pt``, the EMA saved exactly as its ``last.pt`` is. Each is scored with the harness's own
``validate_metrics`` (square letterbox, ``rect=False``), the metric the report scores every cell on; the last
epoch's score must equal the cell's reported one (checked). The cells' ``results.csv`` is not that metric:
Ultralytics validates during training with rect batches (``rect=True``), and the stand-in recipe sets ``val: false``.

The band is the one the harness defines, for speed (``speed_band``, default 0.02): a variant is within it at an
epoch when the 95% Welch interval of (variant − SiLU, same method, same epoch, over seeds) lies entirely above
−speed_band × SiLU's mean mAP50-95 (no Holm correction across epochs: each epoch is read on its own). "Epochs
needed" is the first epoch from which that holds at every later epoch of the budget.

    python benchmarks/recovery_curve.py epochs=6                          # the offline stand-in, default variants
    python benchmarks/recovery_curve.py epochs=4 variants=[silu,relu] seeds=[0,1]   # any compare key=value
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import yaml

FIXED = ["save_period=1", "diagnostics=False", "runtimes=[ort-cpu]", "bench_seconds=1", "bench_imgsz=64"]
FIXED += ["bench_blocks=2"]


def curve_table(curves: dict, band: float) -> dict:
    """Per method and variant: per-epoch mean mAP50-95 and, against SiLU, the Welch difference and whether it lies
    within the band; and the epochs needed.

    Args:
        curves: ``{method: {variant: {seed: [mAP50-95 after epoch 1, 2, ...]}}}``; ``silu`` must be among the
            variants.
        band: Relative practical band (``speed_band``): within when the CI's low end is above −band × SiLU's mean.

    Returns:
        ``{method: {variant: {"mean": [...], "diff": [difference dicts or None], "within": [bool|None],
        "epochs_needed": int | None}}}``; ``within`` is None where fewer than two seeds leave no interval.

    Examples:
        >>> t = curve_table({"finetune": {"silu": {0: [0.50, 0.600], 1: [0.52, 0.605], 2: [0.51, 0.610]},
        ...                               "relu": {0: [0.30, 0.600], 1: [0.33, 0.605], 2: [0.31, 0.610]}}}, 0.02)
        >>> t["finetune"]["relu"]["within"], t["finetune"]["relu"]["epochs_needed"]
        ([False, True], 2)
    """
    import numpy as np

    from yolo_leaky.harness.summary import difference

    out = {}
    for method, rows in curves.items():
        silu = rows["silu"]
        epochs = min(len(v) for r in rows.values() for v in r.values())
        out[method] = {}
        for variant, seeds in rows.items():
            means, diffs, within = [], [], []
            for e in range(epochs):
                values = [seeds[s][e] for s in sorted(seeds)]
                base = [silu[s][e] for s in sorted(silu)]
                d = None if variant == "silu" else difference(values, base)
                means.append(float(np.mean(values)))
                diffs.append(d)
                ok = None
                if d is not None and not d["no_spread"]:
                    ok = bool(d["low"] >= -band * float(np.mean(base)))
                within.append(ok)
            needed = None
            for e in range(epochs):
                if all(within[e:]):
                    needed = e + 1
                    break
            out[method][variant] = {"mean": means, "diff": diffs, "within": within, "epochs_needed": needed}
    return out


def score_epochs(run_dir: Path) -> tuple[dict, list[str]]:
    """``curves`` for ``curve_table`` from a compare run made with ``save_period=1``, and the consistency checks."""
    from yolo_leaky.core.loading import load
    from yolo_leaky.harness.cells import validate_metrics

    curves, checks = {}, []
    for cell_json in sorted(run_dir.glob("cells/*/cell.json")):
        cell = json.loads(cell_json.read_text())
        if cell.get("status") != "ok" or cell.get("recovery") is None:
            continue
        train = cell_json.parent / "train"
        args = yaml.safe_load((train / "args.yaml").read_text())
        c = SimpleNamespace(imgsz=args["imgsz"], batch=args["batch"])
        files = sorted(train.glob("weights/epoch*.pt"), key=lambda p: int(p.stem[5:]))
        scores = [validate_metrics(load(f), c, args["data"], "cpu")["map50_95"] for f in files]
        curves.setdefault(cell["recovery"], {}).setdefault(cell["variant"], {})[cell["seed"]] = scores
        same = bool(scores) and scores[-1] == cell["metrics"]["map50_95"]
        last = scores[-1] if scores else None
        verdict = "same" if same else "DIFFERENT"
        checks.append(
            f"{cell_json.parent.name}: last epoch {last} vs the cell's score {cell['metrics']['map50_95']}: {verdict}"
        )
    return curves, checks


def markdown(table: dict, band: float) -> str:
    lines = []
    for method, rows in table.items():
        epochs = len(rows["silu"]["mean"])
        lines.append(f"\n**{method}** (mAP50-95 mean over seeds after each epoch; [95% Welch CI of variant − SiLU])\n")
        lines.append("| variant | " + " | ".join(f"epoch {e + 1}" for e in range(epochs)) + " | epochs needed |")
        lines.append("|---|" + "---|" * (epochs + 1))
        for variant, row in rows.items():
            cells = []
            for mean, d, ok in zip(row["mean"], row["diff"], row["within"]):
                ci = "" if d is None or d["no_spread"] else f" [{d['low']:+.3f}, {d['high']:+.3f}]"
                cells.append(f"{mean:.3f}{ci}{' ✓' if ok else ''}")
            needed = "control" if variant == "silu" else row["epochs_needed"] or f"> {epochs}"
            lines.append(f"| {variant} | " + " | ".join(cells) + f" | {needed} |")
    lines.append(f"\n✓: the CI lies above −{band:g} × SiLU's mean (the harness's practical band, speed_band).")
    return "\n".join(lines)


def main(extra: list[str]) -> None:
    name = next((a.split("=", 1)[1] for a in extra if a.startswith("name=")), "recovery-curve")
    project = next((a.split("=", 1)[1] for a in extra if a.startswith("project=")), "runs/compare")
    band = float(next((a.split("=", 1)[1] for a in extra if a.startswith("speed_band=")), 0.02))
    rest = [a for a in extra if not a.startswith("name=")]
    subprocess.run([sys.executable, "-m", "yolo_leaky.cli", "compare", f"name={name}", *FIXED, *rest], check=True)
    run_dir = Path(project) / name
    curves, checks = score_epochs(run_dir)
    table = curve_table(curves, band)
    text = markdown(table, band)
    (run_dir / "curve.json").write_text(json.dumps({"curves": curves, "table": table, "checks": checks}, indent=1))
    (run_dir / "curve.md").write_text(text + "\n")
    print("\n".join(checks))
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
