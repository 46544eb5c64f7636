"""``compare targets=[...]``: every variant x seed of the comparison built for each deployment target and scored
there, and the report's "Which activation for which target".

The stage (``targets_stage``) takes each completed cell of the headline recovery method, builds the target's
artifact with its backend (``targets.base``), quantized on that seed's calibration draw (the images its repairs
used), scores the artifact itself, and keeps the vendor compiler's placement and estimate. It writes
``targets.json``; a seed's result is reused only for the exact checkpoint it was built from (SHA-256). A target whose
toolchain is missing is recorded with its install step, never dropped. A toolchain that rejects one variant's model
records the rejection for that variant, and the others still run.

``target_tables`` computes, per target, each variant's artifact score on the task's headline metric
(``core.tasks.headline``: mAP50-95 for detection, mask mAP50-95, pose mAP50-95, rotated-box mAP50-95, top-1) over
seeds and its difference from the baseline's artifact on the same target (Welch, Holm-adjusted within the target:
``summary.verdicts``), the vendor's estimated time (``estimate["inference_time_ms"]``, a backend convention) and op
placement; ``recommendation`` derives each target's one line from those numbers alone.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..core.tasks import headline
from ..data.datasets import file_digest
from ..measure.quant import calibration_images
from ..targets.base import ToolchainRejected, backends
from ..utils import atomic
from ..utils.console import say
from .cells import cell_key
from .config import CompareConfig
from .summary import difference, headline_recovery, mean_std, verdicts

TIME_KEY = "inference_time_ms"  # a vendor estimate's estimated inference time, ms at its default clock (ethos-u)


def targets_stage(c: CompareConfig, cells: dict, data: str) -> dict:
    """Build and score every completed cell's artifact on every target of ``c.targets`` (module docstring).

    Returns:
        ``{"targets": {name: {"install", "missing"?, "seeds": {seed: {label: {"checkpoint", "metrics",
        "placement", "estimate", "artifact", "tools"} or {"checkpoint", "rejected"}}}}}}``; ``{}`` without targets.
    """
    if not c.targets:
        return {}
    method = headline_recovery(c)
    path = c.run_dir / "targets.json"
    before = (atomic.read_json(path) or {}).get("targets", {})
    known = backends()
    out: dict = {"targets": {}}
    for name in c.targets:
        cls = known[name]
        backend = cls(**cls.stage_options)
        problem = backend.missing()
        entry: dict = {"install": cls.install, "seeds": {}}
        out["targets"][name] = entry
        if problem:
            say(f"[targets] {name}: not run, {problem}")
            entry["missing"] = problem
            continue
        for seed in c.seeds:
            calib = None
            for spec in c.specs:
                cell = cells.get(cell_key(spec, seed, method), {})
                if cell.get("status") != "ok":
                    continue
                digest = file_digest(cell["weights"])
                old = before.get(name, {}).get("seeds", {}).get(str(seed), {}).get(spec.label)
                if old and old.get("checkpoint") == digest:
                    entry["seeds"].setdefault(str(seed), {})[spec.label] = old
                    continue
                if calib is None:
                    calib = calibration_images(data, n=c.calib_images, imgsz=c.imgsz, seed=seed)
                say(f"[targets] {name}: {spec.label} seed {seed}: building and scoring the artifact")
                folder = c.run_dir / "targets" / name / f"s{seed}" / spec.label
                folder.mkdir(parents=True, exist_ok=True)
                try:
                    build = backend.build(Path(cell["weights"]), calib, folder, c.imgsz)
                    row = {
                        "checkpoint": digest,
                        "metrics": backend.score(build, data, c.imgsz),
                        "placement": build.placement,
                        "estimate": build.estimate,
                        "artifact": str(build.artifact),
                        "tools": build.tools,
                    }
                except ToolchainRejected as e:
                    row = {"checkpoint": digest, "rejected": str(e)}
                entry["seeds"].setdefault(str(seed), {})[spec.label] = row
        atomic.write_json(path, out)
    atomic.write_json(path, out)
    return out


def target_tables(c: CompareConfig, stage: dict | None, n_val: int | None) -> dict | None:
    """Per target: ``missing``/``install``, or ``rows`` (label -> ``values`` (the headline metric of ``c.task``),
    ``mean``, ``std``, ``diff`` (vs the baseline on this target), ``verdict``, ``time_ms``, ``time_ratio``,
    ``cpu_ops``, ``accelerator_ops``, ``rejected``), ``metric`` (the headline's report name) and ``line``
    (``recommendation``)."""
    if not stage or not stage.get("targets"):
        return None
    base = c.baseline
    key, metric = headline(c.task)
    out = {}
    for name, entry in stage["targets"].items():
        if "missing" in entry:
            t = {"missing": entry["missing"], "install": entry["install"], "metric": metric}
            t["line"] = recommendation(name, t, base, c.speed_band)
            out[name] = t
            continue
        rows = {}
        for spec in c.specs:
            per = [
                s[spec.label] for _, s in sorted(entry["seeds"].items(), key=lambda kv: int(kv[0])) if spec.label in s
            ]
            ok = [p for p in per if "metrics" in p]
            values = [float(p["metrics"][key]) for p in ok]
            times = [float(p["estimate"][TIME_KEY]) for p in ok if (p.get("estimate") or {}).get(TIME_KEY) is not None]
            placement = next((p["placement"] for p in ok if p.get("placement")), None)
            row = {
                "values": values,
                "time_ms": sum(times) / len(times) if times else None,
                "cpu_ops": _ops(placement, "cpu"),
                "accelerator_ops": _ops(placement, "accelerator"),
                "rejected": next((p["rejected"] for p in per if "rejected" in p), None),
            }
            row["mean"], row["std"] = mean_std(values)
            rows[spec.label] = row
        others = [label for label in rows if label != base and rows[label]["values"]]
        base_values = rows.get(base, {}).get("values", [])
        entries = []
        for label in others:
            rows[label]["diff"] = difference(rows[label]["values"], base_values) if base_values else None
            entries.append((rows[label]["diff"], rows[label]["values"] + base_values))
        for label, verdict in zip(others, verdicts(entries, n_val) if base_values else []):
            rows[label]["verdict"] = verdict
        base_time = rows.get(base, {}).get("time_ms")
        for row in rows.values():
            row["time_ratio"] = row["time_ms"] / base_time if row["time_ms"] is not None and base_time else None
        t = {"rows": rows, "install": entry["install"], "base": base, "metric": metric}
        t["line"] = recommendation(name, t, base, c.speed_band)
        out[name] = t
    return out


def _ops(placement: dict | None, where: str) -> int | None:
    if not placement or where not in placement:
        return None
    ops = placement[where]
    return int(sum(ops.values())) if isinstance(ops, dict) else int(ops)


def recommendation(name: str, table: dict, base: str, band: float) -> str:
    """The target's one line, from its table alone: the fastest variant by the vendor's estimate (more than
    ``band`` faster than the baseline) among those whose artifact accuracy is not significantly lower than the
    baseline's on this target; else "no measurable reason to swap" and why.

    A variant that leaves more ops on the CPU than the baseline is not ranked by the estimate (a vendor's estimate
    such as Vela's covers the accelerator only, so the ops it leaves on the CPU are missing from it), and a fastest
    variant whose accuracy difference has no interval (one seed) is named, not recommended.

    Examples:
        >>> rows = {"silu": {"values": [0.5, 0.51], "time_ms": 2.0, "time_ratio": 1.0, "cpu_ops": 4},
        ...         "relu": {"values": [0.5, 0.5], "time_ms": 1.0, "time_ratio": 0.5, "cpu_ops": 0,
        ...                  "verdict": "not significant", "diff": {"diff": -0.005, "low": -0.07, "high": 0.06}}}
        >>> recommendation("ethos-u", {"rows": rows}, "silu", 0.02)
        "ethos-u: relu, 2.00x faster by the vendor's estimate, -0.005 mAP50-95 [-0.070, +0.060] not significant, \
all ops on the accelerator"
    """
    if "missing" in table:
        return f"{name}: not run here, its toolchain is missing; install it with: {table['install']}"
    rows, metric = table["rows"], table.get("metric", "mAP50-95")
    if not rows.get(base, {}).get("values"):
        return f"{name}: no result for the {base} control on this target, so no comparison"
    fine = [
        label
        for label, r in rows.items()
        if label != base and r["values"] and not str(r.get("verdict", "")).startswith("lower")
    ]
    timed = [label for label in fine if rows[label].get("time_ratio") is not None]
    if rows[base].get("time_ms") is None:
        return (
            f"{name}: no measurable reason to swap from this target's evidence: its toolchain gives no speed estimate "
            f"(host latency, where the artifact runs on the host: yolo-leaky deploy target={name}); "
            f"accuracy vs {base}: " + _accuracy_list(rows, base)
        )
    base_cpu = rows[base].get("cpu_ops")
    fallback = [label for label in timed if None not in (base_cpu, rows[label].get("cpu_ops"))]
    fallback = [label for label in fallback if rows[label]["cpu_ops"] > base_cpu]
    timed = [label for label in timed if label not in fallback]
    unranked = (
        "; not ranked, their CPU ops are outside the vendor's estimate: "
        + ", ".join(f"{label} ({rows[label]['cpu_ops']} ops on the CPU, {base}: {base_cpu})" for label in fallback)
        if fallback
        else ""
    )
    if not timed:
        return (
            f"{name}: no measurable reason to swap: no variant with a vendor time estimate keeps {base}'s artifact "
            "accuracy and its ops on the accelerator (each is significantly lower, was rejected, or leaves more ops "
            "on the CPU)" + unranked
        )
    best = min(timed, key=lambda label: rows[label]["time_ratio"])
    r = rows[best]
    if r["time_ratio"] >= 1 - band:
        return (
            f"{name}: no measurable reason to swap: no variant is more than {band:.0%} faster than {base} by the "
            f"vendor's estimate (best: {best}, {r['time_ratio']:.2f}x the time) without a significant accuracy loss"
            + unranked
        )
    d = r.get("diff") or {}
    tested = bool(d) and not math.isnan(d.get("low", math.nan))
    ci = f" [{d['low']:+.3f}, {d['high']:+.3f}]" if tested else ""
    delta = d.get("diff", (r["mean"] if "mean" in r else 0) - (rows[base].get("mean") or 0))
    where = _placement_text(r, base, base_cpu)
    if not tested:
        return (
            f"{name}: no activation to recommend yet: {best} is {1 / r['time_ratio']:.2f}x faster by the vendor's "
            f"estimate" + (f" ({where})" if where else "") + f", but its accuracy cost on this target is untested "
            f"({delta:+.3f} {metric}, {r.get('verdict', 'untested')}); run two or more seeds" + unranked
        )
    return (
        f"{name}: {best}, {1 / r['time_ratio']:.2f}x faster by the vendor's estimate, {delta:+.3f} {metric}{ci} "
        f"{r.get('verdict', 'untested')}" + (f", {where}" if where else "") + unranked
    )


def _placement_text(r: dict, base: str, base_cpu: int | None) -> str:
    if r.get("cpu_ops") is None:
        return ""
    if r["cpu_ops"] == 0:
        return "all ops on the accelerator"
    return f"{r['cpu_ops']} ops on the CPU" + (
        "" if base_cpu is None else f", as many as {base}'s" if r["cpu_ops"] == base_cpu else f" ({base}: {base_cpu})"
    )


def _accuracy_list(rows: dict, base: str) -> str:
    parts = []
    for label, r in rows.items():
        if label == base or not r["values"]:
            continue
        d = r.get("diff") or {}
        shown = f"{d['diff'] if 'diff' in d else r['mean'] - rows[base]['mean']:+.3f}"
        parts.append(f"{label} {shown} ({r.get('verdict', 'untested')})")
    return "; ".join(parts) or "no other variant"


def targets_section(tables: dict | None) -> str:
    """The report's "Which activation for which target" section (empty without ``targets=``)."""
    if not tables:
        return ""
    lines = [
        "## Which activation for which target\n",
        "Each variant's recovered checkpoint, per seed, built into the target's INT8 artifact by its own toolchain "
        "and scored on the validation images; differences against the SiLU control's artifact on the same target "
        "(Welch, Holm-adjusted within the target). Times are the vendor compiler's own estimate, not a measurement "
        "on a device.\n",
    ]
    lines += [f"- {t['line']}" for t in tables.values()]
    for name, t in tables.items():
        if "rows" not in t:
            continue
        header = f"| variant | artifact {t['metric']} | vs control [95% CI] | verdict | vendor est. ms | ops on CPU |"
        lines += ["", f"### {name}", "", header, "|---|---|---|---|---|---|"]
        for label, r in t["rows"].items():
            d = r.get("diff") or {}
            has_ci = d and not math.isnan(d.get("low", math.nan))
            ci = f"{d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" if has_ci else "-"
            mean = "n/a" if math.isnan(r["mean"]) else f"{r['mean']:.3f}" + (f" ± {r['std']:.3f}" if r["std"] else "")
            verdict = r.get("verdict") or r.get("rejected") or ("control" if label == t.get("base") else "-")
            est = "-" if r["time_ms"] is None else f"{r['time_ms']:.3f}"
            cpu = "-" if r["cpu_ops"] is None else r["cpu_ops"]
            n = len(r["values"])
            lines.append(f"| {label} | {mean} ({n} seed{'' if n == 1 else 's'}) | {ci} | {verdict} | {est} | {cpu} |")
    return "\n".join(lines) + "\n"
