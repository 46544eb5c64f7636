"""The report says only what its run measured: built from synthetic runs (every figure drawn at random, so a
figure that does not come from the run's data shows up in every report), rendered by the real summary and report
code, with no training."""

import re
from pathlib import Path

import numpy as np
import pytest

from yolo_leaky.core.tasks import METRICS as TASK_METRICS
from yolo_leaky.core.tasks import NO_DISTILL, TASKS, headline, metric_name, second
from yolo_leaky.harness.cells import cell_key
from yolo_leaky.harness.config import CompareConfig
from yolo_leaky.harness.report import render_markdown
from yolo_leaky.harness.summary import Summary, int8_tables, paired_ratio_ci, recovery_tables, variant_rows
from yolo_leaky.measure.bench import BenchResult, latency_stats
from yolo_leaky.measure.quant import int8_vs_fp32

REPO = Path(__file__).resolve().parents[1]
# a figure with 3+ decimals (0.486, 99.999, 0.0025) or a decimal percentage (61.6%): distinctive enough that the
# same one in the README and in a report is a quotation, not a coincidence; version strings (1.32.0) are left out
FIGURE = re.compile(r"(?<![\w.])[+−-]?(\d+\.\d{3,}|\d+\.\d+%)(?![.\d])")
DOC_LINE = "Documentation ("


def _figures(text: str, skip_documentation: bool = False) -> set[str]:
    lines = [ln for ln in text.splitlines() if not (skip_documentation and ln.startswith(DOC_LINE))]
    return {m.group(1) for ln in lines for m in FIGURE.finditer(ln)}


def _metrics(rng, task: str = "detect") -> dict:
    keys = ("map50", "map50_95", "precision", "recall") if task == "detect" else tuple(TASK_METRICS[task])
    return {k: float(rng.uniform(0.2, 0.9)) for k in keys}


def _bench(rng, labels: list[str], baseline: str, runtime: str, imgsz: int, blocks: int) -> BenchResult:
    rounds = 6 * blocks
    samples = {label: rng.integers(1_000_000, 9_000_000) + rng.integers(0, 400_000, rounds) for label in labels}
    block_of_round = np.repeat(np.arange(blocks), 6)
    return BenchResult(
        runtime=runtime,
        imgsz=imgsz,
        threads=1,
        baseline=baseline,
        rounds=rounds,
        timing_s=float(rng.uniform(5, 50)),
        stats=latency_stats(samples, baseline, resamples=200, block_of_round=block_of_round),
        samples_ns=samples,
        block_of_round=block_of_round,
        settings={"seed": 0, "blocks": blocks},
    )


def _fusion(rng, kind: str, standalone: dict) -> dict:
    fused = int(rng.integers(40, 70))
    acts = {kind: {"Convolution": fused}}
    for op, n in standalone.items():
        acts.setdefault(op, {})["Eltwise"] = n
    return {"activations": acts, "precisions": {"u8": fused, "f32": int(rng.integers(1, 9))}}


OV_STANDALONE = {"silu": {"Sigmoid": 3}, "relu": {}, "prelu": {"PRelu": 11, "Sigmoid": 2}}


def synthetic_run(
    seed: int,
    variants=("silu", "relu", "prelu:0.3"),
    timing_baseline: str | None = None,
    n_calib_found: int | None = None,
    untimed: tuple = (),
    task: str = "detect",
    **config,
) -> tuple[CompareConfig, Summary, dict]:
    """A finished recover run with INT8 whose every measured figure is drawn from ``rng(seed)``; returns the config,
    its Summary (computed by the real summary functions) and the raw INT8 stage result."""
    rng = np.random.default_rng(seed)
    settings = dict(
        protocol="recover",
        weights="silu.pt",
        data="my.yaml",
        recovery=["finetune"],
        repair="bn",
        variants=list(variants),
        seeds=[3, 5, 8],
        int8=True,
        runtimes=["ort-cpu"],
    )
    c = CompareConfig(**{**settings, **config}, task=task)
    labels = [s.label for s in c.specs]
    n_val = int(rng.integers(60, 300))
    cells = {}
    for spec in c.specs:
        for s in c.seeds:
            cells[cell_key(spec, s, "finetune")] = {
                "variant": spec.label,
                "seed": s,
                "status": "ok",
                "recovery": "finetune",
                "metrics": _metrics(rng, task),
                "epoch_seconds": float(rng.uniform(5, 90)),
                "results_csv": "missing.csv",
            }
    baseline = _metrics(rng, task)

    def _seed_rows(label: str) -> dict:  # swap.json's per-seed layout (cells.swap_stage): SiLU gets bn too
        out = {}
        for s in c.seeds:
            repairs = {"bn": {"metrics": _metrics(rng, task)}}
            start = {"repair": "bn", "path": "start.pt", "digest": "0" * 64, "metrics": repairs["bn"]["metrics"]}
            out[str(s)] = {"repairs": repairs, "start": start}
        return out

    per_seed = {label: _seed_rows(label) for label in labels}
    swap = {
        "seeds": list(c.seeds),
        "calibration": {
            "images": c.calib_images,
            "by_seed": {str(s): {"files": [], "digest": f"{rng.integers(1 << 60):x}"} for s in c.seeds},
        },
        "ls_leaky_slope": float(rng.uniform(0.05, 0.3)),
        "repair": "bn",
        "variants": {
            label: {
                "after_swap": _metrics(rng, task),
                "seeds": per_seed[label],
                "repairs": {
                    "bn": {
                        "metrics": {
                            k: float(np.mean([per_seed[label][str(s)]["repairs"]["bn"]["metrics"][k] for s in c.seeds]))
                            for k in _metrics(rng, task)
                        },
                        "metrics_std": {k: float(rng.uniform(0.001, 0.02)) for k in _metrics(rng, task)},
                    }
                },
                "start": {"repair": "bn"},
            }
            for label in labels
        },
    }
    cost = {
        label: {
            "params": int(rng.integers(1e6, 4e6)),
            "gflops": float(rng.uniform(3, 9)),
            "saved_tensor_bytes": int(rng.integers(1e7, 9e7)),
        }
        for label in labels
    }
    timing = _bench(rng, [*labels, "identity"], c.baseline, "ort-cpu", c.bench_imgsz, c.bench_blocks)
    speed = {
        "exports": {
            label: {
                "silu_patterns": int(label == "silu") * int(rng.integers(50, 80)),
                "silu_free": label != "silu",
                "ort": {
                    "fused_into_conv": {"Relu": int(rng.integers(50, 80))},
                    "standalone": {},
                    "layout_reorders": {},
                },
            }
            for label in [*labels, "identity"]
        },
        "timings": {"ort-cpu": timing.to_dict(samples=True)},
    }
    units = {
        label: {
            "health": {
                "measure": "validation images",
                "total": {k: float(rng.uniform(0, 0.3)) for k in ("dead_or_negative_only", "near_zero_grad")},
            }
        }
        for label in labels
    }
    for spec in c.specs:
        if spec.name == "prelu":
            q = sorted(rng.uniform(-0.2, 1.2, 3))
            units[spec.label]["prelu"] = {
                "summary": {"slopes": 999, "sites": 77, "min": q[0], "max": q[2], "median_of_site_medians": q[1]}
            }
    # the INT8 stage: every seed scored, the first timed
    n_found = n_calib_found or c.calib_images
    calibration = {"n": n_found, "digest": f"{rng.integers(1 << 60):x}", "split": "train"}  # per seed below
    int8_settings = {
        "imgsz": c.imgsz,
        "bench_imgsz": c.bench_imgsz,
        "n_calib": c.calib_images,
        "method": "minmax",
        "threads": 1,
        "blocks": c.bench_blocks,
    }
    seeds = {}
    for s in c.seeds:
        variants_out = {}
        for label in labels:
            nodes = {"QuantizeLinear": int(rng.integers(200, 400)), "DequantizeLinear": int(rng.integers(400, 600))}
            variants_out[label] = {
                "fp32": _metrics(rng, task),
                "int8": {
                    scheme: {"metrics": _metrics(rng, task), "nodes": {**nodes, "QLinear": 0}}
                    for scheme in ("deploy", "conv-only")
                },
                "ort_int8": {"standalone": {"PRelu": 77} if label.startswith("prelu") else {}},
                "openvino": {
                    "fp32": _metrics(rng, task),
                    "int8": _metrics(rng, task),
                    "fusion_fp32": _fusion(rng, label, {}),
                    "fusion_int8": _fusion(rng, label, OV_STANDALONE.get(label, OV_STANDALONE["prelu"])),
                },
            }
        calibration = {**calibration, "files_digest": f"{rng.integers(1 << 60):x}"}
        seeds[str(s)] = {"calibration": calibration, "settings": int8_settings, "variants": variants_out, "skipped": {}}
    latency = {}
    for runtime in ("ort-cpu", "openvino-cpu"):
        timed_labels = [x for label in labels if label not in untimed for x in (label, f"{label}@int8")]
        res = _bench(rng, timed_labels, timing_baseline or c.baseline, runtime, c.bench_imgsz, c.bench_blocks)
        latency[runtime] = {"benchmark": res.to_dict(), "int8_vs_fp32": int8_vs_fp32(res)}
    seeds[str(c.seeds[0])]["latency"] = latency
    raw = {"seeds": seeds, "latency": latency}
    dataset = {"val_images": n_val, "train_images": int(rng.integers(100, 900))}
    env = {
        "yolo_leaky": "9.9.9",
        "ultralytics": "9.9.9",
        "torch": "9.9.9",
        "onnxruntime": "9.9.9",
        "python": "9.9.9",
        "cpu": "a CPU",
        "cpus": 2,
        "gpu": None,
    }
    stage_s = {k: float(rng.uniform(10, 500)) for k in ("swap", "cells", "speed", "int8")}
    total = sum(stage_s.values())
    stages = {
        "stages": stage_s,
        "total": total,
        "training_and_validation": total / 3,
        "timed_rounds": total / 4,
        "harness_overhead": total / 5,
        "harness_overhead_share": 0.2 + float(rng.uniform(0, 0.1)),
    }
    summary = Summary(
        rows=variant_rows(c, cells, baseline, cost, speed, units, n_val),
        cells=cells,
        baseline=baseline,
        cost=cost,
        speed=speed,
        units=units,
        n_val=n_val,
        dataset=dataset,
        environment=env,
        seconds=total,
        floor_ratio={"ort-cpu": paired_ratio_ci(speed["timings"]["ort-cpu"]["stats"]["identity"])[0]},
        stages=stages,
        recovery=recovery_tables(c, cells, swap, baseline, n_val),
        swap=swap,
        int8=int8_tables(c, raw, n_val),
        int8_raw=raw,
        task=task,
    )
    return c, summary, raw


def test_report_quotes_no_readme_figure_as_its_own():
    """Three runs whose figures are all drawn at random and whose settings differ: a figure of the README or the
    docs that appears in every report, outside a paragraph labelled as documentation, was written into the report,
    not measured (a coincidence would have to repeat in three independent draws)."""
    # docs/gpu-check.md is a report itself (a GPU run's, pasted): its baseline rows (1.000, ±0.00%) are in every report
    pages = [REPO / "README.md", *sorted(p for p in (REPO / "docs").glob("*.md") if p.name != "gpu-check.md")]
    readme = _figures("\n".join(page.read_text() for page in pages))
    assert len(readme) > 100  # the result tables of the README and docs/ are seen
    runs = [
        synthetic_run(1, calib_images=48, imgsz=96, bench_imgsz=160, speed_band=0.03, bench_blocks=5),
        synthetic_run(2, calib_images=40, imgsz=128, bench_imgsz=192, speed_band=0.04, bench_blocks=6),
        synthetic_run(9, calib_images=24, imgsz=160, bench_imgsz=96, speed_band=0.05, bench_blocks=7),
    ]
    texts = [render_markdown(c, summary, {}) for c, summary, _ in runs]
    # the check sees each run's own figures (it is not blind to the report's numbers)
    for (_, summary, _), text in zip(runs, texts):
        assert f"{summary.int8['rows']['relu']['deploy_mean']:.3f}" in text and len(_figures(text)) > 50
    quoted = readme.intersection(*(_figures(text, skip_documentation=True) for text in texts))
    assert not quoted, f"figures of the docs in every report, not labelled as documentation: {sorted(quoted)}"


def test_calibration_count_is_what_the_run_used():
    """COCO8's train split has 4 images: the report says 4 were used, and that 64 were asked for."""
    c, summary, _ = synthetic_run(3, calib_images=64, n_calib_found=4)
    text = render_markdown(c, summary, {})
    assert "calibration on 4 *training* images (`calib_images=64`; the train split has only 4)" in text
    assert "(64)" not in text


def test_int8_latency_baseline_is_the_configured_one():
    """silu is the baseline though relu comes first; a benchmark whose ratios were taken against relu (silu's INT8
    files missing) gives no "INT8 / silu FP32" figure, and the report says why."""
    c, summary, raw = synthetic_run(4, variants=("relu", "silu", "prelu"), timing_baseline="relu")
    assert c.baseline == "silu"
    for runtime, rows in summary.int8["latency"].items():
        assert all(r["int8_vs_base_fp32"] is None for r in rows.values())  # not relu's ratios under silu's name
        assert summary.int8["latency_settings"][runtime]["baseline_timed"] is False
    text = render_markdown(c, summary, {})
    assert "No INT8 / `silu` FP32 ratio: this benchmark's ratios are against `relu` FP32" in text

    # silu's cell failed: measure_int8 had no silu files and timed the others against the first, relu
    c, summary, raw = synthetic_run(4, variants=("relu", "silu", "prelu"), timing_baseline="relu", untimed=("silu",))
    assert all(r["int8_vs_base_fp32"] is None for rows in summary.int8["latency"].values() for r in rows.values())
    assert "No INT8 / `silu` FP32 ratio: `silu` was not timed (no completed `silu` cell for seed 3)" in (
        render_markdown(c, summary, {})
    )

    c, summary, raw = synthetic_run(4, variants=("relu", "silu", "prelu"))  # timed against silu, as measure_int8 does
    for runtime, rows in summary.int8["latency"].items():
        stats = raw["latency"][runtime]["benchmark"]["stats"]
        assert stats["silu"]["paired_ratio"] == 1.0
        for label, r in rows.items():
            assert r["int8_vs_base_fp32"]["paired_ratio"] == stats[f"{label}@int8"]["paired_ratio"]
    text = render_markdown(c, summary, {})
    assert "INT8 / silu FP32 [95% CI]" in text and "No INT8 / `silu` FP32 ratio" not in text


def test_int8_section_prints_the_timed_size_and_seed():
    c, summary, _ = synthetic_run(5, imgsz=96, bench_imgsz=224)
    text = render_markdown(c, summary, {})
    assert "### INT8 latency, ort-cpu (timed at imgsz 224," in text and "seed 3's models" in text
    assert (
        "Latency is timed at imgsz 224 (`bench_imgsz`, the FP32 speed tables' size), accuracy scored at imgsz 96"
        in text
    )


def test_openvino_standalone_ops_come_from_the_runs_fusion_census():
    c, summary, _ = synthetic_run(6)
    text = render_markdown(c, summary, {})
    ov_rows = {ln.split("|")[1].strip(): ln for ln in text.splitlines() if ln.startswith("| `") and "u8" in ln}
    assert "| Sigmoid 3 |" in ov_rows["`silu`"]
    assert "| none |" in ov_rows["`relu`"]
    assert "| PRelu 11, Sigmoid 2 |" in ov_rows["`prelu0.3`"]
    assert "score sigmoid" not in text.split("### OpenVINO", 1)[1].split("\n## ", 1)[0].lower()


def test_int8_pareto_pairs_each_runtime_latency_with_its_own_map():
    from yolo_leaky.harness.summary import int8_pareto_points

    c, summary, raw = synthetic_run(7)
    points = {(p["runtime"], p["variant"], p["precision"]): p for p in int8_pareto_points(summary.int8, raw)}
    assert len(points) == 2 * 2 * 3
    for label, row in summary.int8["rows"].items():
        ort, ov = points[("ort-cpu", label, "INT8")], points[("openvino-cpu", label, "INT8")]
        assert ort["score"] == row["deploy_mean"] and ort["seeds"] == [3, 5, 8]
        assert ov["score"] == row["openvino"]["int8_map50_95"] != row["deploy_mean"]
        assert ov["score_std"] is None and ov["seeds"] == [3]  # NNCF's model is scored on the first seed only
        assert points[("openvino-cpu", label, "FP32")]["score"] == row["openvino"]["fp32_map50_95"]
        stats = raw["latency"]["openvino-cpu"]["benchmark"]["stats"][f"{label}@int8"]
        assert (ov["ratio"], ov["ci_low"], ov["ci_high"]) == (
            stats["paired_ratio"],
            stats["paired_ci_low"],
            stats["paired_ci_high"],
        )
    # nothing is plotted against a baseline the benchmark did not time
    c, summary, raw = synthetic_run(7, variants=("relu", "silu"), timing_baseline="relu")
    assert int8_pareto_points(summary.int8, raw) == []


def test_accuracy_axes_name_the_stand_in_as_not_coco():
    """Both Pareto plots say what their mAP was scored on: a stand-in run's figure, shown on its own, is never read
    as COCO."""
    import dataclasses

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from yolo_leaky.harness.plots import _pareto, _pareto_int8

    c, summary, _ = synthetic_run(5)
    for standin, words in (({"what": "stand-in"}, "synthetic stand-in data, not COCO"), (None, "validation images")):
        run = dataclasses.replace(summary, standin=standin)
        for draw in (_pareto, _pareto_int8):
            fig, ax = plt.subplots(figsize=(7, 4.5))  # the size plots._single draws at
            draw(ax, c, run)
            assert words in ax.get_ylabel(), (draw.__name__, ax.get_ylabel())
            fig.tight_layout()
            fig.canvas.draw()
            label = ax.yaxis.label.get_window_extent()
            inside = fig.bbox
            assert label.x0 >= inside.x0 and label.y0 >= inside.y0 and label.y1 <= inside.y1, (
                f"{draw.__name__}: the y label is cut off by the figure's edge ({label} vs {inside})"
            )
            plt.close(fig)


@pytest.mark.parametrize("task", TASKS)
def test_every_task_reports_its_own_metrics(task):
    """A segment, pose, OBB or classify run's report tables, verdicts and INT8 figures are on that task's headline
    metric (mask mAP50-95, pose mAP50-95, rotated-box mAP50-95, top-1), never on detection's box keys, which such a
    record does not hold (classify) or which are not its headline (segment, pose)."""
    c, summary, _ = synthetic_run(11, task=task)
    key, name = headline(task)
    text = render_markdown(c, summary, {})
    accuracy = text.split("## Accuracy", 1)[1].split("\n## ", 1)[0]
    header = next(ln for ln in accuracy.splitlines() if ln.startswith("| variant"))
    assert header.split(" | ")[1:3] == [second(task)[1], name]
    assert [h.strip() for h in header.split("|")[4:-3]] == [
        metric_name(k, task) for k in TASK_METRICS[task] if k not in (key, second(task)[0])
    ]
    assert f"vs {c.baseline} ({name})" in header
    relu = summary.rows["relu"]
    line = next(ln for ln in accuracy.splitlines() if ln.startswith("| `relu`"))
    assert line.split(" | ")[2] == f"{relu[f'{key}_mean']:.3f} ± {relu[f'{key}_std']:.3f}"
    recovered = text.split("### After", 1)[1].split("\n### ", 1)[0]
    assert f"| {name} − silu [95% CI] |" in recovered
    assert summary.recovery["recovered"]["relu/finetune"][f"{key}_verdict"] in recovered
    int8 = text.split("## INT8", 1)[1].split("\n## ", 1)[0]
    silu = summary.int8["rows"]["silu"]
    assert silu["fp32_values"] == [summary.int8_raw["seeds"][str(s)]["variants"]["silu"]["fp32"][key] for s in c.seeds]
    assert f"| `silu` | {silu['fp32_mean']:.3f} ± {silu['fp32_std']:.3f} |" in int8
    assert f"FP32 {name}" in int8 and f"({name})" in int8
    if task != "detect":  # detection's own words stay as they were (tests/test_report_golden.py)
        assert "anchors are detection figures" in text
        assert ("No `distill` rows" in text) == (task in NO_DISTILL)
    if task == "classify":
        assert "mAP" not in accuracy and "mAP" not in int8


def test_export_section_shows_each_variants_onnx_agreement_with_pytorch():
    """The export check's ONNX-vs-PyTorch agreement (speed.json) is rendered: the largest relative difference over
    a variant's outputs, "n/a" for a variant without the check, and no column at all for a run that never had it."""
    from yolo_leaky.harness.report import _export_section

    fusion = {"fused_into_conv": {"Relu": 77}, "standalone": {}, "layout_reorders": {}}
    agreed = {"output0": {"max_abs": 1e-4, "scale": 500.0, "max_rel": 2e-7}, "output1": {"max_rel": 5.2e-7}}
    speed = {
        "exports": {
            "silu": {"silu_patterns": 77, "silu_free": False, "ort": fusion, "agreement": agreed},
            "relu": {"silu_patterns": 0, "silu_free": True, "ort": fusion},
        }
    }
    section = _export_section(speed)
    header = next(line for line in section.splitlines() if line.startswith("| variant"))
    assert header.rstrip(" |").endswith("ONNX vs PyTorch, largest relative difference")
    rows = {line.split("|")[1].strip(" `"): line for line in section.splitlines() if line.startswith("| ")}
    assert rows["silu"].rstrip(" |").endswith("5.2e-07") and rows["relu"].rstrip(" |").endswith("n/a")
    assert "one seeded random input" in section
    for e in speed["exports"].values():
        e.pop("agreement", None)
    assert "ONNX vs PyTorch" not in _export_section(speed) and "seeded random input" not in _export_section(speed)
