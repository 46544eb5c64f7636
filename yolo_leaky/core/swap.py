"""Model surgery: give every activation site of a network its own new module.

Ultralytics shares one ``Conv.default_act`` instance between all Convs, keeps separate class-level defaults in
RepConv and ConvTranspose, and hard-codes SiLU in BottleneckCSP, RepVGGDW and (functionally) SwiGLUFFN. This module
walks the module tree and replaces each site, one fresh module per site, so that a per-channel PReLU gets its own
slopes everywhere and nothing is missed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from torch import nn
from ultralytics.engine.model import Model
from ultralytics.nn.modules.block import BottleneckCSP, RepVGGDW, SwiGLUFFN
from ultralytics.nn.modules.conv import Conv, ConvTranspose, RepConv

from ..utils.errors import UserError
from .partial import KINDS, Selection, check_selection, layer_of, selection_from_mapping
from .spec import ACTIVATION_TYPES, ActSpec, parse_act

SITE_MARK = "_yolo_leaky_site"  # attribute set on every module we install, so a later swap finds the sites again
YAML_KEY = "yolo_leaky"  # our key in model.yaml; Ultralytics ignores keys it does not know

CONV_FAMILY = (Conv, ConvTranspose, RepConv)
# Parents whose forward is act(<fresh tensor>): the activation may overwrite its input.
INPLACE_SAFE_PARENTS = (Conv, ConvTranspose, RepConv, BottleneckCSP, RepVGGDW)
# Modules used only by a loss (not in the inference graph). Their SiLUs are left alone on purpose.
LOSS_ONLY = {"RealNVP": "normalizing flow used only by the pose-26 RLE loss; not in the inference graph or export"}


class GatedFFN(nn.Module):
    """SwiGLUFFN with its hard-coded ``F.silu`` gate replaced by a module: ``w3(act(x1) * x2)``.

    Its features sit in the last dimension (``(..., D)``, e.g. YOLOE's ``(B, N, D)`` text embeddings), while a
    per-channel ``nn.PReLU(D)`` applies its slopes along dimension 1; that case sees the input as ``(-1, D)``.
    """

    def __init__(self, ffn: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.w12, self.w3, self.act = ffn.w12, ffn.w3, act

    def forward(self, x):
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        if isinstance(self.act, nn.PReLU) and self.act.num_parameters > 1 and x1.dim() != 2:
            gate = self.act(x1.reshape(-1, x1.shape[-1])).reshape(x1.shape)
        else:
            gate = self.act(x1)
        return self.w3(gate * x2)


@dataclass
class SwapReport:
    """What a swap did.

    Attributes:
        act: The activation installed.
        swapped: Sites replaced, by the parent module's type name.
        replaced: Module types that were replaced, with counts (e.g. ``{"SiLU": 77}``).
        params_added: Learnable parameters added minus removed.
        left: Sites deliberately not swapped, ``(module path, reason)``.
        notes: Anything else worth knowing (e.g. a PReLU that fell back to one slope).
        selection: A partial swap's selection (``layers=0-10``), None for every site.
        kept: Sites a partial swap left at SiLU, by Ultralytics layer index (None: outside ``model.model``).
    """

    act: str
    swapped: Counter = field(default_factory=Counter)
    replaced: Counter = field(default_factory=Counter)
    params_added: int = 0
    left: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    selection: str | None = None
    kept: Counter = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.swapped.values())

    def summary(self) -> str:
        by_type = ", ".join(f"{k} {v}" for k, v in sorted(self.swapped.items()))
        text = f"swapped {self.total} activation sites to {self.act} ({by_type}); params added: {self.params_added:+,}"
        if self.selection:
            text += f"; partial ({self.selection}): {sum(self.kept.values())} sites kept SiLU"
        if self.left:
            text += f"; left {len(self.left)}: " + "; ".join(f"{p} ({why})" for p, why in self.left)
        return text

    def to_dict(self) -> dict:
        return {
            "act": self.act,
            "total": self.total,
            "swapped": dict(self.swapped),
            "replaced": dict(self.replaced),
            "params_added": self.params_added,
            "left": [list(x) for x in self.left],
            "notes": list(self.notes),
            "selection": self.selection,
            "kept_silu": sum(self.kept.values()),
            "kept_silu_by_layer": {str(k): v for k, v in sorted(self.kept.items(), key=lambda kv: str(kv[0]))},
        }


def swap_activations(
    model, act: str | ActSpec, inplace: bool = True, sites: Selection | None = None, name: str = "the model"
) -> SwapReport:
    """Replace every activation site of ``model`` (or the sites ``sites`` selects) with a new module from ``act``.

    Args:
        model: An Ultralytics ``YOLO`` object, an Ultralytics ``BaseModel`` or any ``nn.Module``.
        act: Activation spec (``relu``, ``leaky_relu:0.1``, ``prelu`` ... or ``nn.LeakyReLU(0.1)``).
        inplace: Use in-place modules where the parent's forward makes that safe.
        sites: A partial swap (``partial.parse_selection``): the selected sites get ``act``, every other site a
            fresh SiLU (the network the YAML's record rebuilds). None: every site.
        name: How to call the model in an error message.

    Returns:
        A ``SwapReport``. For a ``YOLO`` object the trainer is also hooked so that ``train()`` keeps the swap.

    Raises:
        UserError: A selection that does not fit the network (``partial.check_selection``).

    Examples:
        >>> from yolo_leaky.core.partial import parse_selection
        >>> backbone = parse_selection("layers", "0-10")
        >>> report = swap_activations(load("yolo11n.yaml"), "relu", sites=backbone)  # doctest: +SKIP
        >>> report.total, sum(report.kept.values())  # doctest: +SKIP
        (41, 36)
    """
    spec = parse_act(act)
    net = network_of(model)
    report = SwapReport(act=str(spec), selection=None if sites is None else str(sites))
    default_ids = _default_act_ids(net)
    slots = list(child_slots(net))
    if sites is not None:
        found = [p for p, parent, _, child in slots if _site_kind(parent, child, default_ids)]
        check_selection(net, sites, found, name)
    silu = ActSpec("silu")
    params_before = sum(p.numel() for p in net.parameters())
    for path, parent, name_, child in slots:
        kind = _site_kind(parent, child, default_ids)
        chosen = sites is None or sites.selects(path)
        if kind == "loss-only":
            _note_loss_only(report, child, path)
        elif not chosen and kind is not None:
            report.kept[layer_of(path)] += 1
            if kind == "site":  # a stock SwiGLUFFN ("ffn") computes F.silu already
                setattr(parent, name_, _new_act(silu, _site_channels(parent), report, path))
        elif kind == "ffn":
            gate = _new_act(spec, child.w12.out_features // 2, report, path)
            _swap_site(report, parent, name_, child, GatedFFN(child, gate), "SwiGLUFFN(F.silu)")
        elif kind == "site":
            safe = inplace and isinstance(parent, INPLACE_SAFE_PARENTS)
            new = _new_act(spec, _site_channels(parent), report, path, safe)
            _swap_site(report, parent, name_, child, new, type(parent).__name__)
    report.params_added = sum(p.numel() for p in net.parameters()) - params_before
    _record_in_yaml(net, spec, sites)
    _attach_if_yolo(model)
    return report


def _site_kind(parent: nn.Module, child: nn.Module, default_ids: set[int]) -> str | None:
    """``loss-only``, ``ffn`` (a SwiGLUFFN's functional gate), ``site`` (an activation module) or None."""
    if type(child).__name__ in LOSS_ONLY:
        return "loss-only"
    if isinstance(child, SwiGLUFFN):
        return "ffn"
    if _is_site(parent, child, default_ids):
        return "site"
    return None


def network_of(model) -> nn.Module:
    """The ``nn.Module`` inside an Ultralytics ``Model`` (or the module itself)."""
    if isinstance(model, Model):
        return model.model
    if isinstance(model, nn.Module):
        return model
    raise TypeError(f"expected an Ultralytics YOLO object or a torch.nn.Module, got {type(model).__name__}")


def trained_network(trainer) -> nn.Module:
    """The network a trainer optimises: unwrapped from DDP, and the student alone inside Ultralytics'
    ``DistillationModel`` (whose teacher and projectors are not the network being trained and compared)."""
    net = getattr(trainer.model, "module", trainer.model)
    return getattr(net, "student_model", net)


def child_slots(net: nn.Module) -> Iterator[tuple[str, nn.Module, str, nn.Module]]:
    """The one walk over a network's module slots: ``(path, parent, attribute name, child)`` for every child of every
    parent (a shared child once per parent, i.e. once per site), outside loss-only helpers. The list is taken up
    front, so a caller may replace the child in its slot while walking."""
    slots = []
    for parent_path, parent in net.named_modules():
        if in_loss_only(net, parent_path):
            continue
        for name, child in parent.named_children():
            slots.append((f"{parent_path}.{name}" if parent_path else name, parent, name, child))
    return iter(slots)


def prelu_stats(path: str, weight) -> dict:
    """Slope statistics of one PReLU site (shared by the census and the diagnostics)."""
    w = weight.detach().float().flatten().cpu()
    return {
        "site": path,
        "n": w.numel(),
        "min": round(float(w.min()), 6),
        "median": round(float(w.median()), 6),
        "max": round(float(w.max()), 6),
    }


def is_activation_module(module: nn.Module) -> bool:
    """A module that is an activation site: an activation type, or a module our swap installed (e.g. Identity)."""
    return not isinstance(module, GatedFFN) and (
        isinstance(module, ACTIVATION_TYPES) or getattr(module, SITE_MARK, False)
    )


def _is_site(parent: nn.Module, child: nn.Module, default_ids: set[int]) -> bool:
    if getattr(child, SITE_MARK, False):
        return True
    if isinstance(child, nn.SiLU):
        return True
    return id(child) in default_ids and isinstance(parent, CONV_FAMILY)


def _default_act_ids(net: nn.Module) -> set[int]:
    """The shared instance that a stock YAML ``activation:`` key installed as Conv.default_act (e.g. yolov6's ReLU).

    Once we have swapped, our marks identify the sites. Architecture-chosen activations (HGBlock's ReLUs) are of
    another type or less shared, and are left alone.
    """
    yaml = getattr(net, "yaml", None)
    if not isinstance(yaml, dict) or not yaml.get("activation"):
        return set()
    if any(getattr(m, SITE_MARK, False) for m in net.modules()):
        return set()
    wanted = type(parse_act(str(yaml["activation"])).build(channels=1))
    uses = Counter(id(m.act) for m in net.modules() if isinstance(m, Conv) and type(m.act) is wanted)
    return {uses.most_common(1)[0][0]} if uses else set()


def _site_channels(parent: nn.Module) -> int | None:
    if isinstance(parent, RepConv):
        return parent.c2
    if isinstance(parent, ConvTranspose):
        return parent.conv_transpose.out_channels
    if isinstance(parent, RepVGGDW):
        return parent.dim
    bn = getattr(parent, "bn", None)
    if isinstance(bn, nn.BatchNorm2d):
        return bn.num_features
    conv = getattr(parent, "conv", None)
    return getattr(conv, "out_channels", None)


def _new_act(spec: ActSpec, channels: int | None, report: SwapReport, path: str, inplace: bool = False) -> nn.Module:
    if spec.name == "prelu" and spec.prelu_mode == "channel" and not channels:
        report.notes.append(f"{path}: channel count unknown, PReLU uses one slope here")
        spec = ActSpec("prelu", prelu_mode="layer", init=spec.init)
    module = spec.build(channels, inplace=inplace)
    setattr(module, SITE_MARK, True)
    return module


def _swap_site(report: SwapReport, parent: nn.Module, name: str, old: nn.Module, new: nn.Module, where: str) -> None:
    setattr(parent, name, new)
    report.swapped[where] += 1
    report.replaced["F.silu" if isinstance(old, SwiGLUFFN) else type(old).__name__] += 1


def in_loss_only(net: nn.Module, path: str) -> bool:
    """True if the module at ``path`` is, or sits inside, a loss-only helper."""
    module = net
    for part in path.split(".") if path else []:
        module = getattr(module, part)
        if type(module).__name__ in LOSS_ONLY:
            return True
    return False


def _note_loss_only(report: SwapReport, module: nn.Module, path: str) -> None:
    n = sum(isinstance(m, nn.SiLU) for m in module.modules())
    report.left.append((path, f"{n} SiLU in {type(module).__name__}: {LOSS_ONLY[type(module).__name__]}"))


def _record_in_yaml(net: nn.Module, spec: ActSpec, sites: Selection | None = None) -> None:
    yaml = getattr(net, "yaml", None)
    if not isinstance(yaml, dict):
        return
    yaml[YAML_KEY] = {"act": str(spec), **(sites.to_yaml() if sites is not None else {})}
    if sites is None:
        yaml["activation"] = spec.torch_spelling  # so a stock rebuild gets at least the Conv sites right
    else:
        # Ultralytics' one shared `activation:` cannot hold a mix; a stock rebuild gets the SiLU network instead
        yaml.pop("activation", None)


# What yolo-leaky records under its YAML key besides the activation and a selection: ``repair`` (written by
# ``train repair=``: what was repaired, on which images). Records are data, never evaluated or built from.
RECORDS = ("repair",)


def spec_from_yaml(cfg: dict | None) -> ActSpec | None:
    """The activation a model YAML asks for: our key first, else Ultralytics' ``activation:``.

    Ultralytics' ``parse_model`` evaluates a string ``activation:`` as Python, so that key is validated against the
    whitelist whenever it is present, also when our key decides: a YAML that carries code is refused, never built.

    Raises:
        UserError: If either key holds something that is not a whitelisted activation spec.

    Examples:
        >>> str(spec_from_yaml({"yolo_leaky": {"act": "prelu"}, "activation": "nn.SiLU()"}))
        'prelu'
    """
    if not isinstance(cfg, dict):
        return None
    stock = parse_act(str(cfg["activation"])) if cfg.get("activation") not in (None, "") else None
    ours = cfg.get(YAML_KEY)
    if ours is None:
        return stock
    if not isinstance(ours, dict) or not ours.get("act"):
        raise UserError(
            f"model YAML key {YAML_KEY}: must be a mapping such as {{act: relu}}, got {ours!r}; fix the YAML"
        )
    selection_from_mapping(ours)  # a bad selection fails here too, before anything is built
    unknown = set(ours) - {"act", *KINDS, *RECORDS}
    if unknown:
        raise UserError(
            f"model YAML key {YAML_KEY}: unknown entry {sorted(unknown)[0]!r}; "
            f"it takes act, one of {', '.join(KINDS)}, and the record {', '.join(RECORDS)}"
        )
    for key in RECORDS:
        if key in ours and not isinstance(ours[key], dict):
            raise UserError(f"model YAML key {YAML_KEY}: {key} must be a mapping (a record), got {ours[key]!r}")
    return parse_act(str(ours["act"]))


def selection_from_yaml(cfg: dict | None) -> Selection | None:
    """The partial-swap selection a model YAML's ``yolo_leaky:`` key records (None: every site).

    Examples:
        >>> str(selection_from_yaml({"yolo_leaky": {"act": "relu", "keep_silu": [22, 23]}}))
        'keep_silu=22-23'
    """
    ours = cfg.get(YAML_KEY) if isinstance(cfg, dict) else None
    return selection_from_mapping(ours) if isinstance(ours, dict) else None


def swap_description(cfg: dict | None) -> str:
    """The activation a YAML asks for, with its selection: ``relu``, ``relu layers=0-10`` or ``silu`` (none)."""
    spec, sites = spec_from_yaml(cfg), selection_from_yaml(cfg)
    return f"{spec or 'silu'}" + (f" {sites}" if sites is not None else "")


_trainer_hook = None  # set by train.py (``attach_trainer``): swap must not import the trainer that imports swap


def set_trainer_hook(hook) -> None:
    """Register what ``swap_activations`` calls on an Ultralytics ``Model`` so that its ``train()`` keeps the swap."""
    global _trainer_hook
    _trainer_hook = hook


def _attach_if_yolo(model) -> None:
    if isinstance(model, Model) and _trainer_hook is not None:
        _trainer_hook(model)
