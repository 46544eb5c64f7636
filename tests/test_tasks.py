"""Every Ultralytics task through compare (issue 21): the task is read from the model's YAML or checkpoint before
anything is trained or written; a task compare cannot measure is refused in one line. The CLI cases (exit 2,
nothing written) are in test_errors.py; compare end to end per task in test_task_compare.py."""

import json

import pytest

from yolo_leaky import load
from yolo_leaky.harness.compare import check_task, model_task
from yolo_leaky.utils.errors import UserError

HEADS = {"": "detect", "-seg": "segment", "-pose": "pose", "-obb": "obb", "-cls": "classify"}


@pytest.mark.parametrize("suffix, task", HEADS.items())
def test_model_task_from_the_yaml(suffix, task):
    """Read from the YAML's head without building the network (stock names resolve as Ultralytics resolves them)."""
    assert model_task(f"yolo11n{suffix}.yaml") == task


def test_every_task_passes_and_a_task_without_metrics_is_refused(tmp_path, monkeypatch):
    """compare measures every task core.tasks has metrics for (issue 21); a checkpoint's task is its own, not its
    file name's; a task without a metrics row is refused in one line that points to the swap."""
    import yolo_leaky.harness.compare as compare

    for suffix, task in HEADS.items():
        assert check_task(f"yolo11n{suffix}.yaml") == task
    load("yolo11n-pose.yaml").save(str(tmp_path / "pose.pt"))
    (tmp_path / "pose.pt").rename(tmp_path / "renamed.pt")
    assert check_task(str(tmp_path / "renamed.pt")) == "pose"
    monkeypatch.setattr(compare, "SUPPORTED_TASKS", ("detect",))
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


# ------------------------------------------------------------------------------------ classification (issue 21)
CROPS_SMALL = dict(n_train=16, n_val=8, imgsz=32)


def crop_hashes(root) -> dict:
    import hashlib

    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.png")}


def test_shape_crops_are_deterministic_imagenet_style_folders_ultralytics_reads(tmp_path):
    """One shape per image, its class as the folder name, in the train/ val/ layout ``check_cls_dataset`` reads;
    the same seed gives the same bytes, another seed others, and a tampered file is regenerated."""
    from ultralytics.data.utils import check_cls_dataset

    from yolo_leaky.data.crops import crops_digest, make_shape_crops
    from yolo_leaky.data.synthetic import CLASSES

    a, b = make_shape_crops(tmp_path / "a", **CROPS_SMALL), make_shape_crops(tmp_path / "b", **CROPS_SMALL)
    c = make_shape_crops(tmp_path / "c", **CROPS_SMALL, seed=1)
    assert len(crop_hashes(a)) == 16 + 8 and crop_hashes(a) == crop_hashes(b)
    assert crops_digest(a) == crops_digest(b) != crops_digest(c)
    data = check_cls_dataset(str(a))
    assert data["nc"] == 4 and sorted(data["names"].values()) == sorted(CLASSES)
    assert {p.parent.name for p in (a / "train").rglob("*.png")} <= set(CLASSES)
    first = next((a / "train").rglob("*.png"))
    good = first.read_bytes()
    first.write_bytes(b"tampered")
    make_shape_crops(tmp_path / "a", **CROPS_SMALL)
    assert first.read_bytes() == good
    with pytest.raises(ValueError):
        make_shape_crops(tmp_path / "bad", imgsz=16)


def test_classification_calibration_set_uses_the_classifiers_own_dataset(tmp_path):
    """BN re-estimation and INT8 calibration of a classifier draw training images as its validator preprocesses
    them (Ultralytics' ClassificationDataset: 0-1 RGB at imgsz), seeded like detection's."""
    from yolo_leaky.core.repair import calibration_set
    from yolo_leaky.data.crops import make_shape_crops

    root = make_shape_crops(tmp_path / "crops", **CROPS_SMALL)
    files, images, data = calibration_set(root, n=8, imgsz=32, seed=0)
    again, _, _ = calibration_set(root, n=8, imgsz=32, seed=0)
    other, _, _ = calibration_set(root, n=8, imgsz=32, seed=1)
    assert images.shape == (8, 3, 32, 32) and images.dtype.name == "float32"
    assert 0.0 <= images.min() and 0.5 < images.max() <= 1.0  # not 0-255, not divided by 255 twice
    assert files == again != other and all("/train/" in f for f in files) and data["nc"] == 4


def test_a_classifier_is_validated_with_its_own_metrics(tmp_path):
    """compare's validation reads the model's task: a classifier's record holds top-1 and top-5 (values in 0-1),
    a detector's keeps its box metrics (core.tasks)."""
    from types import SimpleNamespace

    from yolo_leaky.core.tasks import METRICS, headline
    from yolo_leaky.data.crops import make_shape_crops
    from yolo_leaky.harness.cells import validate_metrics

    root = make_shape_crops(tmp_path / "crops", **CROPS_SMALL)
    c = SimpleNamespace(imgsz=32, batch=8)
    got = validate_metrics(load("yolo11n-cls.yaml"), c, str(root), "cpu")
    assert list(got) == ["top1", "top5"] and all(0.0 <= v <= 1.0 for v in got.values()), got
    assert headline("classify") == ("top1", "top-1") and list(METRICS["detect"])[-1] == headline("detect")[0]


def test_a_stand_in_row_brings_its_own_data_folder_recipe_and_metrics(tmp_path, monkeypatch):
    """The stand-in table's row decides the data (a classification folder too: its manifest inside it), the recipe
    (in the cache key and the training) and the record's metrics; a 1-epoch classifier row trains for real."""
    from yolo_leaky.core.tasks import task_metrics
    from yolo_leaky.data import standin
    from yolo_leaky.data.crops import make_shape_crops

    row = {
        "data": lambda folder: make_shape_crops(folder / "crops", **CROPS_SMALL),
        "ident": "synthetic shape crops v1 (test)",
        "stands_for": "ImageNet",
        "recipe": {"epochs": 1, "imgsz": 32, "batch": 8, "seed": 0, "deterministic": True},
        "metrics": lambda m: task_metrics(m.results_dict, "classify"),
    }
    monkeypatch.setenv("YOLO_LEAKY_CACHE", str(tmp_path))
    monkeypatch.setitem(standin.TASKS, "classify", row)
    key = standin.recipe_key("yolo11n-cls.yaml")
    lines = []
    weights, record = standin.standin_checkpoint(log=lines.append, model="yolo11n-cls.yaml")
    assert weights.parent.name == f"standin-{key}" and load(weights).task == "classify"
    assert (
        record["task"] == "classify"
        and record["recipe"] == row["recipe"]
        and set(record["metrics"]) == {"top1", "top5"}
    )
    assert record["data_digest"] == json.loads((weights.parent / "crops/manifest.json").read_text())["digest"]
    assert "shape crops data once (1 epochs at imgsz 32" in lines[0] and "not ImageNet" in record["what"]
    monkeypatch.setitem(standin.TASKS, "classify", {**row, "recipe": {**row["recipe"], "epochs": 2}})
    assert standin.recipe_key("yolo11n-cls.yaml") != key  # the recipe is part of the key


# Measured (docs/tasks.md): the classification stand-in's recipe (CLS_RECIPE, seed 0) reached val top-1 0.81 on this
# project's loaded 2-core machine; with the shape filling less of the crop (margins up to 2x) every recipe tried
# stayed at chance (0.27-0.28; chance is 0.25, the largest class 35 of 128 images). The threshold sits far above
# chance and well below the one measurement, which a different CPU's float path may move.
TOP1_THRESHOLD = 0.5


@pytest.mark.slow
def test_the_classification_stand_in_beats_chance():
    from yolo_leaky.data.standin import CLS_RECIPE, standin_checkpoint

    weights, record = standin_checkpoint(model="yolo11n-cls.yaml", log=lambda line: None)
    print(f"classify stand-in: top-1 {record['metrics']['top1']:.3f} in {record['train_seconds']:.0f} s")
    assert load(weights).task == "classify" and record["recipe"] == CLS_RECIPE and "not ImageNet" in record["what"]
    assert record["metrics"]["top1"] >= TOP1_THRESHOLD, record["metrics"]


@pytest.mark.slow
def test_the_classifier_through_the_swap_and_the_bn_repair(tmp_path, monkeypatch):
    """The protocol's first stages on the classification stand-in, with compare's own validation and calibration:
    SiLU after the swap scores exactly what it did before, ReLU scores lower, and BN re-estimation on a calibration
    set built by the classifier's dataset class lifts it (measured: 0.812, 0.812, 0.555, 0.844; docs/tasks.md)."""
    from types import SimpleNamespace

    import torch

    from yolo_leaky.core.repair import calibration_set, repaired
    from yolo_leaky.data.standin import standin_checkpoint
    from yolo_leaky.harness.cells import validate_metrics

    monkeypatch.chdir(tmp_path)  # Ultralytics' validator writes runs/ under the working directory
    weights, record = standin_checkpoint(model="yolo11n-cls.yaml", log=lambda line: None)
    data, c = str(weights.parent / "crops"), SimpleNamespace(imgsz=32, batch=16)
    before = validate_metrics(load(weights), c, data, "cpu")
    assert before == validate_metrics(load(weights, act="silu"), c, data, "cpu")
    assert before["top1"] == pytest.approx(record["metrics"]["top1"])
    relu = load(weights, act="relu")
    swapped = validate_metrics(relu, c, data, "cpu")
    _, images, _ = calibration_set(data, n=64, imgsz=32, seed=0)
    fixed, done = repaired(load(weights), relu, "bn", torch.from_numpy(images))
    after_bn = validate_metrics(fixed, c, data, "cpu")
    print(f"classify stand-in top-1: SiLU {before['top1']:.3f}, relu {swapped['top1']:.3f}, +bn {after_bn['top1']:.3f}")
    assert swapped["top1"] < before["top1"] and after_bn["top1"] > swapped["top1"] and done["bn_layers"] > 0
