"""Epoch time is the training loop alone. (The significance branch on real metrics, final-epoch scoring, the train
arguments of every cell and the identity floor are tested on the recovery protocol's run: test_recovery.py.)"""

import time

import pytest

pytestmark = pytest.mark.slow


def test_epoch_time_leaves_out_validation_and_diagnostics(tmp_path, coco8_yaml):
    """Every validation and every on_fit_epoch_end callback (unit-health tracking) falls outside the timed span."""
    from conftest import TRAIN_KW

    from yolo_leaky import load
    from yolo_leaky.harness.cells import EpochTimer
    from yolo_leaky.measure.diagnostics import track_unit_health

    yolo = load("yolo11n.yaml", act="relu")
    timer = EpochTimer()
    timer.attach(yolo)
    outside = []
    yolo.add_callback("on_val_start", lambda v: outside.append(time.perf_counter()))
    health = track_unit_health(str(coco8_yaml), imgsz=64)
    yolo.add_callback("on_fit_epoch_end", lambda t: (outside.append(time.perf_counter()), health(t)))
    yolo.train(data=str(coco8_yaml), project=str(tmp_path), name="t", **{**TRAIN_KW, "epochs": 2, "val": True})
    assert len(timer.intervals) == 2 and len(outside) >= 4
    for stamp in outside:
        assert not any(start <= stamp <= end for start, end in timer.intervals)
    assert timer.typical() == timer.seconds[1]
