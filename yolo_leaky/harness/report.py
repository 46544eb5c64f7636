"""The comparison report: results.json, results.csv, plots and a report.md that says what the numbers can and
cannot support."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from ..data.synthetic import CLASSES as SHAPE_CLASSES
from ..utils import atomic
from ..utils.testhold import hold_point
from .config import CompareConfig, default_path_of
from .plots import write_plots
from .summary import (
    NO_SIGNAL,
    PUBLISHED_ANCHORS,
    SMALL_VAL,
    WARMUP_STEPS,
    Summary,
    headline_recovery,
    headline_runtime,
    paired_ratio_ci,
    seed_scope,
    speed_ci_covers_processes,
    speed_ci_scope,
    speed_verdict,
    untrained_note,
)
from .target_compare import targets_section

# the first words of a report paragraph that quotes figures measured elsewhere (README, docstrings), not in this run
DOC_LABEL = "Documentation (from"

# ---------------------------------------------------------------- writing


def write_report(c: CompareConfig, run: Path, summary: Summary) -> Path:
    """Write results.json, results.csv, plots and report.md into ``run``; return the report path."""
    plots = write_plots(run, c, summary)
    atomic.write_json(
        run / "results.json",
        {
            "settings": c.fingerprint(),
            "environment": summary.environment,
            "variants": summary.rows,
            "cells": summary.cells,
            "pretrained": summary.baseline,
            "swap": summary.swap,
            "recovery": summary.recovery,
            "standin": summary.standin,
            "int8": summary.int8,
            "int8_stage": summary.int8_raw,
            "targets": summary.targets,
            "targets_stage": summary.targets_raw,
            "cost": summary.cost,
            "speed": summary.speed,
            "units": summary.units,
            "time": summary.stages,
            "dataset": {"val_images": summary.n_val, **summary.dataset},
            "plots": plots,
        },
    )
    hold_point("report")  # tests only (testhold): killed with results.json written, report.md not yet
    atomic.write_text(run / "results.csv", _csv(summary.rows))
    return atomic.write_text(run / "report.md", render_markdown(c, summary, plots))


def _csv(rows: dict) -> str:
    keys = sorted({k for row in rows.values() for k in row}, key=lambda k: (k != "variant", k))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows.values())
    return buf.getvalue()


# ---------------------------------------------------------------- markdown


def render_markdown(c: CompareConfig, summary: Summary, plots: dict) -> str:
    rows, cells, speed, units, env = summary.rows, summary.cells, summary.speed, summary.units, summary.environment
    n_val, overlap, seconds = summary.n_val, summary.dataset, summary.seconds
    parts = [
        f"# yolo-leaky comparison: `{c.name}`\n",
        _settings_section(c, env, n_val, seconds),
        _path_section(c, summary),
        _caveats_section(c, rows, n_val, overlap),
        _recovery_section(c, summary),
        _accuracy_section(c, rows, cells, _accuracy_scope(c, summary)),
        _speed_section(c, rows, speed),
        _int8_section(c, summary),
        targets_section(summary.targets),
        _export_section(speed),
        _cost_section(c, rows, env),
        _units_section(c, units),
        _verdicts_section(c, rows, speed),
        _time_section(summary.stages),
        _files_section(plots),
    ]
    return "\n".join(p for p in parts if p)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _pm(mean, std, digits=3) -> str:
    if mean is None or math.isnan(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± " + ("n/a" if std is None or math.isnan(std) else f"{std:.{digits}f}")


def _settings_section(c, env, n_val, seconds) -> str:
    return (
        "## What was compared\n\n"
        f"- Model `{c.model}`, activation variants {', '.join(f'`{s}`' for s in c.specs)}, baseline `{c.baseline}`.\n"
        f"- Protocol **{c.protocol}**"
        + (
            f" from the SiLU checkpoint `{c.weights}`: swap, repair (`{c.repair}`), then {c.epochs} epoch(s) of "
            f"recovery by {' and by '.join(c.recovery)}, SiLU included as the control"
            if c.protocol == "recover"
            else " (every variant trained from the model YAML)"
        )
        + f"; data `{c.data}` ({n_val if n_val is not None else '?'} validation images); "
        f"{c.epochs} epoch(s), imgsz {c.imgsz}, "
        f"batch {c.batch}, seeds {c.seeds}; the same seed, hyperparameters and data in every column of a row.\n"
        "- Every activation site was swapped by yolo-leaky (one module per site), and the trainer was checked to "
        "keep it.\n"
        f"- Environment: yolo-leaky {env['yolo_leaky']}, Ultralytics {env['ultralytics']}, torch {env['torch']}, "
        f"ONNX Runtime {env['onnxruntime']}, Python {env['python']}; {env['cpu']} ({env['cpus']} CPUs)"
        + (f", GPU {env['gpu']}" if env["gpu"] else ", no GPU")
        + f". Run time {seconds / 60:.1f} min (reused cells excluded).\n"
    )


def _caveats_section(c, rows, n_val, overlap) -> str:
    lines = ["## What these numbers cannot say\n"]
    all_maps = [r["map50_95_mean"] for r in rows.values() if not math.isnan(r["map50_95_mean"])]
    if all_maps and max(all_maps) < NO_SIGNAL:
        lines.append(
            f"- **mAP is ~0 for every variant** (max mAP50-95 {max(all_maps):.4f}). This says nothing about which "
            "activation is more accurate: the models have not learned enough to be told apart."
        )
    if "unknown" in overlap:
        lines.append(
            f"- The dataset could not be resolved here ({overlap['unknown']}): its validation image count "
            "is unknown, so no accuracy difference is called significant."
        )
    coco8_scratch = (
        overlap.get("val_instances") is not None and "coco8" in str(c.data).lower() and c.protocol == "scratch"
    )
    if coco8_scratch:
        lines.append(
            f"- COCO8 has {n_val} validation images; only {overlap['val_instances_of_train_classes']} of their "
            f"{overlap['val_instances']} objects belong to classes that appear in its {overlap['train_images']} "
            f"training images (val: {', '.join(overlap['val_classes'])}; train: "
            f"{', '.join(overlap['train_classes'])}). From scratch, COCO8 cannot show what an activation does to "
            "accuracy. The default `protocol=recover` (what the swap costs a pretrained model, and what recovery wins "
            "back) measures that."
        )
    elif str(c.data) in ("shapes", "shapes.yaml"):
        lines.append(
            f"- **Synthetic data, not COCO.** This is yolo-leaky's generated shapes dataset ({len(SHAPE_CLASSES)} "
            "classes of drawn shapes): its "
            "accuracy shows how each swapped network behaves on a detector that has learned, not how it does on "
            "real images. Never read these figures as COCO mAP, nor scale them to COCO: the published COCO figures "
            "are in the anchors table."
        )
    if n_val is not None and n_val < SMALL_VAL and not coco8_scratch:
        lines.append(f"- Only {n_val} validation images: no accuracy difference is called significant.")
    steps = c.epochs * math.ceil(overlap.get("train_images", 0) / c.batch) if overlap.get("train_images") else None
    warmup = c.train_args.get("warmup_epochs", 3.0) > 0
    if steps is not None and steps <= WARMUP_STEPS and warmup:
        lines.append(
            f"- This run made only {steps} optimizer steps ({overlap['train_images']} training images, "
            f"batch {c.batch}, "
            f"{c.epochs} epochs), all inside Ultralytics' warm-up (at least {WARMUP_STEPS} steps, learning rate "
            "ramping up from 0): the weights, the PReLU slopes and the unit statistics are still close to their "
            "initial values. Cost and speed are measured properly; learning is not."
        )
    if len(c.seeds) < 2:
        lines.append("- One seed per variant: no spread is known, so no accuracy verdict can be significant.")
    lines.append(
        "- Speed ratios are for this machine and runtime only; an NPU or TensorRT build fuses differently. Each "
        "ratio has a 95% confidence interval over timing blocks (the speed section says what each interval covers "
        "and how often such intervals covered fresh runs' estimates). A variant is called "
        f"faster or slower only when its whole interval lies outside 1 ± {c.speed_band:g} (`speed_band=`); "
        '"no practical difference" when it lies inside that band; "inconclusive" otherwise.'
    )
    return "\n".join(lines) + "\n"


def _path_section(c, summary: Summary) -> str:
    """Which checkpoint and data the recovery protocol used, and why (``weights=auto``)."""
    if c.protocol != "recover":
        return ""
    lines = ["## Which path this run took\n"]
    if summary.standin:
        st = summary.standin
        lines.append(
            f"- **Offline stand-in, not COCO.** {st['what']}. Recipe: {st['recipe']['epochs']} epochs at imgsz "
            f"{st['recipe']['imgsz']}, batch {st['recipe']['batch']}, seed {st['recipe']['seed']}, "
            f"{st['recipe']['optimizer']} lr0 {st['recipe']['lr0']}; weights SHA-256 `{st['weights_sha256'][:16]}…`; "
            f"dataset digest `{st['data_digest'][:16]}…`; its own mAP50 {st['metrics']['map50']:.3f}, mAP50-95 "
            f"{st['metrics']['map50_95']:.3f}; trained in {st['train_seconds']:.0f} s with Ultralytics "
            f"{st['versions']['ultralytics']}, torch {st['versions']['torch']} (README: deterministic on one machine; "
            "another CPU gives other digits)."
        )
    else:
        lines.append(f"- SiLU checkpoint `{c.weights}`, evaluated on `{c.data}`.")
    if c.path_note:
        lines.append(f"- Chosen by `weights=auto`: {c.path_note}.")
    lines.append(_lr0_line(c))
    return "\n".join(lines) + "\n"


def _lr0_line(c) -> str:
    """How the recovery learning rate was chosen (documentation where it is the configured default)."""
    lr0, path = c.train_args.get("lr0"), default_path_of(c)
    if lr0 is None:
        return "- Recovery learning rate: Ultralytics' default for the optimizer (not tuned here)."
    if path == "standin":
        return (
            f"- Recovery learning rate lr0 {lr0:g}: the stand-in path's default, chosen on the shapes data's *tune* "
            "split (64 images of their own, never the validation images scored here) by `benchmarks/tune_lr0.py`; "
            "documentation, not measured in this run: the figures are in `cfg/compare.yaml`'s comment."
        )
    if path == "coco":
        return f"- Recovery learning rate lr0 {lr0:g}: the COCO8 path's default in `cfg/compare.yaml`, not tuned here."
    return f"- Recovery learning rate lr0 {lr0:g}: set for this run (not tuned by yolo-leaky)."


def _recovery_section(c, summary: Summary) -> str:
    rec = summary.recovery
    if not rec:
        return ""
    base = c.baseline
    text = ["## What the swap costs, and what recovery wins back\n"]
    swap = summary.swap or {}
    cal = swap.get("calibration", {})
    repairs = ["bn", "fit", "fit+bn"]
    seeds = swap.get("seeds", [])
    header = ["variant", "before swap", "after swap", *[f"after `{r}`" for r in repairs], "recovery starts from"]
    body = []
    for label, row in rec["no_training"].items():
        cells = [f"`{label}`", _map_pair(row["before"]), _map_pair(row["after_swap"])]
        for r in repairs:
            got = row["repairs"].get(r)
            cells.append("–" if got is None else _map_pm(got["metrics"], got["metrics_std"]))
        cells.append(row["start"] if label != base or row["start"] == "none" else f"{row['start']} (as the variants)")
        body.append(cells)
    digests = ", ".join(f"s{k} `{v['digest'][:8]}`" for k, v in cal.get("by_seed", {}).items())
    text.append(
        f"### Before any training (mAP50 / mAP50-95; repairs: mean ± std over seeds {seeds})\n\n"
        "The swap keeps every weight and needs no images: one figure per variant. `bn`: BatchNorm statistics "
        "re-estimated; `fit`: per-channel PReLU slopes fitted by least squares to SiLU (PReLU only); both without a "
        f"gradient step, on {cal.get('images', '?')} training images drawn with the seed (seed s: draw s, the same "
        f"images for every variant; digests {digests}). The `{base}` row is the control given the same repair "
        "(the slope fit does not apply to it).\n\n"
        + _scope_line(rec["scope"]["no_training"])
        + "\n"
        + _table(header, body)
    )
    header = ["variant", "repair", "reference", "mAP50-95 − reference [95% CI]", "per seed", "share of the way"]
    body = []
    for label, row in rec["no_training"].items():
        for r, got in row["repairs"].items():
            if got.get("reference") in (None, "self"):
                continue
            share = got["share_of_cost_removed"]["map50_95"]
            body.append(
                [
                    f"`{label}`",
                    f"`{r}`",
                    "SiLU + `bn`" if got["reference"] == "silu+bn" else "SiLU untouched",
                    _diff(got["gap_to_reference"]["map50_95"]),
                    " ".join(f"{x:+.3f}" for x in got["gap_values"]["map50_95"]),
                    "n/a" if share is None else f"{100 * share:.0f}%",
                ]
            )
    if body:
        text.append(
            "Each repair is judged against the SiLU network given the same repair on the same draw (BatchNorm "
            "re-estimation moves the unswapped network's mAP too, so part of what `bn` does is not about the swap; "
            "`fit` alone is judged against SiLU untouched). **mAP50-95 − reference**: the repaired variant minus "
            "SiLU + the same repair, paired by seed, with a t-interval over seeds: what the repair leaves of the "
            "swap's cost (0: nothing). **Share of the way**: (repaired − after swap) / (reference − after swap), on "
            "the means over seeds: how much of the distance from the naive swap to the reference the repair covers."
            "\n\n" + _table(header, body)
        )
    text.append(
        f"Recovery here starts from `repair={c.repair}`, seed s from the start repaired on draw s (saved in float32, "
        "as scored), the SiLU control included, so that the recovered rows differ in the activation alone. "
        "Whether that start speeds recovery up compared with the naive swap takes a second run from `repair=none`: "
        "`benchmarks/repair_recovery.py` runs both and pairs the cells by seed.\n"
    )
    slope = swap.get("ls_leaky_slope")
    if slope is not None:
        text.append(
            f"For information: the single LeakyReLU slope that matches SiLU best on these images (least squares, mean "
            f"over the draws) is {slope:.3f}; the variants above keep the slopes they were asked for.\n"
        )
    header = ["variant", "recovery", "mAP50", "mAP50-95", f"mAP50-95 − {base} [95% CI]", "verdict"]
    body = []
    for r in rec["recovered"].values():
        d = r.get(f"map50_95_vs_{base}")
        ci = "–" if r["variant"] == base else _diff(d)
        verdict = "control" if r["variant"] == base else r["map50_95_verdict"]
        body.append(
            [
                f"`{r['variant']}`",
                r["recovery"],
                _pm(r["map50_mean"], r["map50_std"]),
                _pm(r["map50_95_mean"], r["map50_95_std"]),
                ci,
                verdict,
            ]
        )
    seeds = sorted({s for r in rec["recovered"].values() for s in r["seeds"]})
    text.append(
        f"### After {c.epochs} epoch(s) of recovery (mean ± std over seeds {seeds}; final epoch)\n\n"
        "Every variant, SiLU included, is recovered for the same epochs from the same SiLU checkpoint, swapped "
        "and given the same repair on the same draw, so each row compares swap + recovery with just recovery. "
        "`finetune`: ordinary training. `distill`: Ultralytics' distiller with the SiLU checkpoint as the frozen "
        "teacher of its own swapped copy (feature distillation on the neck, weighted by the teacher's scores). "
        "CI: Welch's t-interval over seeds.\n\n"
        + _scope_line(rec["scope"]["recovered"])
        + "\n"
        + _table(header, body)
        + "\n"
        + _holm_note({f"`{m}` rows": rec["tests"][m]["map50_95"] for m in c.recovery}, base)
    )
    if rec["distill_minus_finetune"]:
        header = ["variant", "mAP50 distill − finetune [95% CI]", "mAP50-95 distill − finetune [95% CI]", "verdict"]
        body = [
            [f"`{label}`", _diff(r["map50"]), _diff(r["map50_95"]), r["map50_95_verdict"]]
            for label, r in rec["distill_minus_finetune"].items()
        ]
        text.append(
            "### What distillation buys over fine-tuning (same epochs, same seeds, paired by seed)\n\n"
            + _scope_line(rec["scope"]["recovered"], paired=True)
            + "\n"
            + _table(header, body)
            + "\n"
            + _holm_note({"the variants, mAP50-95": rec["tests"]["distill_minus_finetune"]["map50_95"]}, None)
        )
    text.append(
        "### Published anchors at COCO scale (context only; ours are never scaled to these)\n\n"
        + _table(["model", "change", "COCO mAP50-95", "source"], [list(a) for a in PUBLISHED_ANCHORS])
    )
    return "\n".join(text)


def _map_pair(m: dict | None) -> str:
    return "n/a" if not m else f"{m['map50']:.3f} / {m['map50_95']:.3f}"


def _map_pm(m: dict, std: dict) -> str:
    return f"{_pm(m['map50'], std.get('map50'))} / {_pm(m['map50_95'], std.get('map50_95'))}"


def _scope_line(scope: dict, paired: bool = False) -> str:
    """What varies across the seeds behind a table's mean ± std and CIs, and what is held fixed."""
    both = " (both arms of a pair share it, so the paired difference isolates the method)" if paired else ""
    return f"Across seeds, varies: {'; '.join(scope['varies'])}{both}. Held fixed: {'; '.join(scope['fixed'])}.\n"


def _diff(d: dict | None) -> str:
    if not d:
        return "n/a (one seed)"
    if d.get("no_spread"):
        return f"{d['diff']:+.3f} (no spread across seeds: no interval)"
    return f"{d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def _holm_note(families: dict[str, int], control: str | None) -> str:
    """One line under a table of verdicts: the correction they use, and over how many tests (counted in this run);
    ``control``: the variant every test of a family compares against, if there is one."""
    if not any(families.values()):
        return "No comparison in this table reached a test (each verdict says why), so no correction applies.\n"
    counts = "; ".join(f"{what}: {n} test{'s' if n != 1 else ''}" for what, n in families.items())
    return (
        f"Significance is Holm–Bonferroni-adjusted within each family ({counts}): a difference is called only when "
        "its adjusted p < 0.05, which keeps the chance of any false call in a family at 5% whatever the dependence "
        "between its tests" + (f" (they share the `{control}` control)" if control else "") + ". "
        "Holm, not Bonferroni, because it calls at least as much "
        "with the same guarantee; not a false-discovery rate (Benjamini–Hochberg) because each verdict may be acted "
        "on alone. The intervals are unadjusted 95% intervals, so one that excludes 0 can still be not significant "
        "here.\n"
    )


def _accuracy_scope(c, summary: Summary) -> dict:
    n_calib = (summary.swap or {}).get("calibration", {}).get("images", c.calib_images)
    return seed_scope(c, "recovered", n_calib, summary.n_val)


def _accuracy_section(c, rows, cells, scope: dict) -> str:
    header = ["variant", "mAP50", "mAP50-95", "precision", "recall", "seeds ok", f"vs {c.baseline} (mAP50-95)"]
    if c.protocol == "recover":
        header[0] = f"variant (recovered by {c.recovery[0]})"
    family = f"the variants against `{c.baseline}`"
    if c.protocol == "recover":
        family += f", as in the `{c.recovery[0]}` rows of the recovery table"
    body = []
    for r in rows.values():
        line = [
            f"`{r['variant']}`",
            _pm(r["map50_mean"], r["map50_std"]),
            _pm(r["map50_95_mean"], r["map50_95_std"]),
            _pm(r["precision_mean"], r["precision_std"]),
            _pm(r["recall_mean"], r["recall_std"]),
            f"{r['seeds_ok']}/{r['seeds_ok'] + r['seeds_failed']}",
            r["verdict_accuracy"],
        ]
        body.append(line)
    text = (
        "## Accuracy (mean ± std over seeds)\n\nScored on the final epoch's weights (`last.pt`), validated with the "
        "same settings as every other accuracy figure here (a square imgsz x imgsz letterbox, `rect=False`, the "
        "input an exported static-shape model sees); no epoch was selected on the validation images.\n\n"
        + _scope_line(scope)
        + "\n"
        + _table(header, body)
        + "\n"
        + _holm_note({family: max((r.get("accuracy_holm_tests") or 0 for r in rows.values()), default=0)}, c.baseline)
    )
    failed = {k: v.get("error", "?") for k, v in cells.items() if v["status"] != "ok"}
    if failed:
        text += "\nFailed cells (the others are complete and used):\n" + "".join(
            f"- `{k}`: {e}\n" for k, e in failed.items()
        )
    return text


def _fmt(x, digits=3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _speed_section(c, rows, speed) -> str:
    timings = speed.get("timings", {})
    if not timings:
        return ""
    text = ["## Inference speed (side by side, interleaved)\n"]
    for runtime, result in timings.items():
        body = []
        for label, s in result["stats"].items():
            ratio, lo, hi = paired_ratio_ci(s)
            verdict = speed_verdict(s, c.baseline, c.speed_band) if label != "identity" else "floor (no activation)"
            body.append(
                [
                    _variant(label, speed.get("checkpoints", {}).get(label)),
                    f"{s['median_ms']:.2f}",
                    f"{ratio:.3f}",
                    f"[{lo:.3f}, {hi:.3f}]",
                    f"±{s['paired_half_width_pct']:.2f}%",
                    f"{s['ratio_of_medians']:.3f} ±{s['ratio_of_medians_half_width_pct']:.1f}%",
                    verdict,
                ]
            )
        settings = result["settings"]
        text.append(
            f"### {runtime}: imgsz {result['imgsz']}, {result['threads']} thread(s), "
            f"{result['rounds']} rounds in {settings.get('blocks', 1)} blocks, {result['timing_s']:.0f} s\n"
        )
        scope = speed_ci_scope(settings)
        text.append(
            _table(
                ["variant", "median ms", f"ratio vs {c.baseline}", scope, "half-width", "ratio of medians", "verdict"],
                body,
            )
        )
        if not speed_ci_covers_processes(settings):
            text.append(_speed_ci_warning(settings) + "\n")
    if any(speed_ci_covers_processes(r["settings"]) for r in timings.values()):
        text.append(_speed_ci_coverage() + "\n")
    text.append(
        "Method: Conv+BN fused; all variants and an identity-activation floor of the same architecture are timed "
        "side by side, one image per call, in interleaved rounds (order alternated each round) after warm-up, with a "
        "fixed thread count. The time is split into blocks; each block runs in its own fresh worker process (a new "
        "interpreter: libraries mapped anew, fresh ONNX Runtime sessions or network copies, a new input and a new "
        "order), so that what varies between processes (memory layout, allocation, code alignment) varies between "
        "blocks too. Per block, ratio = median over rounds of t(variant)/t(baseline) measured in the same round "
        "(slow machine drift cancels within a round); the headline is the geometric mean over blocks, with a 95% "
        "Student-t interval over blocks. Blocks in one process, or a bootstrap over the rounds of one session, "
        "would be narrower and would not cover the process-to-process spread (README: coverage benchmark). The "
        "ratio of median latencies, with its bootstrap CI over rounds, is shown beside it. "
        f"Verdicts use a practical-equivalence band of ±{100 * c.speed_band:g}%. Raw per-round samples, their "
        "blocks and each block's process id are in `results.json`. "
        "Ultralytics' ProfileModels, by contrast, times each model alone and reports mean ± std after sigma "
        "clipping, with no interleaving and no interval on a ratio: machine drift between models lands in its "
        "difference.\n"
    )
    return "\n".join(text)


# Documentation, not this run: how often the block interval (blocks in fresh processes) contained the pooled
# estimate of other fresh runs, in two measurements; README "Speed confidence intervals" has the full tables.
SPEED_CI_COVERAGE = {
    "where": (
        "6 runs per variant and measurement, so one run is 17 points; measured twice on this project's 2-core AMD "
        "EPYC machine on 2026-12-01 while other jobs shared it, at load average about 2 and 11-13; ONNX Runtime "
        "CPU, 1 thread, stand-in checkpoint at 320 px, 8 blocks, 10 s per run"
    ),
    "command": "python benchmarks/ci_coverage.py --weights <stand-in .pt> --imgsz 320 --runs 6 --seconds 10",
    "coverage": {
        "relu": "83% / 83%",
        "leaky_relu0.1": "100% / 67%",
        "prelu": "100% / 100%",
        "identity": "50% / 83%",
    },
}


def _speed_ci_warning(settings: dict) -> str:
    """Under a timing table whose interval was taken within one process (one block, or a result timed before blocks
    ran in fresh processes): say that it is too narrow."""
    fix = (
        "with `bench_blocks=` of 2 or more each block runs in a fresh process"
        if settings.get("blocks", 1) < 2
        else "these timings come from an earlier version; remove `speed.json` from the run folder to time them again"
    )
    return (
        f"Interval: {speed_ci_scope(settings)}. It does not cover what varies between processes (memory layout, "
        f"sessions): treat it as too narrow; {fix}."
    )


def _speed_ci_coverage() -> str:
    """What an interval over blocks in fresh processes covers, and its coverage as measured elsewhere
    (documentation, labelled with where and how it was measured)."""
    cov = SPEED_CI_COVERAGE
    measured = ", ".join(f"{label} {share}" for label, share in cov["coverage"].items())
    return (
        "An interval over blocks, each in a fresh process, has a spread that includes what varies between processes "
        "on the machine that ran it; not what varies between machines, runtime builds or hours of background load. "
        "Documentation, not this run: such a run's interval contained the pooled estimate of the other runs in "
        f"{measured} of runs ({cov['where']}; `{cov['command']}`). A 95% interval should do so in about 95%; so few "
        "runs on a loaded machine can neither confirm nor refute that (README: Speed confidence intervals)."
    )


def _int8_section(c, summary: Summary) -> str:
    q = summary.int8
    if not q:
        return (
            "## INT8\n\nNot run: add `int8=true` (post-training quantization of every variant and seed, scored by "
            "Ultralytics' validator, timed against FP32; the cells of a finished run are reused).\n"
        )
    cal, st = q["calibration"], q["settings"]
    wanted = st.get("n_calib", cal["n"])
    seeds_too = " and seed" if q["calibration_identical_across_seeds"] else " (the first seed's draw shown)"
    count = f"`calib_images={wanted}`" + (f"; the train split has only {cal['n']}" if cal["n"] < wanted else "")
    text = [
        "## INT8 post-training quantization (ONNX Runtime, QDQ, per-channel weights)\n",
        f"Every variant's and seed's final weights (`{headline_recovery(c) or 'scratch'}` cells) exported to ONNX at "
        f"imgsz {st['imgsz']}, quantized with ONNX Runtime's `quantize_static` ({st['method']} calibration on "
        f"{cal['n']} *training* images ({count}), preprocessed as Ultralytics' validator preprocesses, the same images "
        f"for every variant{seeds_too}: digest `{cal['digest'][:12]}`), and scored by Ultralytics' validator on the "
        "`.onnx` files (mAP50-95). Schemes: **deploy** quantizes convolutions and activations (Q/DQ on every "
        "activation output) and keeps the Detect head's decoding (DFL, anchors, box pixels, sigmoid scores) in "
        "float; **conv-only** quantizes convolutions alone, so activations stay float and their difference is "
        "hidden. A naive whole-graph scheme (box pixels and 0–1 scores in one INT8 tensor) is not run here.\n",
        f"{DOC_LABEL} README §INT8 and `quant.py`'s docstring, measured once on the stand-in's cells, not in this "
        "run): the naive whole-graph scheme scored about 0 for every variant there, SiLU included; Entropy "
        "calibration gave MinMax's scales byte for byte, and the 99.999th percentile scored within the evaluation "
        "noise of 64 validation images.\n",
    ]
    header = [
        "variant",
        "FP32 (ONNX)",
        "INT8 deploy",
        "drop deploy [95% CI]",
        "drop per seed",
        "INT8 conv-only",
        f"deploy drop − {c.baseline}'s [95% CI]",
        "verdict",
        "Q/DQ nodes",
        "float activation nodes after ORT's optimizer (deploy, lowest seed)",
    ]
    body = []
    for label, r in q["rows"].items():
        d = r.get("deploy_drop_vs_base")
        body.append(
            [
                f"`{label}`",
                _pm(r["fp32_mean"], r["fp32_std"]),
                _pm(r["deploy_mean"], r["deploy_std"]),
                _diff(r["deploy_drop"]),
                " ".join(f"{x:+.3f}" for x in r["deploy_drops"]),
                _pm(r["conv-only_mean"], r["conv-only_std"]),
                "control" if label == c.baseline else _diff(d),
                "control" if label == c.baseline else r.get("deploy_drop_verdict", "n/a"),
                f"{r['deploy_nodes']['QuantizeLinear']}/{r['deploy_nodes']['DequantizeLinear']}",
                _ops(r.get("ort_int8_standalone")),
            ]
        )
    text.append(_table(header, body))
    text.append(
        "The SiLU control's drop per seed shows how stable the measure is; a variant's INT8 advantage is its drop "
        "against SiLU's, with Welch's interval over seeds. Calibration image digests per seed: "
        + ", ".join(f"s{k} `{v[:8]}`" for k, v in q["calibration_by_seed"].items())
        + ".\n\n"
        + _scope_line(q["scope"])
        + "\n"
        + _holm_note({f"drop against `{c.baseline}`'s": q["drop_vs_base_tests"]}, c.baseline)
    )
    sizes = sorted({t["imgsz"] for t in q["latency_settings"].values()} - {st["imgsz"]})
    if sizes:
        text.append(
            f"Latency is timed at imgsz {', '.join(map(str, sizes))} (`bench_imgsz`, the FP32 speed tables' size), "
            f"accuracy scored at imgsz {st['imgsz']}: the timed files are exports of the same checkpoints at the timed "
            "size, quantized the same way on the same calibration images preprocessed at that size.\n"
        )
    for runtime, rows in q["latency"].items():
        timed = q["latency_settings"][runtime]
        body = []
        for label, r in rows.items():
            f, b = r["int8_vs_fp32"], r["int8_vs_base_fp32"] or {}
            body.append(
                [
                    f"`{label}`",
                    f"{f['fp32_median_ms']:.2f}",
                    f"{f['int8_median_ms']:.2f}",
                    f"{f['paired_ratio']:.3f} [{f['paired_ci_low']:.3f}, {f['paired_ci_high']:.3f}]",
                    r["int8_vs_fp32_verdict"].replace("faster", "INT8 faster").replace("slower", "INT8 slower"),
                    "n/a"
                    if not b
                    else f"{b['paired_ratio']:.3f} [{b['paired_ci_low']:.3f}, {b['paired_ci_high']:.3f}]",
                ]
            )
        text.append(
            f"### INT8 latency, {runtime} (timed at imgsz {timed['imgsz']}, {timed['threads']} thread(s), FP32 and "
            f"INT8 of every variant interleaved, {timed['blocks']} blocks, seed {timed['seed']}'s models)\n\n"
            + _table(
                [
                    "variant",
                    "FP32 median ms",
                    "INT8 median ms",
                    "INT8 / FP32 [95% CI]",
                    "verdict",
                    f"INT8 / {c.baseline} FP32 [95% CI]",
                ],
                body,
            )
        )
        if not timed["baseline_timed"]:
            why = (
                f"this benchmark's ratios are against `{timed['timed_against']}` FP32"
                if timed["baseline_in_benchmark"]
                else f"`{c.baseline}` was not timed (no completed `{c.baseline}` cell for seed {timed['seed']})"
            )
            text.append(
                f"No INT8 / `{c.baseline}` FP32 ratio: {why}, and no other variant stands in for `{c.baseline}`.\n"
            )
    ov = {label: r["openvino"] for label, r in q["rows"].items() if "openvino" in r}
    if ov:
        body = [
            [
                f"`{label}`",
                f"{o['fp32_map50_95']:.3f}",
                f"{o['int8_map50_95']:.3f}",
                ", ".join(f"{n} {k}" for k, n in o["fp32_sites"].items() if n),
                ", ".join(f"{n} {k}" for k, n in o["int8_sites"].items() if n),
                _ops(o.get("int8_standalone")),
                ", ".join(f"{k} {v}" for k, v in o["int8_precisions"].items()),
            ]
            for label, o in ov.items()
        ]
        seeds = sorted({o["seed"] for o in ov.values()})
        text.append(
            f"### OpenVINO (Ultralytics' exporter; INT8 by NNCF on the same calibration images; seed "
            f"{', '.join(map(str, seeds))})\n\n"
            "Activation ops in the compiled CPU runtime graph: fused into a Convolution node, removed (no runtime "
            "node names them, e.g. folded into an INT8 convolution's output range), or standalone (a node of their "
            "own; by op type in the fifth column).\n\n"
            + _table(
                [
                    "variant",
                    "FP32 mAP50-95",
                    "NNCF INT8 mAP50-95",
                    "FP32 activations",
                    "INT8 activations",
                    "INT8 standalone ops",
                    "INT8 convolution precisions",
                ],
                body,
            )
        )
    for runtime, why in q["skipped"].items():
        text.append(f"- {runtime} not measured: {why}\n")
    return "\n".join(text)


def _ops(counts: dict | None) -> str:
    """``{"Sigmoid": 1}`` as ``Sigmoid 1``; "none" for an empty census, "n/a" where none was recorded."""
    if counts is None:
        return "n/a"
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items()) if n) or "none"


def _export_section(speed) -> str:
    exports = speed.get("exports", {})
    if not exports:
        return ""
    body = []
    for label, e in exports.items():
        fusion = e.get("ort", {})
        fused = ", ".join(f"{k} {v}" for k, v in sorted(fusion.get("fused_into_conv", {}).items())) or "none"
        alone = ", ".join(f"{k} {v}" for k, v in sorted(fusion.get("standalone", {}).items()) if v) or "none"
        reorders = sum(fusion.get("layout_reorders", {}).values())
        name = _variant(label, speed.get("checkpoints", {}).get(label))
        body.append([name, e.get("silu_patterns"), "yes" if e.get("silu_free") else "no", fused, alone, reorders])
    return (
        "## Export check (ONNX from Ultralytics' exporter; fusion after ONNX Runtime's ORT_ENABLE_ALL optimisation)\n\n"
        + _table(
            [
                "variant",
                "SiLU patterns (Sigmoid→Mul on a Conv)",
                "SiLU-free",
                "activations fused into Conv",
                "left standalone",
                "NCHWc layout reorders",
            ],
            body,
        )
        + "\nSiLU is expected in the `silu` export only (the Detect head's single class-score Sigmoid is not a SiLU). "
        "An activation fused into Conv runs inside the convolution's kernel; one left standalone is a separate pass "
        "over the feature map (QuickGelu is ORT's single-node form of x·sigmoid(x)). An NCHWc layout reorder is a "
        "conversion ORT inserts around an op that its NCHWc layout does not run.\n"
    )


def _cost_section(c, rows, env) -> str:
    gpu = any(r.get("peak_cuda_mib") for r in rows.values())
    mem_head = (
        "peak CUDA memory (max allocated, MiB)"
        if gpu
        else f"saved-tensor MiB, one training step (CPU; batch {min(c.batch, 2)}, imgsz {c.imgsz})"
    )
    body = []
    for r in rows.values():
        mem = r["peak_cuda_mib"] if gpu else (r["saved_tensor_bytes"] or 0) / 2**20
        body.append(
            [
                f"`{r['variant']}`" + ("" if r.get("network", "trained") == "trained" else f" ({r['network']})"),
                f"{r['params']:,}" if r.get("params") else "n/a",
                _fmt(r.get("gflops"), 2),
                _fmt(r.get("epoch_seconds_mean"), 2),
                _fmt(mem, 1),
            ]
        )
    note = (
        "Peak memory is CUDA's max allocated during training."
        if gpu
        else "On CPU, memory is the bytes autograd keeps for backward (unique storages, parameters excluded) in one "
        "training step: it is what an activation changes; peak RSS would mostly measure the framework."
    )
    return (
        "## Cost\n\n"
        + _table(["variant", "parameters", "GFLOPs", "train s/epoch", mem_head], body)
        + "\n"
        + note
        + "\n"
    )


def _units_section(c, units) -> str:
    if not units:
        return ""
    body = []
    for label, u in units.items():
        total = u.get("health", {}).get("total", {})
        body.append(
            [
                _variant(label, u.get("checkpoint")),
                u.get("health", {}).get("measure", "?"),
                _pct(total.get("dead_or_negative_only")),
                _pct(total.get("near_zero_grad")),
            ]
        )
    text = "## Unit health (dying ReLU)\n\n" + _table(
        ["variant", "measure", "channels ≤0 on every val pixel", "near-zero-gradient channels"], body
    )
    text += (
        "\n'dead' (ReLU) units pass no gradient; 'negative-only' units of LeakyReLU/PReLU still do, through the "
        "negative slope. SiLU is measured the same way for comparison.\n"
    )
    inits = {spec.label: spec.init for spec in c.specs}
    for label, u in units.items():
        s = u.get("prelu", {}).get("summary")
        if s:
            name = _variant(label, u.get("checkpoint"))
            text += (
                f"\nPReLU slopes ({name}, init {inits.get(label, float('nan')):g}): {s.get('slopes')} slopes at "
                f"{s.get('sites')} sites, min "
                f"{_fmt(s.get('min'))}, max {_fmt(s.get('max'))}, median of site medians "
                f"{_fmt(s.get('median_of_site_medians'))}. Sites by drift: {_drift(s.get('sites_by_drift'))}; "
                f"single slopes by drift: {_drift(s.get('slopes_by_drift'))}.\n"
            )
    return text


def _variant(label: str, source: dict | None) -> str:
    """A variant's name in a table, with a network measured untrained labelled as such (``untrained_note``)."""
    note = untrained_note(source)
    return f"`{label}`" + (f" ({note})" if note else "")


def _drift(counts: dict | None) -> str:
    names = {
        "negative": "negative",
        "relu_like": "towards 0 (ReLU-like)",
        "moderate": "moderate",
        "linear": "towards 1 (linear)",
    }
    return ", ".join(f"{names.get(k, k)} {v}" for k, v in (counts or {}).items())


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _verdicts_section(c, rows, speed) -> str:
    lines = ["## Verdicts\n"]
    ort = headline_runtime(speed)
    for r in rows.values():
        if r["variant"] == c.baseline:
            continue
        speed_text = r.get(f"{ort}_verdict", "not timed") if ort else "not timed"
        if r.get("network", "trained") != "trained":
            speed_text += f" ({r['network']})"
        lines.append(
            f"- `{r['variant']}` vs `{c.baseline}`: accuracy {r['verdict_accuracy']}; speed ({ort}) {speed_text}."
        )
    return "\n".join(lines) + "\n"


def _time_section(stages: dict) -> str:
    if not stages:
        return ""
    rows = [[stage, f"{secs:.0f}"] for stage, secs in stages["stages"].items()]
    share = stages.get("harness_overhead_share")
    return (
        "## Where the time goes (this invocation; reused results cost nothing)\n\n"
        + _table(["stage", "wall s"], rows)
        + f"\nOf {stages['total']:.0f} s: the cells' own training and validation "
        f"{stages['training_and_validation']:.0f} s, "
        f"timed benchmark rounds {stages['timed_rounds']:.0f} s, harness overhead (loading, exports, sessions, "
        f"warm-up, diagnostics, statistics) {stages['harness_overhead']:.0f} s"
        + (f" ({100 * share:.0f}%)" if share is not None else "")
        + ". The report and plots are written after this table.\n"
    )


def _files_section(plots: dict) -> str:
    lines = [
        "## Files\n",
        "- `results.json` (everything), `results.csv` (one row per variant), `cells/*/cell.json` (per seed).",
    ]
    lines += [f"- `{Path(p).name}`: {what}" for what, p in plots.items()]
    return "\n".join(lines) + "\n"
