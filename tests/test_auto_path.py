"""weights=auto: which path the default command takes (COCO-pretrained yolo11n.pt on COCO8, or the offline
stand-in), and why; tested without a network by standing in for the download."""

import pytest

from yolo_leaky.config import load_config


def test_offline_takes_the_standin_and_says_why(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = load_config([])
    assert (c.weights, c.data, c.name, c.imgsz, c.protocol) == ("standin", "shapes", "standin-shapes", 64, "recover")
    assert c.train_args["lr0"] == 0.0001 and c.recovery == ["finetune", "distill"] and c.repair == "fit+bn"
    assert "YOLO_OFFLINE is set" in c.path_note and "not COCO" in c.path_note


def test_a_local_yolo11n_takes_the_coco_path_offline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "yolo11n.pt").write_bytes(b"weights")  # only its presence is looked at here
    c = load_config([])
    assert (c.weights, c.data, c.name, c.imgsz) == ("yolo11n.pt", "coco8.yaml", "coco8-yolo11n", 640)
    assert "found at yolo11n.pt" in c.path_note
    assert "mosaic" not in c.train_args and c.train_args["warmup_epochs"] == 0  # the stand-in's recipe stays out


def test_connected_machine_downloads_yolo11n_and_takes_the_coco_path(tmp_path, monkeypatch):
    import ultralytics.utils.downloads as downloads

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("YOLO_OFFLINE")
    monkeypatch.setattr("yolo_leaky.data.is_offline", lambda: False)
    fetched = []

    def download(name):
        fetched.append(name)
        (tmp_path / name).write_bytes(b"weights")
        return name

    monkeypatch.setattr(downloads, "attempt_download_asset", download)
    c = load_config(["seeds=[0]"])
    assert fetched == ["yolo11n.pt"] and c.weights == "yolo11n.pt" and c.data == "coco8.yaml"
    assert "downloaded" in c.path_note and c.seeds == [0]


def test_a_failed_download_falls_back_to_the_standin_and_says_why(tmp_path, monkeypatch):
    import ultralytics.utils.downloads as downloads

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("YOLO_OFFLINE")
    monkeypatch.setattr("yolo_leaky.data.is_offline", lambda: False)

    def download(name):
        raise ConnectionError("github.com unreachable")

    monkeypatch.setattr(downloads, "attempt_download_asset", download)
    c = load_config([])
    assert c.weights == "standin" and "could not be downloaded (ConnectionError)" in c.path_note


@pytest.mark.parametrize("tokens", [["weights=my.pt"], ["protocol=scratch"]])
def test_explicit_choices_bypass_auto(tmp_path, monkeypatch, tokens):
    monkeypatch.chdir(tmp_path)
    c = load_config(tokens)
    assert c.path_note is None and c.data == "coco8.yaml" and c.name == "coco8"
    assert c.weights == ("my.pt" if tokens == ["weights=my.pt"] else "auto")
