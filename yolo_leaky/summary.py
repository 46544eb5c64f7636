"""Turn a comparison's results into rows and verdicts, once: statistics, per-variant rows, dataset facts and the
environment. ``report`` and ``plots`` only render what this module computes (as torch.utils.benchmark keeps
``Measurement`` apart from ``Compare``)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import onnxruntime
import torch
import ultralytics

from .bench import machine
from .config import CompareConfig
from .data import dataset_info
from .version import __version__

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
    """A verdict on mAP50-95 vs the baseline that never claims what seeds and data cannot support."""
    if not variant or not base:
        return "no result"
    if max(variant + base) < NO_SIGNAL:
        return "no signal: mAP ~0 for both"
    if n_val is None:
        return "not significant: the validation image count is unknown"
    if n_val < SMALL_VAL:
        return f"not significant: only {n_val} validation images"
    if len(variant) < 2 or len(base) < 2:
        return "not significant: one seed"
    from scipy import stats

    p = float(stats.ttest_ind(variant, base, equal_var=False).pvalue)
    if math.isnan(p) or p >= 0.05:
        return f"not significant (Welch p={p:.2f}, {len(variant)} seeds)"
    return f"{'higher' if np.mean(variant) > np.mean(base) else 'lower'} (Welch p={p:.3f}, {len(variant)} seeds)"


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


def difference(a: list[float], b: list[float], paired: bool = False) -> dict | None:
    """Mean difference ``a - b`` with a 95% t-interval and its p-value: Welch's (unequal variances) for independent
    samples, or over per-seed differences when ``paired`` (``a[i]`` and ``b[i]`` share a seed). None with fewer than
    two values on a side (no spread is known)."""
    from scipy import stats

    a, b = [float(x) for x in a], [float(x) for x in b]
    if len(a) < 2 or len(b) < 2 or (paired and len(a) != len(b)):
        return None
    if paired:
        d = np.subtract(a, b)
        mean, se, df = float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))), len(d) - 1
        p = float(stats.ttest_rel(a, b).pvalue) if se > 0 else (1.0 if mean == 0 else 0.0)
    else:
        va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
        mean, se = float(np.mean(a) - np.mean(b)), float(math.sqrt(va + vb))
        df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else len(a) + len(b) - 2
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue) if se > 0 else (1.0 if mean == 0 else 0.0)
    half = float(stats.t.ppf(0.975, df)) * se if se > 0 else 0.0
    return {"diff": mean, "low": mean - half, "high": mean + half, "p": p, "n": len(a), "paired": paired}


def difference_verdict(d: dict | None, values: list[float], n_val: int | None, test: str = "Welch") -> str:
    """A verdict on a difference that never claims what seeds and data cannot support."""
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
    if math.isnan(d["p"]) or d["p"] >= 0.05:
        return f"not significant ({test} p={d['p']:.2f}, {d['n']} seeds)"
    return f"{'higher' if d['diff'] > 0 else 'lower'} ({test} p={d['p']:.3f}, {d['n']} seeds)"


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


def variant_rows(
    c: CompareConfig, cells: dict, baseline: dict | None, cost: dict, speed: dict, units: dict, n_val: int | None
) -> dict:
    """One row per variant with accuracy over seeds, cost, speed per runtime and unit health."""
    method = headline_recovery(c)
    base_maps = _metric(cells, c.baseline, "map50_95", method)
    rows = {}
    for spec in c.specs:
        label = spec.label
        ok = _ok(cells, label, method)
        row = {"variant": label, "act": str(spec), "seeds_ok": len(ok), "seeds_failed": len(c.seeds) - len(ok)}
        for key in ("map50", "map50_95", "precision", "recall"):
            row[f"{key}_mean"], row[f"{key}_std"] = mean_std([v["metrics"][key] for v in ok])
        if method is not None:
            row["recovery"] = method
            row["pretrained_map50_95"] = (baseline or {}).get("map50_95")
        row["verdict_accuracy"] = (
            accuracy_verdict(_metric(cells, label, "map50_95", method), base_maps, n_val)
            if label != c.baseline
            else "baseline"
        )
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
        health = units.get(label, {}).get("health", {}).get("total", {})
        row["dead_or_negative_only"] = health.get("dead_or_negative_only")
        row["near_zero_grad"] = health.get("near_zero_grad")
        rows[label] = row
    return rows


def headline_recovery(c: CompareConfig) -> str | None:
    """The recovery method whose results fill the per-variant rows (the first listed); None from scratch."""
    return c.recovery[0] if c.protocol == "recover" else None


def _ok(cells: dict, label: str, method: str | None) -> list[dict]:
    """Completed cells of one variant and recovery method, in seed order."""
    found = [v for v in cells.values() if v["variant"] == label and v["status"] == "ok" and v.get("recovery") == method]
    return sorted(found, key=lambda v: v["seed"])


def _metric(cells: dict, label: str, key: str, method: str | None = None) -> list[float]:
    return [v["metrics"][key] for v in _ok(cells, label, method)]


METRICS = ("map50", "map50_95")


def recovery_tables(c: CompareConfig, cells: dict, swap: dict, baseline: dict, n_val: int | None) -> dict:
    """The recovery protocol's accuracy, computed once: no-training rows (before, after the swap, after each
    repair, with the share of the swap's cost each repair removes), recovered rows per method (mean ± std, the
    difference from SiLU recovered the same way with a Welch 95% CI and verdict), and distill − finetune per
    variant (paired by seed)."""
    base = c.baseline
    no_training = {}
    for label, row in swap["variants"].items():
        entry = {"before": baseline, "after_swap": row["after_swap"], "repairs": {}, "start": row["start"]["repair"]}
        for repair, r in row["repairs"].items():
            share = {}
            for m in METRICS:
                cost = baseline[m] - row["after_swap"][m]
                share[m] = (r["metrics"][m] - row["after_swap"][m]) / cost if cost > NO_SIGNAL else None
            entry["repairs"][repair] = {"metrics": r["metrics"], "share_of_cost_removed": share}
            if "fit" in r:
                entry["repairs"][repair]["fit"] = r["fit"]
        no_training[label] = entry
    recovered = {}
    for method in c.recovery:
        for spec in c.specs:
            label = spec.label
            out = {"variant": label, "recovery": method, "seeds": [v["seed"] for v in _ok(cells, label, method)]}
            for m in METRICS:
                vals, ref = _metric(cells, label, m, method), _metric(cells, base, m, method)
                out[f"{m}_mean"], out[f"{m}_std"] = mean_std(vals)
                out[f"{m}_values"] = vals
                if label != base:
                    d = difference(vals, ref)
                    out[f"{m}_vs_{base}"] = d
                    out[f"{m}_verdict"] = difference_verdict(d, vals + ref, n_val)
            recovered[f"{label}/{method}"] = out
    distill_gain = {}
    if {"finetune", "distill"} <= set(c.recovery):
        for spec in c.specs:
            ft, ds = _ok(cells, spec.label, "finetune"), _ok(cells, spec.label, "distill")
            seeds = sorted({v["seed"] for v in ft} & {v["seed"] for v in ds})
            out = {"seeds": seeds}
            for m in METRICS:
                a = [next(v["metrics"][m] for v in ds if v["seed"] == s) for s in seeds]
                b = [next(v["metrics"][m] for v in ft if v["seed"] == s) for s in seeds]
                d = difference(a, b, paired=True)
                out[m] = d
                out[f"{m}_verdict"] = difference_verdict(d, a + b, n_val, test="paired t")
            distill_gain[spec.label] = out
    return {"no_training": no_training, "recovered": recovered, "distill_minus_finetune": distill_gain}


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


def int8_tables(c: CompareConfig, int8: dict | None, n_val: int | None) -> dict | None:
    """The INT8 stage's figures, computed once: per variant, FP32 ONNX and INT8 mAP50-95 over seeds, the drop
    (INT8 − FP32, paired by seed, with a t-interval), each seed's drop (so the SiLU control's stability shows), the
    drop against SiLU's drop (Welch), and INT8 latency against the variant's own FP32 and against SiLU FP32."""
    if not int8 or not int8.get("seeds"):
        return None
    base = c.baseline
    rows = {}
    for spec in c.specs:
        label = spec.label
        per = sorted((int(seed), r["variants"][label]) for seed, r in int8["seeds"].items() if label in r["variants"])
        if not per:
            continue
        fp32 = [v["fp32"]["map50_95"] for _, v in per]
        row: dict = {"seeds": [seed for seed, _ in per], "fp32_values": fp32}
        row["fp32_mean"], row["fp32_std"] = mean_std(fp32)
        for scheme in INT8_SCHEMES:
            q = [v["int8"][scheme]["metrics"]["map50_95"] for _, v in per]
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
                "fp32_map50_95": ov["fp32"]["map50_95"],
                "int8_map50_95": ov["int8"]["map50_95"],
                **{f"{p}_sites": _ov_sites(ov[f"fusion_{p}"]["activations"]) for p in ("fp32", "int8")},
                "int8_precisions": ov["fusion_int8"]["precisions"],
            }
        rows[label] = row
    for label, row in rows.items():
        if label != base and base in rows:
            d = difference(row["deploy_drops"], rows[base]["deploy_drops"])
            row["deploy_drop_vs_base"] = d
            row["deploy_drop_verdict"] = difference_verdict(d, row["fp32_values"] + rows[base]["fp32_values"], n_val)
    latency = {}
    for runtime, res in int8.get("latency", {}).items():
        stats = res["benchmark"]["stats"]
        latency[runtime] = {
            label: {
                "int8_vs_fp32": r,
                "int8_vs_fp32_verdict": speed_verdict({"label": "int8", **r}, "fp32", c.speed_band),
                "int8_vs_base_fp32": stats.get(f"{label}@int8"),
            }
            for label, r in res["int8_vs_fp32"].items()
        }
    first = next(iter(int8["seeds"].values()))
    return {
        "rows": rows,
        "latency": latency,
        "calibration": first["calibration"],
        "settings": first["settings"],
        "skipped": first.get("skipped", {}),
        "calibration_identical_across_seeds": len({r["calibration"]["digest"] for r in int8["seeds"].values()}) == 1,
    }


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
    )
