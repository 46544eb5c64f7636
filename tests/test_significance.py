"""The comparison end to end with a real accuracy signal (synthetic shapes data, not COCO): 2 variants x 2 seeds
reach the report's significance test (it crashed there when scipy was missing), on the final epoch's weights, with
the Ultralytics train arguments applied to every cell, and an identity floor that is the same network."""

import json
import os
import subprocess
import sys
import time

import pytest
import yaml

pytestmark = pytest.mark.slow
# A short run of the shapes recipe: 5 epochs reach mAP50-95 of a few hundredths (3 epochs measured 0.01-0.04,
# silu lowest): real, non-zero metrics. The test needs only that, not a difference between the variants.
RECIPE = [
    "epochs=5",
    "imgsz=64",
    "batch=8",
    "nbs=8",
    "optimizer=AdamW",
    "lr0=0.002",
    "lrf=0.1",
    "warmup_epochs=0",
    "mosaic=0",
    "scale=0.2",
    "val=False",
]


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    project = tmp_path_factory.mktemp("sig")
    cmd = [
        sys.executable,
        "-m",
        "yolo_leaky.cli",
        "compare",
        "data=shapes",
        f"project={project}",
        "name=sig",
        "variants=[silu,relu]",
        "seeds=[0,1]",
        "bench_imgsz=64",
        "bench_seconds=1",
        "runtimes=[ort-cpu]",
        *RECIPE,
    ]
    result = subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=1800, env=dict(os.environ))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return project / "sig"


def test_significance_branch_runs_on_real_metrics(shapes_run):
    results = json.loads((shapes_run / "results.json").read_text())
    maps = [cell["metrics"]["map50_95"] for cell in results["cells"].values()]
    assert len(maps) == 4 and max(maps) >= 0.01, maps  # a real signal, so the significance test is reached
    assert results["dataset"]["val_images"] == 64
    verdict = results["variants"]["relu"]["verdict_accuracy"]
    assert "Welch p=" in verdict and "2 seeds" in verdict, verdict
    text = (shapes_run / "report.md").read_text()
    assert "Welch p=" in text and "Synthetic data, not COCO" in text and "COCO8 has" not in text


def test_cells_are_scored_on_the_final_epoch(shapes_run):
    for cell in json.loads((shapes_run / "results.json").read_text())["cells"].values():
        assert cell["weights"].endswith("weights/last.pt"), cell["weights"]
        assert set(cell["metrics_best_selected_on_val"]) == set(cell["metrics"])
    assert "Scored on the final epoch's weights (`last.pt`)" in (shapes_run / "report.md").read_text()


def test_train_arguments_reach_every_cell(shapes_run):
    cells = sorted(shapes_run.glob("cells/*/train/args.yaml"))
    assert len(cells) == 4
    for path in cells:
        args = yaml.safe_load(path.read_text())
        assert (args["optimizer"], args["lr0"], args["nbs"], args["warmup_epochs"], args["mosaic"]) == (
            "AdamW",
            0.002,
            8,
            0,
            0,
        )


def test_identity_floor_is_the_same_network(shapes_run):
    """The floor used to be built from the model YAML with nc=80; the cells train with the dataset's nc=4."""
    from yolo_leaky.cells import variant_models
    from yolo_leaky.config import CompareConfig

    results = json.loads((shapes_run / "results.json").read_text())
    assert (
        results["cost"]["identity"]["params"] == results["cost"]["silu"]["params"] == results["cost"]["relu"]["params"]
    )
    c = CompareConfig(
        data="shapes", variants=["silu", "relu"], seeds=[0, 1], project=str(shapes_run.parent), name="sig"
    )
    models = variant_models(c, results["cells"])
    shapes = {name: {k: v.shape for k, v in m.model.state_dict().items()} for name, m in models.items()}
    assert shapes["identity"] == shapes["silu"] == shapes["relu"]


def test_epoch_time_leaves_out_validation_and_diagnostics(tmp_path, coco8_yaml):
    """Every validation and every on_fit_epoch_end callback (unit-health tracking) falls outside the timed span."""
    from conftest import TRAIN_KW

    from yolo_leaky import load
    from yolo_leaky.cells import EpochTimer
    from yolo_leaky.diagnostics import track_unit_health

    yolo = load("yolo11n.yaml", act="relu")
    timer = EpochTimer()
    timer.attach(yolo)
    outside = []
    yolo.add_callback("on_val_start", lambda v: outside.append(time.perf_counter()))
    health = track_unit_health(str(coco8_yaml), imgsz=64)
    yolo.add_callback("on_fit_epoch_end", lambda t: (outside.append(time.perf_counter()), health(t)))
    yolo.train(data=str(coco8_yaml), project=str(tmp_path), name="t", **{**TRAIN_KW, "epochs": 2, "val": True})
    assert len(timer.intervals) == 2 and len(outside) >= 4
    for stamp in outside:
        assert not any(start <= stamp <= end for start, end in timer.intervals)
    assert timer.typical() == timer.seconds[1]
