"""Converting one model without the grid: ``train model=<silu.pt> act=... repair=...`` repairs the swap exactly as
``compare`` repairs the start of its recovery cells (same calibration draw, same weights), with and without
distillation; a resume never repairs again; bad input is one line. Real training on the offline stand-in and the
synthetic shapes data (imgsz 64, a few batches)."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import TRAIN_KW, run_clis

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


def run_cli(args: list[str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "yolo_leaky.cli", *args],
        cwd=cwd,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=900,
    )


BAD = {  # case: (arguments after the mode, what the one line says)
    "bogus": (["act=relu", "repair=bogus"], "repair='bogus' is not one of none, bn, fit, fit+bn"),
    "no-act": (["repair=bn"], "was loaded without act= (it holds silu); add act=relu, leaky_relu:0.1 or prelu"),
    "fit-on-relu": (["act=relu", "repair=fit"], "repair=fit fits PReLU slopes and act=relu has none; use repair=bn"),
    "calib-alone": (["act=relu", "calib_images=8"], "calib_images= sets how many training images calibrate repair="),
    "from-yaml": (["model=yolo11n.yaml", "act=relu", "repair=bn"], "repair= repairs a pretrained checkpoint right"),
    "val": (["mode=val", "act=relu", "repair=bn"], "repair= applies to train only"),
}


@pytest.fixture(scope="module")
def bad_runs(standin, shapes_yaml, tmp_path_factory) -> dict:
    """Every ``BAD`` case through the real CLI, each in its own empty folder and process (``conftest.run_clis``)."""
    jobs, folders = {}, {}
    for case, (args, _) in BAD.items():
        mode = next((a.split("=")[1] for a in args if a.startswith("mode=")), "train")
        model = next((a for a in args if a.startswith("model=")), f"model={standin[0]}")
        rest = [a for a in args if not a.startswith(("mode=", "model="))]
        folders[case] = tmp_path_factory.mktemp(case)
        jobs[case] = ([mode, model, *rest, f"data={shapes_yaml}", "epochs=1", "imgsz=64"], folders[case], None)
    results = run_clis(jobs)
    return {case: (folders[case], results[case]) for case in BAD}


@pytest.mark.parametrize("case", list(BAD))
def test_cli_refuses_a_repair_it_cannot_do(case, bad_runs):
    """One line naming the problem and the fix, exit 2, no traceback, nothing written."""
    cwd, result = bad_runs[case]
    out = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in out, out[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("yolo-leaky: error: ") and BAD[case][1] in last, last
    assert list(cwd.iterdir()) == []


def test_cli_converts_one_checkpoint(standin, shapes_yaml, tmp_path):
    """The issue's command: ``yolo-leaky train model=<silu.pt> act=relu repair=fit+bn``; fit+bn is bn on ReLU (no
    slope), said on the console, recorded in repair.json and in the run's checkpoints."""
    kw = [f"{k}={v}" for k, v in KW.items()]
    result = run_cli(
        ["train", f"model={standin[0]}", "act=relu", "repair=fit+bn", f"calib_images={CALIB}", f"data={shapes_yaml}"]
        + kw
        + [f"project={tmp_path}", "name=cli"],
        tmp_path,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "repair=fit+bn on act=relu: no slope to fit, so bn" in result.stdout + result.stderr
    record = json.loads((tmp_path / "cli/repair.json").read_text())
    assert (
        record["repair"] == "bn" and record["calibration"]["images"] == CALIB and record["calibration"]["seed"] == SEED
    )
    assert record["source"]["weights"] == str(standin[0]) and record["source"]["sha256"] == standin[1]["weights_sha256"]
    last = load(tmp_path / "cli/weights/last.pt")
    assert last.model.yaml[YAML_KEY]["act"] == "relu"
    assert last.model.yaml[YAML_KEY]["repair"]["calibration"]["digest"] == record["calibration"]["digest"]
    assert dict(take_census(last).sites) == {"ReLU": 77}


def test_repair_line_says_when_no_slope_was_fitted():
    """A single-slope PReLU (``prelu:layer``) has no per-channel slope to fit: the console line says so instead of
    failing on the missing slope statistics."""
    from yolo_leaky.core.train import describe_repair

    fit = {"sites": 0, "skipped": 77, "slope_mean": None, "slope_min": None, "slope_max": None}
    calibration = {"images": 16, "seed": 1, "imgsz": 64, "digest": "0" * 64}
    line = describe_repair({"repair": "fit", "act": "prelu:layer", "fit": fit, "calibration": calibration})
    assert line.startswith("repair=fit on act=prelu:layer: no PReLU site fitted (77 skipped), on 16 training images")
