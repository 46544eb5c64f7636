"""``yolo-leaky compare --quick`` end to end for segment, pose, OBB and classify (issue 21), each on its task's
offline stand-in (trained once into ``$YOLO_LEAKY_CACHE``): the task's own metrics in every record, the protocol's
invariants on them, and a report that names the task's headline metric and says it measured a stand-in."""

import json
import time
from pathlib import Path

import pytest
from conftest import run_clis

from yolo_leaky.core.tasks import METRICS, NO_DISTILL, headline

MODELS = {
    "segment": "yolo11n-seg.yaml",
    "pose": "yolo11n-pose.yaml",
    "obb": "yolo11n-obb.yaml",
    "classify": "yolo11n-cls.yaml",
}
QUICK = [
    "--quick",
    "variants=[silu,relu]",  # the control and the swap that costs most
    "runtimes=[ort-cpu]",
    "bench_seconds=1",
    "bench_blocks=2",
    "int8=true",
    "cell_workers=1",  # run_clis trains two runs at once: the two cores are already busy
    "recovery=[finetune,distill]",  # classify: distill asked for, dropped with its one-line reason
]
TARGETS = {"pose": ["targets=[ort-cpu]"], "classify": ["targets=[ort-cpu]"]}  # the cheapest back end, two tasks


def test_the_task_comes_from_the_checkpoint_and_a_model_of_another_task_is_one_line(tmp_path):
    """weights=<a pose .pt> makes a pose run under the default model=yolo11n.yaml (it only builds scratch networks);
    a model set to another task than the checkpoint's is refused; the stand-in's task is the model's."""
    from yolo_leaky import load
    from yolo_leaky.harness.compare import compare_task
    from yolo_leaky.harness.config import CompareConfig
    from yolo_leaky.utils.errors import UserError

    load("yolo11n-pose.yaml").save(str(tmp_path / "p.pt"))
    assert compare_task(CompareConfig(weights=str(tmp_path / "p.pt"))) == "pose"
    assert compare_task(CompareConfig(model="yolo11n-pose.yaml", weights=str(tmp_path / "p.pt"))) == "pose"
    assert compare_task(CompareConfig(model="yolo11n-obb.yaml", weights="standin")) == "obb"
    assert compare_task(CompareConfig(model="yolo11n-cls.yaml", protocol="scratch")) == "classify"
    with pytest.raises(
        UserError, match="model=yolo11n-seg.yaml is a segmentation model but weights=.*a pose checkpoint"
    ):
        compare_task(CompareConfig(model="yolo11n-seg.yaml", weights=str(tmp_path / "p.pt")))


def test_distill_targets_and_the_task_per_task(capsys, monkeypatch):
    """A task distillation cannot recover drops distill from the recovery methods and says why; distill alone is one
    line; a target whose back end lacks the task is one line naming those that have it; other tasks keep distill."""
    from yolo_leaky.harness import compare
    from yolo_leaky.harness.compare import with_task
    from yolo_leaky.harness.config import CompareConfig
    from yolo_leaky.targets.base import backends
    from yolo_leaky.utils.errors import UserError

    c = with_task(CompareConfig(weights="standin", recovery=["finetune", "distill"]), "classify")
    assert (c.task, c.recovery) == ("classify", ["finetune"])
    assert f"no distill cells for a classification model: {NO_DISTILL['classify']}" in capsys.readouterr().out
    assert with_task(CompareConfig(weights="standin", recovery=["finetune", "distill"]), "segment").recovery == [
        "finetune",
        "distill",
    ]
    with pytest.raises(UserError, match=r"recovery=\[distill\] cannot recover a classification model"):
        with_task(CompareConfig(weights="standin", recovery=["distill"]), "classify")
    assert all(set(cls.tasks) == set(METRICS) for cls in backends().values())  # every back end, every task
    for task in METRICS:
        assert with_task(CompareConfig(weights="standin", targets=["ort-cpu"]), task).targets == ["ort-cpu"]

    class DetectOnly(backends()["ort-cpu"]):  # a back end whose scorer knows detections only
        name, tasks = "detect-only", ("detect",)

    monkeypatch.setattr(compare, "backends", lambda: {"ort-cpu": backends()["ort-cpu"], "detect-only": DetectOnly})
    refused = r"^target detect-only cannot score an oriented-box \(OBB\) model .*targets that can: ort-cpu$"
    with pytest.raises(UserError, match=refused):
        with_task(CompareConfig(weights="standin", targets=["ort-cpu", "detect-only"]), "obb")
    assert with_task(CompareConfig(weights="standin", targets=["detect-only"]), "detect").targets == ["detect-only"]


def test_recovery_auto_is_each_tasks_methods_and_a_listed_recovery_is_kept(tmp_path, capsys):
    """The default recovery=auto becomes the task's methods (a classifier: finetune only, without the warning an
    explicit distill gets; the others: finetune and distill); a list from the user's cfg YAML is kept for every task,
    and recovery=auto on the command line overrides that YAML. A stage that meets an unresolved auto is a bug."""
    from yolo_leaky.harness.compare import prepare_run_dir, with_task
    from yolo_leaky.harness.config import AUTO_RECOVERY, load_config, recovery_methods
    from yolo_leaky.utils.errors import UserError

    default = load_config(["weights=standin"])
    assert default.recovery == "auto"
    assert {task: with_task(default, task).recovery for task in METRICS} == {
        "detect": ["finetune", "distill"],
        "segment": ["finetune", "distill"],
        "pose": ["finetune", "distill"],
        "obb": ["finetune", "distill"],
        "classify": ["finetune"],
    }
    assert set(AUTO_RECOVERY) == set(METRICS)
    assert "no distill cells" not in capsys.readouterr().out  # auto never asks a classifier for distill
    mine = tmp_path / "mine.yaml"
    mine.write_text("recovery: [finetune]\n")
    assert with_task(load_config([f"cfg={mine}", "weights=standin"]), "segment").recovery == ["finetune"]
    cli = load_config([f"cfg={mine}", "weights=standin", "recovery=auto"])
    assert with_task(cli, "segment").recovery == ["finetune", "distill"]
    assert with_task(cli, "classify").recovery == ["finetune"]
    with pytest.raises(RuntimeError, match="bug: recovery=auto was not resolved"):
        recovery_methods(default)
    with pytest.raises(RuntimeError, match="bug: recovery=auto was not resolved"):  # never recorded in settings.json
        prepare_run_dir(load_config(["weights=standin", f"project={tmp_path}"]), force=False)
    assert not (tmp_path / "coco8").exists()
    with pytest.raises(UserError, match=r"must be auto or list each of finetune, distill"):
        load_config(["weights=standin", "recovery=[auto,distill]"])


def test_data_shapes_resolves_to_each_tasks_own_data(tmp_path):
    """data=shapes is the task's stand-in data (its TASKS row): a YAML for segment/pose/obb whose labels are the
    task's, a folder of crops for a classifier; detection's keeps its place; the fingerprint names the data apart,
    detection's in its earlier words."""
    from yolo_leaky.data.datasets import dataset_info
    from yolo_leaky.harness.compare import content_fingerprint, task_data
    from yolo_leaky.harness.config import CompareConfig

    def shapes(task):
        return Path(task_data(CompareConfig(data="shapes", task=task), tmp_path))

    assert shapes("detect") == tmp_path / "shapes" / "shapes.yaml"
    pose = shapes("pose")
    assert pose.name == "shapes-pose.yaml" and "kpt_shape" in pose.read_text()
    crops = shapes("classify")
    assert crops.is_dir() and {p.name for p in (crops / "val").iterdir()} == {"circle", "cross", "square", "triangle"}
    info = dataset_info(crops)
    assert (info["val_images"], info["train_images"]) == (128, 512) and info["digest"]
    digests = {
        t: content_fingerprint(CompareConfig(model=m, weights="standin", task=t), "shapes")["data_digest"]
        for t, m in {**MODELS, "detect": "yolo11n.yaml"}.items()
    }
    assert digests["detect"].startswith("synthetic shapes v") and len(set(digests.values())) == 5


@pytest.fixture(scope="module")
def runs(tmp_path_factory, request):
    """Every task's quick comparison, two at a time, each in a process of its own; the wall time of each is kept."""
    project = tmp_path_factory.mktemp("tasks")
    for model in MODELS.values():  # the stand-ins first, one at a time: later tests reuse them from the cache
        from yolo_leaky.data.standin import standin_checkpoint

        standin_checkpoint(model=model, log=lambda line: None)
    start = time.perf_counter()
    jobs = {
        task: (
            ["compare", *QUICK, f"model={model}", f"project={project}", f"name={task}", *TARGETS.get(task, [])],
            project,
            None,
        )
        for task, model in MODELS.items()
    }
    results = run_clis(jobs, workers=2, timeout=3600)  # a hang guard: 4 runs took 9-12 min on 2 loaded cores
    return project, results, time.perf_counter() - start


@pytest.mark.slow
@pytest.mark.parametrize("task", MODELS)
def test_compare_quick_measures_each_task_with_its_own_metrics(runs, task):
    project, results, _ = runs
    result = results[task]
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    run = Path(project) / task
    key, name = headline(task)
    out = json.loads((run / "results.json").read_text())
    cells = out["cells"]
    assert cells and all(set(cell["metrics"]) == set(METRICS[task]) for cell in cells.values()), cells
    before = json.loads((run / "pretrained.json").read_text())
    swap = json.loads((run / "swap.json").read_text())["variants"]
    assert set(before) == set(METRICS[task])
    assert swap["silu"]["after_swap"] == before  # swapping SiLU for SiLU changes nothing, exactly
    assert swap["relu"]["after_swap"][key] < before[key]  # the swap costs the task's headline metric
    recovered = cells["relu-finetune-s0"]["metrics"][key]
    assert recovered > swap["relu"]["after_swap"][key]  # recovery lifts what the swap cost
    start = swap["relu"]["seeds"]["0"]["start"]  # relu's repaired start: what its recovery is judged against
    # measured (docs/tasks.md), so not asserted for these two: one epoch of finetune from the classifier's BN-repaired
    # start lowers top-1, SiLU's too (relu 0.844 -> 0.750), and lifts segment's mask mAP50-95 by 0.002 only
    if task not in ("classify", "segment"):
        assert recovered > start["metrics"][key], (start, cells["relu-finetune-s0"])
    int8 = json.loads((run / "int8.json").read_text())["seeds"]["0"]["variants"]
    for label in ("silu", "relu"):  # FP32 and each INT8 scheme scored with the task's own metrics
        scored = [int8[label]["fp32"], *(s["metrics"] for s in int8[label]["int8"].values())]
        assert all(set(m) == set(METRICS[task]) for m in scored), int8[label]
    for label in ("silu", "relu"):  # the diagnostics stage read the task's own batches (masks, keypoints, ...)
        health = out["units"][label]["health"]["total"]
        assert 0 <= health["dead_or_negative_only"] < 0.5 and 0 <= health["near_zero_grad"] < 1, health
    report = (run / "report.md").read_text()
    assert name in report and "stand-in" in report
    if task in TARGETS:  # each variant's INT8 artifact built and scored by the target with the task's own validator
        built = json.loads((run / "targets.json").read_text())["targets"]["ort-cpu"]["seeds"]["0"]
        assert set(built) == {"silu", "relu"} and all(set(b["metrics"]) == set(METRICS[task]) for b in built.values())
        assert f"| variant | artifact {name} |" in report
    assert f"{name}" in result.stdout  # the terminal's cell lines and final table name the task's headline metric
    assert ("top-5 is 1 by construction" in report) == (task == "classify")  # the stand-in has 4 classes
    if task in NO_DISTILL:
        assert not any("distill" in k for k in cells) and "no distill cells" in result.stdout
        assert NO_DISTILL[task] in result.stdout
    else:
        assert cells["relu-distill-s0"]["status"] == "ok"
