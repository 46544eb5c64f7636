"""Per activation: the ``tflite-int8`` artifact's accuracy beside its FP32 checkpoint's, what the quantizer left in
float, and Vela's op placement and estimate on Ethos-U55/U65: the numbers of docs/targets-evidence.md and of the
measured ``ethos-u`` cells of ``targets.table.TARGETS``.

    YOLO_OFFLINE=1 python benchmarks/targets_evidence.py --data <dataset.yaml> --imgsz 64 --calib 64 \\
        --weights silu=<silu.pt> relu=<relu.pt> leaky_relu=<leaky.pt> prelu=<prelu.pt> --out evidence.json

Each checkpoint is built by the ``ethos-u`` backend (Ultralytics' LiteRT INT8 export on ``--calib`` training images,
then Vela for every configuration of ``targets.ethos_u.CONFIGS``); the INT8 ``.tflite`` and the FP32 checkpoint are
both scored by Ultralytics' validator on the val split. One build per checkpoint: no seeds, so no difference between
activations is claimed from these numbers. Vela's figures are its estimate, not a measurement on a device.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "False")

from yolo_leaky.measure.quant import calibration_images, validate_onnx  # noqa: E402
from yolo_leaky.targets.ethos_u import EthosU, activation_cell  # noqa: E402


def measure(act: str, weights: Path, data: str, calib, imgsz: int, out: Path) -> dict:
    t = time.perf_counter()
    build = EthosU().build(weights, calib, out / act.replace(":", "_"), imgsz)
    seconds = time.perf_counter() - t
    table_act = act.split(":")[0]
    return {
        "weights": str(weights),
        "build_seconds": seconds,
        "fp32": validate_onnx(weights, data, imgsz),
        "int8_tflite": EthosU().score(build, data, imgsz),
        "float_ops": build.details["tflite"]["ops"]["float_ops"],
        "fused_activations": build.details["tflite"]["ops"]["fused_activations"],
        "tools": build.tools,
        "commands": build.commands,
        "configs": {
            acc: {k: cfg[k] for k in ("placement", "cpu_reasons", "vela_operators", "estimate", "command")}
            for acc, cfg in build.details["configs"].items()
        },
        "cell": {k: v for k, v in activation_cell(table_act, build.details).items() if k != "evidence"},
    }


def markdown(results: dict) -> str:
    head = (
        "| activation | mAP50-95 FP32 (.pt) | mAP50-95 INT8 (.tflite) | Δ | left in float | "
        "U55-128: NPU / CPU ops (Vela) | U55-128 ms (Vela est.) | U65-256 ms (Vela est.) | ethos-u cell |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    rows = [head]
    for act, r in results.items():
        u55, u65 = r["configs"]["ethos-u55-128"], r["configs"]["ethos-u65-256"]
        floats = ", ".join(f"{op} {n}" for op, n in r["float_ops"].items())
        rows.append(
            f"| {act} | {r['fp32']['map50_95']:.4f} | {r['int8_tflite']['map50_95']:.4f} | "
            f"{r['int8_tflite']['map50_95'] - r['fp32']['map50_95']:+.4f} | {floats} | "
            f"{u55['vela_operators']['npu']} / {u55['vela_operators']['cpu']} | "
            f"{u55['estimate']['inference_time_ms']:.2f} | {u65['estimate']['inference_time_ms']:.2f} | "
            f"{r['cell']['status']} |"
        )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="dataset YAML (train split: calibration; val split: scoring)")
    ap.add_argument("--weights", nargs="+", required=True, help="act=checkpoint pairs")
    ap.add_argument("--imgsz", type=int, default=64)
    ap.add_argument("--calib", type=int, default=64, help="calibration images from the train split")
    ap.add_argument("--out", default="targets-evidence.json")
    args = ap.parse_args()
    calib = calibration_images(args.data, n=args.calib, imgsz=args.imgsz, seed=0)
    results = {}
    with tempfile.TemporaryDirectory(prefix="targets-evidence-") as tmp:
        for pair in args.weights:
            act, _, weights = pair.partition("=")
            results[act] = measure(act, Path(weights), args.data, calib, args.imgsz, Path(tmp))
            print(f"{act}: done in {results[act]['build_seconds']:.0f} s", flush=True)
    Path(args.out).write_text(json.dumps({"calibration": calib.to_dict(), "results": results}, indent=1))
    print(markdown(results))


if __name__ == "__main__":
    main()
