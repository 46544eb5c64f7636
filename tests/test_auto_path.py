"""weights=auto: which path the default command takes (COCO-pretrained yolo11n.pt on COCO8, or the offline
stand-in), and why; tested without a network by standing in for the download."""

from pathlib import Path

import pytest

from yolo_leaky.harness.config import load_config


def test_offline_takes_the_standin_and_says_why(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = load_config([])
    assert (c.weights, c.data, c.name, c.imgsz, c.protocol) == ("standin", "shapes", "standin-shapes", 64, "recover")
    assert c.train_args["lr0"] == 0.0001 and c.recovery == "auto" and c.repair == "fit+bn"
    assert "YOLO_OFFLINE is set" in c.path_note and "not COCO" in c.path_note


def test_a_local_yolo11n_takes_the_coco_path_offline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "yolo11n.pt").write_bytes(b"weights")  # only its presence is looked at here
    c = load_config([])
    assert (c.weights, c.data, c.name, c.imgsz) == (str(tmp_path / "yolo11n.pt"), "coco8.yaml", "coco8-yolo11n", 640)
    assert f"found at {tmp_path / 'yolo11n.pt'}" in c.path_note
    assert "mosaic" not in c.train_args and c.train_args["warmup_epochs"] == 0  # the stand-in's recipe stays out


def test_connected_machine_downloads_yolo11n_and_takes_the_coco_path(tmp_path, monkeypatch):
    import ultralytics.utils.downloads as downloads

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("YOLO_OFFLINE")
    monkeypatch.setattr("yolo_leaky.core.offline.is_offline", lambda: False)
    fetched = []

    def download(name):
        fetched.append(name)
        (tmp_path / name).write_bytes(b"weights")
        return name

    monkeypatch.setattr(downloads, "attempt_download_asset", download)
    c = load_config(["seeds=[0]"])
    assert fetched == ["yolo11n.pt"] and c.weights == str(tmp_path / "yolo11n.pt") and c.data == "coco8.yaml"
    assert "downloaded" in c.path_note and c.seeds == [0]


def test_a_failed_download_falls_back_to_the_standin_and_says_why(tmp_path, monkeypatch):
    import ultralytics.utils.downloads as downloads

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("YOLO_OFFLINE")
    monkeypatch.setattr("yolo_leaky.core.offline.is_offline", lambda: False)

    def download(name):
        raise ConnectionError("github.com unreachable")

    monkeypatch.setattr(downloads, "attempt_download_asset", download)
    c = load_config([])
    assert c.weights == "standin" and "could not be downloaded (ConnectionError)" in c.path_note


def test_yolo11n_in_ultralytics_weights_dir_is_used_by_its_full_path_and_pinned(tmp_path, monkeypatch, coco8):
    """yolo11n.pt only in Ultralytics' weights_dir, working from another folder, offline: weights=auto (default or
    explicit) names that file by its full path, so the run loads it; the run's fingerprint carries its SHA-256, so
    other bytes under the same name make a different run."""
    import ultralytics.utils
    from ultralytics import YOLO

    from yolo_leaky.core.offline import COCO8_ENV
    from yolo_leaky.data.datasets import file_digest, locate_data
    from yolo_leaky.harness.compare import check_weights, content_fingerprint

    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    saved = weights_dir / "yolo11n.pt"
    YOLO("yolo11n.yaml").save(str(saved))  # a real checkpoint under the released name (not COCO-trained)
    monkeypatch.setattr(ultralytics.utils, "SETTINGS", {**ultralytics.utils.SETTINGS, "weights_dir": str(weights_dir)})
    monkeypatch.setenv(COCO8_ENV, str(coco8))
    monkeypatch.chdir(tmp_path)
    for tokens in ([], ["weights=auto"]):
        c = load_config(tokens)
        assert (c.weights, c.data) == (str(saved), "coco8.yaml") and Path(c.weights).is_absolute(), tokens
        assert str(saved) in c.path_note
    located = locate_data(c.data)
    check_weights(c, located)  # loads the file: the bare name "yolo11n.pt" is not here, and this machine is offline
    first = content_fingerprint(c, located)["weights_digest"]
    assert first == file_digest(saved)
    changed = YOLO(str(saved))
    next(changed.model.parameters()).data += 1
    changed.save(str(saved))  # other bytes under the same name
    second = content_fingerprint(load_config([]), located)["weights_digest"]
    assert second == file_digest(saved) and second != first


@pytest.mark.parametrize("tokens", [["weights=my.pt"], ["protocol=scratch"]])
def test_explicit_choices_bypass_auto(tmp_path, monkeypatch, tokens):
    monkeypatch.chdir(tmp_path)
    c = load_config(tokens)
    assert c.path_note is None and c.data == "coco8.yaml" and c.name == "coco8"
    assert c.weights == ("my.pt" if tokens == ["weights=my.pt"] else "auto")


# ------------------------------------------------------------------ every task (issue 21)
TASK_PATHS = {  # model -> (its pretrained checkpoint, its small dataset, the stand-in's run name)
    "yolo11n-seg.yaml": ("yolo11n-seg.pt", "coco8-seg.yaml", "standin-shapes-segment"),
    "yolo11n-pose.yaml": ("yolo11n-pose.pt", "coco8-pose.yaml", "standin-shapes-pose"),
    "yolo11n-obb.yaml": ("yolo11n-obb.pt", "dota8.yaml", "standin-shapes-obb"),
    "yolo11n-cls.yaml": ("yolo11n-cls.pt", "imagenet10", "standin-crops"),
}


@pytest.mark.parametrize("model", TASK_PATHS)
def test_a_task_model_takes_its_own_checkpoint_and_data_when_connected(tmp_path, monkeypatch, model):
    """weights=auto with a segment, pose, OBB or classify model downloads that task's checkpoint (never yolo11n.pt)
    and takes its small dataset; the download is stood in for, nothing reaches the network."""
    import ultralytics.utils.downloads as downloads

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("YOLO_OFFLINE")
    monkeypatch.setattr("yolo_leaky.core.offline.is_offline", lambda: False)
    fetched = []

    def download(name):
        fetched.append(name)
        (tmp_path / name).write_bytes(b"weights")
        return name

    monkeypatch.setattr(downloads, "attempt_download_asset", download)
    weights, data, _ = TASK_PATHS[model]
    c = load_config([f"model={model}"])
    assert fetched == [weights] and c.weights == str(tmp_path / weights) and c.data == data, (fetched, c)
    assert f"{weights} (" in c.path_note and "downloaded" in c.path_note


@pytest.mark.parametrize("model", TASK_PATHS)
def test_a_task_model_offline_takes_its_own_standin_and_says_why(tmp_path, monkeypatch, model):
    monkeypatch.chdir(tmp_path)
    weights, _, name = TASK_PATHS[model]
    c = load_config([f"model={model}"])
    assert (c.weights, c.data, c.name) == ("standin", "shapes", name)
    assert f"YOLO_OFFLINE is set and {weights} is not here" in c.path_note
    if model == "yolo11n-cls.yaml":  # the classifier's stand-in was trained on 32 px crops: --quick keeps 32
        assert c.imgsz == 32 and load_config([f"model={model}"], quick=True).imgsz == 32
        assert c.train_args["erasing"] == 0.0 and c.train_args["auto_augment"] is None  # its recipe's augmentation
    else:
        assert c.imgsz == 64


def test_a_task_checkpoint_here_is_used_offline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "yolo11n-pose.pt").write_bytes(b"weights")  # only its presence is looked at here
    (tmp_path / "yolo11n.pt").write_bytes(b"weights")  # detection's checkpoint is not taken for a pose model
    c = load_config(["model=yolo11n-pose.yaml"])
    assert (c.weights, c.data, c.name) == (
        str(tmp_path / "yolo11n-pose.pt"),
        "coco8-pose.yaml",
        "coco8-pose-yolo11n-pose",
    )


def test_a_task_dataset_offline_is_one_line(tmp_path, monkeypatch):
    """The connected path's stock dataset, offline and not downloaded before, is one line naming it."""
    import ultralytics.utils

    from yolo_leaky.data.datasets import locate_data
    from yolo_leaky.utils.errors import UserError

    datasets = tmp_path / "datasets"
    monkeypatch.setattr(ultralytics.utils, "SETTINGS", {**ultralytics.utils.SETTINGS, "datasets_dir": str(datasets)})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"dataset coco8-seg.yaml is not in .* this machine is offline"):
        locate_data("coco8-seg.yaml", "segment")
    (datasets / "coco8-seg").mkdir(parents=True)  # downloaded before: Ultralytics finds it by name
    assert locate_data("coco8-seg.yaml", "segment") == "coco8-seg.yaml"
