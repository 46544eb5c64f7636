"""Partial swaps (``layers=``, ``keep_silu=``, ``sites=``): exactly the named sites change, on yolo11n, yolov8n and
yolo26n; the mix is recorded in the YAML and survives a new run, a warm start and a resume (census taken inside
the trainer, as in test_precedence); the checkpoint reloads in stock Ultralytics; bad selections are one line."""

import shutil

import pytest
import torch
from conftest import TRAIN_KW
from torch import nn

from yolo_leaky import UserError, load, take_census
from yolo_leaky import cli as cli_module
from yolo_leaky.core.partial import layer_of, parse_selection
from yolo_leaky.core.swap import SITE_MARK, swap_activations

X = torch.zeros(1, 3, 64, 64)


def site_types(net) -> dict[str, str]:
    """Activation site path -> its module type, for every site of a network."""
    census = take_census(net)
    sites = {}
    for path, module in net.named_modules(remove_duplicate=False):
        if getattr(module, SITE_MARK, False) or isinstance(module, nn.SiLU):
            sites[path] = type(module).__name__
    assert sum(census.sites.values()) == len(sites)
    return sites


@pytest.mark.parametrize(
    "model, kind, value",
    [
        ("yolo11n.yaml", "layers", "0-10"),
        ("yolo11n.yaml", "keep_silu", "22,23"),
        ("yolov8n.yaml", "layers", [2, 4, 22]),
        ("yolo26n.yaml", "keep_silu", "10,23"),
        ("yolo26n.yaml", "sites", "model.23.one2one_cv3,model.10.m.0.attn"),
    ],
)
def test_partial_swap_changes_exactly_the_named_sites(model, kind, value):
    yolo = load(model)
    full = swap_activations(load(model), "relu")
    selection = parse_selection(kind, value)
    report = swap_activations(yolo, "relu", sites=selection)
    after = site_types(yolo.model)
    assert len(after) == full.total  # every site is still there, each its own module
    wanted = {p for p in after if selection.selects(p)}
    assert {p for p, t in after.items() if t == "ReLU"} == wanted
    assert {p for p, t in after.items() if t == "SiLU"} == set(after) - wanted
    assert 0 < report.total == len(wanted) < full.total
    if kind == "layers":
        assert {layer_of(p) for p in wanted} <= set(selection.items)
    if kind == "keep_silu":
        assert {layer_of(p) for p in set(after) - wanted} <= set(selection.items)
    assert yolo.model.yaml["yolo_leaky"] == {"act": "relu", **selection.to_yaml()}
    assert "activation" not in yolo.model.yaml  # one shared stock module cannot hold a mix
    census = take_census(yolo, X)
    assert census.functional_silu_calls == 0
    assert set(census.mix()) == {"ReLU", "SiLU"}


def test_a_full_swap_over_a_partial_one_reaches_every_site_again():
    yolo = load("yolo11n.yaml", act="prelu", sites=parse_selection("keep_silu", "22,23"))
    assert take_census(yolo).sites == {"PReLU": 50, "SiLU": 27}
    swap_activations(yolo, "relu")
    assert take_census(yolo).sites == {"ReLU": 77}
    assert yolo.model.yaml["yolo_leaky"] == {"act": "relu"}


def test_the_yaml_record_rebuilds_the_same_mix(tmp_path):
    """``cfg``-style YAML with a selection in our key: loading the file builds the mix (and code in it is refused)."""
    from yolo_leaky.core.modelcfg import act_model_yaml, dump_model_yaml

    cfg, _ = act_model_yaml("yolo11n", "leaky_relu:0.1")
    cfg["yolo_leaky"]["layers"] = "0-10"
    path = tmp_path / "mix.yaml"
    path.write_text(dump_model_yaml(cfg))
    assert take_census(load(path)).sites == {"LeakyReLU": 36, "SiLU": 41}
    cfg["yolo_leaky"]["layers"] = "__import__('os').getcwd()"
    path.write_text(dump_model_yaml(cfg))
    with pytest.raises(UserError, match="is not a layer index or range"):
        load(path)


def test_a_mix_with_a_repair_record_loads_and_a_bad_record_is_refused(tmp_path):
    """The YAML key of a partial swap that ``train repair=`` then trained holds both the selection and the repair
    record: it loads (the record is data), an unknown entry is refused, and a record that is not a mapping too."""
    from yolo_leaky.core.modelcfg import act_model_yaml, dump_model_yaml

    cfg, _ = act_model_yaml("yolo11n", "relu")
    cfg["yolo_leaky"]["keep_silu"] = "22,23"
    cfg["yolo_leaky"]["repair"] = {"asked": "bn", "applied": "bn", "calibration": {"n": 16, "seed": 0}}
    path = tmp_path / "mix-repaired.yaml"
    path.write_text(dump_model_yaml(cfg))
    assert take_census(load(path)).sites == {"ReLU": 50, "SiLU": 27}
    for entry, value, message in (("repiar", {}, "unknown entry 'repiar'"), ("repair", "bn", "must be a mapping")):
        bad = {**cfg, "yolo_leaky": {**cfg["yolo_leaky"], entry: value}}
        if entry != "repair":
            bad["yolo_leaky"].pop("repair")
        path.write_text(dump_model_yaml(bad))
        with pytest.raises(UserError, match=message):
            load(path)


def test_layers_of_a_model_without_ultralytics_layers_are_refused():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.SiLU(), nn.Conv2d(8, 8, 3), nn.SiLU())
    with pytest.raises(UserError, match="needs an Ultralytics model with numbered layers"):
        swap_activations(net, "relu", sites=parse_selection("layers", "0"))
    report = swap_activations(net, "relu", sites=parse_selection("sites", "1"))  # a module path works anywhere
    assert report.total == 1 and isinstance(net[1], nn.ReLU) and isinstance(net[3], nn.SiLU)


BAD = {
    "out-of-range": (["layers=0-40"], "layer 24-40 out of range: yolo11n.yaml has layers 0-23"),
    "empty": (["layers="], "layers= selects nothing"),
    "backwards": (["layers=5-3"], "range '5-3' is empty"),
    "no-site": (["layers=11,12"], "layers=11-12 leaves nothing swapped"),
    "keeps-all": (["keep_silu=0-23"], "keep_silu=0-23 leaves nothing swapped"),
    "no-module": (["sites=model.99"], "has no module 'model.99'"),
    "two-kinds": (["layers=1", "keep_silu=2"], "give one of layers, keep_silu, sites, not layers and keep_silu"),
    "no-act": (["act=", "layers=1"], "layers=1 needs the activation to put there"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_selection_is_one_line_through_the_cli(case, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args, fragment = BAD[case]
    if not any(a.startswith("act=") for a in args):
        args = ["act=relu", *args]
    args = [a for a in args if a != "act="]
    assert cli_module.main(["val", "model=yolo11n.yaml", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("yolo-leaky: error:") and fragment in err, err
    assert list(tmp_path.iterdir()) == []  # nothing written


# ---------------------------------------------------------------------------------------------- inside the trainer
class Stop(Exception):
    """Raised in a trainer callback once what the test needs is recorded."""


MIX = {"ReLU": 50, "SiLU": 27}  # yolo11n, act=relu keep_silu=22,23


@pytest.mark.slow
def test_the_mix_survives_train_warm_start_and_resume_and_loads_in_stock_ultralytics(coco8_yaml, tmp_path):
    from ultralytics import YOLO

    seen = []

    def census(trainer):
        seen.append((dict(take_census(trainer.model).sites), dict(take_census(trainer.ema.ema).sites)))

    def census_then_stop(trainer):
        census(trainer)
        raise Stop

    def stop_after_epoch(trainer):
        raise Stop  # last.pt of epoch 0 is saved before on_fit_epoch_end

    train = dict(data=str(coco8_yaml), project=str(tmp_path), exist_ok=True, **TRAIN_KW)
    yolo = load("yolo11n.yaml", act="relu", sites=parse_selection("keep_silu", "22,23"))
    yolo.add_callback("on_train_start", census)
    yolo.add_callback("on_fit_epoch_end", stop_after_epoch)
    with pytest.raises(Stop):
        yolo.train(name="new", **{**train, "epochs": 2})
    last = tmp_path / "new/weights/last.pt"
    # warm start from a finished copy, and resume of the run itself
    warm = tmp_path / "warm.pt"
    ckpt = torch.load(last, weights_only=False)
    ckpt["optimizer"], ckpt["epoch"] = None, -1
    torch.save(ckpt, warm)
    yolo = load(warm)
    yolo.add_callback("on_train_start", census_then_stop)
    with pytest.raises(Stop):
        yolo.train(name="warm", **train)
    resumed = tmp_path / "resume"
    shutil.copytree(last.parents[1], resumed)
    yolo = load(resumed / "weights/last.pt")
    yolo.add_callback("on_train_start", census_then_stop)
    with pytest.raises(Stop):
        yolo.train(resume=True)
    assert seen == [(MIX, MIX)] * 3
    # asking a resume for another mix is refused, one line
    other = ["train", f"model={resumed / 'weights/last.pt'}", "act=relu", "keep_silu=23", "resume=True"]
    assert cli_module.main(other) == 2
    # stock Ultralytics loads the checkpoint with the same mix and the same outputs
    stock, ours = YOLO(str(last)), load(last)
    assert take_census(stock).sites == MIX == take_census(ours).sites
    stock.model.eval(), ours.model.eval()
    with torch.no_grad():
        assert torch.equal(stock.model(X)[0], ours.model(X)[0])
