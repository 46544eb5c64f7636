"""The rknn-toolkit2 side of the ``rknpu2`` target: run with the rknn venv's python, never imported by it.

rknn-toolkit2 pins torch <= 2.4 and numpy <= 1.26, so it lives in a venv of its own (``scripts/setup_rknn.sh``) and
``rknpu2.py`` calls this file as a subprocess: ``<venv>/bin/python rknn_worker.py request.json response.json``. Only
JSON and ``.npy`` files cross the boundary (no pickles between numpy versions). The module imports only the standard
library at its top, so the main environment can list the targets package without the toolkit.

One request builds the model and, in the same process (the host simulator runs only a model built from ONNX in that
process, not a loaded ``.rknn``), optionally runs the simulator on ``.npy`` inputs and writes each output as ``.npy``.

Examples:
    >>> import json, subprocess  # doctest: +SKIP
    >>> subprocess.run([venv_python, "rknn_worker.py", "req.json", "resp.json"], check=True)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path


def _check(ret, what: str) -> None:
    if ret not in (0, None):
        raise RuntimeError(f"rknn-toolkit2 {what} returned {ret}")


def run(req: dict) -> dict:
    """Build (and simulate) as ``req`` says; returns what happened, JSON-ready.

    Request keys: ``onnx``, ``outputs`` (tensor names to cut the graph at, or None for the graph's own outputs),
    ``target``, ``quantize`` (bool), ``dataset`` (calibration list file), ``disable_rules``, ``rknn`` (where the
    artifact goes), ``log`` (the toolkit's verbose log), ``inputs`` (``.npy`` files, NHWC uint8, to simulate) and
    ``outputs_dir`` (where the simulator's outputs go).
    """
    from importlib.metadata import version

    import numpy as np
    from rknn.api import RKNN

    rknn = RKNN(verbose=True, verbose_file=req["log"])
    seconds = {}
    try:
        t = time.perf_counter()
        _check(
            rknn.config(
                mean_values=[[0, 0, 0]],
                std_values=[[255, 255, 255]],
                target_platform=req["target"],
                disable_rules=req.get("disable_rules") or [],
            ),
            "config",
        )
        _check(rknn.load_onnx(model=req["onnx"], outputs=req.get("outputs")), "load_onnx")
        _check(rknn.build(do_quantization=req["quantize"], dataset=req.get("dataset")), "build")
        _check(rknn.export_rknn(req["rknn"]), "export_rknn")
        seconds["build"] = time.perf_counter() - t
        written = []
        if req.get("inputs"):
            t = time.perf_counter()
            _check(rknn.init_runtime(), "init_runtime (host simulator)")
            out_dir = Path(req["outputs_dir"])
            out_dir.mkdir(parents=True, exist_ok=True)
            for k, path in enumerate(req["inputs"]):
                outs = rknn.inference(inputs=[np.load(path)], data_format="nhwc")
                if outs is None:
                    raise RuntimeError(f"rknn-toolkit2 inference returned nothing for {path}")
                files = []
                for j, y in enumerate(outs):
                    f = out_dir / f"{k:05d}_{j}.npy"
                    np.save(f, np.asarray(y, dtype=np.float32))
                    files.append(str(f))
                written.append(files)
            seconds["simulate"] = time.perf_counter() - t
        return {
            "ok": True,
            "versions": {"rknn-toolkit2": version("rknn-toolkit2"), "torch": version("torch"), "numpy": np.__version__},
            "seconds": seconds,
            "outputs": written,
        }
    finally:
        rknn.release()


def main(argv: list[str]) -> int:
    """``rknn_worker.py REQUEST.json RESPONSE.json``: the response says ``ok`` or the toolkit's error, one line."""
    req = json.loads(Path(argv[1]).read_text())
    try:
        resp = run(req)
    except (Exception, SystemExit) as e:  # the toolkit logs an error and may call exit(): report it, one line
        lines = [x.strip() for x in f"{type(e).__name__}: {e}".splitlines() if x.strip()]
        errors = [x for x in lines if re.match(r"^\w*(Error|Exception)\b", x)]  # the cause, not "Traceback ..."
        resp = {"ok": False, "error": (errors or lines or ["no message"])[-1][:500]}
    Path(argv[2]).write_text(json.dumps(resp))
    return 0 if resp["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
