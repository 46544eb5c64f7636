"""Converting one model without the grid: ``train model=<silu.pt> act=... repair=...`` repairs the swap exactly as
``compare`` repairs the start of its recovery cells (same calibration draw, same weights), with and without
distillation; a resume never repairs again; bad input is one line. Real training on the offline stand-in and the
synthetic shapes data (imgsz 64, a few batches)."""

import json

import pytest
import torch
from conftest import TRAIN_KW

from yolo_leaky.core.census import take_census
from yolo_leaky.core.loading import load
from yolo_leaky.core.swap import YAML_KEY, trained_network
from yolo_leaky.utils.errors import UserError

pytestmark = pytest.mark.slow

SEED = 1  # not Ultralytics' default 0, so a draw that ignored the run's seed would show
CALIB = 16  # not the default 64, so a draw that ignored calib_images would show
KW = {**TRAIN_KW, "seed": SEED, "batch": 8, "val": False, "fraction": 0.125}  # 32 of the 256 training images


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def shapes_yaml(tmp_path_factory):
    from yolo_leaky.data.synthetic import make_shapes_dataset

    return str(make_shapes_dataset(tmp_path_factory.mktemp("shapes") / "shapes"))


@pytest.fixture(scope="module")
def swapped(standin, shapes_yaml, tmp_path_factory):
    """compare's swap stage for SiLU, ReLU and PReLU, repair fit+bn, on the draw of seed ``SEED``."""
    from yolo_leaky.harness.cells import swap_stage
    from yolo_leaky.harness.config import CompareConfig

    c = CompareConfig(
        protocol="recover",
        weights=str(standin[0]),
        data="shapes",
        imgsz=64,
        batch=8,
        variants=["silu", "relu", "prelu"],
        seeds=[SEED],
        calib_images=CALIB,
        repair="fit+bn",
        diagnostics=False,
        project=str(tmp_path_factory.mktemp("swap")),
        name="swap",
    )
    return swap_stage(c, shapes_yaml, "cpu")


def network_at_start(yolo, data, project, name, **kw) -> tuple[dict, dict]:
    """Train until the first step would run; the trained network's state and the trainer's own census of it,
    student and teacher."""
    seen = {}

    def grab(trainer):
        net = trained_network(trainer)
        seen["state"] = {k: v.detach().clone() for k, v in net.state_dict().items()}
        seen["sites"] = dict(take_census(net).sites)
        teacher = getattr(trainer.model, "teacher_model", None)
        seen["teacher"] = None if teacher is None else dict(take_census(teacher).sites)
        seen["yaml"] = net.yaml
        raise Stop

    yolo.add_callback("on_train_start", grab)
    with pytest.raises(Stop):
        yolo.train(data=data, project=str(project), name=name, exist_ok=True, **{**KW, **kw})
    return seen, json.loads((project / name / "repair.json").read_text())


def assert_same_state(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0, msg=k)


def start_state(swap: dict, label: str) -> dict:
    start = swap["variants"][label]["seeds"][str(SEED)]["start"]
    return load(start["path"]).model.state_dict(), start


@pytest.mark.parametrize("act, applied", [("relu", "bn"), ("prelu", "fit+bn")])
def test_repair_starts_training_from_compares_repaired_start(act, applied, swapped, standin, shapes_yaml, tmp_path):
    """``load(pt, act=).train(repair=fit+bn)`` trains, from its first step, the very network compare's recovery
    cells start from (same seed and calibration set): weights equal to the bit, and records what it did."""
    want, start = start_state(swapped, act)
    assert start["repair"] == applied
    seen, record = network_at_start(
        load(standin[0], act=act), shapes_yaml, tmp_path, act, repair="fit+bn", calib_images=CALIB
    )
    assert seen["sites"] == {"ReLU" if act == "relu" else "PReLU": 77}
    assert_same_state(seen["state"], want)
    naive = load(standin[0], act=act).model.state_dict()
    assert any(not torch.equal(naive[k], want[k]) for k in want if k.endswith("running_var"))  # the repair did work
    calibration = swapped["calibration"]["by_seed"][str(SEED)]
    assert record["asked"] == "fit+bn" and record["repair"] == applied and record["act"] == act
    assert (
        record["calibration"]["digest"] == calibration["digest"]
        and record["calibration"]["files"] == calibration["files"]
    )
    assert record["calibration"]["images"] == CALIB and record["calibration"]["seed"] == SEED
    assert ("fit" in record) == (act == "prelu") and record["bn_layers"] > 80
    in_yaml = seen["yaml"][YAML_KEY]["repair"]  # travels in every checkpoint of the run
    assert in_yaml["calibration"]["digest"] == calibration["digest"] and in_yaml["repair"] == applied
    assert "files" not in in_yaml["calibration"]


def test_repair_with_distillation_repairs_the_student_only(swapped, standin, shapes_yaml, tmp_path):
    """``act=prelu repair=fit+bn distill_model=<silu.pt>``: the student starts from compare's repaired start, the
    teacher is the SiLU checkpoint, untouched."""
    want, _ = start_state(swapped, "prelu")
    seen, record = network_at_start(
        load(standin[0], act="prelu"),
        shapes_yaml,
        tmp_path,
        "distill",
        repair="fit+bn",
        calib_images=CALIB,
        distill_model=str(standin[0]),
    )
    assert seen["teacher"] is not None and "SiLU" in seen["teacher"] and "PReLU" not in seen["teacher"]
    assert seen["sites"] == {"PReLU": 77}
    assert_same_state(seen["state"], want)
    assert record["repair"] == "fit+bn"


def trained_state(yolo, data, project, name, **kw) -> dict:
    seen = {}
    yolo.add_callback(
        "on_train_end", lambda trainer: seen.update({k: v.clone() for k, v in trainer.ema.ema.state_dict().items()})
    )
    yolo.train(data=data, project=str(project), name=name, exist_ok=True, **{**KW, **kw})
    return seen


def test_repaired_run_trains_exactly_like_compares_cell(swapped, standin, shapes_yaml, tmp_path):
    """After one epoch, ``train(repair=)`` and a run from compare's saved start checkpoint hold the same weights: the
    repair leaves the run's seeded random streams (augmentation) as they were."""
    path = swapped["variants"]["relu"]["seeds"][str(SEED)]["start"]["path"]
    want = trained_state(load(path), shapes_yaml, tmp_path, "cell")
    got = trained_state(load(standin[0], act="relu"), shapes_yaml, tmp_path, "train", repair="bn", calib_images=CALIB)
    assert_same_state(got, want)


def test_resume_never_repairs_again(standin, shapes_yaml, tmp_path, monkeypatch):
    """A repaired run, stopped after its first epoch, resumes without repairing: with the same repair= (accepted, as
    a user re-types the command) or none; another repair= is refused."""
    import yolo_leaky.core.train as train_module

    calls = []
    stock = train_module.repair_swap
    monkeypatch.setattr(train_module, "repair_swap", lambda *a, **k: calls.append(a[3]) or stock(*a, **k))
    yolo = load(standin[0], act="prelu")

    def stop(trainer):  # last.pt of epoch 0 is saved before on_fit_epoch_end runs
        raise Stop

    yolo.add_callback("on_fit_epoch_end", stop)
    with pytest.raises(Stop):
        yolo.train(
            data=shapes_yaml,
            project=str(tmp_path),
            name="run",
            repair="fit+bn",
            calib_images=CALIB,
            **{**KW, "epochs": 2},
        )
    assert calls == ["fit+bn"]
    last, written = tmp_path / "run/weights/last.pt", (tmp_path / "run/repair.json").read_bytes()
    with pytest.raises(UserError, match=r"was repaired with fit\+bn before the first step\); drop repair="):
        load(last).train(resume=True, repair="bn")
    for again in ({"repair": "fit+bn"}, {}):
        resumed = load(last)
        resumed.add_callback("on_train_epoch_start", stop)
        with pytest.raises(Stop):
            resumed.train(resume=True, **again)
        assert resumed.trainer.start_epoch == 1  # it did resume
    assert calls == ["fit+bn"]  # no second repair
    assert (tmp_path / "run/repair.json").read_bytes() == written
