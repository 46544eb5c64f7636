"""Mixed variants of ``compare`` (``relu@keep1``): which layers keep SiLU, chosen on the training side.

A mixed variant ``<act>@keep<k>`` puts ``act`` everywhere except the ``k`` layers that the per-layer sensitivity
ranking (``harness.sensitivity``) names as most costly. The ranking is measured on the training side only: the
calibration draws come from the training split, and the networks are scored on the dataset's tune split (the
stand-in's shapes data have one) or else on the training split, never on the validation images that score the
comparison. It is cached by contents (the checkpoint's digest, the activation, the repair, the data's digest and
the scan's settings), never by a run's name; ``k`` only picks from it, so ``relu@keep1`` and ``relu@keep3`` share
one scan. The chosen layers, their costs and the ranking's noise go to ``mixed.json``, results.json and the report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from ..core.loading import load
from ..core.partial import compact
from ..core.swap import network_of
from ..data.datasets import dataset_info, file_digest
from ..data.standin import STANDIN, cache_root
from ..data.synthetic import tune_yaml
from ..utils import atomic
from ..utils.console import say
from ..utils.errors import UserError
from .config import CompareConfig, MixedSpec
from .sensitivity import SensitivityConfig, Z, run_sensitivity, scan_units

RANKING_VERSION = 1  # bump when what a cached ranking holds, or how it is measured, changes
DRAWS = 2  # calibration draws of the ranking (seeds 0 and 1): the least that measures the draw's noise
BOOT = 100  # paired bootstrap resamples of the scoring images


def mixed_specs(c: CompareConfig) -> list[MixedSpec]:
    """The mixed variants of ``c``, in order."""
    return [s for s in c.specs if isinstance(s, MixedSpec)]


def check_mixed(c: CompareConfig, model: str | Path) -> None:
    """Refuse ``k`` that keeps every layer holding sites (nothing would be swapped), before anything is written.

    Args:
        c: The config.
        model: The SiLU checkpoint, or a model YAML of the same architecture (the stand-in before it exists).

    Raises:
        UserError: One line naming the variant, the layer count and a valid ``k``; or a model other than a detector
            (``c.task``): the sensitivity ranking that picks the kept layers scores detections.
    """
    specs = mixed_specs(c)
    if not specs:
        return
    if c.task != "detect":
        raise UserError(
            f"variant {specs[0]} needs a detection model: the ranking that picks its SiLU layers scores detections, "
            f"and this is a {c.task} model; list plain variants such as {specs[0].base}"
        )
    net = network_of(load(model))
    for spec in specs:
        layers = len(scan_units(net, spec.base, "layer"))
        if spec.keep >= layers:
            raise UserError(
                f"variant {spec}: {Path(str(model)).name} has {layers} layers with activation sites, so keep{spec.keep}"
                f" leaves nothing swapped; keep at most {layers - 1}, e.g. {spec.base}@keep1"
            )


def scoring_data(data: str | Path) -> tuple[Path, str, str]:
    """Where the ranking scores: the tune split when the dataset has one, else the training split.

    Returns:
        ``(dataset YAML, split key in it, what it is in words)``.
    """
    try:
        return tune_yaml(data), "val", "tune split"
    except (ValueError, OSError, KeyError):
        return Path(data), "train", "training split"


def ranking_key(c: CompareConfig, spec: MixedSpec, data: str | Path) -> tuple[str, dict]:
    """The content key of one ranking: what it measures, never a label or a run's name."""
    yaml_path, split, _ = scoring_data(data)
    contents = {
        "version": RANKING_VERSION,
        "weights": file_digest(c.weights),
        "act": str(spec.base),
        "repair": c.repair,
        "data": dataset_info(data).get("digest"),
        "scored_on": dataset_info(yaml_path).get("digest") if split == "val" else "train",
        "imgsz": c.imgsz,
        "calib_images": c.calib_images,
        "draws": DRAWS,
        "boot": BOOT,
    }
    if contents["weights"] is None or contents["data"] is None:
        raise RuntimeError(f"cannot key the ranking of {spec} by contents ({contents}): a bug")
    return hashlib.sha256(json.dumps(contents, sort_keys=True).encode()).hexdigest()[:16], contents


def rank_layers(c: CompareConfig, spec: MixedSpec, data: str | Path) -> dict:
    """The per-layer ranking of ``spec``'s activation on the training side, from the cache or measured now.

    Returns:
        ``{"key", "contents", "scored_on", "units": ranked rows (sensitivity's), "full", "seconds", "cached"}``.
    """
    key, contents = ranking_key(c, spec, data)
    path = cache_root() / "rankings" / f"{key}.json"
    cached = atomic.read_json(path)
    if cached is not None and cached.get("contents") == contents:
        return {**cached, "cached": True}
    yaml_path, split, words = scoring_data(data)
    say(f"[mixed] ranking the layers for {spec.base} on the {words} ({c.imgsz}px, {DRAWS} calibration draws)")
    sc = SensitivityConfig(
        model=str(c.weights),
        act=str(spec.base),
        data=str(yaml_path),
        repair=c.repair,
        calib_images=c.calib_images,
        draws=DRAWS,
        imgsz=c.imgsz,
        boot=BOOT,
        split=split,
    )
    silu = network_of(load(c.weights))
    # the tune YAML lists the same training split, so the calibration draws are the swap stage's draws 0 and 1
    prepared = {"weights": Path(c.weights), "silu": silu, "units": scan_units(silu, spec.base, "layer")}
    prepared |= {"data": Path(yaml_path), "standin": False}
    result = run_sensitivity(sc, prepared, log=say)
    ranking = {
        "key": key,
        "contents": contents,
        "scored_on": {"yaml": str(yaml_path), "split": split, "what": words, "images": result["data"]["images"]},
        "units": [{k: r[k] for k in _ROW} for r in result["units"]],
        "full": result["full"],
        "silu_map50_95": result["silu_map50_95"],
        "seconds": result["timing"]["seconds"],
        "networks_scored": result["timing"]["networks_scored"],
    }
    atomic.write_json(path, ranking)
    return {**ranking, "cached": False}


_ROW = ("rank", "label", "layer", "type", "sites", "cost", "by_draw", "noise", "low", "high", "separable_from")


def choose(ranking: dict, k: int) -> dict:
    """The ``k`` most costly layers of a ranking, with what the ranking's noise says about the choice.

    Examples:
        >>> def row(rank, layer, cost):
        ...     return {"rank": rank, "layer": layer, "type": "C3k2", "sites": 4, "cost": cost, "noise": 0.005,
        ...             "separable_from": []}
        >>> choose({"units": [row(1, 16, 0.03), row(2, 4, 0.01)]}, 1)["keep"]
        [16]
    """
    rows = sorted(ranking["units"], key=lambda r: r["rank"])
    kept, rest = rows[:k], rows[k:]
    nxt = rest[0] if rest else None
    # separable from the next: the k-th layer is told apart from the (k+1)-th (pairwise, as sensitivity decides)
    separable = None if nxt is None else nxt["rank"] in kept[-1]["separable_from"]
    return {
        "keep": sorted(r["layer"] for r in kept),
        "kept": [
            {"layer": r["layer"], "type": r["type"], "sites": r["sites"], "cost": r["cost"], "ci95": Z * r["noise"]}
            for r in kept
        ],
        "next": None if nxt is None else {"layer": nxt["layer"], "cost": nxt["cost"], "ci95": Z * nxt["noise"]},
        "separable_from_next": separable,
        "kept_sites": sum(r["sites"] for r in kept),
    }


def rank_stage(c: CompareConfig, data: str | Path) -> tuple[CompareConfig, dict | None]:
    """Rank the layers for every mixed variant and fix their kept layers in ``c.mixes``; writes ``mixed.json``.

    Returns:
        ``(c with mixes set, {label: choice and ranking summary})``; ``(c, None)`` without mixed variants.
    """
    specs = mixed_specs(c)
    if not specs:
        return c, None
    if c.weights in (None, STANDIN):
        raise RuntimeError("mixed variants are ranked on the resolved SiLU checkpoint: a bug")
    out = {}
    for spec in specs:
        ranking = rank_layers(c, spec, data)
        choice = choose(ranking, spec.keep)
        out[spec.label] = {
            "act": str(spec.base),
            "k": spec.keep,
            **choice,
            "ranking": {k: v for k, v in ranking.items() if k not in ("contents",)},
        }
        note = "reused" if ranking["cached"] else f"{ranking['seconds']:.0f} s"
        say(
            f"[mixed] {spec.label}: SiLU kept in layer {compact(choice['keep'])} (ranked on the "
            f"{ranking['scored_on']['what']}, {ranking['scored_on']['images']} images; {note})"
        )
    atomic.write_json(Path(c.run_dir) / "mixed.json", out)
    return dataclasses.replace(c, mixes={label: row["keep"] for label, row in out.items()}), out
