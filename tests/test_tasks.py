"""compare supports detection only today (issue 21): a model of another task is refused up front, in one line,
from its YAML or checkpoint, before anything is trained or written; detection models pass. The CLI cases (exit 2,
nothing written) are in test_errors.py."""

import pytest

from yolo_leaky import load
from yolo_leaky.harness.compare import check_task, model_task
from yolo_leaky.utils.errors import UserError

HEADS = {"": "detect", "-seg": "segment", "-pose": "pose", "-obb": "obb", "-cls": "classify"}


@pytest.mark.parametrize("suffix, task", HEADS.items())
def test_model_task_from_the_yaml(suffix, task):
    """Read from the YAML's head without building the network (stock names resolve as Ultralytics resolves them)."""
    assert model_task(f"yolo11n{suffix}.yaml") == task


def test_detect_passes_and_every_other_task_is_refused(tmp_path):
    check_task("yolo11n.yaml")  # a detection YAML passes
    load("yolo11n.yaml").save(str(tmp_path / "det.pt"))
    check_task(str(tmp_path / "det.pt"))  # and a detection checkpoint
    for suffix, task in HEADS.items():
        if task == "detect":
            continue
        with pytest.raises(
            UserError, match=f"yolo11n{suffix}.yaml is .* model \\({task}\\); yolo-leaky compare supports"
        ):
            check_task(f"yolo11n{suffix}.yaml")
    load("yolo11n-pose.yaml").save(str(tmp_path / "pose.pt"))  # a checkpoint's task is its own, not its file name's
    (tmp_path / "pose.pt").rename(tmp_path / "renamed.pt")
    with pytest.raises(UserError, match=r"renamed\.pt is a pose model \(pose\).*yolo-leaky train model=.*act=relu"):
        check_task(str(tmp_path / "renamed.pt"))


def test_unknown_stock_yaml_is_one_line():
    with pytest.raises(UserError, match="neither a file here nor a stock Ultralytics model YAML"):
        model_task("yolo11n-nosuchhead.yaml")


def test_a_task_without_a_stand_in_is_one_line_before_anything_is_made(tmp_path, monkeypatch):
    """The stand-in table decides which tasks get an offline stand-in; any other task is refused before training.
    Detection, segment, pose and OBB have rows; the task tested is one without (classify until it gets one, else a
    row removed for the test)."""
    from yolo_leaky.data.standin import TASKS, standin_checkpoint

    monkeypatch.setenv("YOLO_LEAKY_CACHE", str(tmp_path))
    assert {"detect", "segment", "pose", "obb"} <= set(TASKS)
    missing = next((t for t in HEADS.values() if t not in TASKS), "classify")
    monkeypatch.delitem(TASKS, missing, raising=False)
    suffix = {v: k for k, v in HEADS.items()}[missing]
    with pytest.raises(UserError, match=f"no offline stand-in for {missing} models yet"):
        standin_checkpoint(model=f"yolo11n{suffix}.yaml", log=lambda line: None)
    assert not any(tmp_path.iterdir())  # nothing trained or written
