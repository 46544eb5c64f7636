"""``yolo-leaky sensitivity``: where the swap hurts, layer by layer, with no training.

For each unit (each Ultralytics layer ``model.model[i]`` holding activation sites, or each site), the SiLU
checkpoint gets the new activation in that unit alone (a partial swap), the same training-free repair as the full
swap, and one validation pass. Its cost is measured against "SiLU + the same repair" on the same calibration draw,
since BatchNorm re-estimation alone moves the unswapped network:

    cost(unit, draw) = mAP50-95(SiLU + repair) - mAP50-95(unit swapped + repair)

Noise has two sources, both measured: the calibration draw (``draws`` independent draws of training images; their
spread) and the validation set's resolution (a paired bootstrap over validation images: every network is scored on
the same resamples). A unit's noise is ``sqrt(se_images² + sd_draws² / draws)``; a cost is called separable from zero
when its Holm-adjusted normal p < 0.05 over all units, and two units are separable from each other when their
difference exceeds 1.96 times the noise of that difference (unadjusted; the JSON holds every pair).

The per-unit costs are also added up and compared with the full swap's cost (same draws, same resamples): additive,
or does the whole cost more than the sum of its parts?
"""

from __future__ import annotations

import copy
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from ..core.loading import check_model_source, load, model_task
from ..core.partial import Selection, check_selection, compact, layer_of, parse_selection
from ..core.repair import REPAIRS, calibration_set, repaired
from ..core.spec import ActSpec, parse_act
from ..core.swap import SITE_MARK, network_of, swap_activations
from ..data.datasets import file_digest, locate_data, resolve_data
from ..data.standin import MODEL as STANDIN_MODEL
from ..data.standin import STANDIN, cache_root, standin_checkpoint, standin_eval_data
from ..measure.bench import export_onnx
from ..measure.quant import calibration_images, quantize
from ..measure.scorer import ImageScorer, fused_copy, map50_95
from ..utils import atomic
from ..utils.console import quiet, say
from ..utils.errors import UserError
from .cells import start_repair
from .summary import holm

KEYS = {"model", "act", "data", "repair", "calib_images", "draws", "imgsz", "batch", "unit", "units", "boot"}
KEYS |= {"val_images", "split", "name", "project", "verbose", "standin_model", "int8"}
ALPHA = 0.05
Z = float(stats.norm.ppf(1 - ALPHA / 2))


@dataclass
class SensitivityConfig:
    """What a sensitivity scan measures.

    Attributes:
        model: The SiLU checkpoint (a ``.pt``) or ``standin`` (the offline stand-in; its data is the shapes set).
        standin_model: With ``model=standin``: which stock SiLU YAML the stand-in is pretrained from (``yolo11n.yaml``,
            ``yolov8n.yaml``, ``yolo26n.yaml``; each cached under its own key).
        act: The activation to put in each unit.
        data: Dataset YAML (``shapes`` with the stand-in).
        repair: The repair after each swap (``repair.REPAIRS``; ``fit`` applies to PReLU only, as in compare).
        calib_images: Training images per calibration draw.
        draws: Independent calibration draws (seeds 0 .. draws-1), at least 2 to measure the draw's noise.
        imgsz: Square input size.
        batch: Images per forward.
        unit: ``layer`` (each ``model.model`` entry with sites) or ``site`` (each activation site).
        units: Only these layers (a selection such as ``0-10``), all by default.
        boot: Bootstrap resamples of the validation images.
        val_images: With the stand-in: validation images generated for the scan (64 cannot separate layers).
        split: The split that scores (``val``; ``tune`` or ``train`` to choose layers without the val images).
        name: Output folder name under ``project``.
        project: Output root.
        verbose: Show Ultralytics' output.
        int8: Also measure each layer's INT8 cost: the SiLU network exported to ONNX, that layer alone quantized
            (ONNX Runtime QDQ, ``quant.quantize``'s ``deploy`` scheme: the Detect decoding stays float), scored
            against the same FP32 ONNX on the same images, with one calibration per draw (``unit=layer`` only).
    """

    model: str = STANDIN
    act: str = "relu"
    data: str | None = None
    repair: str = "fit+bn"
    calib_images: int = 64
    draws: int = 2
    imgsz: int = 64
    batch: int = 64
    unit: str = "layer"
    units: str | None = None
    boot: int = 100
    val_images: int = 256
    split: str = "val"
    name: str | None = None
    project: str = "runs/sensitivity"
    verbose: bool = False
    standin_model: str = STANDIN_MODEL
    int8: bool = False


def config_from_args(args: dict) -> SensitivityConfig:
    """Validate CLI arguments (one line per problem, before anything is loaded or written)."""
    c = SensitivityConfig(**{k: v for k, v in args.items() if v is not None})
    c.model = str(c.model)
    c.act = str(parse_act(str(c.act)))
    if c.repair not in REPAIRS:
        raise UserError(f"repair={c.repair!r} is not one of {', '.join(REPAIRS)}; e.g. repair=bn")
    for key, low in (("calib_images", 1), ("draws", 1), ("imgsz", 32), ("batch", 1), ("boot", 20), ("val_images", 1)):
        value = getattr(c, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UserError(f"{key}={value!r} must be a whole number >= {low}")
    if c.unit not in ("layer", "site"):
        raise UserError(f"unit={c.unit!r} must be layer or site")
    if not isinstance(c.int8, bool):
        raise UserError(f"int8={c.int8!r} must be True or False")
    if c.int8 and c.unit != "layer":
        raise UserError("int8=True measures whole layers (the ONNX nodes of one layer); use unit=layer or int8=False")
    if c.split not in ("val", "tune", "train"):
        raise UserError(f"split={c.split!r} must be val, tune or train")
    c.standin_model = str(c.standin_model)
    if c.standin_model != STANDIN_MODEL:
        if c.model != STANDIN:
            raise UserError(f"standin_model={c.standin_model} applies to model=standin only, not model={c.model}")
        if not c.standin_model.endswith((".yaml", ".yml")) or Path(c.standin_model).name != c.standin_model:
            raise UserError(
                f"standin_model={c.standin_model} must name a stock Ultralytics model YAML, e.g. yolov8n.yaml"
            )
        _detection_only(c.standin_model, model_task(c.standin_model))  # before anything is trained
    if c.model != STANDIN:
        if not c.model.endswith(".pt"):
            raise UserError(f"model={c.model} must be a SiLU .pt checkpoint (or model=standin): a scan needs weights")
        check_model_source(c.model)
        _detection_only(c.model, load(c.model).task)
        if c.data is None:
            raise UserError(f"sensitivity of {c.model} needs data=<dataset yaml> (the images that score it)")
    elif c.data not in (None, "shapes"):
        raise UserError(f"model=standin was pretrained on the synthetic shapes data, not {c.data}; use data=shapes")
    stem = (
        Path(c.model).stem
        if c.model != STANDIN or c.standin_model == STANDIN_MODEL
        else f"standin-{Path(c.standin_model).stem}"
    )
    c.name = c.name or f"{stem}-{parse_act(c.act).label}"
    return c


def _detection_only(model: str, task: str) -> None:
    """Refuse, in one line, a model the scan cannot score: its scorer is Ultralytics' detection validator."""
    if task != "detect":
        raise UserError(
            f"sensitivity scores layers with the detection validator; {model} is a {task} model. Use a detection "
            "model, e.g. standin_model=yolov8n.yaml; yolo-leaky compare measures every task"
        )


def sensitivity_from_cli(tokens: list[str]) -> Path:
    """Run ``yolo-leaky sensitivity key=value ...``; returns the report path. Every check of the user's input runs
    before anything is written."""
    from .config import parse_kv

    c = config_from_args(parse_kv(tokens, KEYS))
    prepared = prepare(c)
    out = Path(c.project) / c.name
    with quiet(out / "log.txt", c.verbose):
        result = run_sensitivity(c, prepared)
    paths = write_outputs(result, out)
    say(format_table(result))
    say(f"yolo-leaky sensitivity: {paths['report']} ({result['timing']['seconds']:.0f} s)")
    return paths["report"]


def prepare(c: SensitivityConfig) -> dict:
    """The SiLU network and the units to scan, checked against the network (``units=`` out of range, or holding no
    site, is one line), then the data that scores them."""
    if c.model == STANDIN:
        with quiet(cache_root() / "standin-log.txt", c.verbose):
            weights, _ = standin_checkpoint(log=say, model=c.standin_model)
    else:
        weights = Path(c.model)
    spec = parse_act(c.act)
    silu = network_of(load(weights))
    only = None
    if c.units is not None:
        only = parse_selection("layers", c.units)
        probe = copy.deepcopy(silu)
        swap_activations(probe, spec)
        sites = [p for p, m in probe.named_modules(remove_duplicate=False) if getattr(m, SITE_MARK, False)]
        try:
            check_selection(silu, only, sites, name=Path(weights).name)
        except UserError as e:
            raise UserError(f"units={c.units}: {e}") from None
    units = scan_units(silu, spec, c.unit, only)
    if c.model == STANDIN:
        data, standin = standin_eval_data(c.val_images, model=c.standin_model), True
    else:
        data, standin = Path(resolve_data(str(locate_data(c.data)))), False
    return {"weights": Path(weights), "silu": silu, "units": units, "data": data, "standin": standin}


# ------------------------------------------------------------------------------------------------- measuring
def scan_units(net: torch.nn.Module, act: ActSpec, unit: str, only: Selection | None = None) -> list[dict]:
    """The units a scan swaps one at a time: ``{"label", "layer", "type", "sites", "selection"}`` each.

    Args:
        net: The SiLU network (left unchanged).
        act: The activation (decides which sites exist, e.g. a SwiGLUFFN gate).
        unit: ``layer`` or ``site``.
        only: Scan only the layers this selection picks.
    """
    probe = copy.deepcopy(net)
    swap_activations(probe, act)
    sites = [p for p, m in probe.named_modules(remove_duplicate=False) if getattr(m, SITE_MARK, False)]
    layers = getattr(net, "model", None)
    units = []
    if unit == "layer":
        if layers is None:
            raise UserError("unit=layer needs an Ultralytics model with numbered layers; use unit=site")
        for i in sorted({layer_of(p) for p in sites if layer_of(p) is not None}):
            sel = Selection("layers", (i,))
            if only is None or only.selects(f"model.{i}"):
                n = sum(layer_of(p) == i for p in sites)
                units.append(
                    {"label": f"layer {i}", "layer": i, "type": type(layers[i]).__name__, "sites": n, "sel": sel}
                )
    else:
        for p in sites:
            if only is None or only.selects(p):
                i = layer_of(p)
                kind = type(layers[i]).__name__ if layers is not None and i is not None else "-"
                units.append({"label": p, "layer": i, "type": kind, "sites": 1, "sel": Selection("sites", (p,))})
    if not units:
        raise UserError("the scan selects no unit that holds an activation site; widen units=")
    return units


def run_sensitivity(c: SensitivityConfig, prepared: dict | None = None, log=say) -> dict:
    """Measure every unit's cost on ``c.draws`` calibration draws; returns the result (``analyse``'s, plus setup).

    Examples:
        >>> result = run_sensitivity(SensitivityConfig(model="standin", act="relu", units="22-23"))  # doctest: +SKIP
        >>> [r["label"] for r in result["units"]]  # doctest: +SKIP
        ['layer 23', 'layer 22']
    """
    start = time.perf_counter()
    load_before = os.getloadavg()[0]
    prepared = prepared or prepare(c)
    weights, data, standin = prepared["weights"], prepared["data"], prepared["standin"]
    spec = parse_act(c.act)
    silu_net, units = prepared["silu"], prepared["units"]
    scorer = ImageScorer(data, c.imgsz, split=c.split, batch=c.batch)
    repair, silu_repair = start_repair(spec, c.repair), start_repair(ActSpec("silu"), c.repair)
    log(
        f"[sensitivity] {len(units)} {c.unit}s x {c.draws} calibration draws, {spec} + {repair} vs SiLU + "
        f"{silu_repair}, scored on {scorer.images} {c.split} images"
    )
    scores: dict[str, list] = {"silu": [], "full": [], **{u["label"]: [] for u in units}}
    calibration = []
    evals = 0
    for draw in range(c.draws):
        files, array, _ = calibration_set(data, n=c.calib_images, imgsz=c.imgsz, seed=draw)
        images = torch.from_numpy(array)
        calibration.append({"seed": draw, "images": len(files)})
        scores["silu"].append(scorer.score(repaired(silu_net, silu_net, silu_repair, images)[0]))
        full = copy.deepcopy(silu_net)
        swap_activations(full, spec)
        scores["full"].append(scorer.score(repaired(silu_net, full, repair, images)[0]))
        evals += 2
        for u in units:
            net = copy.deepcopy(silu_net)
            swap_activations(net, spec, sites=u["sel"])
            scores[u["label"]].append(scorer.score(repaired(silu_net, net, repair, images)[0]))
            evals += 1
        log(f"[sensitivity] draw {draw}: {evals} networks scored, {time.perf_counter() - start:.0f} s")
    result = analyse(scores, units, boot=c.boot)
    if c.int8:
        result["int8"] = int8_costs(c, weights, data, scorer, units, log=log)
        by_label = {r["label"]: r for r in result["int8"]["units"]}
        for row in result["units"]:
            row["int8"] = {k: v for k, v in by_label[row["label"]].items() if k in INT8_ROW_KEYS}
    scanned = len({u["layer"] for u in units})
    every = len({u["layer"] for u in scan_units(silu_net, spec, "layer")})
    if c.units is not None and scanned < every:  # the sum covers only the scanned layers: say so
        parts = [(result, "the full swap")] + ([(result["int8"], "the fully quantized network")] if c.int8 else [])
        for part, whole in parts:
            part["additivity"]["verdict"] = (
                f"{part['additivity']['verdict']} (only {scanned} of the {every} layers with sites were scanned: "
                f"this compares {whole} with the sum over those, not over every layer)"
            )
    seconds = time.perf_counter() - start
    result.update(
        config={k: v for k, v in asdict(c).items() if k != "verbose"},
        act=str(spec),
        repair=repair,
        silu_repair=silu_repair,
        weights={"path": str(weights), "sha256": file_digest(weights)},
        data={"yaml": str(data), "split": c.split, "images": scorer.images, "standin": standin},
        calibration=calibration,
        timing={
            "seconds": seconds,
            "networks_scored": evals,
            "seconds_per_network": seconds / evals,
            "cpu_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "load_average_start": load_before,
            "load_average_end": os.getloadavg()[0],
        },
    )
    return result


INT8_ROW_KEYS = ("cost", "by_draw", "se_images", "sd_draws", "noise", "low", "high", "p", "p_holm", "verdict", "rank")
INT8_ROW_KEYS += ("separable_from_zero",)


def int8_costs(
    c: SensitivityConfig, weights: Path, data: Path, scorer: ImageScorer, units: list[dict], log=say
) -> dict:
    """Each layer's INT8 cost: FP32 ONNX score minus the score with that layer alone quantized, per draw.

    The SiLU checkpoint is exported once (Ultralytics' exporter, static batch ``c.batch``); each calibration draw
    uses the training images of the FP32 scan's draw (``quant.calibration_images``, seed = draw), calibrated once
    (ONNX Runtime's MinMax ranges of the float graph, shared by every layer of that draw); a layer's nodes are those
    named ``/model.<i>/`` (the Detect decoding excluded, as in ``deploy``). The baseline is the FP32 ONNX of the same
    network, scored on the same images (it does not depend on the draw); ``full`` quantizes every layer
    (``deploy``), so ``analyse``'s additivity compares the whole INT8 cost with the sum of the layers'.

    Returns:
        ``analyse``'s dict on these scores, plus ``fp32_map50_95`` (the ONNX baseline), ``full_nodes`` (the full
        model's quantization counts) and ``timing``.

    Examples:
        >>> r = int8_costs(config, weights, data, scorer, scan_units(net, parse_act("relu"), "layer"))  # doctest: +SKIP
        >>> r["full"]["cost"] > 0  # doctest: +SKIP
        True
    """
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="yolo-leaky-int8-") as tmp:
        folder = Path(tmp)
        yolo = load(weights)
        net = fused_copy(network_of(yolo))
        names, end2end = net.names, bool(getattr(net, "end2end", False))
        fp32 = export_onnx(yolo, folder, c.imgsz, name="silu-fp32", batch=min(c.batch, scorer.images))
        baseline = scorer.score_onnx(fp32, names, end2end)
        scores: dict[str, list] = {"silu": [], "full": [], **{u["label"]: [] for u in units}}
        full_nodes = None
        for draw in range(c.draws):
            calib = calibration_images(data, n=c.calib_images, imgsz=c.imgsz, seed=draw)
            cache = folder / f"ranges-{draw}.json"
            scores["silu"].append(baseline)
            q = quantize(fp32, folder / "int8.onnx", calib, calibration_cache=cache)
            full_nodes = full_nodes or q["nodes"]
            scores["full"].append(scorer.score_onnx(q["path"], names, end2end))
            for u in units:
                q = quantize(
                    fp32, folder / "int8.onnx", calib, only=(f"/model.{u['layer']}/",), calibration_cache=cache
                )
                scores[u["label"]].append(scorer.score_onnx(q["path"], names, end2end))
            log(
                f"[sensitivity] INT8 draw {draw}: {len(units) + 1} quantized networks, "
                f"{time.perf_counter() - start:.0f} s"
            )
    result = analyse(scores, units, boot=c.boot)
    verdict = result["additivity"]["verdict"]  # analyse words it for a swap
    for swap, quantized in (("the whole swap", "full INT8"), ("the full swap's cost", "the full INT8 cost")):
        verdict = verdict.replace(swap, quantized)
    result["additivity"]["verdict"] = verdict
    seconds = time.perf_counter() - start
    result.update(
        fp32_map50_95=map50_95(baseline),
        full_nodes=full_nodes,
        scheme="deploy, one layer at a time (ONNX Runtime QDQ, MinMax, per-channel INT8 weights, uint8 activations)",
        timing={"seconds": seconds, "networks_scored": c.draws * (len(units) + 1) + 1},
    )
    return result


# ------------------------------------------------------------------------------------------------- statistics
def analyse(scores: dict[str, list], units: list[dict], boot: int = 200, seed: int = 0) -> dict:
    """Costs, noise, separability and additivity from per-image scores.

    Args:
        scores: ``{"silu": [per draw], "full": [...], unit label: [...]}``, each entry ``ImageScorer.score``'s list.
        units: ``scan_units``' units, in scan order.
        boot: Bootstrap resamples of the images (the same resamples for every network: paired).
        seed: Seed of the resampling.

    Returns:
        ``{"units": [ranked rows], "full", "sum", "additivity", "pairs", "separable_pairs", "top_vs_last"}``.
    """
    n = len(scores["silu"][0])
    draws = len(scores["silu"])
    index = np.random.default_rng(seed).integers(n, size=(boot, n))
    point = {k: np.array([map50_95(s) for s in v]) for k, v in scores.items()}  # (draws,)
    resampled = {k: np.array([[map50_95(s, i) for s in v] for i in index]) for k, v in scores.items()}  # (boot, draws)
    cost = {k: point["silu"] - point[k] for k in scores if k != "silu"}
    cost_boot = {k: resampled["silu"] - resampled[k] for k in scores if k != "silu"}
    labels = [u["label"] for u in units]
    cost["sum"] = sum(cost[k] for k in labels)
    cost_boot["sum"] = sum(cost_boot[k] for k in labels)

    def summary(c: np.ndarray, b: np.ndarray) -> dict:
        se_images = float(b.mean(axis=1).std(ddof=1))
        sd_draws = float(c.std(ddof=1)) if draws > 1 else float("nan")
        noise = math.sqrt(se_images**2 + (sd_draws**2 / draws if draws > 1 else 0.0))
        mean = float(c.mean())
        p = float(2 * stats.norm.sf(abs(mean) / noise)) if noise > 0 else float("nan")
        return {"cost": mean, "by_draw": [float(x) for x in c], "se_images": se_images, "sd_draws": sd_draws,
                "noise": noise, "low": mean - Z * noise, "high": mean + Z * noise, "p": p}  # fmt: skip

    rows = []
    for u in units:
        rows.append({k: v for k, v in u.items() if k != "sel"} | summary(cost[u["label"]], cost_boot[u["label"]]))
    testable = [r for r in rows if not math.isnan(r["p"])]
    for r, adjusted in zip(testable, holm([r["p"] for r in testable]) if testable else []):
        r["p_holm"] = adjusted
        r["separable_from_zero"] = adjusted < ALPHA
        r["verdict"] = ("costs mAP" if r["cost"] > 0 else "gains mAP") if adjusted < ALPHA else "within noise"
    rows.sort(key=lambda r: r["cost"], reverse=True)
    for rank, r in enumerate(rows, 1):
        r["rank"] = rank
    pairs = {}
    for a in rows:
        for b in rows:
            if a["rank"] < b["rank"]:
                d = summary(cost[a["label"]] - cost[b["label"]], cost_boot[a["label"]] - cost_boot[b["label"]])
                pairs[f"{a['label']} | {b['label']}"] = {**d, "separable": abs(d["cost"]) > Z * d["noise"]}
    for r in rows:
        r["separable_from"] = [
            o["rank"] for o in rows if o is not r and pairs[_pair(r, o)]["separable"]
        ]  # ranks of the units this one is told apart from
        nxt = next((o for o in rows if o["rank"] == r["rank"] + 1), None)
        r["separable_from_next"] = None if nxt is None else pairs[_pair(r, nxt)]["separable"]
    full, total = summary(cost["full"], cost_boot["full"]), summary(cost["sum"], cost_boot["sum"])
    gap = summary(cost["full"] - cost["sum"], cost_boot["full"] - cost_boot["sum"])
    if gap["low"] > 0:
        verdict = "the whole swap costs more than the sum of its layers"
    elif gap["high"] < 0:
        verdict = "the whole swap costs less than the sum of its layers"
    else:
        verdict = "additive within noise (the full swap's cost and the sum of the layers' costs are not told apart)"
    return {
        "units": rows,
        "silu_map50_95": [float(x) for x in point["silu"]],
        "full": full,
        "sum": total,
        "additivity": {**gap, "verdict": verdict},
        "pairs": pairs,
        "separable_pairs": sum(p["separable"] for p in pairs.values()),
        "top_vs_last": pairs[_pair(rows[0], rows[-1])] if len(rows) > 1 else None,
        "boot": boot,
        "draws": draws,
    }


def _pair(a: dict, b: dict) -> str:
    first, second = (a, b) if a["rank"] < b["rank"] else (b, a)
    return f"{first['label']} | {second['label']}"


# ------------------------------------------------------------------------------------------------- outputs
def format_table(result: dict) -> str:
    """The ranked table as Markdown (cost = mAP50-95 lost against SiLU + the same repair; ± is 1.96 x noise); with
    ``int8=True``, each layer's INT8 cost (against the FP32 ONNX) in three more columns."""
    int8 = "int8" in result
    extra = " INT8 cost | ±95% | INT8 from zero |" if int8 else ""
    lines = [
        f"| rank | unit | type | sites | cost (mAP50-95) | ±95% | per draw | from zero | separable from ranks |{extra}",
        "|---:|---|---|---:|---:|---:|---|---|---|" + ("---:|---:|---|" if int8 else ""),
    ]
    for r in result["units"]:
        draws = ", ".join(f"{x:+.4f}" for x in r["by_draw"])
        others = compact(r["separable_from"]) or "none"
        q = r.get("int8")
        tail = f" {q['cost']:+.4f} | {Z * q['noise']:.4f} | {q.get('verdict', 'untested')} |" if q else ""
        lines.append(
            f"| {r['rank']} | {r['label']} | {r['type']} | {r['sites']} | {r['cost']:+.4f} | {Z * r['noise']:.4f} "
            f"| {draws} | {r.get('verdict', 'untested')} | {others} |{tail}"
        )
    full, total, gap = result["full"], result["sum"], result["additivity"]
    lines += [
        "",
        f"Full swap: cost {full['cost']:+.4f} ± {Z * full['noise']:.4f}; sum of the units' costs "
        f"{total['cost']:+.4f} ± {Z * total['noise']:.4f}; full − sum {gap['cost']:+.4f} ± {Z * gap['noise']:.4f}: "
        f"{gap['verdict']}.",
    ]
    if int8:
        q = result["int8"]
        full, total, gap = q["full"], q["sum"], q["additivity"]
        lines.append(
            f"INT8 (every layer quantized, Detect decoding in float): cost {full['cost']:+.4f} ± "
            f"{Z * full['noise']:.4f} against FP32 ONNX {q['fp32_map50_95']:.4f}; sum of the layers' INT8 costs "
            f"{total['cost']:+.4f} ± {Z * total['noise']:.4f}; full − sum {gap['cost']:+.4f} ± {Z * gap['noise']:.4f}: "
            f"{gap['verdict']}."
        )
    return "\n".join(lines)


def write_outputs(result: dict, out: Path) -> dict:
    """Write ``sensitivity.json``, ``sensitivity.md`` and ``sensitivity.png`` under ``out`` (each atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "sensitivity.json", "report": out / "sensitivity.md", "plot": out / "sensitivity.png"}
    atomic.write_json(paths["json"], result)
    _plot(result, paths["plot"])
    atomic.write_text(paths["report"], _report(result, paths))
    return paths


def _report(result: dict, paths: dict) -> str:
    c, t, d = result["config"], result["timing"], result["data"]
    what = "the synthetic stand-in (shapes data, not COCO)" if d["standin"] else f"{c['model']} on {d['yaml']}"
    top = result["top_vs_last"]
    separated = sum(bool(r.get("separable_from_zero")) for r in result["units"])
    lines = [
        f"# Per-{c['unit']} sensitivity: {result['act']} in one {c['unit']} at a time, {what}",
        "",
        f"Cost = mAP50-95 of SiLU + {result['silu_repair']} minus mAP50-95 with {result['act']} in that {c['unit']} "
        f"alone + {result['repair']}, on the same calibration draw ({c['calib_images']} training images, "
        f"{result['draws']} draws), scored on {d['images']} {d['split']} images. ± is 1.96 × noise, noise = "
        f"sqrt(bootstrap SE over the images² + SD over draws² / draws) ({result['boot']} paired resamples).",
        f"SiLU + {result['silu_repair']} scores "
        + ", ".join(f"{x:.4f}" for x in result["silu_map50_95"])
        + " (per draw).",
        "",
        format_table(result),
        "",
        f"{separated} of {len(result['units'])} {c['unit']}s are separable from zero (Holm over all, α = 0.05); "
        f"{result['separable_pairs']} of {len(result['pairs'])} pairs are separable from each other (unadjusted).",
    ]
    if top is not None:
        lines.append(
            f"Top vs last: {top['cost']:+.4f} ± {Z * top['noise']:.4f} "
            f"({'separable' if top['separable'] else 'not separable'})."
        )
    if "int8" in result:
        q = result["int8"]
        n8 = sum(bool(r.get("separable_from_zero")) for r in q["units"])
        lines += [
            "",
            f"INT8 cost = mAP50-95 of the SiLU network's FP32 ONNX ({q['fp32_map50_95']:.4f}) minus mAP50-95 with "
            f"that layer alone quantized ({q['scheme']}), calibrated on each draw's {c['calib_images']} training "
            f"images, scored on the same {d['images']} {d['split']} images; same noise treatment. {n8} of "
            f"{len(q['units'])} layers' INT8 costs are separable from zero; measured in {q['timing']['seconds']:.0f} s "
            f"({q['timing']['networks_scored']} ONNX networks), included in the time below.",
        ]
    lines += [
        "",
        f"Measured in {t['seconds']:.0f} s ({t['networks_scored']} networks, {t['seconds_per_network']:.1f} s each) "
        f"on {t['cpus']} CPUs, {t['cpu_threads']} torch threads, load average {t['load_average_start']:.1f} at the "
        f"start and {t['load_average_end']:.1f} at the end (other processes share these CPUs when above {t['cpus']}).",
        "",
        f"![cost per layer]({paths['plot'].name})",
        "",
    ]
    return "\n".join(lines)


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(result["units"], key=lambda r: (r["layer"] if r["layer"] is not None else -1, r["label"]))
    x = np.arange(len(rows))
    int8 = "int8" in result
    fig, ax = plt.subplots(figsize=(max(6.0, (0.6 if int8 else 0.45) * len(rows)), 3.6))
    colours = ["tab:red" if r.get("separable_from_zero") else "tab:grey" for r in rows]
    width = 0.4 if int8 else 0.8
    shift = -width / 2 if int8 else 0.0
    ax.bar(x + shift, [r["cost"] for r in rows], width, yerr=[Z * r["noise"] for r in rows], color=colours, capsize=2)
    if int8:
        q = [r["int8"] for r in rows]
        ax.bar(
            x + width / 2,
            [v["cost"] for v in q],
            width,
            yerr=[Z * v["noise"] for v in q],
            color=["tab:blue" if v.get("separable_from_zero") else "lightsteelblue" for v in q],
            capsize=2,
            label="INT8 of this layer alone vs FP32 (blue: separable)",
        )
        ax.legend(fontsize=7, loc="upper right")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, [r["label"].replace("layer ", "") for r in rows], rotation=90 if len(rows) > 30 else 0)
    ax.set_xlabel(f"layer index ({'left bars: swap; ' if int8 else ''}red: separable from zero)")
    ax.set_ylabel("mAP50-95 cost vs SiLU + repair")
    full, total = result["full"], result["sum"]
    ax.set_title(
        f"{result['act']} one unit at a time (±95%); full swap {full['cost']:+.3f}, sum {total['cost']:+.3f}",
        fontsize=9,
    )
    fig.tight_layout()
    atomic.write_file(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def load_result(path: str | Path) -> dict:
    """Read a ``sensitivity.json`` back."""
    return json.loads(Path(path).read_text())
