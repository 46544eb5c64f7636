"""Unit health and PReLU slope diagnostics on real yolo11n models and a writable COCO8 copy."""

import json
from types import SimpleNamespace

import pytest
import torch
from conftest import TRAIN_KW
from torch import nn

from yolo_leaky import load
from yolo_leaky.measure.diagnostics import (
    activation_sites,
    format_unit_health,
    prelu_slopes,
    summarize_slopes,
    track_unit_health,
    unit_health,
)

YOLO11N_SITES = 77
KILLED = "model.2.cv1"  # a Conv whose BN bias we drive far negative: its activation input is < 0 everywhere


def health(act, data, kill: bool = False) -> dict:
    yolo = load("yolo11n.yaml", act=act)
    if kill:
        with torch.no_grad():
            yolo.model.get_submodule(KILLED).bn.bias.fill_(-100.0)
    return unit_health(yolo, str(data), imgsz=64, batch=4)


def site(d: dict, path: str) -> dict:
    return next(e for e in d["per_layer"] if e["site"] == path)


@pytest.mark.parametrize(
    "act, measure, kind",
    [("relu", "dead", "ReLU"), ("silu", "negative_only", "SiLU"), ("prelu", "negative_only", "PReLU")],
)
def test_structure_and_ranges(act, measure, kind, coco8_yaml):
    d = health(act, coco8_yaml)
    json.dumps(d)  # JSON-able
    assert d["measure"] == measure
    assert len(d["per_layer"]) == YOLO11N_SITES
    assert len({e["site"] for e in d["per_layer"]}) == YOLO11N_SITES
    assert {e["type"] for e in d["per_layer"]} == {kind}
    for e in d["per_layer"]:
        assert e["channels"] > 0
        for key in ("dead_or_negative_only", "near_zero_grad", "near_zero_grad_input"):
            assert 0.0 <= e[key] <= 1.0, (e, key)
    t = d["total"]
    assert t["sites"] == YOLO11N_SITES and t["channels"] == sum(e["channels"] for e in d["per_layer"])
    assert 0.0 <= t["dead_or_negative_only"] < 1.0 and 0.0 <= t["near_zero_grad"] < 1.0
    assert d["images"] == 4  # COCO8 has 4 val images
    text = format_unit_health(d)
    assert measure.replace("_", "-") in text and f"{YOLO11N_SITES} sites" in text


def test_killed_relu_site_is_dead_and_gets_no_gradient(coco8_yaml):
    d = health("relu", coco8_yaml, kill=True)
    e = site(d, f"{KILLED}.act")
    assert e["dead_or_negative_only"] == 1.0
    assert e["near_zero_grad_input"] == 1.0  # nothing reaches the conv/BN feeding a dead ReLU
    assert d["total"]["dead_or_negative_only_sites_all"] >= 1
    assert site(d, "model.0.act")["dead_or_negative_only"] < 1.0


def test_killed_leaky_site_is_negative_only_but_still_learns(coco8_yaml):
    d = health("leaky_relu:0.1", coco8_yaml, kill=True)
    e = site(d, f"{KILLED}.act")
    assert d["measure"] == "negative_only" and e["type"] == "LeakyReLU"
    assert e["dead_or_negative_only"] == 1.0
    assert e["near_zero_grad_input"] == 0.0  # the 0.1 slope still passes gradient


def test_stock_shared_silu_is_measured_per_site_and_model_untouched(coco8_yaml):
    yolo = load("yolo11n.yaml")  # stock: one Conv.default_act SiLU shared by every Conv
    sites = activation_sites(yolo.model)
    assert len(sites) == YOLO11N_SITES and len({id(m) for _, m in sites}) < YOLO11N_SITES
    before = {k: v.clone() for k, v in yolo.model.state_dict().items()}
    d = unit_health(yolo, str(coco8_yaml), imgsz=64, batch=4)
    assert len(d["per_layer"]) == YOLO11N_SITES
    after = yolo.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats untouched
    assert all(p.grad is None for p in yolo.model.parameters())


def test_inplace_flags_survive(coco8_yaml):
    yolo = load("yolo11n.yaml", act="relu")
    flags = [m.inplace for _, m in activation_sites(yolo.model)]
    assert any(flags)
    unit_health(yolo, str(coco8_yaml), imgsz=64, batch=4, max_images=2)
    assert [m.inplace for _, m in activation_sites(yolo.model)] == flags


def set_slopes(yolo, values: dict[int, float]) -> None:
    prelus = [m for _, m in activation_sites(yolo.model) if isinstance(m, nn.PReLU)]
    with torch.no_grad():
        for i, v in values.items():
            prelus[i].weight.fill_(v)


def test_prelu_slopes_classification():
    yolo = load("yolo11n.yaml", act="prelu")
    set_slopes(yolo, {0: 0.01, 1: 0.95, 2: -0.2})
    slopes = prelu_slopes(yolo)
    assert len(slopes) == YOLO11N_SITES
    assert [s["drift"] for s in slopes[:4]] == ["relu_like", "linear", "negative", "moderate"]
    assert slopes[0]["init"] == 0.25 and slopes[2]["shift"] == pytest.approx(-0.45)
    assert slopes[1]["counts"]["linear"] == slopes[1]["n"] == 32  # per channel: model.1 has 32 channels
    s = summarize_slopes(slopes)
    assert s["sites"] == YOLO11N_SITES
    assert s["sites_by_drift"] == {"negative": 1, "relu_like": 1, "moderate": YOLO11N_SITES - 3, "linear": 1}
    assert s["min"] == pytest.approx(-0.2) and s["max"] == pytest.approx(0.95)
    assert summarize_slopes(yolo) == s


def test_prelu_slopes_mixed_site_and_layer_mode_and_init():
    yolo = load("yolo11n.yaml", act="prelu:layer:0.1")
    slopes = prelu_slopes(yolo)
    assert {s["n"] for s in slopes} == {1} and {s["init"] for s in slopes} == {0.1}
    yolo = load("yolo11n.yaml", act="prelu")
    first = [m for _, m in activation_sites(yolo.model) if isinstance(m, nn.PReLU)][0]
    with torch.no_grad():
        first.weight.copy_(torch.tensor([-0.1] * 4 + [0.02] * 12))  # 16 channels, median in the relu-like band
    s = prelu_slopes(yolo)[0]
    assert s["drift"] == "relu_like" and s["counts"] == {"negative": 4, "relu_like": 12, "moderate": 0, "linear": 0}
    assert prelu_slopes(load("yolo11n.yaml", act="relu")) == []


def test_callback_records_history_atomically(coco8_yaml, tmp_path):
    yolo = load("yolo11n.yaml", act="relu")
    trainer = SimpleNamespace(model=yolo.model, epoch=0, epochs=3, save_dir=tmp_path, data=str(coco8_yaml))
    cb = track_unit_health(every=2, max_images=2)
    state = torch.random.get_rng_state()
    for epoch in range(4):  # epoch 3 (shown as 4) is Ultralytics' final_eval re-firing the event: skipped
        trainer.epoch = epoch
        cb(trainer)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert [h["epoch"] for h in trainer.unit_health_history] == [2, 3]  # every 2nd epoch, and the last
    saved = json.loads((tmp_path / "unit_health.json").read_text())
    assert saved == trainer.unit_health_history and saved[0]["measure"] == "dead"
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.slow
def test_callback_in_real_training(coco8_yaml, tmp_path):
    yolo = load("yolo11n.yaml", act="prelu")
    yolo.add_callback("on_fit_epoch_end", track_unit_health(str(coco8_yaml), max_images=4))
    yolo.train(data=str(coco8_yaml), project=str(tmp_path), name="run", exist_ok=True, **{**TRAIN_KW, "epochs": 2})
    history = json.loads((tmp_path / "run" / "unit_health.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(h["sites"] == YOLO11N_SITES and h["measure"] == "negative_only" for h in history)


def test_callback_measures_the_student_alone_when_distilling(coco8_yaml, tmp_path):
    """A distill cell's trainer holds Ultralytics' DistillationModel (SiLU teacher, ReLU projectors, student): the
    unit health tracked during training is the student's alone, exactly what ``unit_health`` gives for the student
    (77 ReLU sites, all of them dead-measured), not teacher + projectors + student."""
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.distill_model import DistillationModel

    student = load("yolo11n.yaml", act="relu").model
    student.args = get_cfg(overrides={"imgsz": 64})  # what the trainer gives its model (imgsz, dis)
    wrapper = DistillationModel(teacher_model=load("yolo11n.yaml").model, student_model=student)
    assert len(activation_sites(wrapper)) > YOLO11N_SITES  # the wrapper has more sites than the student
    batch = {
        "img": torch.rand(2, 3, 64, 64),
        "cls": torch.zeros(1, 1),
        "bboxes": torch.tensor([[0.5, 0.5, 0.3, 0.3]]),
        "batch_idx": torch.zeros(1),
    }
    wrapper.train()
    wrapper.loss(batch)[0].sum().backward()  # a training step: its feature hooks now hold non-leaf tensors
    trainer = SimpleNamespace(model=wrapper, epoch=0, epochs=1, save_dir=tmp_path, data=str(coco8_yaml))
    track_unit_health(max_images=4)(trainer)
    (tracked,) = trainer.unit_health_history
    alone = unit_health(student, str(coco8_yaml), max_images=4)
    assert tracked == {"epoch": 1, "measure": "dead", **alone["total"]}
    assert tracked["sites"] == YOLO11N_SITES and tracked["channels"] == sum(e["channels"] for e in alone["per_layer"])
