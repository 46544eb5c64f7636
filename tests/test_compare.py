"""The real comparison pipeline on COCO8 (quick settings): report contents, reuse, interruption and resume."""

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SMALL = [
    "protocol=scratch",
    "variants=[silu,relu,prelu]",
    "seeds=[0]",
    "epochs=1",
    "imgsz=64",
    "batch=4",
    "bench_imgsz=64",
    "bench_seconds=1",
    "bench_blocks=2",  # each block starts a worker process: two keep the runs short
]


def compare_cmd(project, name, *extra):
    return [sys.executable, "-m", "yolo_leaky.cli", "compare", f"project={project}", f"name={name}", *SMALL, *extra]


def run(cmd, cwd, timeout=900):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


def _kill_at(cmd, cwd, markers, sig):
    """Start ``cmd``; once lines containing each of ``markers`` have appeared, in order, send ``sig`` at once.

    Each marker is printed as a stage starts, and the stage lasts far longer than a signal takes to arrive (a cell's
    loading and training, ``bench_seconds`` of timing, the report's plots), so no delay tuned to one CPU's speed is
    needed."""
    proc = subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ)
    )
    seen, waiting = [], list(markers)
    for line in proc.stdout:
        seen.append(line)
        if waiting and waiting[0] in line:
            waiting.pop(0)
        if not waiting:
            proc.send_signal(sig)
            break
    out, _ = proc.communicate(timeout=300)
    return proc.returncode, "".join(seen) + (out or "")


def _json_files_parse(run_dir: Path) -> int:
    files = list(run_dir.rglob("*.json"))
    for f in files:
        json.loads(f.read_text())  # never half-written: every write goes to a temp file and is renamed
    return len(files)


def _done_cells(run_dir: Path) -> dict:
    return {p.parent.name: p.stat().st_mtime_ns for p in run_dir.glob("cells/*/cell.json")}


KILL_POINTS = [
    ("sigkill-mid-training", ["[cell 2/3]"], signal.SIGKILL),
    ("sigint-mid-benchmark", ["[speed] ort-cpu"], signal.SIGINT),
    ("sigkill-mid-report", ["[report]"], signal.SIGKILL),
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One small comparison through the real CLI, killed at three points and resumed each time."""
    project = tmp_path_factory.mktemp("compare")
    run_dir, stages = project / "small", []
    for name, markers, sig in KILL_POINTS:
        before = _done_cells(run_dir)
        code, out = _kill_at(compare_cmd(project, "small"), project, markers, sig)
        stages.append(
            {
                "name": name,
                "code": code,
                "out": out,
                "cells_before": before,
                "cells_after": _done_cells(run_dir),
                "json_ok": _json_files_parse(run_dir),
            }
        )
    before = _done_cells(run_dir)
    result = run(compare_cmd(project, "small"), cwd=project)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return run_dir, result, stages, before


@pytest.mark.parametrize("stage", range(len(KILL_POINTS)), ids=[k[0] for k in KILL_POINTS])
def test_killed_run_leaves_consistent_files_and_resumes(finished, stage):
    _, _, stages, _ = finished
    record = stages[stage]
    assert record["code"] != 0, record["out"][-2000:]
    assert record["json_ok"] >= 1
    if KILL_POINTS[stage][2] == signal.SIGINT:
        assert "interrupted" in record["out"] and "Traceback" not in record["out"]
    # completed cells were reused, not recomputed
    assert record["out"].count("reusing completed result") == len(record["cells_before"])
    for key, stamp in record["cells_before"].items():
        assert record["cells_after"][key] == stamp


def test_final_run_reuses_every_cell(finished):
    run_dir, result, stages, before = finished
    assert stages[0]["cells_after"].keys() == {"silu-s0"}  # killed while the second cell trained
    assert result.stdout.count("reusing completed result") == 3
    assert _done_cells(run_dir) == before


def test_report_has_every_variant_with_finite_ratios(finished):
    run_dir = finished[0]
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results["variants"]) == {"silu", "relu", "prelu"}
    for runtime in ("torch-cpu", "ort-cpu"):
        stats = results["speed"]["timings"][runtime]["stats"]
        assert set(stats) == {"silu", "relu", "prelu", "identity"}
        settings = results["speed"]["timings"][runtime]["settings"]  # every block timed in its own process
        assert settings["isolation"] == "process" and len(set(settings["block_pids"])) == settings["blocks"] == 2
        for label, s in stats.items():
            for key in ("ratio_of_medians", "paired"):
                value = s[key if key != "paired" else "paired_ratio"]
                lo, hi = s[f"{key}_ci_low"], s[f"{key}_ci_high"]
                assert math.isfinite(value) and lo <= value <= hi, (runtime, label, key, s)
            assert (s["ratio_of_medians_ci_high"] > s["ratio_of_medians_ci_low"]) == (label != "silu")
    exports = results["speed"]["exports"]
    assert exports["silu"]["silu_patterns"] == 77 and not exports["silu"]["silu_free"]
    for label in ("relu", "prelu", "identity"):
        assert exports[label]["silu_free"] and exports[label]["silu_patterns"] == 0
    assert exports["relu"]["ort"]["fused_into_conv"] == {"Relu": 77}


def test_report_says_what_the_numbers_cannot(finished):
    run_dir = finished[0]
    text = (run_dir / "report.md").read_text()
    for needle in [
        "mAP is ~0 for every variant",
        "COCO8 has 4 validation images",
        "protocol=recover",
        "One seed per variant",
        "`silu`",
        "`relu`",
        "`prelu`",
        "`identity`",
        "ProfileModels",
        "Unit health",
        "PReLU slopes",
        "± n/a",
    ]:
        assert needle in text, needle
    assert "no signal: mAP ~0 for both" in text
    csv_rows = (run_dir / "results.csv").read_text().strip().splitlines()
    assert len(csv_rows) == 4 and csv_rows[0].startswith("variant")
    for png in ["pareto.png", "curves.png", "activations.png", "prelu_slopes.png", "units.png"]:
        assert (run_dir / png).stat().st_size > 5000, png


def test_cells_record_census_inside_training(finished):
    run_dir, _, stages, _ = finished
    cell = json.loads((run_dir / "cells/prelu-s0/cell.json").read_text())
    assert cell["status"] == "ok" and cell["epoch_seconds"] > 0
    assert cell["census_in_trainer"] == {"PReLU": 77}
    assert "[cell 3/3] prelu-s0: training" in stages[1]["out"]


def test_failing_cell_is_reported_and_others_kept(tmp_path, monkeypatch):
    """A cell whose training folder cannot be created fails; it is recorded and the other cell completes.
    The project is relative, as in the default config: outputs must land under it, not in Ultralytics' runs_dir."""
    from yolo_leaky.cells import run_cells
    from yolo_leaky.config import CompareConfig
    from yolo_leaky.data import resolve_data

    monkeypatch.chdir(tmp_path)
    config = CompareConfig(
        protocol="scratch",
        variants=["silu", "relu"],
        seeds=[0],
        epochs=1,
        imgsz=64,
        project="runs/compare",
        name="onefails",
        diagnostics=False,
    )
    data = resolve_data("coco8.yaml", out_dir=tmp_path)
    (tmp_path / "runs/compare/onefails/cells/relu-s0").mkdir(parents=True)
    (tmp_path / "runs/compare/onefails/cells/relu-s0/train").write_text("a file where the training folder must go")
    cells = run_cells(config, data, "cpu")
    assert cells["silu-s0"]["status"] == "ok"
    assert (tmp_path / "runs/compare/onefails/cells/silu-s0/train/weights/last.pt").is_file()
    assert cells["silu-s0"]["weights"] == str(tmp_path / "runs/compare/onefails/cells/silu-s0/train/weights/last.pt")
    assert cells["relu-s0"]["status"] == "failed" and cells["relu-s0"]["error"]


def test_recover_protocol_with_a_local_checkpoint_on_coco8(tmp_path, coco8_yaml):
    """The connected machine's path (weights=yolo11n.pt on COCO8) with a local SiLU checkpoint in its place (one the
    test trains itself): before, after the swap, after each repair, then recovery (distillation is tested on the
    stand-in, test_recovery.py)."""
    from conftest import TRAIN_KW

    from yolo_leaky import load

    load("yolo11n.yaml").train(data=str(coco8_yaml), project=str(tmp_path), name="base", exist_ok=True, **TRAIN_KW)
    weights = tmp_path / "base/weights/last.pt"
    result = run(
        compare_cmd(
            tmp_path,
            "rec",
            "protocol=recover",
            f"weights={weights}",
            "data=coco8.yaml",
            "recovery=[finetune]",
            "variants=[silu,relu]",
            "diagnostics=False",
            "runtimes=[ort-cpu]",
            "int8=True",
        ),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    results = json.loads((tmp_path / "rec/results.json").read_text())
    assert set(results["pretrained"]) >= {"map50", "map50_95", "precision", "recall"}
    swap = results["swap"]["variants"]
    assert set(swap["relu"]["repairs"]) == {"bn"} and swap["relu"]["start"]["repair"] == "bn"
    assert swap["silu"]["repairs"] == {} and swap["silu"]["start"]["repair"] == "none"
    assert set(results["cells"]) == {"silu-finetune-s0", "relu-finetune-s0"}
    assert results["cells"]["relu-finetune-s0"]["census_in_trainer"] == {"ReLU": 77}
    text = (tmp_path / "rec/report.md").read_text()
    for needle in ("Protocol **recover**", "What the swap costs", "Published anchors", f"SiLU checkpoint `{weights}`"):
        assert needle in text, needle
    assert "From scratch, mAP there is ~0" not in text  # the COCO8 scratch caveat belongs to scratch runs only
    assert "Only 4 validation images: no accuracy difference is called significant" in text
    int8 = results["int8"]  # the INT8 stage on the recovered cells: quantized for real, scored, timed
    for label in ("silu", "relu"):
        assert int8["rows"][label]["deploy_nodes"]["QuantizeLinear"] > 0 and int8["rows"][label]["seeds"] == [0]
        assert set(int8["latency"]["ort-cpu"][label]["int8_vs_fp32"]) >= {"paired_ratio", "paired_ci_low"}
    assert int8["calibration"]["n"] == 4 and int8["calibration"]["split"] == "train"  # COCO8 has 4 train images
    assert "INT8 post-training quantization" in text and (tmp_path / "rec/pareto_int8.png").stat().st_size > 5000


def test_terminal_is_calm_and_ultralytics_output_goes_to_logs(finished):
    """One line per stage and per cell on the terminal; Ultralytics' epochs, exports and scans in log files."""
    run_dir, result, stages, _ = finished
    out = stages[1]["out"]  # a run that trained a cell and reached the benchmark
    assert "[cell 3/3] prelu-s0: training" in out and "  prelu-s0: mAP50-95" in out
    for noise in ("Starting training for", "box_loss", "Fast image access", "ONNX: starting export"):
        assert noise not in out, noise
    assert "Starting training for" in (run_dir / "cells/prelu-s0/log.txt").read_text()
    assert "ONNX" in (run_dir / "log.txt").read_text()
    assert len(out.splitlines()) < 40, out
    final = result.stdout.splitlines()
    assert final[-1].startswith("report: ") and any(line.startswith("prelu ") for line in final[-4:])
