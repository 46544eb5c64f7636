"""The comparison report: results.json, results.csv, plots and a report.md that says what the numbers can and
cannot support.

The report's words (what each method is, what a figure can and cannot say) live in ``report_text.md``, one entry per
paragraph or sentence; this module keeps the structure (headings, tables) and fills the entries with what the run
computed. ``tests/test_report_golden.py`` renders saved runs and compares them with their report.md word for word.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import re
from pathlib import Path

from ..core.tasks import NO_DISTILL, headline, metric_name, second
from ..data.standin import TASKS as STANDIN_TASKS
from ..data.synthetic import CLASSES as SHAPE_CLASSES
from ..utils import atomic
from ..utils.testhold import hold_point
from .config import CompareConfig, MixedSpec, default_path_of
from .plots import write_plots
from .sensitivity import Z
from .summary import (
    NO_SIGNAL,
    PUBLISHED_ANCHORS,
    SMALL_VAL,
    WARMUP_STEPS,
    Summary,
    compared_metrics,
    headline_recovery,
    headline_runtime,
    paired_ratio_ci,
    row_keys,
    seed_scope,
    speed_ci_covers_processes,
    speed_ci_scope,
    speed_verdict,
    untrained_note,
)
from .target_compare import targets_section

TEXT_FILE = Path(__file__).with_name("report_text.md")  # the report's words; this module fills in the figures
_ENTRY = re.compile(r"^<!-- ([\w.]+) -->$", re.MULTILINE)


@functools.cache
def report_text() -> dict[str, str]:
    """The entries of ``report_text.md`` by key, each unwrapped: a line that continues the previous one (not blank,
    not a list item or heading) joins it with one space; blank lines separate paragraphs.

    >>> report_text()["caveats.one_seed"]
    '- One seed per variant: no spread is known, so no accuracy verdict can be significant.'
    """
    parts = _ENTRY.split(TEXT_FILE.read_text(encoding="utf-8"))[1:]  # [key, body, key, body, ...]
    entries = {}
    for key, body in zip(parts[::2], parts[1::2]):
        lines: list[str] = []
        for line in body.strip("\n").splitlines():
            line = line.strip()
            if line and lines and lines[-1] and not line.startswith(("- ", "#")):
                lines[-1] += " " + line
            else:
                lines.append(line)
        entries[key] = "\n".join(lines)
    return entries


def text(key: str, **values) -> str:
    """The entry ``key`` of ``report_text.md`` with its ``{placeholders}`` filled from ``values``.

    >>> text("caveats.small_val", n_val=8)
    '- Only 8 validation images: no accuracy difference is called significant.'
    """
    return report_text()[key].format(**values)


# ---------------------------------------------------------------- writing


def write_report(c: CompareConfig, run: Path, summary: Summary) -> Path:
    """Write results.json, results.csv, plots and report.md into ``run``; return the report path."""
    plots = write_plots(run, c, summary)
    atomic.write_json(
        run / "results.json",
        {
            "task": summary.task,
            "settings": c.fingerprint(),
            "environment": summary.environment,
            "variants": summary.rows,
            "cells": summary.cells,
            "pretrained": summary.baseline,
            "swap": summary.swap,
            "mixed": mixed_between(c, summary),
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
        _caveats_section(c, rows, n_val, overlap, summary.task),
        _mixed_section(c, summary),
        _recovery_section(c, summary),
        _accuracy_section(c, rows, cells, _accuracy_scope(c, summary), summary.task),
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
    how = (
        text(
            "settings.recover",
            weights=c.weights,
            repair=c.repair,
            epochs=c.epochs,
            recovery=" and by ".join(c.recovery),
        )
        if c.protocol == "recover"
        else text("settings.scratch")
    )
    body = text(
        "settings",
        model=c.model,
        variants=", ".join(f"`{s}`" for s in c.specs),
        baseline=c.baseline,
        protocol=c.protocol,
        protocol_how=how,
        data=c.data,
        n_val=n_val if n_val is not None else "?",
        epochs=c.epochs,
        imgsz=c.imgsz,
        batch=c.batch,
        seeds=c.seeds,
        **{k: env[k] for k in ("yolo_leaky", "ultralytics", "torch", "onnxruntime", "python", "cpu", "cpus")},
        gpu=f", GPU {env['gpu']}" if env["gpu"] else ", no GPU",
        minutes=seconds / 60,
    )
    return "## What was compared\n\n" + body + "\n"


def _score_word(task: str) -> str:
    """What a task's scores are called in prose: mAP, or accuracy for classification."""
    return "accuracy" if task == "classify" else "mAP"


# task -> what the report calls a model of that task that has learned (the synthetic-data caveat)
LEARNER = {"detect": "detector", "segment": "segmentation model", "pose": "pose model", "obb": "oriented-box detector"}
LEARNER["classify"] = "classifier"


def _caveats_section(c, rows, n_val, overlap, task: str = "detect") -> str:
    lines = ["## What these numbers cannot say\n"]
    key, name = headline(task)
    all_maps = [r[f"{key}_mean"] for r in rows.values() if not math.isnan(r[f"{key}_mean"])]
    if all_maps and max(all_maps) < NO_SIGNAL:
        lines.append(text("caveats.no_signal", max_map=max(all_maps), metric=name, score=_score_word(task)))
    if "unknown" in overlap:
        lines.append(text("caveats.data_unknown", why=overlap["unknown"]))
    coco8_scratch = (
        overlap.get("val_instances") is not None and "coco8" in str(c.data).lower() and c.protocol == "scratch"
    )
    if coco8_scratch:
        lines.append(
            text(
                "caveats.coco8_scratch",
                n_val=n_val,
                val_instances_of_train_classes=overlap["val_instances_of_train_classes"],
                val_instances=overlap["val_instances"],
                train_images=overlap["train_images"],
                val_classes=", ".join(overlap["val_classes"]),
                train_classes=", ".join(overlap["train_classes"]),
            )
        )
    elif str(c.data) in ("shapes", "shapes.yaml"):
        lines.append(
            text(
                "caveats.synthetic",
                n_classes=len(SHAPE_CLASSES),
                learner=LEARNER[task],
                stands_for=STANDIN_TASKS[task]["stands_for"],
                score=_score_word(task),
            )
        )
    if n_val is not None and n_val < SMALL_VAL and not coco8_scratch:
        lines.append(text("caveats.small_val", n_val=n_val))
    steps = c.epochs * math.ceil(overlap.get("train_images", 0) / c.batch) if overlap.get("train_images") else None
    warmup = c.train_args.get("warmup_epochs", 3.0) > 0
    if steps is not None and steps <= WARMUP_STEPS and warmup:
        lines.append(
            text(
                "caveats.warmup",
                steps=steps,
                train_images=overlap["train_images"],
                batch=c.batch,
                epochs=c.epochs,
                warmup_steps=WARMUP_STEPS,
            )
        )
    classes = overlap.get("train_classes") or []
    if task == "classify" and 0 < len(classes) <= 5:  # top-5 of 5 classes or fewer holds every class
        lines.append(text("caveats.top5", n_classes=len(classes)))
    if len(c.seeds) < 2:
        lines.append(text("caveats.one_seed"))
    lines.append(text("caveats.speed", band=c.speed_band))
    return "\n".join(lines) + "\n"


def _path_section(c, summary: Summary) -> str:
    """Which checkpoint and data the recovery protocol used, and why (``weights=auto``)."""
    if c.protocol != "recover":
        return ""
    lines = ["## Which path this run took\n"]
    if summary.standin:
        st = summary.standin
        (skey, sname), (hkey, hname) = second(summary.task), headline(summary.task)
        lines.append(
            text(
                "path.standin",
                stands_for=STANDIN_TASKS[summary.task]["stands_for"],
                what=st["what"],
                **{k: st["recipe"][k] for k in ("epochs", "imgsz", "batch", "seed", "optimizer", "lr0")},
                weights_sha256=st["weights_sha256"][:16],
                data_digest=st["data_digest"][:16],
                second_name=sname,
                second=st["metrics"][skey],
                headline_name=hname,
                headline=st["metrics"][hkey],
                train_seconds=st["train_seconds"],
                ultralytics=st["versions"]["ultralytics"],
                torch=st["versions"]["torch"],
            )
        )
    else:
        lines.append(text("path.weights", weights=c.weights, data=c.data))
    if c.path_note:
        lines.append(text("path.auto", note=c.path_note))
    lines.append(_lr0_line(c))
    return "\n".join(lines) + "\n"


def _lr0_line(c) -> str:
    """How the recovery learning rate was chosen (documentation where it is the configured default)."""
    lr0, path = c.train_args.get("lr0"), default_path_of(c)
    if lr0 is None:
        return text("lr0.ultralytics")
    return text(f"lr0.{path if path in ('standin', 'coco') else 'user'}", lr0=lr0)


def mixed_between(c, summary: Summary) -> dict | None:
    """Per mixed variant: its kept layers and ranking (``summary.mixed``), plus where its repaired, training-free
    mAP50-95 lies against SiLU's and the full swap's under the same repair (mean over seeds): ``between`` is True
    when full swap <= mixed <= SiLU, measured, never assumed."""
    if not summary.mixed:
        return None
    variants = (summary.swap or {}).get("variants", {})
    silu = next((s for s in c.specs if s.name == "silu" and not isinstance(s, MixedSpec)), None)
    out = {}
    for label, row in summary.mixed.items():
        spec = next(s for s in c.specs if s.label == label)
        full = next((s for s in c.specs if s == spec.base), None)  # the full swap of the same activation, if listed
        repair = variants.get(label, {}).get("start", {}).get("repair")

        def score(lab, repair=repair):
            got = variants.get(lab, {}).get("repairs", {}).get(repair) if lab else None
            return None if got is None else got["metrics"][headline(summary.task)[0]]

        silu_score = score(silu.label if silu else None, "bn")  # the reference of a repair: SiLU + bn (no fit)
        scores = {"mixed": score(label), "full_swap": score(full.label if full else None), "silu": silu_score}
        between = None
        if None not in scores.values():
            between = scores["full_swap"] <= scores["mixed"] <= scores["silu"]
        out[label] = {**row, "repair": repair, "repaired_map50_95": scores, "between": between}
    return out


def _num(x) -> str:
    return "–" if x is None else f"{x:.4f}"


def _mixed_section(c, summary: Summary) -> str:
    rows = mixed_between(c, summary)
    if not rows:
        return ""
    out = ["## Mixed variants: which layers keep SiLU, and why\n", text("mixed.how") + "\n"]
    body = []
    for label, r in rows.items():
        rank = r["ranking"]
        kept = ", ".join(f"{k['layer']} ({k['type']}, {k['sites']} sites, {k['cost']:+.4f} ± {k['ci95']:.4f})"
                         for k in r["kept"])  # fmt: skip
        nxt = r["next"]
        sep = {True: "yes", False: "no (within noise)", None: "–"}[r["separable_from_next"]]
        body.append(
            [
                f"`{label}`",
                kept,
                "–" if nxt is None else f"{nxt['layer']} ({nxt['cost']:+.4f} ± {nxt['ci95']:.4f})",
                sep,
                f"{rank['full']['cost']:+.4f} ± {Z * rank['full']['noise']:.4f}",
                f"{rank['scored_on']['images']} {rank['scored_on']['what']} images"
                + (", cached" if rank.get("cached") else f", {rank['seconds']:.0f} s"),
            ]
        )
    header = ["variant", "SiLU kept in layer (cost alone ± 95%)", "next in rank", "kept vs next separable",
              "full swap's cost", "ranked on"]  # fmt: skip
    out.append(_table(header, body))
    body = []
    for label, r in rows.items():
        s = r["repaired_map50_95"]
        placed = {True: "yes", False: "**no**", None: "–"}[r["between"]]
        body.append([f"`{label}`", f"`{r['repair']}`", *(_num(s[k]) for k in ("mixed", "full_swap", "silu")), placed])
    header = ["variant", "repair", "mixed", "full swap", "SiLU + `bn`", "between"]
    out += [text("mixed.placed") + "\n", _table(header, body)]
    return "\n".join(out) + "\n"


def _recovery_section(c, summary: Summary) -> str:
    rec = summary.recovery
    if not rec:
        return ""
    base, task = c.baseline, summary.task
    (skey, sname), (hkey, hname) = second(task), headline(task)
    out = ["## What the swap costs, and what recovery wins back\n"]
    swap = summary.swap or {}
    cal = swap.get("calibration", {})
    repairs = ["bn", "fit", "fit+bn"]
    seeds = swap.get("seeds", [])
    header = ["variant", "before swap", "after swap", *[f"after `{r}`" for r in repairs], "recovery starts from"]
    body = []
    for label, row in rec["no_training"].items():
        cells = [f"`{label}`", _map_pair(row["before"], task), _map_pair(row["after_swap"], task)]
        for r in repairs:
            got = row["repairs"].get(r)
            cells.append("–" if got is None else _map_pm(got["metrics"], got["metrics_std"], task))
        cells.append(row["start"] if label != base or row["start"] == "none" else f"{row['start']} (as the variants)")
        body.append(cells)
    digests = ", ".join(f"s{k} `{v['digest'][:8]}`" for k, v in cal.get("by_seed", {}).items())
    out.append(
        f"### Before any training ({sname} / {hname}; repairs: mean ± std over seeds {seeds})\n\n"
        + text("recovery.repairs", images=cal.get("images", "?"), digests=digests, baseline=base)
        + "\n\n"
        + _scope_line(rec["scope"]["no_training"])
        + "\n"
        + _table(header, body)
    )
    header = ["variant", "repair", "reference", f"{hname} − reference [95% CI]", "per seed", "share of the way"]
    body = []
    for label, row in rec["no_training"].items():
        for r, got in row["repairs"].items():
            if got.get("reference") in (None, "self"):
                continue
            share = got["share_of_cost_removed"][hkey]
            body.append(
                [
                    f"`{label}`",
                    f"`{r}`",
                    "SiLU + `bn`" if got["reference"] == "silu+bn" else "SiLU untouched",
                    _diff(got["gap_to_reference"][hkey]),
                    " ".join(f"{x:+.3f}" for x in got["gap_values"][hkey]),
                    "n/a" if share is None else f"{100 * share:.0f}%",
                ]
            )
    if body:
        out.append(text("recovery.reference", metric=hname, score=_score_word(task)) + "\n\n" + _table(header, body))
    out.append(text("recovery.start", repair=c.repair) + "\n")
    slope = swap.get("ls_leaky_slope")
    if slope is not None:
        out.append(text("recovery.leaky_slope", slope=slope) + "\n")
    header = ["variant", "recovery", sname, hname, f"{hname} − {base} [95% CI]", "verdict"]
    body = []
    for r in rec["recovered"].values():
        d = r.get(f"{hkey}_vs_{base}")
        ci = "–" if r["variant"] == base else _diff(d)
        verdict = "control" if r["variant"] == base else r[f"{hkey}_verdict"]
        body.append(
            [
                f"`{r['variant']}`",
                r["recovery"],
                _pm(r[f"{skey}_mean"], r[f"{skey}_std"]),
                _pm(r[f"{hkey}_mean"], r[f"{hkey}_std"]),
                ci,
                verdict,
            ]
        )
    seeds = sorted({s for r in rec["recovered"].values() for s in r["seeds"]})
    out.append(
        f"### After {c.epochs} epoch(s) of recovery (mean ± std over seeds {seeds}; final epoch)\n\n"
        + text("recovery.recovered")
        + "\n\n"
        + _scope_line(rec["scope"]["recovered"])
        + "\n"
        + _table(header, body)
        + "\n"
        + _holm_note({f"`{m}` rows": rec["tests"][m][hkey] for m in c.recovery}, base)
    )
    if task in NO_DISTILL:
        out.append(text("recovery.no_distill", task=task, why=NO_DISTILL[task]) + "\n")
    if rec["distill_minus_finetune"]:
        header = ["variant", f"{sname} distill − finetune [95% CI]", f"{hname} distill − finetune [95% CI]", "verdict"]
        body = [
            [f"`{label}`", _diff(r[skey]), _diff(r[hkey]), r[f"{hkey}_verdict"]]
            for label, r in rec["distill_minus_finetune"].items()
        ]
        out.append(
            "### What distillation buys over fine-tuning (same epochs, same seeds, paired by seed)\n\n"
            + _scope_line(rec["scope"]["recovered"], paired=True)
            + "\n"
            + _table(header, body)
            + "\n"
            + _holm_note({f"the variants, {hname}": rec["tests"]["distill_minus_finetune"][hkey]}, None)
        )
    out.append(
        "### Published anchors at COCO scale (context only; ours are never scaled to these)\n\n"
        + ("" if task == "detect" else text("anchors.other_task", task=task) + "\n\n")
        + _table(["model", "change", "COCO mAP50-95", "source"], [list(a) for a in PUBLISHED_ANCHORS])
    )
    return "\n".join(out)


def _map_pair(m: dict | None, task: str = "detect") -> str:
    """The looser and the headline metric of ``task`` (detection: mAP50 / mAP50-95)."""
    return "n/a" if not m else " / ".join(f"{m[k]:.3f}" for k in compared_metrics(task))


def _map_pm(m: dict, std: dict, task: str = "detect") -> str:
    return " / ".join(_pm(m[k], std.get(k)) for k in compared_metrics(task))


def _scope_line(scope: dict, paired: bool = False) -> str:
    """What varies across the seeds behind a table's mean ± std and CIs, and what is held fixed."""
    both = " " + text("scope.paired") if paired else ""
    return text("scope", varies="; ".join(scope["varies"]), paired=both, fixed="; ".join(scope["fixed"])) + "\n"


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
        return text("holm.none") + "\n"
    counts = "; ".join(f"{what}: {n} test{'s' if n != 1 else ''}" for what, n in families.items())
    shared = " " + text("holm.shared", control=control) if control else ""
    return text("holm", counts=counts, shared=shared) + "\n"


def _accuracy_scope(c, summary: Summary) -> dict:
    n_calib = (summary.swap or {}).get("calibration", {}).get("images", c.calib_images)
    return seed_scope(c, "recovered", n_calib, summary.n_val)


def _accuracy_section(c, rows, cells, scope: dict, task: str = "detect") -> str:
    keys = row_keys(task)
    header = ["variant", *(metric_name(k, task) for k in keys), "seeds ok", f"vs {c.baseline} ({headline(task)[1]})"]
    if c.protocol == "recover":
        header[0] = f"variant (recovered by {c.recovery[0]})"
    family = f"the variants against `{c.baseline}`"
    if c.protocol == "recover":
        family += f", as in the `{c.recovery[0]}` rows of the recovery table"
    body = []
    for r in rows.values():
        line = [
            f"`{r['variant']}`",
            *(_pm(r[f"{k}_mean"], r[f"{k}_std"]) for k in keys),
            f"{r['seeds_ok']}/{r['seeds_ok'] + r['seeds_failed']}",
            r["verdict_accuracy"],
        ]
        body.append(line)
    out = (
        "## Accuracy (mean ± std over seeds)\n\n"
        + text("accuracy")
        + "\n\n"
        + _scope_line(scope)
        + "\n"
        + _table(header, body)
        + "\n"
        + _holm_note({family: max((r.get("accuracy_holm_tests") or 0 for r in rows.values()), default=0)}, c.baseline)
    )
    failed = {k: v.get("error", "?") for k, v in cells.items() if v["status"] != "ok"}
    if failed:
        out += "\nFailed cells (the others are complete and used):\n" + "".join(
            f"- `{k}`: {e}\n" for k, e in failed.items()
        )
    return out


def _fmt(x, digits=3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _speed_section(c, rows, speed) -> str:
    timings = speed.get("timings", {})
    if not timings:
        return ""
    out = ["## Inference speed (side by side, interleaved)\n"]
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
        out.append(
            f"### {runtime}: imgsz {result['imgsz']}, {result['threads']} thread(s), "
            f"{result['rounds']} rounds in {settings.get('blocks', 1)} blocks, {result['timing_s']:.0f} s\n"
        )
        scope = speed_ci_scope(settings)
        out.append(
            _table(
                ["variant", "median ms", f"ratio vs {c.baseline}", scope, "half-width", "ratio of medians", "verdict"],
                body,
            )
        )
        if not speed_ci_covers_processes(settings):
            out.append(_speed_ci_warning(settings) + "\n")
    if any(speed_ci_covers_processes(r["settings"]) for r in timings.values()):
        out.append(_speed_ci_coverage() + "\n")
    out.append(text("speed.method", band_pct=100 * c.speed_band) + "\n")
    return "\n".join(out)


# Documentation, not this run: how often the block interval (blocks in fresh processes) contained the pooled
# estimate of other fresh runs, in two measurements; docs/methodology.md "Speed confidence intervals" has the full
# tables.
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
    fix = text("speed.narrow.one_block" if settings.get("blocks", 1) < 2 else "speed.narrow.old")
    return text("speed.narrow", scope=speed_ci_scope(settings), fix=fix)


def _speed_ci_coverage() -> str:
    """What an interval over blocks in fresh processes covers, and its coverage as measured elsewhere
    (documentation, labelled with where and how it was measured)."""
    cov = SPEED_CI_COVERAGE
    measured = ", ".join(f"{label} {share}" for label, share in cov["coverage"].items())
    return text("speed.coverage", measured=measured, where=cov["where"], command=cov["command"])


def _int8_section(c, summary: Summary) -> str:
    q, task = summary.int8, summary.task
    if not q:
        return "## INT8\n\n" + text("int8.not_run") + "\n"
    hkey, hname = headline(task)
    cal, st = q["calibration"], q["settings"]
    wanted = st.get("n_calib", cal["n"])
    seeds_too = " and seed" if q["calibration_identical_across_seeds"] else " (the first seed's draw shown)"
    count = f"`calib_images={wanted}`" + (f"; the train split has only {cal['n']}" if cal["n"] < wanted else "")
    out = [
        "## INT8 post-training quantization (ONNX Runtime, QDQ, per-channel weights)\n",
        text(
            "int8.method",
            cells=headline_recovery(c) or "scratch",
            imgsz=st["imgsz"],
            method=st["method"],
            n=cal["n"],
            count=count,
            seeds_too=seeds_too,
            digest=cal["digest"][:12],
            metric=hname,
            kept=text(f"int8.kept.{task}"),
            naive=text(f"int8.naive.{task}"),
        )
        + "\n",
    ]
    if f"int8.documentation.{task}" in report_text() or task == "detect":
        out.append(text("int8.documentation" if task == "detect" else f"int8.documentation.{task}") + "\n")
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
    out.append(_table(header, body))
    digests = ", ".join(f"s{k} `{v[:8]}`" for k, v in q["calibration_by_seed"].items())
    out.append(
        text("int8.control", digests=digests)
        + "\n\n"
        + _scope_line(q["scope"])
        + "\n"
        + _holm_note({f"drop against `{c.baseline}`'s": q["drop_vs_base_tests"]}, c.baseline)
    )
    sizes = sorted({t["imgsz"] for t in q["latency_settings"].values()} - {st["imgsz"]})
    if sizes:
        out.append(text("int8.sizes", sizes=", ".join(map(str, sizes)), imgsz=st["imgsz"]) + "\n")
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
        out.append(
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
                text("int8.no_base_ratio.other", timed_against=timed["timed_against"])
                if timed["baseline_in_benchmark"]
                else text("int8.no_base_ratio.untimed", baseline=c.baseline, seed=timed["seed"])
            )
            out.append(text("int8.no_base_ratio", baseline=c.baseline, why=why) + "\n")
    ov = {label: r["openvino"] for label, r in q["rows"].items() if "openvino" in r}
    if ov:
        body = [
            [
                f"`{label}`",
                f"{o[f'fp32_{hkey}']:.3f}",
                f"{o[f'int8_{hkey}']:.3f}",
                ", ".join(f"{n} {k}" for k, n in o["fp32_sites"].items() if n),
                ", ".join(f"{n} {k}" for k, n in o["int8_sites"].items() if n),
                _ops(o.get("int8_standalone")),
                ", ".join(f"{k} {v}" for k, v in o["int8_precisions"].items()),
            ]
            for label, o in ov.items()
        ]
        seeds = sorted({o["seed"] for o in ov.values()})
        out.append(
            f"### OpenVINO (Ultralytics' exporter; INT8 by NNCF on the same calibration images; seed "
            f"{', '.join(map(str, seeds))})\n\n"
            + text("int8.openvino")
            + "\n\n"
            + _table(
                [
                    "variant",
                    f"FP32 {hname}",
                    f"NNCF INT8 {hname}",
                    "FP32 activations",
                    "INT8 activations",
                    "INT8 standalone ops",
                    "INT8 convolution precisions",
                ],
                body,
            )
        )
    for runtime, why in q["skipped"].items():
        out.append(f"- {runtime} not measured: {why}\n")
    return "\n".join(out)


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
    header = [
        "variant",
        "SiLU patterns (Sigmoid→Mul on a Conv)",
        "SiLU-free",
        "activations fused into Conv",
        "left standalone",
        "NCHWc layout reorders",
    ]
    agreed = any("agreement" in e for e in exports.values())
    if agreed:  # runs before the agreement check was recorded have no such column
        header.append("ONNX vs PyTorch, largest relative difference")
        for row, e in zip(body, exports.values()):
            found = e.get("agreement")
            row.append(f"{max(o['max_rel'] for o in found.values()):.1e}" if found else "n/a")
    return (
        "## Export check (ONNX from Ultralytics' exporter; fusion after ONNX Runtime's ORT_ENABLE_ALL optimisation)\n\n"
        + _table(header, body)
        + "\n"
        + text("export")
        + ("\n\n" + text("export.agreement") if agreed else "")
        + "\n"
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
    note = text("cost.gpu" if gpu else "cost.cpu")
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
    out = "## Unit health (dying ReLU)\n\n" + _table(
        ["variant", "measure", "channels ≤0 on every val pixel", "near-zero-gradient channels"], body
    )
    out += "\n" + text("units") + "\n"
    inits = {spec.label: spec.init for spec in c.specs}
    for label, u in units.items():
        s = u.get("prelu", {}).get("summary")
        if s:
            name = _variant(label, u.get("checkpoint"))
            prelu = text(
                "units.prelu",
                variant=name,
                init=inits.get(label, float("nan")),
                slopes=s.get("slopes"),
                sites=s.get("sites"),
                min=_fmt(s.get("min")),
                max=_fmt(s.get("max")),
                median=_fmt(s.get("median_of_site_medians")),
                sites_by_drift=_drift(s.get("sites_by_drift")),
                slopes_by_drift=_drift(s.get("slopes_by_drift")),
            )
            out += "\n" + prelu + "\n"
    return out


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
        + "\n"
        + text(
            "time",
            total=stages["total"],
            cells=stages["training_and_validation"],
            rounds=stages["timed_rounds"],
            overhead=stages["harness_overhead"],
            share=f" ({100 * share:.0f}%)" if share is not None else "",
        )
        + "\n"
    )


def _files_section(plots: dict) -> str:
    lines = ["## Files\n", text("files")]
    lines += [f"- `{Path(p).name}`: {what}" for what, p in plots.items()]
    return "\n".join(lines) + "\n"
