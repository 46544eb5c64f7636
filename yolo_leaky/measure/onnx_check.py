"""What an exported ONNX file really contains, and what ONNX Runtime's CPU optimizer makes of it.

* ``op_counts``: node counts by op type in the exported graph.
* ``silu_patterns``: SiLU sites left in the graph: ``x * Sigmoid(x)`` pairs whose ``x`` is a Conv output, plus native
  ``Swish``/``SiLU``/``QuickGelu(alpha=1)`` nodes. The Detect head's lone ``Sigmoid`` on the class scores is not
  ``x * sigmoid(x)`` and is not counted.
* ``ort_fusion``: builds an ORT CPU session with ``ORT_ENABLE_ALL``, saves the optimized graph and counts which
  activations were folded into a convolution (``com.microsoft:FusedConv`` or ``com.microsoft.nchwc:Conv`` with an
  ``activation`` attribute) and which still run as ops of their own.

What ORT 1.32 does on an x86-64 (AVX2/AVX-512) CPU with a yolo11n export, 77 activation sites, 88 convolutions:

* Relu, LeakyRelu, HardSwish and Clip (ReLU6) are fused into the NCHWc convolutions: all 77 sites.
* SiLU is not fused into the convolution: each ``x * Sigmoid(x)`` pair becomes one ``com.microsoft:QuickGelu``
  (alpha 1) node that runs on its own after the convolution.
* PRelu is neither fused nor NCHWc-aware: it stays standalone, and the optimizer wraps each site in NCHWc
  ``ReorderOutput``/``ReorderInput`` layout conversions (about 80 + 91 reorders against 22 + 28 for ReLU).

The optimized file holds hardware-specific ops; it is read here and thrown away, never shipped.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path

import onnx

from ..core.spec import ACTIVATIONS, parse_act
from .bench import ort_session

# activation ops counted when left standalone: ours (from spec.ACTIVATIONS, less SiLU's Mul) and others that
# exports of other architectures contain
ACT_OPS = tuple(
    dict.fromkeys(
        [op for kind in ACTIVATIONS.values() for op in kind.onnx_ops if op != "Mul"]
        + ["HardSigmoid", "Elu", "Selu", "Tanh"]
    )
)
NATIVE_SILU_OPS = ("Swish", "SiLU", "Silu")
CONV_OPS = ("Conv", "FusedConv")
MS_DOMAIN = "com.microsoft"
NCHWC_DOMAIN = "com.microsoft.nchwc"
SILU_KEY = "SiLU(x*Sigmoid(x))"  # key for unfused x * sigmoid(x) pairs in ``standalone``
QUICKGELU_KEY = "SiLU(QuickGelu)"  # key for ORT's fused-but-standalone SiLU in ``standalone``


def _load(onnx_path: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(onnx_path, onnx.ModelProto):
        return onnx_path
    return onnx.load(str(onnx_path), load_external_data=False)


def op_counts(onnx_path: str | Path | onnx.ModelProto) -> dict[str, int]:
    """Count the nodes of an ONNX graph by op type (top-level graph, domains merged).

    Args:
        onnx_path: An ``.onnx`` file or a loaded ``ModelProto``.

    Returns:
        ``{op_type: count}``, most frequent first.
    """
    counts = Counter(node.op_type for node in _load(onnx_path).graph.node)
    return dict(counts.most_common())


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output}


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


def _silu_pairs(graph: onnx.GraphProto, conv_only: bool = True) -> list[onnx.NodeProto]:
    """The ``Sigmoid`` nodes of ``x * Sigmoid(x)`` pairs (each counted once), optionally only on a Conv output."""
    producers, consumers = _producers(graph), _consumers(graph)
    found = []
    for node in graph.node:
        if node.op_type != "Sigmoid" or not node.input:
            continue
        x = node.input[0]
        muls = [m for m in consumers.get(node.output[0], []) if m.op_type == "Mul" and x in m.input]
        if not muls:
            continue
        src = producers.get(x)
        if conv_only and (src is None or src.op_type not in CONV_OPS):
            continue
        found.append(node)
    return found


def _native_silu(graph: onnx.GraphProto) -> int:
    native = sum(node.op_type in NATIVE_SILU_OPS for node in graph.node)
    quick = sum(node.op_type == "QuickGelu" and float(_attr(node, "alpha", 1.702)) == 1.0 for node in graph.node)
    return native + quick


def silu_patterns(onnx_path: str | Path | onnx.ModelProto, conv_only: bool = True) -> int:
    """Count SiLU sites in an ONNX graph.

    A site is a ``Sigmoid`` whose output feeds a ``Mul`` that also takes the Sigmoid's own input (``x * sigmoid(x)``),
    where ``x`` comes straight from a Conv; or a native ``Swish``/``SiLU`` node, or ORT's ``QuickGelu`` with alpha 1.
    A plain ``Sigmoid`` (such as the Detect head's class scores) is not a site.

    Args:
        onnx_path: An ``.onnx`` file or a loaded ``ModelProto``.
        conv_only: Count only pairs whose ``x`` is a Conv output; False counts every ``x * sigmoid(x)`` pair.

    Returns:
        The number of SiLU sites.
    """
    graph = _load(onnx_path).graph
    return len(_silu_pairs(graph, conv_only)) + _native_silu(graph)


def _activation_name(node: onnx.NodeProto) -> str | None:
    value = _attr(node, "activation")
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _is_conv(node: onnx.NodeProto) -> bool:
    return (node.op_type == "Conv" and node.domain in ("", "ai.onnx", NCHWC_DOMAIN)) or (
        node.op_type == "FusedConv" and node.domain == MS_DOMAIN
    )


def optimize_with_ort(onnx_path: str | Path, out_path: str | Path, threads: int = 1) -> Path:
    """Let ORT optimize ``onnx_path`` (CPU, ``ORT_ENABLE_ALL``) and save the optimized graph to ``out_path``."""
    ort_session(onnx_path, threads, save_optimized=out_path)  # the same session setup as the timing
    return Path(out_path)


def summarize_fusion(optimized: str | Path | onnx.ModelProto) -> dict:
    """Count fused and standalone activations in a graph that ORT has already optimized (see ``ort_fusion``)."""
    graph = _load(optimized).graph
    fused: Counter = Counter()
    conv_kinds: Counter = Counter()
    for node in graph.node:
        if not _is_conv(node):
            continue
        kind = "FusedConv" if node.op_type == "FusedConv" else ("NchwcConv" if node.domain == NCHWC_DOMAIN else "Conv")
        conv_kinds[kind] += 1
        act = _activation_name(node)
        if act:
            fused[act] += 1
    standalone = Counter({op: n for op, n in Counter(n.op_type for n in graph.node).items() if op in ACT_OPS})
    pairs = len(_silu_pairs(graph, conv_only=False))
    if pairs:
        standalone[SILU_KEY] = pairs
    quick = _native_silu(graph)
    if quick:
        standalone[QUICKGELU_KEY] = quick
    reorders = Counter(n.op_type for n in graph.node if n.domain == NCHWC_DOMAIN and n.op_type.startswith("Reorder"))
    return {
        "fused_into_conv": dict(fused.most_common()),
        "standalone": dict(standalone.most_common()),
        "conv_total": sum(conv_kinds.values()),
        "conv_kinds": dict(conv_kinds),
        "layout_reorders": dict(reorders),
        "op_counts": _qualified_counts(graph),
    }


def _qualified_counts(graph: onnx.GraphProto) -> dict[str, int]:
    """Op counts keyed ``domain:op`` for non-standard domains (``com.microsoft.nchwc:Conv``), plain op otherwise."""
    names = (f"{n.domain}:{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type for n in graph.node)
    return dict(Counter(names).most_common())


def ort_fusion(onnx_path: str | Path, threads: int = 1) -> dict:
    """What ORT's CPU optimizer (``ORT_ENABLE_ALL``) does with the activations of an exported model.

    Args:
        onnx_path: The exported ``.onnx`` file (left unchanged).
        threads: ``intra_op_num_threads`` of the session (the graph rewrites do not depend on it).

    Returns:
        ``fused_into_conv`` (activation name -> convolutions carrying it, e.g. ``{"Relu": 77}``), ``standalone``
        (activation ops still run on their own, with ``SiLU(x*Sigmoid(x))`` and ``SiLU(QuickGelu)`` for SiLU sites),
        ``conv_total``, ``conv_kinds`` (plain / NCHWc / FusedConv), ``layout_reorders`` (NCHWc reorder nodes) and
        ``op_counts`` of the optimized graph (keyed ``domain:op`` outside the standard domain).
    """
    with tempfile.TemporaryDirectory(prefix="yolo-leaky-ort-") as tmp:
        out = optimize_with_ort(onnx_path, os.path.join(tmp, "optimized.onnx"), threads)
        return summarize_fusion(onnx.load(str(out)))


def torch_agreement(net, onnx_path: str | Path, seed: int = 0, threads: int = 1) -> dict[str, dict[str, float]]:
    """How far the ONNX Runtime outputs of an export are from the PyTorch network's, on one seeded input.

    Every task's head returns its exported outputs among the tensors of its eval-mode result (the decoded
    detections, boxes + scores + mask coefficients / keypoints / angle, the classifier's probabilities, first; the
    segmentation prototypes among the rest): each ONNX output is matched to the first eval tensor of its shape.

    Args:
        net: The PyTorch network that was exported (``yolo.model``); it is put in eval mode and run once.
        onnx_path: Its static-shape ONNX export.
        seed: Seed of the uniform 0-1 input.
        threads: Threads of the ONNX Runtime session.

    Returns:
        ONNX output name -> ``max_abs`` (largest absolute difference), ``scale`` (largest absolute PyTorch value) and
        ``max_rel`` (``max_abs / scale``).

    Raises:
        ValueError: An ONNX output has no PyTorch tensor of its shape (a head this check does not know).

    Examples:
        >>> from yolo_leaky import load  # doctest: +SKIP
        >>> torch_agreement(load("yolo11n-pose.yaml").model, "pose.onnx")["output0"]["max_rel"] < 1e-3  # doctest: +SKIP
        True
    """
    import numpy as np
    import torch

    sess = ort_session(onnx_path, threads)
    inp = sess.get_inputs()[0]
    x = torch.from_numpy(np.random.default_rng(seed).random(inp.shape, dtype=np.float32))
    net.eval()
    with torch.no_grad():
        found = net(x)
    tensors, stack = [], [found]
    while stack:  # the eval result's tensors in order, depth first
        item = stack.pop(0)
        if isinstance(item, torch.Tensor):
            tensors.append(item.float().numpy())
        elif isinstance(item, (list, tuple)):
            stack[:0] = list(item)
    out = {}
    for meta, value in zip(sess.get_outputs(), sess.run(None, {inp.name: x.numpy()})):
        ref = next((t for t in tensors if t.shape == value.shape), None)
        if ref is None:
            raise ValueError(f"{onnx_path}: output {meta.name} {list(value.shape)} has no PyTorch tensor of its shape")
        diff, scale = float(np.abs(ref - value).max()), float(np.abs(ref).max())
        out[meta.name] = {"max_abs": diff, "scale": scale, "max_rel": diff / scale if scale else diff}
    return out


def check_export(onnx_path: str | Path, act_name: str, threads: int = 1, net=None) -> dict:
    """Check an export of a model whose activation sites were set to ``act_name``.

    Args:
        onnx_path: The exported ``.onnx`` file.
        act_name: The activation spec the model was swapped to (``silu``, ``relu``, ``leaky_relu:0.1`` ...).
        threads: Threads for the ORT session used by ``ort_fusion``.
        net: The PyTorch network that was exported; when given, ``agreement`` (``torch_agreement``) is added.

    Returns:
        ``act``, ``op_counts``, ``silu_patterns``, ``silu_patterns_any`` (any producer), ``ort`` (``ort_fusion``) and
        ``silu_free``: True when a non-SiLU variant has no SiLU site left (always False for ``silu`` itself); with
        ``net``, ``agreement``.

    Examples:
        >>> check_export("relu.onnx", "relu")["silu_free"]  # doctest: +SKIP
        True
    """
    spec = parse_act(act_name)
    model = _load(onnx_path)
    patterns = silu_patterns(model)
    anywhere = silu_patterns(model, conv_only=False)
    result = {
        "act": str(spec),
        "op_counts": op_counts(model),
        "silu_patterns": patterns,
        "silu_patterns_any": anywhere,
        "silu_free": spec.name != "silu" and anywhere == 0,
        "ort": ort_fusion(onnx_path, threads),
    }
    if net is not None:
        result["agreement"] = torch_agreement(net, onnx_path, threads=threads)
    return result
