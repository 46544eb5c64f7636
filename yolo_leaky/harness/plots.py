"""PNG plots for the comparison report."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ..core.spec import parse_act  # noqa: E402
from ..core.tasks import METRICS as TASK_METRICS  # noqa: E402
from ..core.tasks import headline  # noqa: E402
from ..data.standin import TASKS as STANDIN_TASKS  # noqa: E402
from ..utils import atomic  # noqa: E402
from .cells import cell_key  # noqa: E402
from .config import CompareConfig, MixedSpec  # noqa: E402
from .summary import Summary, headline_recovery, int8_pareto_points  # noqa: E402


def write_plots(run: Path, c: CompareConfig, summary: Summary) -> dict:
    """Write every plot that has data; return {description: path}. Renders ``summary`` only; computes nothing."""
    cells, units = summary.cells, summary.units
    metric = headline(summary.task)[1]
    plots = {}
    for what, name, draw in [
        (f"{metric} vs latency ratio (Pareto)", "pareto.png", lambda ax: _pareto(ax, c, summary)),
        (
            f"FP32 and INT8: {metric} vs latency ratio per runtime",
            "pareto_int8.png",
            lambda ax: _pareto_int8(ax, c, summary),
        ),
        ("training curves per variant", "curves.png", None),
        ("activation function shapes", "activations.png", lambda ax: _shapes(ax, c, units)),
        ("PReLU learned slopes per layer", "prelu_slopes.png", lambda ax: _slopes(ax, units)),
        ("channels <=0 on every val pixel, per layer", "units.png", lambda ax: _units(ax, units)),
        (
            "dead / negative-only channels over training epochs",
            "units_epochs.png",
            lambda ax: _units_epochs(ax, c, cells),
        ),
    ]:
        path = run / name
        if name == "curves.png":
            ok = _curves(path, c, cells, summary.task)
        else:
            ok = _single(path, draw)
        if ok:
            plots[what] = str(path)
    return plots


def _single(path: Path, draw) -> bool:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    try:
        if draw(ax) is False:
            return False
        fig.tight_layout()
        _save(fig, path)
        return True
    finally:
        plt.close(fig)


def _save(fig, path: Path) -> None:
    atomic.write_file(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"), suffix=".png")


def _data_name(summary: Summary) -> str:
    """What the accuracy axis was scored on, as a plot names it: a stand-in is never mistaken for COCO."""
    stands_for = STANDIN_TASKS.get(summary.task, STANDIN_TASKS["detect"])["stands_for"]
    return f"the synthetic stand-in data, not {stands_for}" if summary.standin else "the validation images"


def _pareto(ax, c: CompareConfig, summary: Summary) -> bool | None:
    runtime = summary.runtime
    if runtime is None:
        return False
    for label, r in summary.rows.items():
        if f"{runtime}_paired_ratio" not in r:
            continue
        key = headline(summary.task)[0]
        y, e = r[f"{key}_mean"], r[f"{key}_std"] or 0.0
        ratio, lo, hi = (r[f"{runtime}_{k}"] for k in ("paired_ratio", "paired_ci_low", "paired_ci_high"))
        ax.errorbar(ratio, y, xerr=[[ratio - lo], [hi - ratio]], yerr=e, fmt="o", capsize=3)
        ax.annotate(label, (ratio, y), textcoords="offset points", xytext=(5, 5 + 12 * (len(ax.texts) % 3)))
    floor = summary.floor_ratio.get(runtime)
    if floor is not None:
        ax.axvline(floor, ls="--", c="grey", lw=1, label="identity floor")
        ax.legend()
    ax.set_xlabel(f"latency / {c.baseline} latency ({runtime}, 95% CI)")
    ax.set_ylabel(f"{headline(summary.task)[1]} on {_data_name(summary)}\n(mean ± std over seeds)")  # 2 lines: fits
    ax.set_title("Accuracy vs speed (left is faster, higher is more accurate)")
    return None


def _pareto_int8(ax, c: CompareConfig, summary: Summary) -> bool | None:
    """Renders ``summary.int8_pareto_points``: each runtime's latency against its own score."""
    points = int8_pareto_points(summary.int8, summary.int8_raw, summary.task)
    if not points:
        return False
    markers = {"ort-cpu": "o", "openvino-cpu": "s"}
    for p in points:
        ax.errorbar(
            p["ratio"],
            p["score"],
            xerr=[[p["ratio"] - p["ci_low"]], [p["ci_high"] - p["ratio"]]],
            yerr=p["score_std"] or 0.0,
            fmt=markers.get(p["runtime"], "^"),
            mfc="none" if p["precision"] == "FP32" else None,
            capsize=2,
        )
        ax.annotate(
            f"{p['variant']} {p['precision']} ({p['runtime']})",
            (p["ratio"], p["score"]),
            fontsize=6,
            xytext=(4, 3),
            textcoords="offset points",
        )
    timed = summary.int8["latency_settings"]
    sizes = sorted({t["imgsz"] for t in timed.values()})
    ax.set_xlabel(
        f"latency / {c.baseline} FP32 latency (same runtime, imgsz {', '.join(map(str, sizes))}, 95% CI over blocks)",
        fontsize=8,
    )
    ov_seeds = sorted({s for p in points if p["runtime"] == "openvino-cpu" for s in p["seeds"]})
    ax.set_ylabel(
        f"{headline(summary.task)[1]} at imgsz {summary.int8['settings']['imgsz']} on {_data_name(summary)}\n"
        "ORT: mean ± std over seeds" + (f"; OpenVINO: seed {', '.join(map(str, ov_seeds))}" if ov_seeds else ""),
        fontsize=8,
    )
    ax.set_title("FP32 (open), INT8 (filled), each at its own runtime's mAP\ncircles ORT, squares OpenVINO", fontsize=9)
    return None


# task -> the training loss column a curve shows (Ultralytics' results.csv; classification has one loss)
LOSS_COLUMN = {"classify": ("train/loss", "train loss")}


def _curves(path: Path, c, cells: dict, task: str = "detect") -> bool:
    fig, (ax_loss, ax_map) = plt.subplots(1, 2, figsize=(11, 4))
    try:
        drawn = False
        for spec in c.specs:
            series = [
                _read_csv(cells[k]["results_csv"])
                for k in cells
                if cells[k]["variant"] == spec.label
                and cells[k]["status"] == "ok"
                and cells[k].get("recovery") == headline_recovery(c)
            ]
            series = [s for s in series if s]
            if not series:
                continue
            drawn = True
            n = min(len(s["epoch"]) for s in series)
            epochs = series[0]["epoch"][:n]
            loss_col = LOSS_COLUMN.get(task, ("train/box_loss",))[0]
            for ax, col in ((ax_loss, loss_col), (ax_map, TASK_METRICS[task][headline(task)[0]])):
                values = np.array([s[col][:n] for s in series if col in s])
                if values.size:
                    ax.plot(epochs, values.mean(0), marker=".", label=spec.label)
        if not drawn:
            return False
        ax_loss.set(title=f"{LOSS_COLUMN.get(task, ('', 'train box loss'))[1]} (mean over seeds)", xlabel="epoch")
        ax_map.set(title=f"val {headline(task)[1]} (mean over seeds)", xlabel="epoch")
        ax_loss.legend()
        fig.tight_layout()
        _save(fig, path)
        return True
    finally:
        plt.close(fig)


def _read_csv(path) -> dict:
    """A cell's results.csv as {column: values}, read by Ultralytics' own ``BaseTrainer.read_results_csv``."""
    from types import SimpleNamespace

    from ultralytics.engine.trainer import BaseTrainer

    if not Path(path).is_file():
        return {}
    return {k.strip(): v for k, v in BaseTrainer.read_results_csv(SimpleNamespace(csv=Path(path))).items()}


def _shapes(ax, c, units) -> None:
    x = torch.linspace(-4, 4, 401)
    for spec in c.specs:
        if isinstance(spec, MixedSpec):  # its activation's curve is already drawn; its SiLU layers are SiLU's
            continue
        act = spec.build(channels=1)
        slope = (units.get(spec.label, {}).get("prelu", {}).get("summary") or {}).get("median_of_site_medians")
        label = spec.label
        if spec.name == "prelu" and slope is not None:
            act.weight.data.fill_(slope)
            label += f" (median learned slope {slope:.3f})"
        with torch.no_grad():
            ax.plot(x, act(x.clone()), label=label)
    ax.plot(x, parse_act("identity").build()(x), ls=":", c="grey", label="identity")
    ax.axhline(0, c="k", lw=0.5)
    ax.axvline(0, c="k", lw=0.5)
    ax.set(title="Activation functions", xlabel="x", ylabel="f(x)", ylim=(-1.5, 4))
    ax.legend(fontsize=8)


def _slopes(ax, units) -> bool | None:
    layers = next((u["prelu"]["layers"] for u in units.values() if u.get("prelu")), None)
    if not layers:
        return False
    idx = np.arange(len(layers))
    ax.fill_between(idx, [s["min"] for s in layers], [s["max"] for s in layers], alpha=0.3, label="min-max")
    ax.plot(idx, [s["median"] for s in layers], marker=".", label="median")
    ax.axhline(0, c="k", lw=0.5)
    ax.set(title="PReLU learned negative slopes per site", xlabel="site (model order)", ylabel="slope")
    ax.legend()
    return None


def _units_epochs(ax, c, cells) -> bool | None:
    drawn = False
    for spec in c.specs:
        history = _unit_history(cells.get(cell_key(spec, c.seeds[0], headline_recovery(c)), {}))
        if history:
            ax.plot(
                [h["epoch"] for h in history],
                [100 * h["dead_or_negative_only"] for h in history],
                marker="o",
                label=spec.label,
            )
            drawn = True
    if not drawn:
        return False
    ax.set(title=f"Channels ≤0 on every val pixel, during training (seed {c.seeds[0]})", xlabel="epoch", ylabel="%")
    ax.legend()
    return None


def _unit_history(cell: dict) -> list:
    path = Path(cell.get("results_csv", "")).with_name("unit_health.json")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return []


def _units(ax, units) -> bool | None:
    drawn = False
    for label, u in units.items():
        per_layer = u.get("health", {}).get("per_layer", [])
        if per_layer:
            ax.plot([100 * p["dead_or_negative_only"] for p in per_layer], marker=".", lw=1, label=label)
            drawn = True
    if not drawn:
        return False
    ax.set(
        title="Channels whose input is ≤0 on every validation pixel", xlabel="activation site (model order)", ylabel="%"
    )
    ax.legend()
    return None
