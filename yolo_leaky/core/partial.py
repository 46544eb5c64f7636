"""Partial swaps: which activation sites a swap reaches, by Ultralytics layer index or module path.

A selection is one of three spellings, each parsed here without evaluating anything:

* ``layers=0-10``: swap only the sites inside layers 0 to 10 (Ultralytics' index ``i`` of each ``model.model``
  entry; ``0-3,7,9`` and YAML lists work too);
* ``keep_silu=22,23``: swap every site except those in layers 22 and 23;
* ``sites=model.23.cv2``: swap only the sites at or below these module paths (any ``nn.Module``).

Sites outside the selection hold SiLU (one fresh module each), so a network rebuilt from its YAML (stock SiLU,
then the recorded swap) is the network that was swapped in memory.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from torch import nn

from ..utils.errors import UserError

KINDS = ("layers", "keep_silu", "sites")  # the keys a selection is written under, on the CLI and in the YAML
_PATH = re.compile(r"^[A-Za-z_0-9]+(\.[A-Za-z_0-9]+)*$")
_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")


@dataclass(frozen=True)
class Selection:
    """Which sites a partial swap reaches.

    Attributes:
        kind: One of ``KINDS``.
        items: Layer indices (sorted ints) for ``layers``/``keep_silu``; module paths (sorted strings) for ``sites``.
    """

    kind: str
    items: tuple

    def __str__(self) -> str:
        return f"{self.kind}={compact(self.items) if self.kind != 'sites' else ','.join(self.items)}"

    def to_yaml(self) -> dict:
        """What the model YAML's ``yolo_leaky:`` key records next to ``act`` (a plain list, read back by
        ``selection_from_mapping``)."""
        return {self.kind: list(self.items)}

    @property
    def by_layer(self) -> bool:
        return self.kind != "sites"

    def selects(self, path: str) -> bool:
        """True when the site at module path ``path`` (relative to the network) gets the new activation."""
        if self.kind == "sites":
            return any(path == p or path.startswith(p + ".") for p in self.items)
        layer = layer_of(path)
        return (layer in self.items) if self.kind == "layers" else (layer not in self.items)


def layer_of(path: str) -> int | None:
    """The Ultralytics layer index of a site path (``model.23.cv2.0.0.act`` -> 23), None outside ``model.model``.

    Examples:
        >>> layer_of("model.23.cv2.0.0.act")
        23
    """
    parts = path.split(".")
    return int(parts[1]) if len(parts) > 1 and parts[0] == "model" and parts[1].isdigit() else None


def compact(indices) -> str:
    """Layer indices as short ranges: ``[0, 1, 2, 5]`` -> ``0-2,5``.

    Examples:
        >>> compact([0, 1, 2, 5, 7, 8])
        '0-2,5,7-8'
    """
    out, run = [], []
    for i in sorted(indices):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def parse_selection(kind: str, value) -> Selection:
    """Parse one selection value as the CLI (a YAML scalar) or a model YAML hands it over.

    Args:
        kind: One of ``KINDS``.
        value: ``"0-10"``, ``"0-3,7"``, ``5``, ``[0, 1, 2]`` for layers; ``"model.23.cv2"`` or a list for sites.

    Raises:
        UserError: For anything that is not a non-empty list of layer indices or module paths.

    Examples:
        >>> str(parse_selection("layers", "0-3,7"))
        'layers=0-3,7'
    """
    if kind not in KINDS:
        raise UserError(f"unknown selection {kind!r}; use one of {', '.join(KINDS)}, e.g. layers=0-10")
    tokens = _tokens(kind, value)
    if not tokens:
        raise UserError(f"{kind}= selects nothing; give at least one {_what(kind)}, e.g. {_example(kind)}")
    if kind == "sites":
        for token in tokens:
            if not _PATH.match(token):
                raise UserError(f"sites={token!r} is not a module path; write e.g. {_example(kind)}")
        return Selection(kind, tuple(sorted(set(tokens))))
    indices: set[int] = set()
    for token in tokens:
        indices |= _indices(kind, token)
    return Selection(kind, tuple(sorted(indices)))


def _tokens(kind: str, value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, (int, str, list, tuple)):
        raise UserError(f"{kind}={value!r} is not valid; write e.g. {_example(kind)}")
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    tokens = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise UserError(f"{kind}: {item!r} is not a {_what(kind)}; write e.g. {_example(kind)}")
        tokens += [t.strip() for t in str(item).strip("[] ").split(",") if t.strip()]
    return tokens


def _indices(kind: str, token: str) -> set[int]:
    if token.lstrip("-").isdigit():
        if token.startswith("-"):
            raise UserError(f"{kind}: layer index {token} is negative; layers count from 0, e.g. {_example(kind)}")
        return {int(token)}
    found = _RANGE.match(token)
    if not found:
        raise UserError(f"{kind}: {token!r} is not a layer index or range; write e.g. {_example(kind)}")
    lo, hi = int(found[1]), int(found[2])
    if lo > hi:
        raise UserError(f"{kind}: range {token!r} is empty (it runs backwards); write it low-high, e.g. {hi}-{lo}")
    return set(range(lo, hi + 1))


def _what(kind: str) -> str:
    return "module path" if kind == "sites" else "layer index"


def _example(kind: str) -> str:
    return {"layers": "layers=0-10", "keep_silu": "keep_silu=22,23", "sites": "sites=model.23.cv2"}[kind]


def selection_from_mapping(mapping: dict) -> Selection | None:
    """The selection recorded in a ``yolo_leaky:`` mapping (None: every site), validated like CLI input.

    Raises:
        UserError: For more than one selection key, or a value that does not parse.
    """
    given = [k for k in KINDS if k in mapping]
    if len(given) > 1:
        raise UserError(f"give one of {', '.join(KINDS)}, not {' and '.join(given)}; e.g. act=relu keep_silu=22,23")
    return parse_selection(given[0], mapping[given[0]]) if given else None


def selection_from_args(args: dict) -> Selection | None:
    """Pop the selection keys from CLI arguments (``layers``, ``keep_silu``, ``sites``); None when there is none."""
    given = {k: args.pop(k) for k in KINDS if k in args}
    return selection_from_mapping(given) if given else None


def check_selection(net: nn.Module, selection: Selection, site_paths: list[str], name: str = "the model") -> None:
    """Refuse a selection that does not fit ``net``: a layer it does not have, a model without Ultralytics layers,
    a module path that is not there, or a selection that swaps no site at all.

    Args:
        net: The network about to be swapped.
        selection: The parsed selection.
        site_paths: Its activation sites' module paths (``swap.site_paths``).
        name: How to call the model in a message.

    Raises:
        UserError: One line naming the problem and the fix.
    """
    if selection.by_layer:
        layers = getattr(net, "model", None)
        if not isinstance(layers, (nn.Sequential, nn.ModuleList)) or not all(hasattr(m, "i") for m in layers):
            raise UserError(
                f"{selection.kind}= needs an Ultralytics model with numbered layers (model.model); "
                f"{type(net).__name__} has none: select by module path instead, e.g. sites=backbone.0"
            )
        n = len(layers)
        out = [i for i in selection.items if i >= n]
        if out:
            raise UserError(
                f"{selection.kind}: layer {compact(out)} out of range: {name} has layers 0-{n - 1}; "
                f"see `yolo-leaky inspect model=...` for the sites per layer"
            )
    else:
        modules = {p for p, _ in net.named_modules() if p}
        for path in selection.items:
            if path not in modules:
                near = difflib.get_close_matches(path, sorted(modules), n=1)
                hint = f"; did you mean '{near[0]}'?" if near else "; module paths look like model.23.cv2"
                raise UserError(f"sites: {name} has no module {path!r}{hint}")
    if not any(selection.selects(p) for p in site_paths):
        raise UserError(
            f"{selection} leaves nothing swapped: it selects no activation site of {name}; "
            "choose layers that hold Conv/C3k2/Detect sites (`yolo-leaky inspect` lists them)"
        )
