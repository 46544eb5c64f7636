"""``ethos-u``: Arm's Vela compiler on the ``tflite-int8`` artifact, for Ethos-U55 and Ethos-U65.

One default configuration per NPU (``CONFIGS``), each Vela 5.2's own default for that accelerator made explicit so the
command is reproducible and Vela warns of nothing: Ethos-U55 with 128 MACs/cycle (``ethos-u55-128``), Vela's
``Ethos_U55_High_End_Embedded`` system (500 MHz) and ``Shared_Sram`` memory mode; Ethos-U65 with 256 MACs/cycle
(``ethos-u65-256``), Vela's ``Ethos_U65_Client_Server`` system and ``Dedicated_Sram_384KB`` memory mode; both from
the ``Arm/vela.ini`` that Vela ships.

What the build reports, per configuration, all read from Vela's own output:

* placement: which TFLite ops of the input run on the NPU and which stay on the CPU. Vela's output ``.tflite`` keeps
  every CPU op as the TFLite op it was and replaces the NPU ops by ``ethos-u`` custom ops; the CPU ops are read from
  that file (``tflite_int8.tflite_ops``), the NPU ops are the input's ops minus them, and Vela's reason for each CPU
  op is taken from its ``Warning (supported operators)`` lines. Vela's own operator counts (``NPU operators = N``,
  counted after its graph rewrites, so not the TFLite op count) are kept beside them.
* Vela's estimate (summary CSV): inference time and inferences per second at the system's clock, NPU and total
  cycles, SRAM and off-chip flash used, MACs. An estimate by the compiler's performance model, never a measurement
  on a device; it covers the NPU part only, so an op that falls back to the CPU is not in it.

Accuracy: the artifact Vela writes runs only on an Ethos-U device (its ``ethos-u`` custom op is the NPU command
stream), so ``score`` scores the TFLite INT8 model that Vela compiled, on the host interpreter. Vela keeps the
quantization of that model, but the NPU's arithmetic (e.g. its LUT for LOGISTIC) may differ from the host kernels in
the last bit; that difference is not measured here.

Examples:
    >>> sorted(CONFIGS)
    ['ethos-u55-128', 'ethos-u65-256']
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from ..core.tasks import TASKS
from .base import Backend, Build, ToolchainRejected
from .tflite_int8 import TFLiteInt8, _version, tflite_ops

VELA_CONFIG = "Arm/vela.ini"  # shipped with ethos-u-vela; Vela resolves it in its config_files folder
CONFIGS = {
    "ethos-u55-128": {"system_config": "Ethos_U55_High_End_Embedded", "memory_mode": "Shared_Sram"},
    "ethos-u65-256": {"system_config": "Ethos_U65_Client_Server", "memory_mode": "Dedicated_Sram_384KB"},
}
NPU_OP = "ethos-u"  # the custom op code of an NPU command stream in Vela's output
# TFLite ops that carry each activation after Ultralytics' LiteRT export (SiLU: x * sigmoid(x))
ACT_OPS = {
    "silu": ("LOGISTIC", "MUL"),
    "relu": ("RELU",),
    "relu6": ("RELU6",),
    "leaky_relu": ("LEAKY_RELU",),
    "prelu": ("PRELU",),
    "hardswish": ("HARD_SWISH",),
}
FUSED_AS = {"relu": "RELU", "relu6": "RELU6"}  # activations a TFLite convolution can carry as its fused activation
FUSED_INTO = ("CONV_2D", "DEPTHWISE_CONV_2D")
# what litert-torch 0.10 writes where it has no such op (measured on yolo11n: PReLU -> RELU, MUL and SUB ops)
DECOMPOSED = {"prelu": ("RELU", "MUL", "SUB")}
ESTIMATE_KEYS = {  # summary CSV column -> our key
    "inference_time": "inference_time_s",
    "inferences_per_second": "inferences_per_second",
    "cycles_npu": "cycles_npu",
    "cycles_total": "cycles_total",
    "core_clock": "core_clock_hz",
    "sram_memory_used": "sram_used_kib",
    "off_chip_flash_memory_used": "off_chip_flash_used_kib",
    "dram_memory_used": "dram_used_kib",
    "nn_macs": "macs",
}
ESTIMATE_NOTE = (
    "Vela's performance-model estimate at the system config's clock, not a measurement on a device; it covers the "
    "ops placed on the NPU only"
)


class EthosU(Backend):
    """Vela on Ultralytics' TFLite INT8 export: op placement and Vela's estimate per configuration.

    Args:
        configs: Accelerator configurations (keys of ``CONFIGS``); the first is ``Build.artifact``/``placement``/
            ``estimate``, every one is in ``Build.details["configs"]``.

    Examples:
        >>> EthosU().install
        "pip install 'yolo-leaky[ethos-u]'"
    """

    name = "ethos-u"
    tasks = TASKS
    install = "pip install 'yolo-leaky[ethos-u]'"
    runs_on_host = False

    def __init__(self, configs: tuple[str, ...] = tuple(CONFIGS)) -> None:
        unknown = [c for c in configs if c not in CONFIGS]
        if unknown:
            raise ValueError(f"unknown Ethos-U configuration {unknown}; known: {', '.join(CONFIGS)}")
        self.configs = configs

    def missing(self) -> str | None:
        """None when Vela and the TFLite export chain import here; else what is missing and the install step."""
        import importlib.util

        absent = [] if importlib.util.find_spec("ethosu") else ["ethos-u-vela"]
        chain = TFLiteInt8().missing()
        if chain:
            absent.append(chain.split(" needs ", 1)[1].split(":")[0])
        return f"{self.name} needs {', '.join(absent)}: {self.install}" if absent else None

    def build(self, weights: Path, calibration, out_dir: Path, imgsz: int) -> Build:
        """The ``tflite-int8`` artifact, then Vela on it for every configuration.

        Raises:
            ToolchainRejected: Vela (or the LiteRT export) failed: its first error line and the log's path.
        """
        out_dir = Path(out_dir)
        source = TFLiteInt8(fp32_reference=False).build(weights, calibration, out_dir, imgsz)
        per_config = {acc: vela_compile(source.artifact, out_dir / f"vela-{acc}", acc) for acc in self.configs}
        first = per_config[self.configs[0]]
        version = _version("ethos-u-vela")
        commands = [*source.commands, *(c["command"] for c in per_config.values())]
        files = [*source.files, source.artifact]
        for c in per_config.values():
            files += [Path(c["vela_tflite"]), Path(c["summary_csv"]), Path(c["log"])]
        return Build(
            target=self.name,
            artifact=Path(first["vela_tflite"]),
            tools={**source.tools, "ethos-u-vela": version},
            commands=commands,
            log=source.log,
            placement=first["placement"],
            estimate=first["estimate"],
            files=files,
            task=source.task,
            details={
                "scored_model": str(source.artifact),
                "scored_model_why": "Vela's output runs only on an Ethos-U device; the score is the TFLite INT8 model "
                "Vela compiled, on the host interpreter",
                "tflite": {**source.details, "tools": source.tools},
                "configs": per_config,
            },
        )

    def score(self, build: Build, data_yaml: str, imgsz: int) -> dict[str, float]:
        """Ultralytics' validator on the TFLite INT8 model that Vela compiled (Vela's output runs only on the NPU)."""
        from ..measure.quant import validate_onnx

        details = getattr(build, "details", None) or {}
        return validate_onnx(Path(details.get("scored_model", build.artifact)), data_yaml, imgsz, task=build.task)


def vela_compile(
    tflite: str | Path, out_dir: str | Path, accelerator: str, target: str = "ethos-u", extra: tuple[str, ...] = ()
) -> dict:
    """Compile ``tflite`` with Vela for ``accelerator`` (a key of ``CONFIGS``) and read what it reports.

    Args:
        tflite: An INT8 ``.tflite``.
        out_dir: Vela's output folder (its ``.tflite``, summary CSV, and ``vela.log`` with its full output).
        accelerator: A key of ``CONFIGS``.
        target: The backend name, for the error message.
        extra: More Vela arguments (e.g. ``("--ignore-ops", "LOGISTIC")``).

    Returns:
        ``accelerator``, ``system_config``, ``memory_mode``, ``command``, ``vela_tflite``, ``summary_csv``, ``log``,
        ``placement`` (``{"accelerator": {op: n}, "cpu": {op: n}}`` in TFLite op names), ``cpu_reasons`` (op ->
        Vela's reason), ``vela_operators`` (Vela's own NPU/CPU counts) and ``estimate`` (``ESTIMATE_KEYS``).

    Raises:
        ToolchainRejected: Vela exited non-zero, or wrote no summary.
    """
    tflite, out_dir = Path(tflite), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = CONFIGS[accelerator]
    args = [
        str(tflite),
        "--accelerator-config", accelerator,
        "--config", VELA_CONFIG,
        "--system-config", cfg["system_config"],
        "--memory-mode", cfg["memory_mode"],
        "--output-dir", str(out_dir),
        "--show-cpu-operations",
        *extra,
    ]  # fmt: skip
    log = out_dir / "vela.log"
    run = subprocess.run([sys.executable, "-m", "ethosu.vela", *args], capture_output=True, text=True)
    log.write_text(f"$ vela {' '.join(args)}\n{run.stdout}\n{run.stderr}")
    vela_tflite = out_dir / f"{tflite.stem}_vela.tflite"
    csvs = sorted(out_dir.glob(f"{tflite.stem}_summary_*.csv"))
    if run.returncode != 0 or not vela_tflite.is_file() or not csvs:
        message = _first_error(run.stderr or run.stdout) or f"exit status {run.returncode}, no output written"
        raise ToolchainRejected(target, f"Vela ({accelerator})", message, log)
    placement, reasons = read_placement(tflite, vela_tflite, run.stdout)
    return {
        "accelerator": accelerator,
        **cfg,
        "command": "vela " + " ".join(args),
        "vela_tflite": str(vela_tflite),
        "summary_csv": str(csvs[0]),
        "log": str(log),
        "placement": placement,
        "cpu_reasons": reasons,
        "vela_operators": vela_operator_counts(run.stdout),
        "estimate": read_summary(csvs[0]),
    }


def read_placement(source: str | Path, compiled: str | Path, stdout: str = "") -> tuple[dict, dict]:
    """NPU and CPU ops, by TFLite op name, from Vela's input and output ``.tflite``, and Vela's reasons.

    Every op left in the compiled file that is not an ``ethos-u`` command stream runs on the CPU; the rest of the
    input's ops went to the NPU.

    Returns:
        ``({"accelerator": {op: n}, "cpu": {op: n}}, {op: [reasons]})``.
    """
    before = Counter(tflite_ops(source)["ops"])
    after = Counter(tflite_ops(compiled)["ops"])
    cpu = {op: n for op, n in after.items() if op != NPU_OP}
    npu = {op: n - cpu.get(op, 0) for op, n in before.items() if n - cpu.get(op, 0) > 0}
    return {"accelerator": dict(sorted(npu.items())), "cpu": dict(sorted(cpu.items()))}, cpu_reasons(stdout)


def cpu_reasons(stdout: str) -> dict[str, list[str]]:
    """Vela's reason for each op it leaves on the CPU, from its ``Warning (supported operators)`` blocks.

    Examples:
        >>> cpu_reasons("Warning (supported operators) operator: DEQUANTIZE, ofm: 'y'\\nReason: Unsupported opType\\n"
        ...             "Warning (supported operators) operator: QUANTIZE, ofm: 'q'\\nReason: Float32 (x;y)\\n")
        {'DEQUANTIZE': ['Unsupported opType'], 'QUANTIZE': ['Float32']}
    """
    out: dict[str, list[str]] = {}
    for op, reason in re.findall(r"operator: (\w+), .*?\nReason: ([^\n]+)", stdout):
        reason = re.sub(r"\s*\([^()]*\)$", "", reason.strip())  # the tensor's name: one reason per op type
        if reason not in out.setdefault(op, []):
            out[op].append(reason)
    return out


def vela_operator_counts(stdout: str) -> dict[str, int]:
    """Vela's own ``CPU operators = N`` / ``NPU operators = N`` (its ops after graph rewriting).

    Examples:
        >>> vela_operator_counts("CPU operators = 2 (0.5%)\\nNPU operators = 391 (99.5%)")
        {'cpu': 2, 'npu': 391}
    """
    return {k.lower(): int(n) for k, n in re.findall(r"^(CPU|NPU) operators = (\d+)", stdout, flags=re.M)}


def read_summary(path: str | Path) -> dict:
    """Vela's estimate from its summary CSV (``ESTIMATE_KEYS``), with the system config it assumed."""
    with open(path, newline="") as f:
        row = next(csv.DictReader(f))
    est = {ours: float(row[col]) for col, ours in ESTIMATE_KEYS.items() if row.get(col) not in (None, "")}
    if "inference_time_s" in est:
        est["inference_time_ms"] = est.pop("inference_time_s") * 1000
    return {
        "by": f"Vela {_version('ethos-u-vela')} (estimate)",
        "note": ESTIMATE_NOTE,
        "accelerator": row.get("accelerator_configuration"),
        "system_config": row.get("system_config"),
        "memory_mode": row.get("memory_mode"),
        **est,
    }


def activation_cell(act: str, details: dict) -> dict:
    """What this build says about ``act`` on Ethos-U, in ``targets.table.STATUSES`` words, with its evidence.

    ``fused``: the converter folded the activation into the convolutions (a fused activation of CONV_2D, no
    standalone op) and those convolutions run on the NPU; ``native``: standalone ops (``ACT_OPS``) all on the NPU;
    ``cpu-fallback``: one of them stays on the CPU in some configuration; where the converter wrote no such op but
    ops that compute it (``DECOMPOSED``), those ops decide; ``unknown``: the model has none of them.

    Args:
        act: A ``targets.table.TABLE_ACTS`` name, the activation the built model uses.
        details: ``Build.details`` of an ``EthosU`` build.

    Returns:
        ``{"status", "note", "evidence": {config: {op: {"npu": n, "cpu": n}}}, "source"}``.

    Examples:
        >>> d = {"tflite": {"ops": {"ops": {"CONV_2D": 2}, "fused_activations": {"RELU": 2}}},
        ...      "configs": {"ethos-u55-128": {"placement": {"accelerator": {"CONV_2D": 2}, "cpu": {}}}}}
        >>> activation_cell("relu", d)["status"]
        'fused'
    """
    ops = details["tflite"]["ops"]
    fused = ops.get("fused_activations", {}).get(FUSED_AS.get(act, ""), 0)
    standalone = [op for op in ACT_OPS[act] if ops["ops"].get(op)]
    decomposed = [op for op in DECOMPOSED.get(act, ()) if ops["ops"].get(op)] if not standalone else []
    looked = standalone or decomposed or [op for op in FUSED_INTO if ops["ops"].get(op)]
    evidence = {}
    for acc, cfg in details["configs"].items():
        where = cfg["placement"]
        evidence[acc] = {op: {"npu": where["accelerator"].get(op, 0), "cpu": where["cpu"].get(op, 0)} for op in looked}
    on_cpu = sorted({op for per in evidence.values() for op, n in per.items() if n["cpu"]})
    floats = [op for op in looked if ops.get("float_ops", {}).get(op)]
    if on_cpu:
        why = " (the quantizer left it in float)" if floats else ""
        status, note = "cpu-fallback", f"{' and '.join(on_cpu)} left on the CPU by Vela{why}"
    elif standalone:
        status, note = "native", f"{' + '.join(standalone)} on the NPU, not fused"
    elif decomposed:
        parts = " + ".join(f"{op} ({ops['ops'][op]})" for op in decomposed)
        status, note = "native", f"no {ACT_OPS[act][0]} op: the converter decomposes it into {parts}, on the NPU"
    elif fused:
        status, note = "fused", f"fused into CONV_2D by the converter ({fused} sites); on the NPU"
    else:
        status, note = "unknown", f"the converted model has no {' / '.join(ACT_OPS[act])} op"
    tools = details["tflite"].get("tools", {})
    chain = ", ".join(f"{k} {tools[k]}" for k in ("litert-torch", "ai-edge-quantizer") if k in tools)
    source = (
        f"measured here: ethos-u-vela {_version('ethos-u-vela')} on Ultralytics {tools.get('ultralytics', '?')} "
        f"LiteRT INT8 export ({chain}), yolo11n at 64 px"
    )
    return {"status": status, "note": note, "evidence": evidence, "source": source}


def _first_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"(Error|.*Error:|.*error:)", line)]
    return (errors or lines[-1:] or [""])[0]
