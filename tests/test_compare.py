"""The real comparison pipeline on COCO8 (quick settings): report contents, reuse, interruption and resume."""

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import kill_at

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
    # one cell at a time: the kill points name the order of cells (the second killed while the first is complete);
    # interrupting cells trained two at once is tested in test_executor_parallel.py
    "cell_workers=1",
]


def compare_cmd(project, name, *extra):
    return [sys.executable, "-m", "yolo_leaky.cli", "compare", f"project={project}", f"name={name}", *SMALL, *extra]


def run(cmd, cwd, timeout=900):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


def _json_files_parse(run_dir: Path) -> int:
    files = list(run_dir.rglob("*.json"))
    for f in files:
        json.loads(f.read_text())  # never half-written: every write goes to a temp file and is renamed
    return len(files)


def _done_cells(run_dir: Path) -> dict:
    return {p.parent.name: p.stat().st_mtime_ns for p in run_dir.glob("cells/*/cell.json")}


def _snapshot(root: Path) -> dict:
    """Every file and folder under ``root``: modification time, and the contents' digest for files."""
    return {
        str(p.relative_to(root)): (
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "",
        )
        for p in sorted(root.rglob("*"))
    }


def _rivals(project: Path):
    """While the run holds its folder: the same command again, and one with other settings and ``--force`` (which
    would empty the folder were it not in use); each must be refused before it touches anything."""

    def start(pid: int) -> dict:
        before = _snapshot(project)
        same = run(compare_cmd(project, "small"), cwd=project)
        forced = run([*compare_cmd(project, "small", "epochs=2"), "--force"], cwd=project)
        return {"pid": pid, "results": [same, forced], "before": before, "after": _snapshot(project)}

    return start


# (name, hold point inside the stage, signal, (a file the stage has written, one it has not yet)): the second cell
# killed after its first training batch, the ORT benchmark interrupted after its first timed block, the report killed
# with results.json written but not report.md
KILL_POINTS = [
    ("sigkill-mid-training", "cell:relu-s0", signal.SIGKILL, ("cells/relu-s0/train", "cells/relu-s0/cell.json")),
    ("sigint-mid-benchmark", "benchmark:ort-cpu", signal.SIGINT, ("onnx/relu", "speed.json")),
    ("sigkill-mid-report", "report", signal.SIGKILL, ("results.json", "report.md")),
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One small comparison through the real CLI, killed at three points and resumed each time; while the first
    run holds, two rivals try the same folder."""
    project = tmp_path_factory.mktemp("compare")
    run_dir, stages = project / "small", []
    for k, (name, hold, sig, mid) in enumerate(KILL_POINTS):
        before = _done_cells(run_dir)
        cmd = compare_cmd(project, "small")
        code, out, held, rivals = kill_at(cmd, project, hold, sig, while_held=_rivals(project) if k == 0 else None)
        stages.append(
            {
                "name": name,
                "code": code,
                "out": out,
                "held": held,
                "rivals": rivals,
                "cells_before": before,
                "cells_after": _done_cells(run_dir),
                "json_ok": _json_files_parse(run_dir),
                "mid": [(run_dir / path).exists() for path in mid],
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
    assert record["held"], record["out"][-2000:]  # the signal came while the run held inside the stage
    assert record["code"] == (130 if KILL_POINTS[stage][2] == signal.SIGINT else -signal.SIGKILL), record["out"][-2000:]
    assert record["mid"] == [True, False]  # killed inside the stage: part of its files written, not all
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
    assert "[cell 2/3] relu-s0: training" in stages[0]["out"]
    assert result.stdout.count("reusing completed result") == 3
    assert _done_cells(run_dir) == before


def test_a_folder_in_use_is_refused_and_a_killed_run_leaves_it_free(finished):
    """Two runs on one folder: while the first holds it (mid-training), the same command and a ``--force`` run with
    other settings each exit 2 with one line naming the first run's PID and the way out, and leave every file and
    folder as it was; once the first is SIGKILLed, the next run takes the folder and resumes from its cells."""
    _, _, stages, _ = finished
    rivals = stages[0]["rivals"]
    for result in rivals["results"]:
        assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
        assert "Traceback" not in result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("yolo-leaky: error: "), result.stderr
        assert "is in use by another yolo-leaky compare run" in lines[0]
        assert f"PID {rivals['pid']} " in lines[0] and "name=<another name>" in lines[0], lines[0]
    assert rivals["after"] == rivals["before"]  # nothing written, rewritten or removed, --force included
    # the first run died by SIGKILL holding the folder: the next one takes it and reuses the finished cell
    assert stages[0]["code"] == -signal.SIGKILL and "in use" not in stages[1]["out"]
    assert "[cell 1/3] silu-s0: reusing completed result" in stages[1]["out"]


HOLDS_AND_FORKS = """
import os, signal, sys
from pathlib import Path
from yolo_leaky.harness.compare import lock_run_dir
run = Path(sys.argv[1])
lock_run_dir(run)
child = os.fork()  # as a DataLoader worker is forked
if child == 0:
    signal.pause()  # lives until the test kills it
    os._exit(0)
(run.parent / "child.pid").write_text(str(child))
os.kill(os.getpid(), signal.SIGKILL)
"""
TAKES = "import sys, pathlib, yolo_leaky.harness.compare as c; c.lock_run_dir(pathlib.Path(sys.argv[1]))"


def test_a_forked_child_does_not_keep_a_killed_runs_folder_locked(tmp_path):
    """A run that forked a child and was SIGKILLed: the child lives on, the folder is free (a forked child would
    otherwise share the lock, and keep it, for as long as it lives)."""
    run_dir = tmp_path / "exp"
    with open(tmp_path / "holder.err", "w") as err:  # a file, not a pipe: the child keeps it open
        holder = subprocess.run([sys.executable, "-c", HOLDS_AND_FORKS, str(run_dir)], stdout=err, stderr=err)
    assert holder.returncode == -signal.SIGKILL, (tmp_path / "holder.err").read_text()[-2000:]
    child = int((tmp_path / "child.pid").read_text())
    try:
        os.kill(child, 0)  # still alive
        taker = subprocess.run([sys.executable, "-c", TAKES, str(run_dir)], capture_output=True, text=True)
        assert taker.returncode == 0, taker.stderr[-2000:]
    finally:
        os.kill(child, signal.SIGKILL)


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
    for label, e in exports.items():  # the export computes what the PyTorch network computes (float rounding only)
        assert max(o["max_rel"] for o in e["agreement"].values()) < 1e-4, (label, e["agreement"])
    assert "| ONNX vs PyTorch, largest relative difference |" in (run_dir / "report.md").read_text()


def test_report_says_what_the_numbers_cannot(finished):
    run_dir = finished[0]
    text = (run_dir / "report.md").read_text()
    for needle in [
        "mAP is ~0 for every variant",
        "COCO8 has 4 validation images",
        "From scratch, COCO8 cannot show",
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
    from yolo_leaky.data.datasets import resolve_data
    from yolo_leaky.harness.cells import run_cells
    from yolo_leaky.harness.config import CompareConfig

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
    from yolo_leaky.measure.quant import onnx_input

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
            "variants=[relu,silu]",  # the baseline (silu) is not the first variant
            "diagnostics=False",
            "runtimes=[ort-cpu]",
            "int8=True",
            "bench_imgsz=96",  # INT8 is scored at imgsz (64) and timed at the speed tables' size
        ),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    results = json.loads((tmp_path / "rec/results.json").read_text())
    assert set(results["pretrained"]) >= {"map50", "map50_95", "precision", "recall"}
    swap = results["swap"]["variants"]
    assert set(swap["relu"]["repairs"]) == {"bn"} and swap["relu"]["start"]["repair"] == "bn"
    assert set(swap["silu"]["repairs"]) == {"bn"} and swap["silu"]["start"]["repair"] == "bn"  # the same repair
    calibration = results["int8_stage"]["seeds"]["0"]["calibration"]  # INT8 of seed 0 calibrates on draw 0
    assert calibration["files_digest"] == results["swap"]["calibration"]["by_seed"]["0"]["digest"]
    assert set(results["cells"]) == {"silu-finetune-s0", "relu-finetune-s0"}
    assert results["cells"]["relu-finetune-s0"]["census_in_trainer"] == {"ReLU": 77}
    text = (tmp_path / "rec/report.md").read_text()
    for needle in ("Protocol **recover**", "What the swap costs", "Published anchors", f"SiLU checkpoint `{weights}`"):
        assert needle in text, needle
    assert "From scratch, COCO8 cannot show" not in text  # the COCO8 scratch caveat belongs to scratch runs only
    assert "Only 4 validation images: no accuracy difference is called significant" in text
    int8 = results["int8"]  # the INT8 stage on the recovered cells: quantized for real, scored, timed
    for label in ("silu", "relu"):
        assert int8["rows"][label]["deploy_nodes"]["QuantizeLinear"] > 0 and int8["rows"][label]["seeds"] == [0]
        assert set(int8["latency"]["ort-cpu"][label]["int8_vs_fp32"]) >= {"paired_ratio", "paired_ci_low"}
        scores = [int8["rows"][label][k] for k in ("fp32_mean", "deploy_mean", "conv-only_mean")]
        assert all(0.0 <= v <= 1.0 for v in scores), (label, scores)  # scored: NaN fails this
    assert int8["calibration"]["n"] == 4 and int8["calibration"]["split"] == "train"  # COCO8 has 4 train images
    assert "4 *training* images (`calib_images=64`; the train split has only 4)" in text
    for runtime, res in results["int8_stage"]["latency"].items():  # timed at bench_imgsz, against silu's FP32
        assert res["benchmark"]["imgsz"] == 96 and res["benchmark"]["baseline"] == "silu", runtime
        assert (
            int8["latency_settings"][runtime]["imgsz"] == 96 and f"INT8 latency, {runtime} (timed at imgsz 96" in text
        )
        assert (
            int8["latency"][runtime]["relu"]["int8_vs_base_fp32"]["paired_ratio"]
            == (res["benchmark"]["stats"]["relu@int8"]["paired_ratio"])
        )
    assert set(results["int8_stage"]["latency"]) == {"ort-cpu", "openvino-cpu"} - set(int8["skipped"])
    scored = results["int8_stage"]["seeds"]["0"]["variants"]["relu"]
    assert onnx_input(scored["fp32_onnx"])[1] == [1, 3, 64, 64]  # scored at imgsz, timed at bench_imgsz
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
