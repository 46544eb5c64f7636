"""The comparison grid on Ray (``executor=ray``): inputs shipped by value, files landing in the run folder, retries
of a dead worker, a killed driver, and the same numbers as the local executor. A local Ray instance (this
machine's CPUs) stands in for a cluster; the Ray tests skip where Ray is not installed (CI installs it with
``.[dev]`` and runs them)."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from yolo_leaky.data.datasets import file_digest
from yolo_leaky.harness.executor import RAY_MISSING, Job, execute
from yolo_leaky.utils.errors import UserError

HAVE_RAY = importlib.util.find_spec("ray") is not None
if not HAVE_RAY and os.environ.get("CI"):
    raise RuntimeError("Ray is missing in CI: install .[dev] (it brings yolo-leaky[ray]) so the Ray tests run")
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed: pip install 'yolo-leaky[ray]'")


# ---------------------------------------------------------------- toy jobs (module-level: Ray ships them)


def toy_cell(args: dict, folder: Path) -> dict:
    """Reads a file, a folder and a dataset YAML input, writes a weights file and a log line, records its
    completion."""
    own = Path(args["own"])  # the test's own folder: how many times each job got this far
    if args.get("die_once") and not (own / f"{args['key']}.died").exists():
        (own / f"{args['key']}.died").write_text(str(folder.parent))  # the attempt's temp folder on the worker
        os._exit(1)  # the worker process dies mid-cell, as if killed
    text = Path(args["inputs"]["text"]).read_text()
    images = sorted(p.name for p in Path(args["inputs"]["images"]).iterdir())
    dataset = yaml.safe_load(Path(args["inputs"]["data"]).read_text())
    val = sorted(p.name for p in (Path(dataset["path"]) / dataset["val"]).iterdir())
    (folder / "train/weights").mkdir(parents=True)
    (folder / "train/weights/last.pt").write_bytes(f"{args['key']}:{text}".encode() * 1000)
    print(f"training {args['key']}")  # into the job's log file, not the terminal
    if args.get("user_error"):
        raise UserError(f"cell {args['key']} was given a bad value; fix it")
    with open(own / "completed.txt", "a") as f:
        f.write(f"{args['key']}\n")
    return {
        "status": "ok",
        "key": args["key"],
        "text": text,
        "images": images,
        "val": val,
        "data_root": dataset["path"],
        "seen": dict(args["inputs"]),
    }


def toy_jobs(tmp_path: Path, keys=("a", "b"), **extra) -> list[Job]:
    own, inputs = tmp_path / "own", tmp_path / "inputs"
    own.mkdir(exist_ok=True)
    (inputs / "images").mkdir(parents=True, exist_ok=True)
    (inputs / "text.txt").write_text("hello")
    (inputs / "dataset/images/val").mkdir(parents=True, exist_ok=True)
    for name in ("1.jpg", "2.jpg"):
        (inputs / "images" / name).write_bytes(b"x")
        (inputs / "dataset/images/val" / name).write_bytes(b"y")
    data = {"path": str(inputs / "dataset"), "train": "images/val", "val": "images/val", "names": {0: "x"}}
    (inputs / "data.yaml").write_text(yaml.safe_dump(data))
    args = {
        "own": str(own),
        "inputs": {
            "text": str(inputs / "text.txt"),
            "images": str(inputs / "images"),
            "data": str(inputs / "data.yaml"),
        },
    }
    return [Job(k, toy_cell, {**args, "key": k, **extra}, tmp_path / "run/cells" / k) for k in keys]


def completed(tmp_path: Path) -> list[str]:
    path = tmp_path / "own/completed.txt"
    return sorted(path.read_text().split()) if path.exists() else []


# ---------------------------------------------------------------- without Ray


def test_local_executor_runs_in_order_and_writes_the_result_last(tmp_path):
    events = []
    results = execute(
        toy_jobs(tmp_path),
        "local",
        on_start=lambda job: events.append(("start", job.key)),
        on_done=lambda job, result, info: events.append(("done", job.key, info["executor"])),
    )
    assert events == [("start", "a"), ("done", "a", "local"), ("start", "b"), ("done", "b", "local")]
    for key in ("a", "b"):
        folder = tmp_path / "run/cells" / key
        assert json.loads((folder / "cell.json").read_text()) == results[key]
        assert results[key]["seen"]["text"] == str(tmp_path / "inputs/text.txt")  # local: the paths as given
        assert (folder / "log.txt").read_text() == f"training {key}\n"
        assert results[key]["images"] == results[key]["val"] == ["1.jpg", "2.jpg"]
        assert results[key]["data_root"] == str(tmp_path / "inputs/dataset")
    assert completed(tmp_path) == ["a", "b"]


def test_executor_ray_without_ray_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(UserError) as raised:
        execute(toy_jobs(tmp_path), "ray")
    assert str(raised.value) == RAY_MISSING == "executor=ray needs Ray: pip install 'yolo-leaky[ray]'"
    assert completed(tmp_path) == []


@pytest.mark.parametrize(
    "tokens, message",
    [
        (["executor=dask"], "executor='dask' is not one of local, ray"),
        (["ray_address=auto"], "ray_address='auto' needs executor=ray"),
        (["executor=ray", "cell_cpus=0"], "cell_cpus=0 must be a positive integer"),
        (["executor=ray", "cell_cpus=1.5"], "cell_cpus=1.5 must be a positive integer"),
        (["executor=ray", "cell_gpus=-1"], "cell_gpus=-1 must be a number >= 0"),
    ],
)
def test_bad_executor_settings_are_one_line_errors(tokens, message):
    from yolo_leaky.harness.config import load_config

    with pytest.raises(UserError) as raised:
        load_config(["protocol=scratch", *tokens])
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


@needs_ray  # executor=ray is refused without Ray
def test_executor_settings_do_not_change_the_run_fingerprint():
    """A rerun under the other executor reuses completed cells: the settings that only say where cells run are
    not part of the run folder's fingerprint."""
    from yolo_leaky.harness.config import load_config

    here = load_config(["protocol=scratch"])
    there = load_config(["protocol=scratch", "executor=ray", "ray_address=auto", "cell_cpus=4", "cell_gpus=0.5"])
    assert here.fingerprint() == there.fingerprint()
    assert here.fingerprint() != load_config(["protocol=scratch", "epochs=2"]).fingerprint()


# ---------------------------------------------------------------- with Ray


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray instance for this module's tests (started as executor=ray starts one); its address lets CLI
    drivers in subprocesses connect to it, as to an existing cluster."""
    if not HAVE_RAY:
        pytest.skip("Ray is not installed: pip install 'yolo-leaky[ray]'")
    import ray

    from yolo_leaky.harness import executor

    executor.connect(None)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    shutil.rmtree(executor._local["temp_dir"], ignore_errors=True)  # kept for a lost cell's logs: not needed here


@needs_ray
def test_ray_ships_inputs_and_lands_every_file(tmp_path, ray_cluster):
    finished = []
    results = execute(toy_jobs(tmp_path), "ray", on_done=lambda job, result, info: finished.append(job.key))
    assert sorted(finished) == ["a", "b"] and completed(tmp_path) == ["a", "b"]
    for key in ("a", "b"):
        folder = tmp_path / "run/cells" / key
        result = json.loads((folder / "cell.json").read_text())
        assert result == results[key] and result["executor"]["executor"] == "ray"
        # the worker read copies in its own temp folder, not the driver's files
        assert result["seen"]["text"] != str(tmp_path / "inputs/text.txt") and result["text"] == "hello"
        assert result["images"] == result["val"] == ["1.jpg", "2.jpg"]
        # the dataset YAML points at the copy of its folder that travelled with it
        assert result["data_root"] != str(tmp_path / "inputs/dataset")
        assert Path(result["data_root"]).parent == Path(result["seen"]["data"]).parent / "root"
        assert (folder / "train/weights/last.pt").read_bytes() == f"{key}:hello".encode() * 1000
        assert (folder / "log.txt").read_text() == f"training {key}\n"
        assert sorted(p.name for p in folder.iterdir()) == ["cell.json", "log.txt", "train"]


@needs_ray
def test_ray_retries_a_worker_that_died_mid_cell(tmp_path, ray_cluster):
    results = execute(toy_jobs(tmp_path, die_once=True), "ray", max_retries=2)
    died = sorted((tmp_path / "own").glob("*.died"))
    assert died == [tmp_path / "own/a.died", tmp_path / "own/b.died"]
    assert completed(tmp_path) == ["a", "b"]  # each cell completed exactly once
    assert {k: r["status"] for k, r in results.items()} == {"a": "ok", "b": "ok"}
    for marker in died:  # the retry (same node here) removed what the dead attempt left in its temp folder
        assert not Path(marker.read_text()).exists()


@needs_ray
def test_ray_cell_lost_for_good_is_recorded_as_failed(tmp_path, ray_cluster):
    jobs = [Job(j.key, j.fn, j.args, j.folder, failure={"variant": j.key}) for j in toy_jobs(tmp_path, die_once=True)]
    results = execute(jobs, "ray", max_retries=0)
    for marker in (tmp_path / "own").glob("*.died"):
        shutil.rmtree(marker.read_text())  # no retry cleans a dead attempt's temp folder: the test does
    assert completed(tmp_path) == []
    for key in ("a", "b"):
        assert results[key]["status"] == "failed" and results[key]["variant"] == key
        assert results[key]["error"].startswith("WorkerCrashedError: ")
        logs = results[key]["error"].split("(Ray's logs: ")[1].rstrip(")")
        assert Path(logs).is_dir()  # kept after the run for the user to read
        assert json.loads((tmp_path / "run/cells" / key / "cell.json").read_text()) == results[key]


@needs_ray
def test_ray_user_error_in_a_job_reaches_the_driver_as_one_line(tmp_path, ray_cluster):
    with pytest.raises(UserError) as raised:
        execute(toy_jobs(tmp_path, keys=("a",), user_error=True), "ray")
    assert str(raised.value) == "cell a was given a bad value; fix it"
    assert not (tmp_path / "run/cells/a/cell.json").exists()


@needs_ray
def test_ray_refuses_resources_no_node_has(tmp_path, ray_cluster):
    with pytest.raises(UserError, match="no Ray node has cell_cpus=1 and cell_gpus=64"):
        execute(toy_jobs(tmp_path), "ray", cell_gpus=64)


# ---------------------------------------------------------------- the real grid through the CLI

SMALL = [
    "protocol=scratch",
    "variants=[silu,relu]",
    "seeds=[0]",
    "epochs=1",
    "imgsz=64",
    "batch=4",
    "bench_imgsz=64",
    "bench_seconds=1",
    "bench_blocks=2",  # each block starts a worker process: two keep the runs short
    "diagnostics=False",
]

# A CLI driver that dies (os._exit, as if killed) once one cell has landed and the next cell has one file on disk:
# the moment a half-written cell could be left behind.
DIES_MID_LANDING = """
import os, sys
from pathlib import Path
import yolo_leaky.utils.atomic as atomic
write_file, landed, next_cell = atomic.write_file, [], []
def dying(path, write, suffix=".tmp"):
    path = Path(path)
    if "cells" in path.parts and landed:
        if next_cell:
            os._exit(3)
        next_cell.append(path)
    if "cells" in path.parts and path.name == "cell.json":
        landed.append(path)
    return write_file(path, write, suffix)
atomic.write_file = dying
from yolo_leaky.cli import main
sys.exit(main(sys.argv[1:]))
"""


def cli(project: Path, name: str, *extra: str, script: str | None = None) -> subprocess.CompletedProcess:
    head = ["-c", script] if script else ["-m", "yolo_leaky.cli"]
    cmd = [sys.executable, *head, "compare", f"project={project}", f"name={name}", *SMALL, *extra]
    return subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=600, env=dict(os.environ))


def cell_files(run_dir: Path) -> dict:
    return {p.parent.name: p.stat().st_mtime_ns for p in run_dir.glob("cells/*/cell.json")}


@pytest.fixture(scope="module")
def grids(tmp_path_factory, ray_cluster):
    """The small grid three times: locally (the local executor), on Ray with a driver that dies mid-grid, and on Ray
    again, resuming; the Ray drivers connect to this module's cluster as to an existing one."""
    from yolo_leaky.data.datasets import resolve_data
    from yolo_leaky.harness.cells import run_cells
    from yolo_leaky.harness.compare import prepare_run_dir
    from yolo_leaky.harness.config import load_config

    project = tmp_path_factory.mktemp("grid")
    local = load_config([f"project={project}", "name=local", *SMALL])
    prepare_run_dir(local, force=False)
    run_cells(local, resolve_data(local.data, out_dir=local.run_dir), "cpu")
    address = f"ray_address={ray_cluster}"
    killed = cli(project, "ray", "executor=ray", address, script=DIES_MID_LANDING)
    after_kill = {
        "cells": cell_files(project / "ray"),
        "folders": {p.name: sorted(q.name for q in p.iterdir()) for p in (project / "ray/cells").iterdir()},
    }
    resumed = cli(project, "ray", "executor=ray", address)
    return project, killed, after_kill, resumed


def _cell(project: Path, name: str, key: str) -> dict:
    return json.loads((project / name / "cells" / key / "cell.json").read_text())


@needs_ray
@pytest.mark.slow
def test_killed_driver_leaves_no_half_written_cell_and_rerun_reuses_finished_ones(grids):
    project, killed, after_kill, resumed = grids
    assert killed.returncode == 3, killed.stderr[-3000:]
    assert len(after_kill["cells"]) == 1  # one cell landed whole; the driver died writing the other's files
    (finished,) = after_kill["cells"]
    others = set(after_kill["folders"]) - {finished}
    assert len(others) == 1, after_kill["folders"]
    (partial,) = others
    assert "cell.json" not in after_kill["folders"][partial] and after_kill["folders"][partial]  # some files, no result
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"{finished}: reusing completed result" in resumed.stdout
    assert resumed.stdout.count("reusing completed result") == 1
    assert cell_files(project / "ray")[finished] == after_kill["cells"][finished]  # not rewritten
    assert set(cell_files(project / "ray")) == {"silu-s0", "relu-s0"}
    for path in (project / "ray").rglob("*.json"):
        json.loads(path.read_text())  # every JSON whole
    for key in ("silu-s0", "relu-s0"):
        cell = _cell(project, "ray", key)
        assert cell["status"] == "ok" and cell["executor"]["executor"] == "ray"
        assert (project / "ray/cells" / key / cell["weights"]).is_file()


@needs_ray
@pytest.mark.slow
def test_ray_grid_matches_the_local_grid_digit_for_digit(grids):
    import torch

    project = grids[0]
    for key in ("silu-s0", "relu-s0"):
        here, there = _cell(project, "local", key), _cell(project, "ray", key)
        assert here["executor"]["executor"] == "local" and there["executor"]["executor"] == "ray"
        # the same thread count, else CPU training differs in the last digits (see executor.py)
        assert here["executor"]["torch_threads"] == there["executor"]["torch_threads"]
        assert here["metrics"] == there["metrics"]
        assert here["census_in_trainer"] == there["census_in_trainer"]
        rows = [
            [
                line.split(",")[:1] + line.split(",")[2:]
                for line in (project / run / "cells" / key / "train/results.csv").read_text().splitlines()
            ]
            for run in ("local", "ray")
        ]  # every column but the epoch's wall time
        assert rows[0] == rows[1] and len(rows[0]) == 2
        weights = [
            torch.load(project / run / "cells" / key / "train/weights/last.pt", weights_only=False)["model"]
            for run in ("local", "ray")
        ]
        mine, theirs = (w.state_dict() for w in weights)
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


@needs_ray
@pytest.mark.slow
def test_timing_ran_as_one_ray_task_and_its_files_landed(grids):
    project, _, _, resumed = grids
    assert "[speed] one Ray task" in resumed.stdout
    speed = json.loads((project / "ray/speed.json").read_text())
    assert speed["executor"]["executor"] == "ray"
    assert set(speed["exports"]) == set(speed["onnx"]) == {"silu", "relu", "identity"}
    for label, path in speed["onnx"].items():
        assert Path(path).is_file() and Path(path).parent == project / "ray/onnx" / label
    assert speed["exports"]["relu"]["silu_free"] and not speed["exports"]["silu"]["silu_free"]
    weights = _cell(project, "ray", "relu-s0")["weights"]  # what the task timed, by content (shipped as a copy)
    assert speed["checkpoints"]["relu"]["key"] == file_digest(project / "ray/cells/relu-s0" / weights)
    assert (project / "ray/speed-log.txt").stat().st_size > 0
    results = json.loads((project / "ray/results.json").read_text())
    assert set(results["speed"]["timings"]) == {"torch-cpu", "ort-cpu"}
    for result in results["speed"]["timings"].values():  # blocks in fresh processes on the Ray worker, too
        settings = result["settings"]
        assert settings["isolation"] == "process" and len(set(settings["block_pids"])) == settings["blocks"] == 2


@pytest.mark.slow
def test_cli_executor_ray_without_ray_is_one_line_exit_2(tmp_path):
    script = "import sys; sys.modules['ray'] = None; from yolo_leaky.cli import main; sys.exit(main(sys.argv[1:]))"
    result = cli(tmp_path, "noray", "executor=ray", script=script)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip() == "yolo-leaky: error: executor=ray needs Ray: pip install 'yolo-leaky[ray]'"
    assert not (tmp_path / "noray").exists()  # refused before anything was written


def test_ray_is_imported_only_where_executor_ray_needs_it():
    """A base install (no Ray) imports the whole package: no module imports Ray at module level."""
    import ast

    package = Path(__file__).resolve().parents[1] / "yolo_leaky"
    for path in package.glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "ray" for n in names), path.name


# ---------------------------------------------------------------- the recovery protocol on Ray

# Both recovery methods, distill first (so the distill cells track unit health), on the stand-in; calibration,
# training and timing kept small (what is compared is local against Ray, bit for bit, not how much a cell learns:
# each cell trains on a quarter of the 256 training images). The stand-in comes from the `standin` fixture (trained
# once per session, or a warm cache).
RECOVER = [  # weights: auto (cfg/compare.yaml), so the stand-in offline
    "variants=[silu,relu]",
    "seeds=[0]",
    "epochs=1",
    "fraction=0.25",
    "recovery=[distill,finetune]",
    "calib_images=16",
    "bench_imgsz=64",
    "bench_seconds=1",
    "bench_blocks=2",
    "runtimes=[ort-cpu]",
]
RECOVER_CELLS = ("silu-distill-s0", "relu-distill-s0", "silu-finetune-s0", "relu-finetune-s0")


@pytest.fixture(scope="module")
def recover_grids(tmp_path_factory, ray_cluster, standin):
    """The recovery grid twice from one swap stage: locally, and on Ray, where each cell gets its seed's start.pt (and a
    distill cell its SiLU teacher) shipped to the worker; then the INT8 stage of the Ray run, as one Ray task."""
    import dataclasses

    from yolo_leaky.data.datasets import resolve_data
    from yolo_leaky.harness.cells import run_cells, swap_stage
    from yolo_leaky.harness.compare import measure_int8_stage, prepare_run_dir, resolve_weights
    from yolo_leaky.harness.config import load_config

    project = tmp_path_factory.mktemp("recover")
    local = load_config([f"project={project}", "name=local", *RECOVER])
    teacher, _ = resolve_weights(local)
    local = dataclasses.replace(local, weights=teacher)
    prepare_run_dir(local, force=False)
    data = resolve_data(local.data, out_dir=local.run_dir)
    swap = swap_stage(local, data, "cpu")
    there = dataclasses.replace(local, name="ray", executor="ray")
    prepare_run_dir(there, force=False)
    cells = {c.name: run_cells(c, data, "cpu", swap=swap, teacher=teacher) for c in (local, there)}
    int8 = measure_int8_stage(dataclasses.replace(there, int8=True), cells["ray"], data)
    return project, cells, int8, data, teacher


@needs_ray
@pytest.mark.slow
def test_recover_grid_on_ray_matches_the_local_grid_with_both_methods(recover_grids):
    """start.pt and the distillation teacher reach the worker (as shipped copies) and the Ray cells are bit-identical
    to the local ones; the distill cells' unit health is tracked on the student alone, the same on both."""
    import torch

    project, cells, _, _, teacher = recover_grids
    runs = ("local", "ray")
    for key in RECOVER_CELLS:
        here, there = _cell(project, "local", key), _cell(project, "ray", key)
        assert here["status"] == there["status"] == "ok", (here.get("error"), there.get("error"))
        assert here["executor"]["executor"] == "local" and there["executor"]["executor"] == "ray"
        assert here["executor"]["torch_threads"] == there["executor"]["torch_threads"]
        assert here["metrics"] == there["metrics"] and here["census_in_trainer"] == there["census_in_trainer"]
        args = {run: yaml.safe_load((project / run / "cells" / key / "train/args.yaml").read_text()) for run in runs}
        assert args["local"]["model"] == str(project / "local/swap" / key.split("-")[0] / "s0/start.pt")
        assert args["ray"]["model"] != args["local"]["model"] and args["ray"]["model"].endswith("/start.pt")
        if "distill" in key:  # the teacher, shipped: same weights at the start and the end, frozen
            assert args["local"]["distill_model"] == teacher and args["ray"]["distill_model"] != teacher
            assert here["teacher"] == there["teacher"] and here["teacher"]["sites"] == {"SiLU": 77}
            assert here["teacher"]["digest_start"] == here["teacher"]["digest_end"]
            health = [
                json.loads((project / run / "cells" / key / "train/unit_health.json").read_text()) for run in runs
            ]
            assert health[0] == health[1] and health[0][0]["sites"] == 77  # the student's 77 sites, not 77 + teacher
            assert health[0][0]["measure"] == ("dead" if key.startswith("relu") else "negative_only")
        else:
            assert "distill_model" not in args["ray"] or not args["ray"]["distill_model"]
            assert "teacher" not in there and not (project / "ray/cells" / key / "train/unit_health.json").exists()
        csv = {run: (project / run / "cells" / key / "train/results.csv").read_text().splitlines() for run in runs}
        rows = [[line.split(",")[:1] + line.split(",")[2:] for line in csv[run]] for run in runs]
        assert rows[0] == rows[1] and len(rows[0]) == 2  # every column but the epoch's wall time
        weights = [
            torch.load(project / run / "cells" / key / "train/weights/last.pt", weights_only=False)["model"]
            for run in runs
        ]
        mine, theirs = (w.state_dict() for w in weights)
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


@needs_ray
@pytest.mark.slow
def test_int8_ran_as_one_ray_task_and_its_files_landed(recover_grids):
    """The INT8 stage under executor=ray: one task quantized, scored and timed every variant; int8.json names the
    driver's checkpoints and the files that came back into the run folder, and a landed INT8 file scores here what
    the worker reported."""
    from yolo_leaky.measure.quant import validate_onnx

    project, cells, int8, data, _ = recover_grids
    run = project / "ray"
    assert int8["executor"]["executor"] == "ray" and int8["fresh"]
    assert json.loads((run / "int8.json").read_text()) == {k: v for k, v in int8.items() if k != "fresh"}
    assert "Ultralytics" in (run / "int8-log.txt").read_text()  # the worker's output, sent back
    seed = int8["seeds"]["0"]
    assert set(seed["variants"]) == {"silu", "relu"} and seed["calibration"]["data"] == data
    for label, entry in seed["variants"].items():
        assert entry["weights"] == cells["ray"][f"{label}-distill-s0"]["weights"]  # the driver's checkpoint
        files = [entry["fp32_onnx"], *(q["path"] for q in entry["int8"].values())]
        files += [entry["openvino"][k] for k in ("fp32_xml", "int8_xml")] if "openvino" in entry else []
        for path in files:
            assert Path(path).is_file() and run / "int8/s0" / label in Path(path).parents, path
    assert set(int8["latency"]) >= {"ort-cpu"} and set(int8["latency"]["ort-cpu"]["int8_vs_fp32"]) == {"silu", "relu"}
    relu = seed["variants"]["relu"]["int8"]["deploy"]
    assert validate_onnx(relu["path"], data, 64) == relu["metrics"]
