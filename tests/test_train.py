"""Real training on COCO8: the swap survives Ultralytics' rebuilds (new run, warm start, resume) and the
checkpoints load in stock Ultralytics."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import TRAIN_KW
from torch import nn

from yolo_leaky import load, take_census

pytestmark = pytest.mark.slow
ACT_TYPE = {"leaky_relu:0.1": "LeakyReLU", "prelu": "PReLU", "relu": "ReLU", "silu": "SiLU"}


def census_inside_trainer(yolo) -> list:
    """Record the census of the model the trainer actually optimises (not the object we passed in)."""
    seen = []

    def record(trainer):
        seen.append(
            {
                "epoch": getattr(trainer, "epoch", None),
                "sites": dict(take_census(trainer.model).sites),
                "ema": dict(take_census(trainer.ema.ema).sites),
                "trainer": type(trainer).__name__,
            }
        )

    yolo.add_callback("on_train_start", record)
    yolo.add_callback("on_train_epoch_end", record)
    return seen


class StopAtTrainStart(Exception):
    pass


def record_decay(yolo, stop: bool = True) -> dict:
    """Record the weight decay of every parameter group the trainer built (and, on resume, loaded), per kind of
    parameter in the network it trains (the student, in a distillation), and the optimizer state of the PReLU
    slopes and conv weights by name. Stops the run there unless ``stop`` is False."""
    seen = {}

    def record(trainer):
        groups = trainer.optimizer.param_groups
        decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
        assert len(decay) == sum(len(g["params"]) for g in groups)  # no parameter in two groups
        net = getattr(trainer.model, "student_model", trainer.model)
        modules = dict(net.named_modules())
        slopes = {k: m.weight for k, m in modules.items() if isinstance(m, nn.PReLU)}
        convs = {k: m.weight for k, m in modules.items() if isinstance(m, nn.Conv2d)}
        seen["slopes"] = [decay[id(p)] for p in slopes.values()]
        seen["convs"] = [decay[id(p)] for p in convs.values()]
        projector = getattr(trainer.model, "projector", None)
        if projector is not None:
            seen["projector"] = [decay[id(m.weight)] for m in projector.modules() if isinstance(m, nn.Conv2d)]
        seen["state"] = {
            k: trainer.optimizer.state[p]["exp_avg"].detach().clone()
            for k, p in {**slopes, **convs}.items()
            if "exp_avg" in trainer.optimizer.state.get(p, {})
        }
        if stop:
            raise StopAtTrainStart

    yolo.add_callback("on_train_start", record)
    return seen


def assert_slopes_not_decayed(seen: dict, slopes: int = 77) -> None:
    assert len(seen["slopes"]) == slopes and set(seen["slopes"]) == {0.0}, seen["slopes"]
    assert len(seen["convs"]) > 80 and min(seen["convs"]) > 0, seen["convs"]  # conv weights keep their decay


def train(yolo, data, project, name, **kw):
    yolo.train(data=str(data), project=str(project), name=name, exist_ok=True, **{**TRAIN_KW, **kw})
    return project / name / "weights"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, coco8_yaml):
    """Train leaky_relu, prelu, relu and silu once each (1 epoch, imgsz 64); later tests reuse the weights."""
    project = tmp_path_factory.mktemp("runs")
    out = {}
    for act in ["leaky_relu:0.1", "prelu", "relu", "silu"]:
        yolo = load("yolo11n.yaml", act=act)
        seen = census_inside_trainer(yolo)
        decay = record_decay(yolo, stop=False)
        weights = train(yolo, coco8_yaml, project, act.replace(":", ""))
        out[act] = {"weights": weights, "seen": seen, "decay": decay, "yolo": yolo}
    return out


@pytest.mark.parametrize("act", ["leaky_relu:0.1", "prelu", "relu"])
def test_trainer_optimises_the_swapped_network(runs, act):
    seen = runs[act]["seen"]
    assert len(seen) == 2  # on_train_start and the end of epoch 0
    for record in seen:
        assert record["sites"] == {ACT_TYPE[act]: 77}, record
        assert record["ema"] == {ACT_TYPE[act]: 77}, record
        assert record["trainer"] == "SwapAwareDetectionTrainer"


def test_prelu_slopes_are_trained(runs):
    best = torch.load(runs["prelu"]["weights"] / "last.pt", weights_only=False)
    model = best["ema"] or best["model"]
    slopes = torch.cat([m.weight.float().flatten() for m in model.modules() if isinstance(m, nn.PReLU)])
    assert slopes.numel() == 7192  # one per channel per site
    assert (slopes - 0.25).abs().max() > 1e-4  # they moved: the optimiser saw them


STOCK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from collections import Counter
    from ultralytics import YOLO
    data, image, *checkpoints = sys.argv[1:]
    for weights in checkpoints:  # one interpreter for all: no yolo_leaky module may be imported by any of them
        model = YOLO(weights)
        acts = Counter(type(m).__name__ for m in model.model.modules()
                       if type(m).__name__ in ("SiLU", "ReLU", "LeakyReLU", "PReLU"))
        metrics = model.val(data=data, imgsz=64, batch=4, workers=0, plots=False, verbose=False)
        preds = model.predict(image, imgsz=64, verbose=False)
        onnx = model.export(format="onnx", imgsz=64, simplify=False)
        print(json.dumps({"weights": weights, "acts": acts, "map50": metrics.box.map50, "npred": len(preds),
                          "onnx": str(onnx), "leaked": [m for m in sys.modules if m.startswith("yolo_leaky")]}))
    """
)
STOCK_CASES = [("prelu", "best.pt"), ("prelu", "last.pt"), ("leaky_relu:0.1", "best.pt")]


@pytest.fixture(scope="module")
def stock_loads(runs, coco8, coco8_yaml, tmp_path_factory) -> dict:
    """Each checkpoint in ``STOCK_CASES`` loaded, scored, run and exported by stock Ultralytics, without yolo_leaky
    on the path: one interpreter for all of them (its start would otherwise cost as much as the checks)."""
    folder = tmp_path_factory.mktemp("stock")
    paths = []
    for act, ckpt in STOCK_CASES:
        weights = folder / act.replace(":", "") / ckpt
        weights.parent.mkdir(exist_ok=True)
        weights.write_bytes((runs[act]["weights"] / ckpt).read_bytes())
        paths.append(str(weights))
    result = subprocess.run(
        [sys.executable, "-c", STOCK_SCRIPT, str(coco8_yaml), str(next((coco8 / "images/val").iterdir())), *paths],
        capture_output=True,
        text=True,
        cwd=folder,
        env={**os.environ, "PYTHONPATH": ""},
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    infos = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"weights"')]
    assert [info["weights"] for info in infos] == paths, result.stdout[-3000:]
    return dict(zip(STOCK_CASES, infos))


@pytest.mark.parametrize("act, ckpt", STOCK_CASES)
def test_checkpoints_load_in_stock_ultralytics(stock_loads, act, ckpt):
    info = stock_loads[act, ckpt]
    assert info["leaked"] == []
    assert info["acts"] == {ACT_TYPE[act]: 77}
    assert info["npred"] == 1 and os.path.getsize(info["onnx"]) > 1_000_000


def test_warm_start_from_silu_checkpoint(runs, coco8_yaml, tmp_path):
    silu_ckpt = runs["silu"]["weights"] / "best.pt"
    source = torch.load(silu_ckpt, weights_only=False)
    source_model = source["ema"] or source["model"]
    yolo = load(str(silu_ckpt), act="relu")
    first_conv = {}

    def grab(trainer):
        first_conv["w"] = trainer.model.model[0].conv.weight.detach().clone()
        first_conv["sites"] = dict(take_census(trainer.model).sites)

    yolo.add_callback("on_train_start", grab)
    train(yolo, coco8_yaml, tmp_path, "warm")
    assert first_conv["sites"] == {"ReLU": 77}
    torch.testing.assert_close(first_conv["w"], source_model.model[0].conv.weight.float())  # weights transferred


class StopAfterFirstEpoch(Exception):
    pass


def interrupted_prelu_run(data, project, **kw) -> tuple:
    """A PReLU run stopped after epoch 0 of 2: its last.pt can be resumed. Also returns the optimizer state (Adam's
    ``exp_avg``) of its PReLU slopes and conv weights at the save, by module name."""
    yolo = load("yolo11n.yaml", act="prelu")
    saved_state = {}

    def stop(trainer):  # last.pt of epoch 0 is saved before on_fit_epoch_end runs
        for k, m in trainer.model.named_modules():
            state = trainer.optimizer.state.get(m.weight, {}) if isinstance(m, (nn.PReLU, nn.Conv2d)) else {}
            if "exp_avg" in state:  # not the frozen DFL conv
                saved_state[k] = state["exp_avg"].detach().clone()
        assert sum(isinstance(trainer.model.get_submodule(k), nn.PReLU) for k in saved_state) == 77
        raise StopAfterFirstEpoch

    yolo.add_callback("on_fit_epoch_end", stop)
    with pytest.raises(StopAfterFirstEpoch):
        train(yolo, data, project, "interrupted", epochs=2, **kw)
    return project / "interrupted/weights/last.pt", saved_state


@pytest.mark.parametrize("case", ["new", "new-MuSGD", "warm", "resume", "resume-pre-exemption", "distill"])
def test_prelu_slopes_are_trained_without_weight_decay(case, runs, coco8_yaml, tmp_path, monkeypatch):
    """He et al. 2015 (sec. 2.1) train PReLU slopes without weight decay; Ultralytics would decay them toward 0
    (ReLU). Checked on the optimizer the trainer really uses: a new run (AdamW as Ultralytics picks it for a short
    run, and MuSGD, whose groups are split by learning rate), a warm start from a PReLU checkpoint, a resume
    (also of a last.pt saved with Ultralytics' own grouping, before this exemption), and a distillation cell
    (the student's slopes inside ``DistillationModel``; the projector's convs keep their decay)."""
    if case == "new":
        seen = runs["prelu"]["decay"]
    elif case in ("resume", "resume-pre-exemption"):
        if case == "resume-pre-exemption":
            with monkeypatch.context() as m:
                m.setattr("yolo_leaky.core.train.exempt_slopes_from_decay", lambda optimizer, model: 0)
                last, saved_state = interrupted_prelu_run(coco8_yaml, tmp_path)
        else:
            last, saved_state = interrupted_prelu_run(coco8_yaml, tmp_path)
        saved = torch.load(last, weights_only=False)["optimizer"]["param_groups"]
        stock = case == "resume-pre-exemption"  # Ultralytics' grouping: the 77 slopes among the decayed weights
        assert {g["param_group"]: len(g["params"]) for g in saved} == {
            "weight": 88 + 77 * stock,
            "bn": 81 + 77 * (not stock),
            "bias": 87,
        }
        resumed = load(str(last))
        seen = record_decay(resumed)
        with pytest.raises(StopAtTrainStart):
            resumed.train(resume=True)
        assert set(seen["state"]) == set(saved_state)  # the saved optimizer state was loaded, each to its own param
        for k, v in saved_state.items():
            torch.testing.assert_close(seen["state"][k], v, rtol=1e-3, atol=1e-6)  # fp16 in the checkpoint
    else:
        start = "yolo11n.yaml" if case == "new-MuSGD" else str(runs["prelu"]["weights"] / "last.pt")
        yolo = load(start, act="prelu") if case == "new-MuSGD" else load(start)
        seen = record_decay(yolo)
        extra = {
            "new-MuSGD": {"optimizer": "MuSGD"},
            "warm": {},
            "distill": {"distill_model": str(runs["silu"]["weights"] / "best.pt")},
        }[case]
        with pytest.raises(StopAtTrainStart):
            train(yolo, coco8_yaml, tmp_path, case, **extra)
    assert_slopes_not_decayed(seen)
    if case == "distill":
        assert len(seen["projector"]) >= 4 and min(seen["projector"]) > 0, seen["projector"]


def test_resume_keeps_activation_and_learned_slopes(coco8_yaml, tmp_path):
    yolo = load("yolo11n.yaml", act="prelu")

    def distinctive_slopes(trainer):  # so that a reset to the 0.25 init could not pass for a restore
        gen = torch.Generator().manual_seed(0)
        for model in (trainer.model, trainer.ema.ema):
            for m in model.modules():
                if isinstance(m, nn.PReLU):
                    m.weight.data = torch.rand(m.weight.shape, generator=gen) * 0.5

    def stop(trainer):
        raise StopAfterFirstEpoch  # last.pt of epoch 0 is saved before on_fit_epoch_end runs

    yolo.add_callback("on_train_start", distinctive_slopes)
    yolo.add_callback("on_fit_epoch_end", stop)
    with pytest.raises(StopAfterFirstEpoch):
        train(yolo, coco8_yaml, tmp_path, "resume", epochs=2)
    last = tmp_path / "resume/weights/last.pt"
    saved = torch.load(last, weights_only=False)
    assert saved["epoch"] == 0 and saved["optimizer"] is not None
    saved_slopes = torch.cat([m.weight.float().flatten() for m in saved["ema"].modules() if isinstance(m, nn.PReLU)])

    resumed = load(str(last))
    at_start = {}

    def grab(trainer):
        at_start["epoch"] = trainer.start_epoch
        at_start["sites"] = dict(take_census(trainer.model).sites)
        at_start["slopes"] = torch.cat(
            [m.weight.detach().float().flatten() for m in trainer.ema.ema.modules() if isinstance(m, nn.PReLU)]
        )

    resumed.add_callback("on_train_start", grab)
    resumed.train(resume=True)
    assert at_start["epoch"] == 1 and at_start["sites"] == {"PReLU": 77}
    torch.testing.assert_close(at_start["slopes"], saved_slopes, rtol=0, atol=1e-3)  # fp16 in the checkpoint
    assert (saved_slopes - 0.25).abs().max() > 0.1


@pytest.mark.parametrize(
    "cfg_name, act_type", [("yolo11n-leaky_relu0.1.yaml", "LeakyReLU"), ("yolo11n-relu.yaml", "ReLU")]
)
def test_stock_yolo_cli_trains_shipped_cfg(cfg_name, act_type, coco8_yaml, tmp_path):
    """`yolo train model=cfg/<file>.yaml` with the stock CLI trains that activation (exact for these files)."""
    import shutil
    from pathlib import Path

    cfg = Path(__file__).parents[1] / "cfg" / cfg_name
    yolo_cli = shutil.which("yolo")
    assert yolo_cli, "the stock `yolo` console script is missing"
    args = [
        yolo_cli,
        "train",
        f"model={cfg}",
        f"data={coco8_yaml}",
        "epochs=1",
        "imgsz=64",
        "batch=4",
        "workers=0",
        "plots=False",
        "amp=False",
        f"project={tmp_path}",
        "name=stock",
        "exist_ok=True",
    ]
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert result.returncode == 0, result.stderr[-3000:]
    count = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, json, collections; from ultralytics import YOLO; "
            "m = YOLO(sys.argv[1]).model; print(json.dumps(collections.Counter(type(x).__name__ for _, x in "
            "m.named_modules(remove_duplicate=False) if type(x).__name__ in ('SiLU','ReLU','LeakyReLU'))))",
            str(tmp_path / "stock/weights/best.pt"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert json.loads(count.stdout.strip().splitlines()[-1]) == {act_type: 77}
