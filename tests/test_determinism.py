"""Same seed and settings on CPU give the same training, run to run."""

import csv

import pytest
import torch
from conftest import TRAIN_KW

from yolo_leaky import load

pytestmark = pytest.mark.slow


def _train(coco8_yaml, project, name):
    yolo = load("yolo11n.yaml", act="prelu")
    yolo.train(data=str(coco8_yaml), project=str(project), name=name, exist_ok=True, **{**TRAIN_KW, "epochs": 2})
    rows = list(csv.DictReader(open(project / name / "results.csv")))
    weights = torch.load(project / name / "weights/last.pt", weights_only=False)
    return [{k.strip(): v for k, v in r.items() if k.strip() != "time"} for r in rows], weights["ema"] or weights[
        "model"
    ]


def test_two_runs_with_one_seed_agree(coco8_yaml, tmp_path):
    rows_a, model_a = _train(coco8_yaml, tmp_path, "a")
    rows_b, model_b = _train(coco8_yaml, tmp_path, "b")
    assert len(rows_a) == 2
    assert rows_a == rows_b  # losses, metrics and learning rates, digit for digit
    losses = [float(r["train/box_loss"]) for r in rows_a]
    assert all(loss > 0 for loss in losses)
    sd_a, sd_b = model_a.state_dict(), model_b.state_dict()
    assert sd_a.keys() == sd_b.keys()
    for key in sd_a:
        assert torch.equal(sd_a[key], sd_b[key]), key
