import math

import pytest
from torch import nn

from yolo_leaky import ActSpec, UserError, parse_act


@pytest.mark.parametrize(
    "text, expected",
    [
        ("relu", ActSpec("relu")),
        ("ReLU6", ActSpec("relu6")),
        ("leaky_relu", ActSpec("leaky_relu", slope=0.1)),
        ("leaky_relu:0.2", ActSpec("leaky_relu", slope=0.2)),
        ("prelu", ActSpec("prelu", prelu_mode="channel", init=0.25)),
        ("prelu:layer", ActSpec("prelu", prelu_mode="layer", init=0.25)),
        ("prelu:channel:0.1", ActSpec("prelu", prelu_mode="channel", init=0.1)),
        ("nn.LeakyReLU(0.1)", ActSpec("leaky_relu", slope=0.1)),
        ("torch.nn.LeakyReLU(negative_slope=0.05, inplace=True)", ActSpec("leaky_relu", slope=0.05)),
        ("nn.LeakyReLU()", ActSpec("leaky_relu", slope=0.01)),
        ("nn.PReLU()", ActSpec("prelu", prelu_mode="layer", init=0.25)),
        ("nn.PReLU(num_parameters=16, init=0.1)", ActSpec("prelu", prelu_mode="channel", init=0.1)),
        ("nn.SiLU()", ActSpec("silu")),
        ("nn.Identity()", ActSpec("identity")),
    ],
)
def test_parse_valid(text, expected):
    assert parse_act(text) == expected


def test_canonical_string_round_trips():
    for text in ["relu", "leaky_relu:0.1", "leaky_relu:0.01", "prelu", "prelu:layer", "prelu:0.1", "silu", "identity"]:
        spec = parse_act(text)
        assert parse_act(str(spec)) == spec
        assert parse_act(spec.torch_spelling).name == spec.name


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("leaky", "did you mean 'leaky_relu'"),
        ("LeakyReLU", "did you mean 'leaky_relu'"),
        ("reluu", "did you mean 'relu'"),
        ("prelu:abc", "not a number"),
        ("leaky_relu:nan", "finite"),
        ("leaky_relu:inf", "finite"),
        ("leaky_relu:x", "not a number"),
        ("leaky_relu:1.5", "[0, 1)"),
        ("prelu:1.5", "[0, 1]"),
        ("prelu:-0.5", "[0, 1]"),
        ("relu:2", "takes no arguments"),
        ("nn.GELU()", "unsupported"),
        ("", "non-empty"),
    ],
)
def test_parse_errors_name_the_fix(text, fragment):
    with pytest.raises(UserError) as err:
        parse_act(text)
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    "code",
    [
        "__import__('os').system('touch /tmp/yolo_leaky_pwned')",
        "nn.Module.__subclasses__()",
        "nn.LeakyReLU(__import__('os').getpid())",
        "nn.ReLU().__class__.__base__",
        "(lambda: 1)()",
        "nn.LeakyReLU(0.1); import os",
        "getattr(nn, 'ReLU')()",
    ],
)
def test_code_is_refused_not_run(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError):
        parse_act(code)
    assert not (tmp_path / "yolo_leaky_pwned").exists()


def test_build_returns_fresh_modules():
    spec = parse_act("prelu")
    a, b = spec.build(8), spec.build(8)
    assert a is not b and a.weight is not b.weight
    assert a.weight.shape == (8,) and math.isclose(a.weight[0].item(), 0.25)
    assert parse_act("prelu:layer").build(8).weight.shape == (1,)


def test_inplace_only_where_backward_allows():
    assert parse_act("leaky_relu:0.1").build(inplace=True).inplace
    assert parse_act("relu").build(inplace=True).inplace
    assert not parse_act("relu").build().inplace
    assert isinstance(parse_act("silu").build(inplace=True), nn.SiLU)
    with pytest.raises(ValueError):
        parse_act("prelu").build()  # per-channel needs a channel count
