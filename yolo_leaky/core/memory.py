"""Training-memory probe: bytes that autograd keeps for backward, counted over unique storages."""

from __future__ import annotations

import torch
from torch import nn


def saved_tensor_bytes(net: nn.Module, example: torch.Tensor) -> int:
    """Bytes of distinct storages that autograd saves during one train-mode forward of ``net`` on ``example``.

    Runs a backward too, so the measurement is of a real training step. Parameters are excluded (they exist
    whatever the activation).
    """
    params = {p.untyped_storage().data_ptr() for p in net.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    was_training = net.training
    net.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = net(example)
        output_sum(out).backward()
    finally:
        net.train(was_training)
        net.zero_grad(set_to_none=True)
    return sum(storages.values())


def output_sum(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out.float().sum()
    if isinstance(out, dict):
        return sum(output_sum(v) for v in out.values())
    return sum(output_sum(o) for o in out if isinstance(o, (torch.Tensor, list, tuple, dict)))
