"""``yolo-leaky compare --quick`` end to end for segment, pose, OBB and classify (issue 21), each on its task's
offline stand-in (trained once into ``$YOLO_LEAKY_CACHE``): the task's own metrics in every record, the protocol's
invariants on them, and a report that names the task's headline metric and says it measured a stand-in."""

import json
import time
from pathlib import Path

import pytest
from conftest import run_clis

from yolo_leaky.core.tasks import METRICS, NO_DISTILL, headline

pytestmark = pytest.mark.slow
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
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, request):
    """Every task's quick comparison, two at a time, each in a process of its own; the wall time of each is kept."""
    project = tmp_path_factory.mktemp("tasks")
    for model in MODELS.values():  # the stand-ins first, one at a time: later tests reuse them from the cache
        from yolo_leaky.data.standin import standin_checkpoint

        standin_checkpoint(model=model, log=lambda line: None)
    start = time.perf_counter()
    jobs = {
        task: (["compare", *QUICK, f"model={model}", f"project={project}", f"name={task}"], project, None)
        for task, model in MODELS.items()
    }
    results = run_clis(jobs, workers=2)
    return project, results, time.perf_counter() - start


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
    start = swap["relu"]["seeds"]["0"]["start"]  # relu's repaired start: what its recovery is judged against
    assert cells["relu-finetune-s0"]["metrics"][key] > start["metrics"][key], (start, cells["relu-finetune-s0"])
    report = (run / "report.md").read_text()
    assert name in report and "stand-in" in report
    assert f"{name}" in result.stdout  # the terminal's cell lines and final table name the task's headline metric
    if task in NO_DISTILL:
        assert not any("distill" in k for k in cells) and "no distill cells" in result.stdout
        assert NO_DISTILL[task] in result.stdout
    else:
        assert cells["relu-distill-s0"]["status"] == "ok"
