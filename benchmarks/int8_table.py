"""INT8 post-training quantization per activation: FP32 vs INT8 accuracy and latency, one checkpoint per variant.

For each checkpoint: an FP32 ONNX export, one INT8 ONNX per scheme (ONNX Runtime QDQ; the same calibration images
for every variant), each scored by Ultralytics' validator; one interleaved ORT CPU benchmark of every FP32 and
``deploy`` INT8 file; and, with ``yolo-leaky[openvino]`` installed, the same for OpenVINO (FP32 IR and NNCF INT8 IR)
plus which activations OpenVINO's CPU plugin fuses (``yolo_leaky.measure.quant.measure_int8``).

    YOLO_OFFLINE=1 python benchmarks/int8_table.py --weights silu=a.pt relu=b.pt leaky_relu:0.1=c.pt prelu=d.pt \\
        --data shapes.yaml --imgsz 64 [--n-calib 64] [--seconds 20] [--json out.json]

The first variant is the latency baseline. Timings are only as quiet as the machine: read the load averages
printed under each latency table.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "False")

from ultralytics.utils import LOGGER  # noqa: E402

from yolo_leaky.measure.quant import CALIBRATION_METHODS, DEFAULT_METHOD, SCHEMES, measure_int8  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", nargs="+", required=True, help="label=checkpoint.pt, one per variant")
    p.add_argument("--data", required=True, help="dataset YAML: calibration from train, scores from val")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--bench-imgsz", type=int, help="input size of the timed files (default: --imgsz)")
    p.add_argument("--n-calib", type=int, default=64)
    p.add_argument("--seconds", type=float, default=20, help="timed wall seconds per runtime")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--blocks", type=int, default=8)
    p.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=list(SCHEMES))
    p.add_argument("--method", default=DEFAULT_METHOD, choices=CALIBRATION_METHODS)
    p.add_argument("--runtimes", nargs="+", default=["ort-cpu", "openvino-cpu"], choices=["ort-cpu", "openvino-cpu"])
    p.add_argument("--out", help="folder for the exported files (default: a temporary folder)")
    p.add_argument("--json", help="write the whole result to this file")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    weights = dict(w.split("=", 1) for w in args.weights)
    LOGGER.setLevel("WARNING")  # keep the exporter's and validator's banners out of the tables
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="yolo-leaky-int8-") as tmp:
        result = measure_int8(
            weights,
            args.data,
            args.out or tmp,
            imgsz=args.imgsz,
            bench_imgsz=args.bench_imgsz,
            n_calib=args.n_calib,
            seconds=args.seconds,
            threads=args.threads,
            blocks=args.blocks,
            schemes=tuple(args.schemes),
            runtimes=tuple(args.runtimes),
            method=args.method,
        )
    result["wall_s"] = time.perf_counter() - start
    print(format_tables(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


def format_tables(result: dict) -> str:
    """The accuracy, latency, node-count and fusion tables of a ``measure_int8`` result."""
    s, cal = result["settings"], result["calibration"]
    lines = [
        f"INT8 PTQ per activation | imgsz {s['imgsz']} | calibration: {cal['n']} {cal['split']} images "
        f"(seed {cal['seed']}, digest {cal['digest'][:12]}, files {cal['files_digest'][:12]}) | method {s['method']}",
        "",
        "Accuracy (Ultralytics validator on the exported files; drop = INT8 - FP32 ONNX, mAP50-95)",
    ]
    schemes = list(s["schemes"])
    ov = any("openvino" in v for v in result["variants"].values())
    head = f"{'variant':<16} {'FP32 50':>8} {'FP32 50-95':>10}"
    for scheme in schemes:
        head += f" | {scheme + ' 50':>14} {'50-95':>6} {'drop':>7}"
    if ov:
        head += f" | {'OV FP32 50-95':>13} {'OV NNCF 50-95':>13} {'drop':>7}"
    lines += [head, "-" * len(head)]
    for label, v in result["variants"].items():
        row = f"{label:<16} {v['fp32']['map50']:>8.4f} {v['fp32']['map50_95']:>10.4f}"
        for scheme in schemes:
            m = v["int8"][scheme]["metrics"]
            row += f" | {m['map50']:>14.4f} {m['map50_95']:>6.4f} {m['map50_95'] - v['fp32']['map50_95']:>+7.4f}"
        if "openvino" in v:
            o = v["openvino"]
            row += f" | {o['fp32']['map50_95']:>13.4f} {o['int8']['map50_95']:>13.4f}"
            row += f" {o['int8']['map50_95'] - o['fp32']['map50_95']:>+7.4f}"
        lines.append(row)
    for runtime, lat in result["latency"].items():
        lines += ["", f"Latency {runtime}: INT8 ({s['timed_scheme']}) / FP32 of the same variant", lat["table"], ""]
        head = f"{'variant':<16} {'FP32 ms':>8} {'INT8 ms':>8} {'INT8/FP32':>9} {'95% CI':>17}"
        lines += [head, "-" * len(head)]
        for label, r in lat["int8_vs_fp32"].items():
            ci = f"[{r['paired_ci_low']:.3f}, {r['paired_ci_high']:.3f}]"
            ms = f"{r['fp32_median_ms']:>8.2f} {r['int8_median_ms']:>8.2f}"
            lines.append(f"{label:<16} {ms} {r['paired_ratio']:>9.3f} {ci:>17}")
    lines += ["", "Quantization nodes (per scheme: QuantizeLinear / DequantizeLinear / activation outputs in INT8)"]
    for label, v in result["variants"].items():
        parts = []
        for scheme in schemes:
            n = v["int8"][scheme]["nodes"]
            acts = ", ".join(f"{op} {a['output_quantized']}/{a['total']}" for op, a in n["activations"].items())
            folded = ", ".join(f"{op} {k} folded" for op, k in v["int8"][scheme]["activations_folded"].items())
            acts = ", ".join(x for x in (acts, folded) if x)
            parts.append(f"{scheme}: {n['QuantizeLinear']}/{n['DequantizeLinear']} ({acts or 'no activation op'})")
        lines.append(f"{label:<16} " + "; ".join(parts))
    lines += [
        "",
        f"ORT CPU after its optimizer ({s['timed_scheme']} INT8): activation ops left standalone, QLinear ops",
    ]
    for label, v in result["variants"].items():
        ops = v["ort_int8"]["op_counts"]
        qlinear = {k: n for k, n in ops.items() if "QLinear" in k or k.endswith("QuickGelu")}
        lines.append(f"{label:<16} standalone {v['ort_int8']['standalone'] or '{}'}; {qlinear}")
    if ov:
        lines += ["", "OpenVINO CPU runtime graph: where each activation op runs (layerType: count)"]
        for label, v in result["variants"].items():
            if "openvino" in v:
                o = v["openvino"]
                lines.append(f"{label:<16} FP32 {o['fusion_fp32']['activations']}")
                lines.append(f"{'':<16} INT8 {o['fusion_int8']['activations']} conv {o['fusion_int8']['precisions']}")
    for runtime, why in result["skipped"].items():
        lines.append(f"skipped {runtime}: {why}")
    lines.append(f"\nwall time {result.get('wall_s', 0):.0f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
