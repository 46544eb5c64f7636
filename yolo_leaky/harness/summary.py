"""Turn a comparison's results into rows and verdicts, once: statistics, per-variant rows, dataset facts and the
environment. ``report`` and ``plots`` only render what this module computes (as torch.utils.benchmark keeps
``Measurement`` apart from ``Compare``)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime
import torch
import ultralytics

from ..core.tasks import METRICS as TASK_METRICS
from ..core.tasks import headline, second
from ..data.datasets import dataset_info
from ..measure.bench import machine
from ..version import __version__
from .config import CompareConfig, recovery_methods

SMALL_VAL = 50  # below this many validation images no accuracy difference is called significant
NO_SIGNAL = 0.01  # mAP below this for every cell of a pair: there is nothing to compare
WARMUP_STEPS = 100  # Ultralytics warms up for max(warmup_epochs * batches per epoch, 100) optimizer steps


# ---------------------------------------------------------------- statistics


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation; the std is None for a single value (no spread is known)."""
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if arr.size == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else None


def accuracy_verdict(variant: list[float], base: list[float], n_val: int | None) -> str:
    """A verdict on mAP50-95 vs the baseline that never claims what seeds and data cannot support: Welch's test of
    ``difference`` (one computation), for a single comparison (``verdicts`` adjusts a table's worth)."""
    if not variant or not base:
        return "no result"
    return difference_verdict(difference(variant, base), variant + base, n_val)


# Published COCO val2017 mAP50-95, SiLU -> variant, with sources (../shared/notes/user-asks-and-anchors.md). Shown
# beside our numbers for context; never extrapolated from ours.
PUBLISHED_ANCHORS = (
    ("YOLOv6-L", "SiLU → ReLU, retrained from scratch", "52.5 → 51.7 (−0.8)", "meituan/YOLOv6 README, release 0.2.0"),
    (
        "YOLOv7",
        "SiLU → ReLU, fine-tuned 30 epochs from yolov7.pt",
        "51.2 → 49.3 (−1.9)",
        "cshbli/ML-CV-AI, object_detection/YOLOv7/qat.md",
    ),
    (
        "YOLOv8s",
        'TI "lite" (SiLU → ReLU, pooling changes), retrained',
        "44.2 → 42.4 (−1.8)",
        "TexasInstruments/edgeai-tensorlab, docs/tech_reports/"
        "20240901-speed-accuracy-analysis-of-object-detection-models",
    ),
    (
        "YOLOv5",
        "SiLU → ReLU swapped, no retraining",
        "~0",
        "NVIDIA-AI-IOT/yolov5_gpu_optimization#11 (maintainer: retrain, 300 epochs)",
    ),
)


NO_SPREAD = "no spread across seeds: cannot test"
ALPHA = 0.05  # each table's family-wise error rate (Holm–Bonferroni within the table)


def difference(a: list[float], b: list[float], paired: bool = False) -> dict | None:
    """Mean difference ``a - b`` with a 95% t-interval and its two-sided p-value: Welch's (unequal variances,
    Welch–Satterthwaite df) for independent samples, or the paired t over per-seed differences when ``paired``
    (``a[i]`` and ``b[i]`` share a seed). The interval and p come from one standard error and one df, so the
    interval excludes 0 exactly when p < 0.05. None with fewer than two values on a side (no spread is known).

    Zero spread: when the standard error is zero (every value identical within each side or, paired, every per-seed
    difference identical, up to float rounding) the seeds carry no information about the noise, and any t would be
    infinite or rounding noise (scipy gives p = NaN, or p ~ 1e-17 from a rounding residue). There is then no test:
    ``no_spread`` is True and ``p``, ``low`` and ``high`` are NaN; the verdict says ``NO_SPREAD``. Zero spread on
    only *one* side of Welch's test is not degenerate and is tested: the other side's spread still estimates the
    noise, the standard error is that side's alone and the Welch–Satterthwaite df falls to that side's n − 1, i.e. a
    one-sample t-test against the constant side. That is exact when the constant side does not vary with the seed
    (a deterministic stage), and with a wider interval than pooling would give.

    Keys: ``diff``, ``low``, ``high``, ``p``, ``n`` (values in ``a``), ``paired`` (stable; read by the report and the
    benchmarks), and ``n_b``, ``se``, ``df``, ``test`` ("Welch" or "paired t"), ``no_spread``.
    """
    from scipy import stats

    a, b = [float(x) for x in a], [float(x) for x in b]
    if len(a) < 2 or len(b) < 2 or (paired and len(a) != len(b)):
        return None
    if paired:
        d = np.subtract(a, b)
        mean, se, df = float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))), float(len(d) - 1)
    else:
        va, vb = float(np.var(a, ddof=1)) / len(a), float(np.var(b, ddof=1)) / len(b)
        mean, se = float(np.mean(a) - np.mean(b)), math.sqrt(va + vb)
        df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if va + vb > 0 else float("nan")
    scale = max(abs(x) for x in a + b)
    no_spread = not math.isnan(se) and se <= 1e-12 * max(scale, 1e-300)
    out = {"diff": mean, "n": len(a), "paired": paired, "n_b": len(b), "se": se, "df": df}
    out.update(test="paired t" if paired else "Welch", no_spread=no_spread)
    if no_spread:
        return {**out, "low": float("nan"), "high": float("nan"), "p": float("nan")}
    half = float(stats.t.ppf(0.975, df)) * se
    p = float(2 * stats.t.sf(abs(mean) / se, df))
    return {**out, "low": mean - half, "high": mean + half, "p": p}


def holm(pvalues: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input order (Holm 1979): sort ascending, multiply the i-th smallest
    (i from 1) by m − i + 1, take the running maximum (step-down: an adjusted p is never below a smaller p's) and cap
    at 1. Calling "significant" where the adjusted p < α keeps the chance of any false call among the m tests at α,
    whatever the dependence between them (a table's comparisons share one SiLU control), and rejects at least what
    Bonferroni does.

    Examples:
        >>> holm([0.01, 0.04, 0.03])
        [0.03, 0.06, 0.06]
    """
    p = np.asarray(pvalues, dtype=float)
    if np.isnan(p).any():
        raise ValueError(f"holm() got a NaN p-value: {pvalues} (untestable comparisons are not part of the family)")
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((p.size - np.arange(p.size)) * p[order]))
    out = np.empty(p.size)
    out[order] = adjusted
    return [float(x) for x in out]


def _untestable(d: dict | None, values: list[float], n_val: int | None) -> str | None:
    """The verdict of a comparison that reaches no test (and so is not counted in its table's family), else None."""
    if not values:
        return "no result"
    if max(values) < NO_SIGNAL:
        return "no signal: mAP ~0 for both"
    if n_val is None:
        return "not significant: the validation image count is unknown"
    if n_val < SMALL_VAL:
        return f"not significant: only {n_val} validation images"
    if d is None:
        return "not significant: one seed"
    if d.get("no_spread"):
        return NO_SPREAD
    if math.isnan(d["p"]):
        return "no result: a value is not a number"
    return None


def _p(p: float) -> str:
    return f"{p:.1e}" if p < 0.001 else f"{p:.3f}"


def verdicts(
    entries: list[tuple[dict | None, list[float]]],
    n_val: int | None,
    test: str | None = None,
    words: tuple[str, str] = ("higher", "lower"),
) -> list[str]:
    """Verdicts on one table's comparisons, each ``(difference(...), the mAP values its signal check reads)``.

    The comparisons that reach a test form the table's family: their p-values are Holm-adjusted together (``holm``),
    each such difference gets ``p_holm`` and ``holm_tests`` (the family's size), and a difference is called
    ``words[0]`` (diff > 0) or ``words[1]`` (diff < 0) only when its adjusted p < ``ALPHA``. ``test`` names the test
    in the verdict (default: the difference's own, "Welch" or "paired t").
    """
    gates = [_untestable(d, values, n_val) for d, values in entries]
    family = [d for (d, _), gate in zip(entries, gates) if gate is None]
    for d, adjusted in zip(family, holm([d["p"] for d in family])):
        d["p_holm"], d["holm_tests"] = adjusted, len(family)
    out = []
    for (d, _), gate in zip(entries, gates):
        if gate is not None:
            out.append(gate)
            continue
        seeds = f"{d['n']} seeds" if d["n"] == d.get("n_b", d["n"]) else f"{d['n']} vs {d['n_b']} seeds"
        holm_text = f", Holm-adjusted p={_p(d['p_holm'])} over {d['holm_tests']} tests" if d["holm_tests"] > 1 else ""
        stat = f"({test or d.get('test', 'Welch')} p={_p(d['p'])}{holm_text}, {seeds})"
        if d["p_holm"] >= ALPHA:
            out.append(f"not significant {stat}")
        else:
            out.append(f"{words[0] if d['diff'] > 0 else words[1]} {stat}")
    return out


def difference_verdict(
    d: dict | None,
    values: list[float],
    n_val: int | None,
    test: str | None = None,
    words: tuple[str, str] = ("higher", "lower"),
) -> str:
    """A verdict on one difference, a family of one (``verdicts`` for a table's worth), that never claims what seeds
    and data cannot support."""
    return verdicts([(d, values)], n_val, test, words)[0]


def paired_ratio_ci(stats: dict) -> tuple[float, float, float]:
    """(paired ratio, CI low, CI high) of one variant's timing stats: the headline speed figure (drift that hits a
    whole round cancels in the paired ratio)."""
    return stats["paired_ratio"], stats["paired_ci_low"], stats["paired_ci_high"]


def speed_ci_scope(settings: dict) -> str:
    """What the paired ratio's 95% CI of one timing result is taken over, from the result's ``settings`` (results
    timed before blocks ran in fresh processes carry no ``isolation`` and are said to be in one process).

    Examples:
        >>> speed_ci_scope({"blocks": 8, "isolation": "process"})
        '95% CI over 8 blocks, each in a fresh process'
    """
    blocks = settings.get("blocks", 1)
    if blocks < 2:
        return "95% bootstrap CI over the rounds of one session"
    where = ", each in a fresh process" if speed_ci_covers_processes(settings) else " in one process"
    return f"95% CI over {blocks} blocks{where}"


def speed_ci_covers_processes(settings: dict) -> bool:
    """Whether the interval's spread includes what varies between processes: two or more blocks, each in its own."""
    return settings.get("blocks", 1) >= 2 and settings.get("isolation") == "process"


def speed_verdict(stats: dict, baseline: str, band: float = 0.02) -> str:
    """Faster or slower only when the whole CI lies outside ``1 ± band``; "no practical difference" when it lies
    inside the band; else "inconclusive" (the CI straddles an edge of the band).

    Examples:
        >>> speed_verdict({"label": "relu", "paired_ratio": 0.9, "paired_ci_low": 0.89, "paired_ci_high": 0.91}, "silu")
        'faster by 10.0%'
    """
    if stats["label"] == baseline:
        return "baseline"
    ratio, lo, hi = paired_ratio_ci(stats)
    if hi < 1 - band:
        return f"faster by {100 * (1 - ratio):.1f}%"
    if lo > 1 + band:
        return f"slower by {100 * (ratio - 1):.1f}%"
    if 1 - band <= lo and hi <= 1 + band:
        return f"no practical difference (within ±{100 * band:g}%)"
    return "inconclusive"


# ---------------------------------------------------------------- aggregation


def compared_metrics(task: str = "detect") -> tuple[str, str]:
    """The record keys the accuracy tables compare for ``task``: its looser metric, then its headline (the one
    verdicts, CIs and rankings are on; ``core.tasks``).

    Examples:
        >>> compared_metrics("detect"), compared_metrics("segment")
        (('map50', 'map50_95'), ('mask_map50', 'mask_map50_95'))
    """
    return second(task)[0], headline(task)[0]


def row_keys(task: str = "detect") -> list[str]:
    """The metrics of a variant row, compared ones first (detection: map50, map50_95, precision, recall).

    Examples:
        >>> row_keys("classify")
        ['top5', 'top1']
    """
    first = list(compared_metrics(task))
    return first + [k for k in TASK_METRICS[task] if k not in first]


def variant_rows(
    c: CompareConfig, cells: dict, baseline: dict | None, cost: dict, speed: dict, units: dict, n_val: int | None
) -> dict:
    """One row per variant with accuracy over seeds, cost, speed per runtime and unit health."""
    method = headline_recovery(c)
    key = headline(c.task)[0]
    base_maps = _metric(cells, c.baseline, key, method)
    rows = {}
    for spec in c.specs:
        label = spec.label
        ok = _ok(cells, label, method)
        row = {"variant": label, "act": str(spec), "seeds_ok": len(ok), "seeds_failed": len(c.seeds) - len(ok)}
        for m in row_keys(c.task):
            row[f"{m}_mean"], row[f"{m}_std"] = mean_std([v["metrics"][m] for v in ok])
        if method is not None:
            row["recovery"] = method
            row[f"pretrained_{key}"] = (baseline or {}).get(key)
        row["verdict_accuracy"] = "baseline" if label == c.baseline else None  # set below, Holm over the variants
        row["epoch_seconds_mean"], _ = mean_std([v["epoch_seconds"] for v in ok])
        peak = [v["peak_cuda_bytes"] for v in ok if "peak_cuda_bytes" in v]
        row["peak_cuda_mib"] = float(np.mean(peak)) / 2**20 if peak else None
        row.update({k: cost.get(label, {}).get(k) for k in ("params", "gflops", "saved_tensor_bytes")})
        for runtime, result in speed.get("timings", {}).items():
            s = result["stats"].get(label)
            if s:
                row[f"{runtime}_median_ms"] = s["median_ms"]
                row[f"{runtime}_paired_ratio"], row[f"{runtime}_paired_ci_low"], row[f"{runtime}_paired_ci_high"] = (
                    paired_ratio_ci(s)
                )
                row[f"{runtime}_paired_half_width_pct"] = s["paired_half_width_pct"]
                row[f"{runtime}_verdict"] = speed_verdict(s, c.baseline, c.speed_band)
        export = speed.get("exports", {}).get(label, {})
        row["onnx_silu_patterns"] = export.get("silu_patterns")
        row["onnx_silu_free"] = export.get("silu_free")
        source = speed.get("checkpoints", {}).get(label) or cost.get(label, {}).get("checkpoint")
        row["network"] = untrained_note(source) or "trained"  # what cost, speed and exports measured
        health = units.get(label, {}).get("health", {}).get("total", {})
        row["dead_or_negative_only"] = health.get("dead_or_negative_only")
        row["near_zero_grad"] = health.get("near_zero_grad")
        rows[label] = row
    _accuracy_verdicts(c, cells, rows, base_maps, method, n_val)
    return rows


def untrained_note(source: dict | None) -> str | None:
    """How the report names a network measured untrained (``cells.model_source`` of kind ``untrained``: its cell
    failed, or no cell completed); None for a trained checkpoint."""
    if not source or source.get("kind") != "untrained":
        return None
    why = f"cell {source['cell']} failed" if source.get("cell") else "no cell completed"
    return f"untrained ({why}), measured as an untrained network"


def _accuracy_verdicts(c: CompareConfig, cells: dict, rows: dict, base_maps: list, method, n_val) -> None:
    """Each variant's headline metric (detection: mAP50-95) against the baseline's (Welch), Holm-adjusted over the
    variants. With
    ``protocol=recover`` this is the family of the headline method's rows in the recovery table, so both tables give
    the same verdicts."""
    family = []
    for label, row in rows.items():
        if label != c.baseline:
            maps = _metric(cells, label, headline(c.task)[0], method)
            family.append((row, "verdict_accuracy", difference(maps, base_maps), maps + base_maps))
    _set_verdicts(family, n_val)
    for row, _, d, _ in family:  # flat keys: the rows are also results.csv
        row["accuracy_p"], row["accuracy_p_holm"] = (d or {}).get("p"), (d or {}).get("p_holm")
        row["accuracy_holm_tests"] = (d or {}).get("holm_tests")
        if not row["seeds_ok"] or not base_maps:
            row["verdict_accuracy"] = "no result"


def headline_recovery(c: CompareConfig) -> str | None:
    """The recovery method whose results fill the per-variant rows (the first listed); None from scratch."""
    return recovery_methods(c)[0] if c.protocol == "recover" else None


def _ok(cells: dict, label: str, method: str | None) -> list[dict]:
    """Completed cells of one variant and recovery method, in seed order."""
    found = [v for v in cells.values() if v["variant"] == label and v["status"] == "ok" and v.get("recovery") == method]
    return sorted(found, key=lambda v: v["seed"])


def _metric(cells: dict, label: str, key: str, method: str | None = None) -> list[float]:
    return [v["metrics"][key] for v in _ok(cells, label, method)]


def reference_name(repair: str) -> str:
    """The SiLU reference of a repair: SiLU given the same repair (``bn``; the slope fit does not apply to SiLU)."""
    return "silu" if "bn" not in repair else "silu+bn"


def no_training_rows(c: CompareConfig, swap: dict, baseline: dict) -> dict:
    """The no-training rows of the recovery protocol, per variant: before and right after the swap (one figure
    each: no calibration is involved), and each repair's metrics per seed (seed ``s`` calibrates on draw ``s``),
    as mean ± std over seeds.

    Each repair is judged against **SiLU given the same repair** on the same draw (``bn`` re-estimation of the
    *unswapped* SiLU network moves its mAP too, so part of what ``bn`` does to a variant is not about the swap;
    the slope fit does not apply to SiLU, so ``fit`` alone is judged against SiLU untouched):

    * ``gap_to_reference``: repaired variant − SiLU + the same repair, paired by seed (draw), with a t-interval
      over seeds (None with one seed); ``gap_values`` per seed. 0 means the repair leaves nothing of the swap's
      cost that the same repair does not also leave SiLU with.
    * ``share_of_cost_removed``: (repaired − after swap) / (reference − after swap), means over seeds: the
      share of the way from the naive swap to SiLU + the same repair that the repair covers (1 = all of it); None
      when that distance is below ``NO_SIGNAL``.

    The SiLU row carries its own repairs (the references), marked ``"reference": "self"``.
    """
    silu = next(s.label for s in c.specs if s.name == "silu")
    seeds = [str(s) for s in swap["seeds"]]
    metrics = compared_metrics(c.task)
    rows = {}
    for label, row in swap["variants"].items():
        entry = {
            "before": baseline,
            "after_swap": row["after_swap"],
            "repairs": {},
            "start": row["start"]["repair"],
            "seeds": [int(s) for s in seeds],
        }
        for repair in row["repairs"]:
            per = [row["seeds"][s]["repairs"][repair] for s in seeds]
            out = {
                "metrics": row["repairs"][repair]["metrics"],
                "metrics_std": row["repairs"][repair]["metrics_std"],
                "values": {m: [p["metrics"][m] for p in per] for m in metrics},
            }
            if "fit" in per[0]:
                out["fit"] = [p["fit"] for p in per]
            if label == silu:
                out["reference"] = "self"
            else:
                ref = reference_name(repair)
                out["reference"] = ref
                out["reference_values"] = {
                    m: [
                        swap["variants"][silu]["seeds"][s]["repairs"]["bn"]["metrics"][m]
                        if ref == "silu+bn"
                        else baseline[m]
                        for s in seeds
                    ]
                    for m in metrics
                }
                out["gap_values"], out["gap_to_reference"], out["share_of_cost_removed"] = {}, {}, {}
                for m in metrics:
                    v, r = out["values"][m], out["reference_values"][m]
                    out["gap_values"][m] = [a - b for a, b in zip(v, r)]
                    out["gap_to_reference"][m] = difference(v, r, paired=True)
                    to_go = float(np.mean(r)) - row["after_swap"][m]
                    won = float(np.mean(v)) - row["after_swap"][m]
                    out["share_of_cost_removed"][m] = won / to_go if to_go > NO_SIGNAL else None
            entry["repairs"][repair] = out
        rows[label] = entry
    return rows


def seed_scope(c: CompareConfig, kind: str, n_calib: int | None, n_val: int | None) -> dict:
    """What varies across the seeds of a figure's mean ± std and CI, and what is held fixed, from the protocol.

    Args:
        c: The config.
        kind: ``no_training`` (repairs), ``recovered`` (trained cells; also paired method differences) or ``int8``.
        n_calib: Calibration images per draw (None: unknown).
        n_val: Validation images (None: unknown).

    Returns:
        ``{"varies": [...], "fixed": [...]}`` (phrases).
    """
    draw = f"calibration draw (seed s draws {n_calib if n_calib is not None else '?'} training images)"
    val = f"the {n_val if n_val is not None else '?'} validation images"
    recover = c.protocol == "recover"
    fixed = ([f"the SiLU checkpoint `{Path(str(c.weights)).name}`"] if recover else [f"the model `{c.model}`"]) + [
        val,
        "the training images",
    ]
    if kind == "no_training":
        return {"varies": [draw], "fixed": [*fixed, "no training (no training noise)"]}
    train = (
        "recovery-training seed (batch order, augmentation)"
        if recover
        else "training seed (weight initialisation, batch order, augmentation)"
    )
    varies = [train]
    if recover and c.repair != "none":
        varies.append(f"the {draw} that sets the repaired start (`repair={c.repair}`)")
    elif recover:
        fixed.append("the start (`repair=none`: the naive swap, the same for every seed)")
    if kind == "int8":
        varies.append(f"INT8 {draw}" + (", the same images as that seed's repairs" if recover else ""))
    return {"varies": varies, "fixed": fixed + [f"the recipe ({c.epochs} epoch(s), imgsz {c.imgsz})"]}


def recovery_tables(c: CompareConfig, cells: dict, swap: dict, baseline: dict, n_val: int | None) -> dict:
    """The recovery protocol's accuracy, computed once: no-training rows (``no_training_rows``: before, after the
    swap, after each repair per seed, judged against SiLU given the same repair), recovered rows per method (mean ±
    std, the difference from SiLU recovered the same way with a Welch 95% CI and verdict), distill − finetune per
    variant (paired by seed), and what varies across seeds in each (``scope``, ``seed_scope``)."""
    base = c.baseline
    no_training = no_training_rows(c, swap, baseline)
    n_calib = swap.get("calibration", {}).get("images")
    scope = {k: seed_scope(c, k, n_calib, n_val) for k in ("no_training", "recovered")}
    metrics = compared_metrics(c.task)
    recovered, tests = {}, {}
    for method in c.recovery:
        family: dict = {m: [] for m in metrics}  # one Holm family per method and metric: one verdict column's rows
        for spec in c.specs:
            label = spec.label
            out = {"variant": label, "recovery": method, "seeds": [v["seed"] for v in _ok(cells, label, method)]}
            for m in metrics:
                vals, ref = _metric(cells, label, m, method), _metric(cells, base, m, method)
                out[f"{m}_mean"], out[f"{m}_std"] = mean_std(vals)
                out[f"{m}_values"] = vals
                if label != base:
                    out[f"{m}_vs_{base}"] = difference(vals, ref)
                    family[m].append((out, f"{m}_verdict", out[f"{m}_vs_{base}"], vals + ref))
            recovered[f"{label}/{method}"] = out
        tests[method] = {m: _set_verdicts(family[m], n_val) for m in metrics}
    distill_gain = {}
    if {"finetune", "distill"} <= set(c.recovery):
        family = {m: [] for m in metrics}
        for spec in c.specs:
            ft, ds = _ok(cells, spec.label, "finetune"), _ok(cells, spec.label, "distill")
            seeds = sorted({v["seed"] for v in ft} & {v["seed"] for v in ds})
            out = {"seeds": seeds}
            for m in metrics:
                a = [next(v["metrics"][m] for v in ds if v["seed"] == s) for s in seeds]
                b = [next(v["metrics"][m] for v in ft if v["seed"] == s) for s in seeds]
                out[m] = difference(a, b, paired=True)
                family[m].append((out, f"{m}_verdict", out[m], a + b))
            distill_gain[spec.label] = out
        tests["distill_minus_finetune"] = {m: _set_verdicts(family[m], n_val) for m in metrics}
    return {
        "no_training": no_training,
        "recovered": recovered,
        "distill_minus_finetune": distill_gain,
        "scope": scope,
        "tests": tests,  # Holm family sizes (tests made): {method: {metric: n}, "distill_minus_finetune": {metric: n}}
    }


def _set_verdicts(family: list[tuple[dict, str, dict | None, list[float]]], n_val: int | None, **kw) -> int:
    """Write the verdicts of one table's family, each entry ``(row, verdict key, difference, signal values)``, Holm-
    adjusted together (``verdicts``; ``kw`` goes to it); return how many comparisons reached a test."""
    for (row, key, _, _), verdict in zip(family, verdicts([(d, values) for _, _, d, values in family], n_val, **kw)):
        row[key] = verdict
    return sum(1 for _, _, d, _ in family if d and "p_holm" in d)


def dataset_facts(data: str) -> tuple[int | None, dict]:
    """Validation image count (None when unknown) and the dataset's description, resolved as Ultralytics does."""
    info = dataset_info(data)
    return info.get("val_images"), info


def environment() -> dict:
    """Package versions and the machine (``bench.machine``), for the report's settings section."""
    return {
        "yolo_leaky": __version__,
        "ultralytics": ultralytics.__version__,
        "onnxruntime": onnxruntime.__version__,
        **machine(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def headline_runtime(speed: dict) -> str | None:
    """The runtime whose verdicts headline the report: ONNX Runtime CPU where timed, else the first one timed."""
    timings = speed.get("timings", {})
    return "ort-cpu" if "ort-cpu" in timings else next(iter(timings), None)


INT8_SCHEMES = ("deploy", "conv-only")


def _ov_sites(activations: dict) -> dict:
    """Where OpenVINO's compiled graph put the activation ops: inside a Convolution (fused), nowhere (removed,
    e.g. a ReLU folded into the u8 range of an INT8 convolution), or in a node of their own (standalone)."""
    out = {"fused": 0, "removed": 0, "standalone": 0}
    for where in activations.values():
        for node, n in where.items():
            out["fused" if node == "Convolution" else "removed" if node == "absent" else "standalone"] += n
    return out


def _ov_standalone(activations: dict) -> dict:
    """Activation op type -> how many of its ops OpenVINO's compiled graph runs in a node of their own."""
    out = {
        kind: sum(n for node, n in where.items() if node not in ("Convolution", "absent"))
        for kind, where in activations.items()
    }
    return {kind: n for kind, n in out.items() if n}


def int8_tables(c: CompareConfig, int8: dict | None, n_val: int | None) -> dict | None:
    """The INT8 stage's figures, computed once: per variant, FP32 ONNX and INT8 headline metric (detection:
    mAP50-95; ``core.tasks.headline``) over seeds, the drop
    (INT8 − FP32, paired by seed, with a t-interval), each seed's drop (so the SiLU control's stability shows), the
    drop against SiLU's drop (Welch), and INT8 latency against the variant's own FP32 and against SiLU FP32."""
    if not int8 or not int8.get("seeds"):
        return None
    base, key = c.baseline, headline(c.task)[0]
    rows = {}
    for spec in c.specs:
        label = spec.label
        per = sorted((int(seed), r["variants"][label]) for seed, r in int8["seeds"].items() if label in r["variants"])
        if not per:
            continue
        fp32 = [v["fp32"][key] for _, v in per]
        row: dict = {"seeds": [seed for seed, _ in per], "fp32_values": fp32}
        row["fp32_mean"], row["fp32_std"] = mean_std(fp32)
        for scheme in INT8_SCHEMES:
            q = [v["int8"][scheme]["metrics"][key] for _, v in per]
            row[f"{scheme}_mean"], row[f"{scheme}_std"] = mean_std(q)
            row[f"{scheme}_drops"] = [float(a - b) for a, b in zip(q, fp32)]
            row[f"{scheme}_drop"] = difference(q, fp32, paired=True)
        nodes = per[0][1]["int8"]["deploy"]["nodes"]
        row["deploy_nodes"] = {k: nodes[k] for k in ("QuantizeLinear", "DequantizeLinear", "QLinear")}
        row["ort_int8_standalone"] = per[0][1].get("ort_int8", {}).get("standalone")
        ov = per[0][1].get("openvino")
        if ov:  # first seed only: NNCF's INT8, and what OpenVINO's CPU plugin fused
            row["openvino"] = {
                "seed": per[0][0],
                f"fp32_{key}": ov["fp32"][key],
                f"int8_{key}": ov["int8"][key],
                **{f"{p}_sites": _ov_sites(ov[f"fusion_{p}"]["activations"]) for p in ("fp32", "int8")},
                **{f"{p}_standalone": _ov_standalone(ov[f"fusion_{p}"]["activations"]) for p in ("fp32", "int8")},
                "int8_precisions": ov["fusion_int8"]["precisions"],
            }
        rows[label] = row
    family = []
    for label, row in rows.items():
        if label != base and base in rows:
            row["deploy_drop_vs_base"] = difference(row["deploy_drops"], rows[base]["deploy_drops"])
            signal = row["fp32_values"] + rows[base]["fp32_values"]
            family.append((row, "deploy_drop_verdict", row["deploy_drop_vs_base"], signal))
    # drop − SiLU's drop > 0: the variant's INT8 mAP falls by less than SiLU's
    drop_tests = _set_verdicts(family, n_val, words=(f"loses less than {base}", f"loses more than {base}"))
    latency, timed = {}, {}
    timed_seed = next((int(seed) for seed, r in int8["seeds"].items() if r.get("latency")), None)
    for runtime, res in int8.get("latency", {}).items():
        bench = res["benchmark"]
        stats = bench["stats"]
        # a ratio is "against the baseline's FP32" only when the benchmark took it against that file; where the
        # baseline's cell is missing the benchmark used another variant, and no ratio is shown in its place
        base_timed = bench.get("baseline") == base
        latency[runtime] = {
            label: {
                "int8_vs_fp32": r,
                "int8_vs_fp32_verdict": speed_verdict({"label": "int8", **r}, "fp32", c.speed_band),
                "int8_vs_base_fp32": stats.get(f"{label}@int8") if base_timed else None,
            }
            for label, r in res["int8_vs_fp32"].items()
        }
        timed[runtime] = {
            "imgsz": bench["imgsz"],
            "threads": bench["threads"],
            "blocks": bench["settings"].get("blocks", 1),
            "seed": timed_seed,
            "baseline": base,
            "baseline_timed": base_timed,
            "timed_against": bench.get("baseline"),  # the label the benchmark's own ratios are against
            "baseline_in_benchmark": base in stats,
        }
    first = next(iter(int8["seeds"].values()))
    return {
        "rows": rows,
        "latency": latency,
        "latency_settings": timed,
        "calibration": first["calibration"],
        "settings": first["settings"],
        "skipped": first.get("skipped", {}),
        "drop_vs_base_tests": drop_tests,  # Holm family size of the deploy drop − baseline's drop verdicts
        "calibration_identical_across_seeds": len({r["calibration"]["digest"] for r in int8["seeds"].values()}) == 1,
        # seed s calibrates on draw s (the images its repairs used, same files_digest formula as swap.json)
        "calibration_by_seed": {seed: r["calibration"]["files_digest"] for seed, r in int8["seeds"].items()},
        "scope": seed_scope(c, "int8", first["calibration"]["n"], n_val),
    }


def int8_pareto_points(q: dict | None, raw: dict | None, task: str = "detect") -> list[dict]:
    """The points of the INT8 Pareto plot: per runtime and variant, FP32 and INT8 latency against the baseline's FP32
    in the same interleaved benchmark (x, with its 95% CI), each paired with the headline metric of ``task``
    (detection: mAP50-95) of what that runtime ran
    (y): the ONNX files' mean ± std over seeds for ONNX Runtime (INT8: the ``deploy`` scheme), the OpenVINO IRs'
    for OpenVINO (NNCF INT8; scored for one seed, so no spread). A runtime whose benchmark did not time the
    baseline, or a variant without that runtime's score, gives no point.

    Args:
        q: ``int8_tables``'s result.
        raw: The INT8 stage's own result (``int8.json``), whose benchmarks hold the per-label statistics.
        task: The model's task (``CompareConfig.task``).

    Returns:
        Dicts with ``runtime``, ``variant``, ``precision`` (``FP32``/``INT8``), ``ratio``, ``ci_low``, ``ci_high``,
        ``score``, ``score_std`` (None: no spread known), ``seeds`` (the seeds the score is over).
    """
    if not q or not raw:
        return []
    key = headline(task)[0]
    points = []
    for runtime, res in raw.get("latency", {}).items():
        if not q["latency_settings"].get(runtime, {}).get("baseline_timed"):
            continue
        stats = res["benchmark"]["stats"]
        for label, row in q["rows"].items():
            if runtime == "openvino-cpu":
                ov = row.get("openvino")
                if not ov:
                    continue
                scores = [("FP32", ov[f"fp32_{key}"], None), ("INT8", ov[f"int8_{key}"], None)]
                seeds = [ov["seed"]]
            else:
                scores = [("FP32", row["fp32_mean"], row["fp32_std"]), ("INT8", row["deploy_mean"], row["deploy_std"])]
                seeds = row["seeds"]
            for precision, y, e in scores:
                st = stats.get(label if precision == "FP32" else f"{label}@int8")
                if st is None:
                    continue
                points.append(
                    {
                        "runtime": runtime,
                        "variant": label,
                        "precision": precision,
                        "ratio": st["paired_ratio"],
                        "ci_low": st["paired_ci_low"],
                        "ci_high": st["paired_ci_high"],
                        "score": y,
                        "score_std": e,
                        "seeds": seeds,
                    }
                )
    return points


@dataclass
class Summary:
    """Everything the report and plots show, computed once (``summarize``)."""

    rows: dict
    cells: dict
    baseline: dict | None
    cost: dict
    speed: dict
    units: dict
    n_val: int | None
    dataset: dict
    environment: dict
    seconds: float
    floor_ratio: dict  # {runtime: the identity floor's paired ratio}
    stages: dict  # wall seconds per stage and the harness overhead (compare.StageClock)
    recovery: dict | None = None  # recovery protocol: recovery_tables
    swap: dict | None = None  # recovery protocol: calibration set, repairs and start checkpoints (swap.json)
    standin: dict | None = None  # the stand-in checkpoint's record, when it was used
    int8: dict | None = None  # int8_tables, with int8=true
    int8_raw: dict | None = None  # the INT8 stage's own result (int8.json)
    targets: dict | None = None  # target_compare.target_tables, with targets=[...] (set by compare)
    targets_raw: dict | None = None  # the targets stage's own result (targets.json)
    mixed: dict | None = None  # mixed variants: kept layers and their ranking (mixed.rank_stage; set by compare)
    task: str = "detect"  # the model's task (core.tasks): which metrics the rows hold and the report names

    @property
    def runtime(self) -> str | None:
        return headline_runtime(self.speed)


def summarize(
    c: CompareConfig,
    cells: dict,
    baseline: dict | None,
    cost: dict,
    speed: dict,
    units: dict,
    data: str,
    started: float,
    stages: dict | None = None,
    swap: dict | None = None,
    standin: dict | None = None,
    int8: dict | None = None,
) -> Summary:
    """Compute the rows, verdicts, dataset facts and environment of a finished comparison."""
    n_val, dataset = dataset_facts(data)
    recovery = recovery_tables(c, cells, swap, baseline, n_val) if swap and baseline else None
    rows = variant_rows(c, cells, baseline, cost, speed, units, n_val)
    floor = {
        runtime: paired_ratio_ci(result["stats"]["identity"])[0]
        for runtime, result in speed.get("timings", {}).items()
        if "identity" in result["stats"]
    }
    return Summary(
        rows=rows,
        cells=cells,
        baseline=baseline,
        cost=cost,
        speed=speed,
        units=units,
        n_val=n_val,
        dataset=dataset,
        environment=environment(),
        seconds=time.time() - started,
        floor_ratio=floor,
        stages=stages or {},
        recovery=recovery,
        swap=swap,
        standin=standin,
        int8=int8_tables(c, int8, n_val),
        int8_raw=int8 or None,
        task=c.task,
    )
