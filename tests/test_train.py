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
        out[act] = {"weights": train(yolo, coco8_yaml, project, act.replace(":", "")), "seen": seen, "yolo": yolo}
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
    weights, data, image, out = sys.argv[1:5]
    model = YOLO(weights)
    acts = Counter(type(m).__name__ for m in model.model.modules()
                   if type(m).__name__ in ("SiLU", "ReLU", "LeakyReLU", "PReLU"))
    metrics = model.val(data=data, imgsz=64, batch=4, workers=0, plots=False, verbose=False)
    preds = model.predict(image, imgsz=64, verbose=False)
    onnx = model.export(format="onnx", imgsz=64, simplify=False)
    print(json.dumps({"acts": acts, "map50": metrics.box.map50, "npred": len(preds), "onnx": str(onnx),
                      "leaked": [m for m in sys.modules if m.startswith("yolo_leaky")]}))
    """
)


@pytest.mark.parametrize("act, ckpt", [("prelu", "best.pt"), ("prelu", "last.pt"), ("leaky_relu:0.1", "best.pt")])
def test_checkpoints_load_in_stock_ultralytics(runs, act, ckpt, coco8, coco8_yaml, tmp_path):
    weights = tmp_path / ckpt
    weights.write_bytes((runs[act]["weights"] / ckpt).read_bytes())
    env = {**os.environ, "PYTHONPATH": ""}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            STOCK_SCRIPT,
            str(weights),
            str(coco8_yaml),
            str(next((coco8 / "images/val").iterdir())),
            "x",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads(result.stdout.strip().splitlines()[-1])
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
