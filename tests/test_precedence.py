"""Which activation the trainer really builds, for every way of asking: the model file with or without our
``yolo_leaky:`` key, ``act=`` given or not, the Python API or the CLI, and a new run, a warm start or a resume.

Precedence: an explicit ``act=`` wins over an in-memory swap, which wins over the file's key. A resume continues
the checkpoint's own network; asking it for another activation is refused with one line. The census is taken
inside the trainer (``on_train_start``: after Ultralytics has rebuilt the network, before the first step), on the
model it optimises and on its EMA; the run is then stopped, since nothing after that point changes the network.
"""

import shutil
from pathlib import Path

import pytest
import torch
from conftest import TRAIN_KW

from yolo_leaky import UserError, load, take_census
from yolo_leaky import cli as cli_module
from yolo_leaky.core import loading

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
SOURCES = {"stock": ("yolo11n.yaml", "SiLU"), "keyed": (str(REPO / "cfg/yolo11n-relu.yaml"), "ReLU")}
ACT = ("prelu", "PReLU")


class Stop(Exception):
    """Raised in on_train_start once the census is taken."""


def _census_then_stop(seen: list):
    def record(trainer):
        seen.append({"model": dict(take_census(trainer.model).sites), "ema": dict(take_census(trainer.ema.ema).sites)})
        raise Stop

    return record


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, coco8_yaml):
    """A resumable last.pt (epoch 0 of 2 done) trained from each source file; also the warm-start checkpoints."""
    project = tmp_path_factory.mktemp("prec")
    out = {}
    for name, (model, _) in SOURCES.items():
        yolo = load(model)

        def stop(trainer):
            raise Stop  # last.pt of epoch 0 is saved before on_fit_epoch_end runs

        yolo.add_callback("on_fit_epoch_end", stop)
        with pytest.raises(Stop):
            yolo.train(
                data=str(coco8_yaml), project=str(project), name=name, exist_ok=True, **{**TRAIN_KW, "epochs": 2}
            )
        out[name] = project / name / "weights/last.pt"
    return out


def _census_api(model, act, mode, data, project):
    seen = []
    yolo = load(model, act=act)
    yolo.add_callback("on_train_start", _census_then_stop(seen))
    with pytest.raises(Stop):
        if mode == "resume":
            yolo.train(resume=True)
        else:
            yolo.train(data=str(data), project=str(project), name="run", exist_ok=True, **TRAIN_KW)
    return seen


def _census_cli(model, act, mode, data, project, monkeypatch):
    """The CLI's own argument route (``cli.main``), in process so that the census callback can be attached."""
    seen = []

    def load_with_census(*args, **kwargs):
        yolo = real_load(*args, **kwargs)
        yolo.add_callback("on_train_start", _census_then_stop(seen))
        return yolo

    real_load = loading.load
    monkeypatch.setattr(cli_module, "load", load_with_census)
    argv = ["train", f"model={model}"] + ([f"act={act}"] if act else [])
    if mode == "resume":
        argv.append("resume=True")
    else:
        argv += [
            f"data={data}",
            f"project={project}",
            "name=run",
            "exist_ok=True",
            "epochs=1",
            "imgsz=64",
            "batch=4",
            "workers=0",
            "plots=False",
            "amp=False",
        ]
    with pytest.raises(Stop):
        cli_module.dispatch(argv)  # main() would turn the test's Stop into an internal-error line
    return seen


MATRIX = [
    (src, act, route, mode)
    for src in SOURCES
    for act in (None, ACT[0])
    for route in ("api", "cli")
    for mode in ("new", "warm", "resume")
]


@pytest.mark.parametrize(
    "source, act, route, mode", MATRIX, ids=[f"{s}-{a or 'noact'}-{r}-{m}" for s, a, r, m in MATRIX]
)
def test_trainer_builds_the_activation_asked_for(
    source, act, route, mode, checkpoints, coco8_yaml, tmp_path, monkeypatch
):
    model_file, file_type = SOURCES[source]
    if mode == "new":
        model = model_file
    else:  # a private copy: a resume writes into the run folder of its checkpoint
        run = tmp_path / "ckpt"
        shutil.copytree(checkpoints[source].parents[1], run)
        model = str(run / "weights/last.pt")
        if mode == "warm":
            ckpt = torch.load(model, weights_only=False)
            ckpt["optimizer"], ckpt["epoch"] = None, -1  # a finished checkpoint: a start point, not a resumable run
            torch.save(ckpt, model)
    census = _census_cli if route == "cli" else _census_api
    args = (model, act, mode, coco8_yaml, tmp_path / "out") + ((monkeypatch,) if route == "cli" else ())

    if mode == "resume" and act is not None:  # another network than the checkpoint's: refused, one line
        if route == "cli":
            assert cli_module.main(["train", f"model={model}", f"act={act}", "resume=True"]) == 2
        else:
            with pytest.raises(UserError, match="resume continues a run trained with act="):
                census(*args)
        return
    seen = census(*args)
    expected = ACT[1] if act else file_type
    assert seen == [{"model": {expected: 77}, "ema": {expected: 77}}]


def test_in_memory_swap_beats_the_file_key(coco8_yaml, tmp_path):
    """``load(file with key relu)`` then ``swap_activations(..., prelu)``: the trainer builds PReLU (it built ReLU)."""
    from yolo_leaky import swap_activations

    seen = []
    yolo = load(SOURCES["keyed"][0])
    swap_activations(yolo, "leaky_relu:0.1")
    yolo.add_callback("on_train_start", _census_then_stop(seen))
    with pytest.raises(Stop):
        yolo.train(data=str(coco8_yaml), project=str(tmp_path), name="mem", **TRAIN_KW)
    assert seen == [{"model": {"LeakyReLU": 77}, "ema": {"LeakyReLU": 77}}]


def test_multi_dataset_training_keeps_the_swap(coco8, tmp_path):
    """``train(data=[a, b])``: Ultralytics' multi-dataset route must not fall back to stock subprocesses."""
    from yolo_leaky.core.offline import write_coco8_yaml

    first = write_coco8_yaml(coco8, tmp_path / "a")
    second = write_coco8_yaml(coco8, tmp_path / "b").rename(tmp_path / "b/other.yaml")
    yolo = load("yolo11n.yaml", act="prelu")
    # no callback here: Ultralytics takes the subprocess route only for a model with default callbacks
    metrics = yolo.train(data=[str(first), str(second)], project=str(tmp_path), name="multi", **TRAIN_KW)
    assert len(metrics) == 2 and all(m is not None for m in metrics.values()), metrics
    runs = sorted(tmp_path.glob("*/*/weights/last.pt"))
    assert len(runs) == 2, runs
    for last in runs:
        model = torch.load(last, weights_only=False)["model"]
        assert take_census(model).sites == {"PReLU": 77}, last
        slopes = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.PReLU))
        assert slopes == 7192, last  # per channel per site, not one shared slope


def test_python_api_finds_coco8_offline(tmp_path, monkeypatch, coco8):
    """The README's ``model.train(data="coco8.yaml")`` resolves the local COCO8 copy, as the CLI does (it tried to
    download COCO8 and failed offline)."""
    monkeypatch.chdir(tmp_path)
    seen = []
    yolo = load("yolo11n.yaml", act="relu")
    yolo.add_callback(
        "on_train_start", lambda trainer: (seen.append(trainer.data["val"]), _census_then_stop(seen)(trainer))
    )
    with pytest.raises(Stop):
        yolo.train(data="coco8.yaml", project=str(tmp_path), name="api", **TRAIN_KW)
    assert seen[0].endswith("images/val") and Path(seen[0]).is_dir()
    assert seen[1] == {"model": {"ReLU": 77}, "ema": {"ReLU": 77}}
