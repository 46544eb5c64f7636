"""In-place LeakyReLU keeps its output for backward instead of a copy of its input."""

import copy

import torch

from yolo_leaky import load, swap_activations
from yolo_leaky.core.memory import saved_tensor_bytes


def test_saved_tensor_bytes_yolo11n():
    base = load("yolo11n.yaml").model
    example = torch.randn(2, 3, 128, 128)
    measured = {}
    for act, inplace in [
        ("silu", False),
        ("leaky_relu:0.1", True),
        ("leaky_relu:0.1", False),
        ("relu", True),
        ("prelu", False),
    ]:
        net = copy.deepcopy(base)
        swap_activations(net, act, inplace=inplace)
        measured[(act, inplace)] = saved_tensor_bytes(net, example)
    print({f"{a}{' inplace' if i else ''}": f"{b / 2**20:.1f} MiB" for (a, i), b in measured.items()})
    silu, leaky = measured[("silu", False)], measured[("leaky_relu:0.1", True)]
    relu, leaky_copy = measured[("relu", True)], measured[("leaky_relu:0.1", False)]
    assert leaky <= 0.90 * silu
    assert abs(leaky - relu) <= 0.03 * relu
    assert leaky_copy > leaky  # stock (not in-place) LeakyReLU keeps the input as well
