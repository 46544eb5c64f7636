"""Model surgery on every model YAML that the installed Ultralytics ships and that builds offline."""

from pathlib import Path

import pytest
import torch
import ultralytics
from torch import nn
from ultralytics.nn.modules.conv import Conv, ConvTranspose, RepConv

from yolo_leaky import load, swap_activations, take_census
from yolo_leaky.core.census import count_functional_silu
from yolo_leaky.core.modelcfg import stock_route_gaps
from yolo_leaky.core.swap import SITE_MARK

MODELS_DIR = Path(ultralytics.__file__).parent / "cfg/models"
# TorchVision backbones download ImageNet weights when built: they cannot build offline.
OFFLINE_BUILDABLE = sorted(p for p in MODELS_DIR.glob("*/*.yaml") if "TorchVision" not in p.read_text())
ACTS = ["leaky_relu:0.1", "prelu", "relu"]
X = torch.zeros(1, 3, 64, 64)


def example_for(yolo):
    return torch.zeros(1, yolo.model.yaml.get("channels", 3), 64, 64)


def test_every_family_and_task_is_covered():
    names = " ".join(p.name for p in OFFLINE_BUILDABLE)
    for family in [
        "yolov3",
        "yolov5",
        "yolov6",
        "yolov8",
        "ghost",
        "p2",
        "p6",
        "world",
        "yolov9",
        "yolov10",
        "yolo11",
        "yolo12",
        "yolo26",
        "rtdetr",
    ]:
        assert family in names
    for task in ["-seg", "-pose", "-obb", "-cls"]:
        assert task in names
    assert len(OFFLINE_BUILDABLE) >= 60


@pytest.mark.parametrize("path", OFFLINE_BUILDABLE, ids=lambda p: p.stem)
def test_swap_reaches_every_site(path):
    yolo = load(path)
    x = example_for(yolo)
    before = take_census(yolo)
    silu_before = sum(before.sites.get(t, 0) for t in ["SiLU"])
    for act in ACTS:  # swapping again over an already-swapped model must work too
        report = swap_activations(yolo, act)
        census = take_census(yolo, x)
        assert census.silu_sites == [], f"{path.name} {act}: SiLU left at {census.silu_sites[:5]}"
        assert census.functional_silu_calls == 0, f"{path.name} {act}: F.silu still called"
        marked = [m for _, m in yolo.model.named_modules(remove_duplicate=False) if getattr(m, SITE_MARK, False)]
        assert len(marked) == len({id(m) for m in marked}) == report.total, f"{path.name} {act}: a site is shared"
        assert report.total >= silu_before
        assert yolo.model.yaml["yolo_leaky"]["act"] == act
    # back to SiLU: every swapped site is SiLU again, each its own instance
    swap_activations(yolo, "silu")
    after = take_census(yolo, x)
    assert after.sites.get("SiLU", 0) == report.total
    assert not [t for t, _ in after.shared if t == "SiLU"]


def test_census_numbers_on_known_models():
    counts = {}
    for name in ["yolo11n.yaml", "yolov8n.yaml", "yolo26n.yaml", "yolov9t.yaml", "yolov10n.yaml", "rtdetr-l.yaml"]:
        report = swap_activations(load(name), "relu")
        counts[name] = (report.total, dict(report.swapped))
    assert counts["yolo11n.yaml"] == (77, {"Conv": 71, "DWConv": 6})
    assert counts["yolov9t.yaml"][1]["RepConv"] == 42  # the stock `activation:` key misses these
    assert counts["yolov10n.yaml"][1]["RepVGGDW"] == 1
    assert counts["rtdetr-l.yaml"][1]["RepConv"] == 12


def test_prelu_parameters_are_per_site_and_per_channel():
    yolo = load("yolo11n.yaml")
    n_before = sum(p.numel() for p in yolo.model.parameters())
    report = swap_activations(yolo, "prelu")
    prelus = [m for _, m in yolo.model.named_modules(remove_duplicate=False) if isinstance(m, nn.PReLU)]
    assert len(prelus) == 77 and len({id(m) for m in prelus}) == 77
    conv_channels = sum(
        m.conv.out_channels for m in yolo.model.modules() if isinstance(m, Conv) and isinstance(m.act, nn.PReLU)
    )
    assert report.params_added == conv_channels == sum(p.weight.numel() for p in prelus)
    assert sum(p.numel() for p in yolo.model.parameters()) == n_before + report.params_added
    single = swap_activations(load("yolo11n.yaml"), "prelu:layer")
    assert single.params_added == 77


def test_every_conv_family_class_default_is_reached():
    yolo = load("yolov9t.yaml")
    swap_activations(yolo, "leaky_relu:0.1")
    for m in yolo.model.modules():
        if isinstance(m, (Conv, RepConv, ConvTranspose)) and not isinstance(m.act, nn.Identity):
            assert isinstance(m.act, nn.LeakyReLU) and getattr(m.act, SITE_MARK)


def test_identity_swap_keeps_act_false_convs_apart():
    yolo = load("yolo11n.yaml")
    stock_identity = sum(isinstance(m, nn.Identity) for m in yolo.model.modules())
    swap_activations(yolo, "identity")
    swap_activations(yolo, "relu")  # only the 77 marked sites come back, never the act=False Identity layers
    census = take_census(yolo)
    assert census.sites == {"ReLU": 77}
    assert sum(isinstance(m, nn.Identity) for m in yolo.model.modules()) == stock_identity


def test_no_global_leak():
    swap_activations(load("yolov9t.yaml"), "prelu")
    swap_activations(load("yolo11n.yaml"), "relu")
    assert type(Conv.default_act) is nn.SiLU and type(RepConv.default_act) is nn.SiLU
    assert type(ConvTranspose.default_act) is nn.SiLU
    from ultralytics import YOLO

    fresh = YOLO("yolo11n.yaml").model
    assert take_census(fresh).sites == {"SiLU": 77}
    assert count_functional_silu(fresh, X) == 0


def test_loss_only_flow_is_reported_not_swapped():
    yolo = load("yolo26n-pose.yaml")
    report = swap_activations(yolo, "relu")
    assert len(report.left) == 1 and "RealNVP" in report.left[0][1]
    census = take_census(yolo, X)
    assert census.silu_sites == [] and len(census.loss_only_silu) == 24


def test_functional_silu_site_is_swapped():
    yolo = load("yoloe-11s.yaml")
    report = swap_activations(yolo, "relu")
    assert report.swapped["SwiGLUFFN(F.silu)"] == 1
    ffn = yolo.model.model[-1].reprta.m
    y = ffn(torch.randn(2, ffn.w12.in_features))
    assert y.shape == (2, ffn.w3.out_features)
    assert count_functional_silu(ffn, torch.randn(2, ffn.w12.in_features)) == 0


def test_plain_module_and_unknown_channels():
    net = nn.Sequential(nn.Linear(4, 8), nn.SiLU(), nn.Linear(8, 2), nn.SiLU())
    report = swap_activations(net, "prelu")
    assert report.total == 2 and len(report.notes) == 2  # channel count unknown: one slope per site, said aloud
    assert isinstance(net[1], nn.PReLU) and net[1].weight.numel() == 1
    assert not getattr(net[1], "inplace", False)


def test_stock_route_gaps():
    from yolo_leaky.core.modelcfg import stock_model_yaml

    assert stock_route_gaps(stock_model_yaml("yolo11n")) == {}
    assert stock_route_gaps(stock_model_yaml("yolov9t")) == {"RepConv": 42}


def test_stock_built_act_yaml_is_still_swappable():
    from ultralytics import YOLO

    stock = YOLO(str(Path(__file__).parents[1] / "cfg/yolo11n-relu.yaml"))  # stock route: one shared ReLU
    assert take_census(stock).shared == [("ReLU", 77)]
    report = swap_activations(stock, "leaky_relu:0.1")
    assert report.total == 77 and take_census(stock).sites == {"LeakyReLU": 77}
