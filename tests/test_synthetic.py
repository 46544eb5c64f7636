"""The synthetic shapes dataset: deterministic bytes, valid YOLO labels, reuse, and real learnability from scratch."""

import hashlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolo_leaky.data.synthetic import CLASSES, MANIFEST, TRAIN_RECIPE, dataset_digest, make_shapes_dataset

# What this test claims: each swapped network learns (far above chance), not which activation is better.
# Design: one seed per activation, with a threshold derived from the measured spread, because one seed of a short
# run moves a lot between CPUs (float kernels differ by instruction set, and training amplifies the difference).
# Measured mAP50 with TRAIN_RECIPE (yolo11n from scratch, deterministic, torch 2.14 CPU):
# - this project's 2-core machine, seeds 0-3: silu 0.701 0.664 0.670 0.631; relu 0.602 0.519 0.479 0.611;
#   leaky_relu:0.1 0.636 0.614 0.545 0.638; prelu 0.684 0.547 0.467 0.550 (lowest of 16: 0.467);
# - a 2-core AMD EPYC about 3x faster, seed 0: silu 0.618, relu 0.274, leaky_relu:0.1 0.557, prelu 0.594.
# The lowest run seen anywhere is 0.274, 4.5 standard deviations below relu's mean over seeds here (0.55 +/- 0.06):
# a CPU's float path can land outside the seed spread. An untrained detector scores 0.000 on this val set. The
# threshold, 0.15, sits at about half the worst run seen and far above chance.
MAP50_THRESHOLD = 0.15
SMALL = dict(n_train=8, n_val=4, n_tune=4, imgsz=64)


def file_hashes(root) -> dict:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in (".png", ".txt")
    }


@pytest.fixture(scope="session")
def shapes_yaml(tmp_path_factory):
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"))


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = make_shapes_dataset(tmp_path / "a", **SMALL).parent
    b = make_shapes_dataset(tmp_path / "b", **SMALL).parent
    c = make_shapes_dataset(tmp_path / "c", **SMALL, seed=1).parent
    assert len(file_hashes(a)) == 2 * (8 + 4 + 4)
    assert file_hashes(a) == file_hashes(b)
    assert dataset_digest(a) == dataset_digest(b) != dataset_digest(c)


def image_digests(root, split) -> set:
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in (root / "images" / split).glob("*.png")}


def test_tune_split_is_disjoint_from_val_and_leaves_train_and_val_unchanged(shapes_yaml, tmp_path):
    """Settings are tuned on a split of their own (lr0 of recovery, cfg/compare.yaml): the default dataset has 64
    tune images, none of them a validation (or training) image; adding the split changes no train or val byte, so
    the stand-in pretrained before it existed stays valid; and the same seed gives the same tune bytes."""
    from ultralytics.data.utils import check_det_dataset

    from yolo_leaky.data.synthetic import tune_yaml

    root = shapes_yaml.parent
    tune, val, train = (image_digests(root, split) for split in ("tune", "val", "train"))
    assert len(tune) == 64 and len(val) == 64 and not tune & val and not tune & train
    data = check_det_dataset(str(tune_yaml(shapes_yaml)), autodownload=False)
    assert Path(data["val"]) == root / "images/tune" and Path(data["train"]) == root / "images/train"
    with_tune = file_hashes(make_shapes_dataset(tmp_path / "a", **SMALL).parent)
    again = file_hashes(make_shapes_dataset(tmp_path / "b", **SMALL).parent)
    without = file_hashes(make_shapes_dataset(tmp_path / "c", **{**SMALL, "n_tune": 0}).parent)
    assert with_tune == again and len([k for k in with_tune if "/tune/" in k]) == 2 * 4
    assert {k: v for k, v in with_tune.items() if "/tune/" not in k} == without
    with pytest.raises(ValueError, match="no tune split"):
        tune_yaml(tmp_path / "c" / "shapes.yaml")


def test_reused_when_matching_regenerated_otherwise(tmp_path):
    root = tmp_path / "d"
    yaml_path = make_shapes_dataset(root, **SMALL)
    image = root / "images/train/train_00000.png"
    stamp = image.stat().st_mtime_ns
    assert make_shapes_dataset(root, **SMALL) == yaml_path and image.stat().st_mtime_ns == stamp  # reused
    good = image.read_bytes()
    image.write_bytes(b"tampered")
    make_shapes_dataset(root, **SMALL)
    assert image.read_bytes() == good  # a changed file fails the digest: regenerated, same bytes
    make_shapes_dataset(root, **{**SMALL, "n_train": 5})
    assert len(list((root / "images/train").glob("*.png"))) == 5
    assert not (root / "images/train/train_00007.png").exists()
    assert json.loads((root / MANIFEST).read_text())["params"]["n_train"] == 5


def test_bad_parameters_are_refused(tmp_path):
    for kw in ({"imgsz": 32}, {"imgsz": 200}, {"n_val": 0}, {"size_range": (0.6, 0.3)}):
        with pytest.raises(ValueError):
            make_shapes_dataset(tmp_path / "bad", **{**SMALL, **kw})


def test_labels_are_valid_yolo_format(shapes_yaml):
    root = shapes_yaml.parent
    per_split = {}
    for split in ("train", "val"):
        images = sorted((root / "images" / split).glob("*.png"))
        assert images
        counts = np.zeros(len(CLASSES), int)
        for img_path in images:
            img = cv2.imread(str(img_path))
            assert img.shape == (64, 64, 3)
            lines = (root / "labels" / split / f"{img_path.stem}.txt").read_text().splitlines()
            assert lines, img_path  # every image has at least one shape
            for line in lines:
                fields = line.split()
                assert len(fields) == 5 and fields[0].isdigit()
                cls, (x, y, w, h) = int(fields[0]), map(float, fields[1:])
                assert 0 <= cls < len(CLASSES)
                assert all(0 < v <= 1 for v in (x, y, w, h))
                assert x - w / 2 >= 0 and x + w / 2 <= 1 and y - h / 2 >= 0 and y + h / 2 <= 1
                assert w * 64 >= 0.3 * 64 - 2  # at least the smallest drawn size
                counts[cls] += 1
        per_split[split] = counts
    assert (per_split["train"] >= 40).all() and (per_split["val"] >= 8).all()  # every class in both splits


def test_ultralytics_reads_the_yaml(shapes_yaml):
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(shapes_yaml), autodownload=False)
    assert data["nc"] == len(CLASSES) and list(data["names"].values()) == list(CLASSES)
    assert data["val"].endswith("images/val")


LEARN_SCRIPT = """
import json, sys, time
import torch
torch.set_num_threads(1)
from yolo_leaky import load
from yolo_leaky.data.synthetic import TRAIN_RECIPE
act, data, project = sys.argv[1:4]
start = time.perf_counter()
metrics = load("yolo11n.yaml", act=act).train(
    data=data, project=project, name=act.replace(":", ""), exist_ok=True, workers=0, plots=False, amp=False,
    seed=0, deterministic=True, verbose=False, **TRAIN_RECIPE)
print(json.dumps({"map50": metrics.results_dict["metrics/mAP50(B)"], "seconds": time.perf_counter() - start}))
"""
LEARN_ACTS = ["silu", "relu", "leaky_relu:0.1", "prelu"]


def _learn(act: str, data: Path, project: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", LEARN_SCRIPT, act, str(data), str(project)],
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def learned(shapes_yaml, standin, tmp_path_factory) -> dict:
    """Each variant trained from scratch with the same recipe. SiLU's run is the offline stand-in (``standin.py``):
    the unswapped yolo11n trained with TRAIN_RECIPE, seed 0, on these same shapes data, and scored on their val
    split; the session trains it once (or takes it from a warm cache) for the modules that use it, so it is not
    trained a second time here. The swapped variants train three at a time, one thread each (at 64 px a second
    thread per process buys little; a third process keeps both cores busy while one finishes)."""
    from yolo_leaky.data.standin import RECIPE

    _, record = standin
    assert record["recipe"] == RECIPE == {**TRAIN_RECIPE, "seed": 0, "deterministic": True}, record["recipe"]
    # the same train and val bytes: the stand-in's data digest is these data's, with or without the tune split (a
    # stand-in made before the split existed is still valid, test_tune_split_is_disjoint_from_val_and_...)
    project = tmp_path_factory.mktemp("learn")
    without_tune = make_shapes_dataset(project / "shapes-without-tune", n_tune=0).parent
    digests = {dataset_digest(shapes_yaml.parent), dataset_digest(without_tune)}
    assert record["data_digest"] in digests and record["model"] == "yolo11n.yaml", (record["data_digest"], digests)
    swapped = [act for act in LEARN_ACTS if act != "silu"]
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {act: pool.submit(_learn, act, shapes_yaml, project) for act in swapped}
        results = {act: f.result() for act, f in futures.items()}
    return {"silu": {"map50": record["metrics"]["map50"], "seconds": record["train_seconds"]}, **results}


@pytest.mark.slow
@pytest.mark.parametrize("act", LEARN_ACTS)
def test_learnable_from_scratch(act, learned):
    print(f"{act}: mAP50 {learned[act]['map50']:.3f} in {learned[act]['seconds']:.0f} s")
    assert learned[act]["map50"] >= MAP50_THRESHOLD, f"{act}: mAP50 {learned[act]['map50']:.3f} < {MAP50_THRESHOLD}"
