"""Activation specs: parse a user string against a whitelist and build a fresh module per call.

Two spellings are accepted, and neither is ever evaluated:

* ours: ``name[:arg[:arg]]``, e.g. ``relu``, ``leaky_relu:0.1``, ``prelu``, ``prelu:layer``, ``prelu:channel:0.1``;
* torch/Ultralytics: ``nn.LeakyReLU(0.1)``, ``torch.nn.PReLU(num_parameters=1, init=0.25)``, parsed with ``ast``.
"""

from __future__ import annotations

import ast
import difflib
import math
from dataclasses import dataclass

from torch import nn

from ..utils.errors import UserError

DEFAULT_LEAKY_SLOPE = 0.1  # YOLO practice (darknet, YOLOv3/v4); torch's own default is 0.01
DEFAULT_PRELU_INIT = 0.25  # torch's default
# Named LeakyReLU slopes a target requires: the Xilinx DPU runs LeakyReLU only at 26/256 (Xilinx/Vitis-AI#317).
LEAKY_PRESETS = {"dpu": 26 / 256}


@dataclass(frozen=True)
class ActKind:
    """What the package knows about one activation; every list of names, classes and ops derives from ``ACTIVATIONS``.

    Attributes:
        cls: The torch module class.
        inplace: Its backward can use its output, so an in-place module saves keeping the input (a memory win).
        torch_args: The arguments its constructor takes, in order (anything else in a torch spelling is refused).
        onnx_ops: The ONNX op types it exports to.
    """

    cls: type
    inplace: bool
    torch_args: tuple[str, ...]
    onnx_ops: tuple[str, ...]


ACTIVATIONS = {
    "silu": ActKind(nn.SiLU, False, ("inplace",), ("Sigmoid", "Mul")),
    "relu": ActKind(nn.ReLU, True, ("inplace",), ("Relu",)),
    "leaky_relu": ActKind(nn.LeakyReLU, True, ("negative_slope", "inplace"), ("LeakyRelu",)),
    "prelu": ActKind(nn.PReLU, False, ("num_parameters", "init"), ("PRelu",)),
    "hardswish": ActKind(nn.Hardswish, True, ("inplace",), ("HardSwish",)),
    "relu6": ActKind(nn.ReLU6, True, ("inplace",), ("Clip",)),
    "identity": ActKind(nn.Identity, False, (), ()),
}
NAMES = tuple(ACTIVATIONS)
PRELU_MODES = ("channel", "layer")
TORCH_CLASSES = {kind.cls.__name__: name for name, kind in ACTIVATIONS.items()}  # torch class name -> our name
# module types that mark an activation site (Identity only counts where our swap put it)
ACTIVATION_TYPES = tuple(kind.cls for kind in ACTIVATIONS.values() if kind.cls is not nn.Identity)


@dataclass(frozen=True)
class ActSpec:
    """A parsed activation.

    Attributes:
        name: One of ``NAMES``.
        slope: Negative slope, for ``leaky_relu`` only.
        prelu_mode: ``channel`` (one learnable slope per channel) or ``layer`` (one per site), for ``prelu`` only.
        init: Initial PReLU slope, for ``prelu`` only.
    """

    name: str
    slope: float | None = None
    prelu_mode: str | None = None
    init: float | None = None

    def __str__(self) -> str:
        if self.name == "leaky_relu":
            return f"leaky_relu:{self.preset or format_number(self.slope)}"
        if self.name == "prelu":
            text = "prelu" if self.prelu_mode == "channel" else "prelu:layer"
            return text if self.init == DEFAULT_PRELU_INIT else f"{text}:{format_number(self.init)}"
        return self.name

    @property
    def preset(self) -> str | None:
        """The ``LEAKY_PRESETS`` name of this LeakyReLU's slope (``dpu``), if it has one."""
        if self.name != "leaky_relu":
            return None
        return next((name for name, slope in LEAKY_PRESETS.items() if slope == self.slope), None)

    @property
    def label(self) -> str:
        """Short name for tables and file names, with the slope shown (``leaky_relu0.1``, ``leaky_relu_dpu``)."""
        return str(self).replace(":", "_" if self.preset else "")

    @property
    def learnable(self) -> bool:
        return self.name == "prelu"

    @property
    def torch_spelling(self) -> str:
        """The ``nn.X(...)`` string for Ultralytics' ``activation:`` YAML key (a shared-instance approximation)."""
        if self.name == "leaky_relu":
            return f"nn.LeakyReLU({self.slope!r}, inplace=True)" if self.slope >= 0 else f"nn.LeakyReLU({self.slope!r})"
        if self.name == "prelu":
            return f"nn.PReLU(init={self.init!r})"
        cls = ACTIVATIONS[self.name].cls.__name__
        return f"nn.{cls}(inplace=True)" if self.name in ("relu", "relu6") else f"nn.{cls}()"

    def build(self, channels: int | None = None, inplace: bool = False) -> nn.Module:
        """Return a new module for one activation site.

        Args:
            channels: Channels at the site; needed for per-channel PReLU.
            inplace: Allow an in-place module (only where the caller knows the input is not reused).
        """
        kind = ACTIVATIONS[self.name]
        inplace = inplace and kind.inplace
        if self.name == "leaky_relu":
            # in-place LeakyReLU backward needs slope >= 0 (it reads the sign from the output)
            return nn.LeakyReLU(self.slope, inplace=inplace and self.slope >= 0)
        if self.name == "prelu":
            if self.prelu_mode == "channel" and not channels:
                raise ValueError("per-channel PReLU needs the site's channel count")
            return nn.PReLU(num_parameters=channels if self.prelu_mode == "channel" else 1, init=self.init)
        return kind.cls(inplace=True) if inplace else kind.cls()


def parse_act(text: str | ActSpec) -> ActSpec:
    """Parse an activation spec string. Raises ``UserError`` with a suggestion when it is not valid."""
    if isinstance(text, ActSpec):
        return text
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"activation spec must be a non-empty string, got {text!r}; try one of: {', '.join(NAMES)}")
    text = text.strip()
    if "(" in text or text.startswith(("nn.", "torch.")):
        return _parse_torch_spelling(text)
    name, *args = text.split(":")
    name = name.strip().lower().replace("-", "_")
    if name not in NAMES:
        raise UserError(f"unknown activation {text!r}{_suggest(name)}; valid names: {', '.join(NAMES)}")
    if name == "leaky_relu":
        return _leaky(text, args)
    if name == "prelu":
        return _prelu(text, args)
    if args:
        raise UserError(f"activation {name!r} takes no arguments, got {text!r}; write just '{name}'")
    return ActSpec(name)


def _leaky(text: str, args: list[str]) -> ActSpec:
    if len(args) > 1:
        raise UserError(f"bad activation {text!r}: leaky_relu takes one argument, the negative slope (leaky_relu:0.1)")
    preset = args[0].strip().lower() if args else None
    if preset in LEAKY_PRESETS:
        return ActSpec("leaky_relu", slope=LEAKY_PRESETS[preset])
    hint = " or ".join(["leaky_relu:0.1", *(f"leaky_relu:{name}" for name in LEAKY_PRESETS)])
    slope = _number(text, args[0], "negative slope", hint=hint) if args else DEFAULT_LEAKY_SLOPE
    if not 0 <= slope < 1:
        raise UserError(f"bad activation {text!r}: the negative slope must be in [0, 1), e.g. leaky_relu:0.1")
    return ActSpec("leaky_relu", slope=slope)


def _prelu(text: str, args: list[str]) -> ActSpec:
    mode, init = "channel", DEFAULT_PRELU_INIT
    for arg in args:
        arg = arg.strip().lower()
        if arg in PRELU_MODES:
            mode = arg
        else:
            init = _number(text, arg, "PReLU init", hint="prelu, prelu:layer or prelu:channel:0.25")
    if not 0 <= init <= 1:
        raise UserError(f"bad activation {text!r}: the PReLU init must be in [0, 1], e.g. prelu:0.25")
    return ActSpec("prelu", prelu_mode=mode, init=init)


def format_number(value: float) -> str:
    """The shortest of ``:g`` and ``repr`` that reads back as the same float (``0.1``, ``0.1015625``)."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


def _number(text: str, arg: str, what: str, hint: str = "leaky_relu:0.1") -> float:
    try:
        value = float(arg)
    except ValueError:
        raise UserError(f"bad activation {text!r}: {what} {arg!r} is not a number; write e.g. {hint}") from None
    if not math.isfinite(value):
        raise UserError(f"bad activation {text!r}: {what} must be a finite number, got {arg!r}; write e.g. {hint}")
    return value


def _suggest(name: str) -> str:
    folded = name.lower().replace("_", "").replace(".", "")
    for torch_name, ours in TORCH_CLASSES.items():
        if folded in (torch_name.lower(), "nn" + torch_name.lower()):
            return f" (did you mean '{ours}' or 'nn.{torch_name}()'?)"
    close = difflib.get_close_matches(name, NAMES, n=1, cutoff=0.5)
    prefix = [n for n in NAMES if n.startswith(name) and name]
    best = close or prefix
    return f" (did you mean '{best[0]}'?)" if best else ""


def _parse_torch_spelling(text: str) -> ActSpec:
    """Parse ``[torch.]nn.Class(literal args)`` with ``ast``; anything else is refused, never evaluated."""
    refuse = UserError(
        f"refused activation {text!r}: only [torch.]nn.<Class>(numbers) with Class in "
        f"{', '.join(TORCH_CLASSES)} is accepted, e.g. nn.LeakyReLU(0.1)"
    )
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise refuse from None
    if not isinstance(node, ast.Call):
        raise refuse
    dotted = _dotted_name(node.func)
    if dotted is None or dotted[:-1] not in (["nn"], ["torch", "nn"]) or dotted[-1] not in TORCH_CLASSES:
        if dotted and dotted[-1] not in TORCH_CLASSES and dotted[:-1] in (["nn"], ["torch", "nn"]):
            raise UserError(
                f"unsupported activation {text!r}{_suggest(dotted[-1])}; supported: {', '.join(TORCH_CLASSES)}"
            )
        raise refuse
    args = [_literal(a, refuse) for a in node.args]
    kwargs = {k.arg: _literal(k.value, refuse) for k in node.keywords}
    if None in kwargs:
        raise refuse
    return _from_torch(dotted[-1], args, kwargs, text)


def _dotted_name(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


def _literal(node: ast.AST, refuse: UserError):
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_literal(node.operand, refuse)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, bool)):
        return node.value
    raise refuse


def _from_torch(cls: str, args: list, kwargs: dict, text: str) -> ActSpec:
    name = TORCH_CLASSES[cls]
    allowed = ACTIVATIONS[name].torch_args
    if len(args) > len(allowed):
        raise UserError(
            f"bad activation {text!r}: nn.{cls} takes at most {len(allowed)} argument(s) "
            f"({', '.join(allowed) or 'none'}); e.g. nn.LeakyReLU(0.1) or nn.ReLU()"
        )
    bound = dict(zip(allowed, args))
    for key, value in kwargs.items():
        if key not in allowed:
            raise UserError(
                f"bad activation {text!r}: nn.{cls} has no argument {key!r}; it takes {', '.join(allowed) or 'none'}"
            )
        if key in bound:
            raise UserError(f"bad activation {text!r}: {key!r} is given twice")
        bound[key] = value
    if not isinstance(bound.pop("inplace", False), bool):
        raise UserError(f"bad activation {text!r}: inplace must be True or False; e.g. nn.ReLU() or nn.LeakyReLU(0.1)")
    if name == "leaky_relu":
        return _leaky(text, [repr(float(bound.get("negative_slope", 0.01)))])  # torch's default when written bare
    if name == "prelu":
        num = bound.get("num_parameters", 1)
        # nn.PReLU() is one slope; any larger count means per channel (the count is set per site)
        return _prelu(text, ["layer" if num == 1 else "channel", repr(float(bound.get("init", DEFAULT_PRELU_INIT)))])
    return ActSpec(name)
