"""``rknpu2``: Rockchip's rknn-toolkit2, INT8 for the RK3588, scored in the toolkit's own host simulator.

What ships (``scheme="deploy"``, the default) is two files, the split Rockchip's model zoo makes for YOLO:
``<stem>-rk3588.rknn``, the network up to the head's output convolutions (box distributions and class logits per
level, plus the task's own: mask coefficients, keypoints or angle; segmentation's prototypes are an output of it
too; classify's Linear), INT8; and ``<stem>-decode.onnx``, the head's decoding (DFL, anchors, strides, sigmoid,
keypoint/angle/rotated-box decode, concat; classify's softmax) cut out of Ultralytics' own ONNX export, run in float
on the CPU. The cut is ``head_split``, from ``quant.head_float_nodes``' structural rule: the same decoding the ONNX
Runtime ``deploy`` scheme keeps in float, for every task. ``scheme="naive"`` quantizes the whole graph, decoding
included: box pixels, 0-1 scores and the task's rows then share one INT8 scale, which is the broken artifact the
tests tell apart from the good one.

How it is built and scored:

* The toolkit pins torch <= 2.4 and numpy <= 1.26, so it runs in its own venv (``scripts/setup_rknn.sh``) through
  ``rknn_worker.py`` (JSON and ``.npy`` across; no pickles).
* Export: Ultralytics' ONNX exporter, opset 12, static ``imgsz``, batch 1 (``bench.export_onnx``).
* Calibration: the images of ``measure.quant.calibration_images`` (train split), written as a dataset list of
  ``.npy`` files holding exactly the letterboxed tensors every other target calibrates on (a list of image paths
  would let the toolkit resize them its own way, without the letterbox). Config: mean 0, std 255 (inputs are uint8
  RGB, NHWC), ``target_platform="rk3588"``, the toolkit's default ``w8a8`` quantization and ``normal`` algorithm.
* Two of rknn-toolkit2 2.5.0's graph-fusion rules fail on YOLO11 (``DISABLE_RULES``; Ultralytics pins the toolkit
  below 2.5 for this, citing airockchip/rknn-toolkit2#581); they are turned off.
* Scoring: Ultralytics' validator runs on the float ONNX, and every input it feeds is recorded; the worker rebuilds
  the artifact from the same request (the simulator cannot load a ``.rknn``), runs those inputs in the host
  simulator (``init_runtime()`` without a target), and the rebuild becomes the shipped file; the decode part runs
  in ONNX Runtime; then the same validator runs again
  with the model's output replaced by the simulator's for the same input, so NMS and the metrics are Ultralytics'
  own. Before any mAP, the simulator's boxes and class scores are compared with the float ONNX's on the same images
  (``agreement``).
* Placement: on a host the toolkit prints no per-layer NPU/CPU placement (that comes from the runtime on a board), so
  ``placement`` is None; what its verbose build log does say is which graph-fusion rules fired (``fusions`` in
  ``rknpu2.json``: e.g. SiLU's Sigmoid and Mul fused into one exSwish op). Its performance and memory estimates
  (``eval_perf``, ``eval_memory``) refuse to run in the simulator ("Not support in simulator environment"), so
  ``estimate`` is None.

Examples:
    >>> from yolo_leaky.targets.base import backends
    >>> backends()["rknpu2"].install
    'bash scripts/setup_rknn.sh'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from ..core.tasks import TASKS
from ..utils.errors import UserError
from .base import Backend, Build, ToolchainRejected

VENV_ENV = "YOLO_LEAKY_RKNN_VENV"
TOOLKIT_VERSION = "2.5.0"
PLATFORM = "rk3588"
OPSET = 12
DISABLE_RULES = ["seperate_conv_rs_split", "fuse_exmatmul_add_mul_exsoftmax13_exmatmul_to_sdpa"]  # sic
WORKER = Path(__file__).with_name("rknn_worker.py")
SCHEMES = {
    "deploy": "backbone, neck and head convolutions INT8 on the NPU; the head's decoding in float on the CPU (ONNX)",
    "naive": "the whole graph INT8, the head's decoding and its concatenated output (box pixels, 0-1 scores) included",
}
SCORE_THRESHOLD = 0.25  # agreement: boxes are compared where the float model's best class score reaches this


def venv_dir() -> Path:
    """The rknn-toolkit2 venv: ``$YOLO_LEAKY_RKNN_VENV``, else ``~/.cache/yolo-leaky/rknn-venv``.

    >>> venv_dir().name in ("rknn-venv", Path(os.environ.get(VENV_ENV, "x")).name)
    True
    """
    return Path(os.environ.get(VENV_ENV) or Path.home() / ".cache" / "yolo-leaky" / "rknn-venv")


def venv_python() -> Path:
    """The venv's interpreter (which may not exist; see ``Rknpu2.missing``)."""
    return venv_dir() / "bin" / "python"


class Rknpu2(Backend):
    """Rockchip RK3588 NPU through rknn-toolkit2 (INT8), accuracy from the toolkit's host simulator."""

    name = "rknpu2"
    tasks = TASKS
    install = "bash scripts/setup_rknn.sh"
    runs_on_host = False  # the simulator is a numerical model of the NPU, not a runtime to time

    def missing(self) -> str | None:
        """One line naming the missing venv or toolkit and ``install``; None when the venv has the toolkit."""
        python = venv_python()
        where = f"(looked in {venv_dir()}; set {VENV_ENV} to use another)"
        if not python.exists():
            return f"rknpu2 needs rknn-toolkit2 {TOOLKIT_VERSION} in its own venv: run {self.install} {where}"
        probe = "from importlib.metadata import version; print(version('rknn-toolkit2'))"
        got = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=120)
        if got.returncode != 0 or got.stdout.strip() != TOOLKIT_VERSION:
            found = got.stdout.strip() or "none"
            return f"rknpu2 needs rknn-toolkit2 {TOOLKIT_VERSION} (found {found}): run {self.install} {where}"
        return None

    def build(self, weights: Path, calibration, out_dir: Path, imgsz: int, scheme: str = "deploy") -> Build:
        """Export, cut (``scheme``), quantize on ``calibration`` and write the ``.rknn`` into ``out_dir``.

        Raises:
            UserError: Unknown scheme or calibration at another size.
            ToolchainRejected: The toolkit rejected the model (its message, the model's task and the log's path).
        """
        from ..core.loading import load, model_task
        from ..measure.bench import export_onnx

        if scheme not in SCHEMES:
            raise UserError(f"unknown rknpu2 scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
        if calibration.imgsz != imgsz:
            raise UserError(f"calibration images are {calibration.imgsz} px but imgsz={imgsz}; make them at {imgsz}")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        task = model_task(weights)
        yolo = load(str(weights))
        onnx_path = export_onnx(yolo, out_dir, imgsz, opset=OPSET, name=Path(weights).stem)
        stem = onnx_path.stem
        outputs, cuts, decoded, decode = None, None, _graph_outputs(onnx_path), None
        if scheme == "deploy":
            cuts, decoded, side = head_split(onnx_path)
            outputs = cuts + side  # the NPU part ends where the host's decoding starts, and at the prototypes
            decode = out_dir / f"{stem}-decode.onnx"
            import onnx.utils

            onnx.utils.extract_model(str(onnx_path), str(decode), cuts, decoded)
        dataset = _write_dataset(calibration, out_dir / "calibration")
        request = {
            "onnx": str(onnx_path),
            "outputs": outputs,
            "target": PLATFORM,
            "quantize": True,
            "dataset": str(dataset),
            "disable_rules": DISABLE_RULES,
            "rknn": str(out_dir / f"{stem}-{PLATFORM}.rknn"),
            "log": str(out_dir / "rknn-build.log"),
        }
        artifact = Path(request["rknn"])
        artifact.unlink(missing_ok=True)  # a rejected rebuild must not leave an older artifact looking current
        resp = _run_worker(request, out_dir, task)
        meta = {
            "scheme": scheme,
            "task": task,
            "classes": len(yolo.names),
            "kpt": list(getattr(yolo.model.model[-1], "kpt_shape", None) or []) or None,
            "description": SCHEMES[scheme],
            "graph_outputs": _graph_outputs(onnx_path),
            "decoded": decoded,  # graph outputs the host's decode ONNX makes from the first len(cuts) NPU outputs
            "request": request,
            "decode": None if decode is None else str(decode),
            "sha256": _sha256(artifact),
            "versions": resp["versions"],
            "seconds": resp["seconds"],
            "calibration": {k: v for k, v in calibration.to_dict().items() if k != "files"},
            "fusions": fusions_from_log(Path(request["log"])),
        }
        meta_path = out_dir / "rknpu2.json"
        meta_path.write_text(json.dumps(meta, indent=2))
        commands = [
            f"yolo export model={weights} format=onnx imgsz={imgsz} opset={OPSET} simplify=True batch=1",
            (
                f"rknn.config(mean_values=[[0,0,0]], std_values=[[255,255,255]], target_platform={PLATFORM!r}, "
                f"disable_rules={DISABLE_RULES}); rknn.load_onnx(model={onnx_path.name!r}, outputs={outputs}); "
                f"rknn.build(do_quantization=True, dataset='calibration/dataset.txt'); "
                f"rknn.export_rknn({artifact.name!r})"
            ),
        ]
        if decode is not None:
            commands.insert(1, f"onnx.utils.extract_model({onnx_path.name!r}, {decode.name!r}, {cuts}, {decoded})")
        files = [onnx_path, meta_path, dataset] + ([decode] if decode else [])
        return Build(
            target=self.name,
            artifact=artifact,
            tools={"rknn-toolkit2": resp["versions"]["rknn-toolkit2"], **_main_versions()},
            commands=commands,
            log=Path(request["log"]),
            placement=None,  # the toolkit prints no per-layer NPU/CPU placement on a host (fusions: rknpu2.json)
            estimate=None,
            files=files,
            task=task,
        )

    def score(self, build: Build, data_yaml: str, imgsz: int) -> dict[str, float]:
        """The task's metrics of the simulator's outputs on the val split (method: module docstring), beside the
        float ONNX's on the same images, and how far the simulator's outputs are from the float model's.

        Returns:
            The record keys of ``build.task`` (``core.tasks.METRICS``: ``map50`` and ``map50_95`` for detection,
            plus ``mask_*`` / ``pose_*``; ``top1`` and ``top5`` for classify) of the artifact in the simulator, the
            same keys prefixed ``fp32_`` for the float ONNX, and the ``agreement`` numbers for the task's outputs
            (see ``agreement``), all floats. The full record is written to ``score.json`` beside the artifact.

        The simulator runs only a model built from ONNX in its own process, so scoring rebuilds the artifact from
        the same request and that rebuild replaces ``build.artifact``: the file that ships is the one scored. (Two
        builds of one request are not byte-identical: measured here, 862 of 4,063,874 bytes differed, in fields
        that hold process addresses.)
        """
        from ..measure.quant import validate_onnx

        meta = json.loads((build.artifact.parent / "rknpu2.json").read_text())
        task = meta.get("task", build.task)
        if task != build.task:
            raise RuntimeError(f"bug: the build says task {build.task!r} but its record says {task!r}")
        onnx_path = Path(meta["request"]["onnx"])
        with tempfile.TemporaryDirectory(prefix="yolo-leaky-rknn-") as tmp:
            tmp = Path(tmp)
            with _outputs_hook("record") as rec:
                fp32 = validate_onnx(onnx_path, data_yaml, imgsz, task=task)
            inputs = []
            for k, (_, im, _) in enumerate(rec.calls):
                f = tmp / "in" / f"{k:05d}.npy"
                f.parent.mkdir(exist_ok=True)
                np.save(f, _to_uint8_nhwc(im))
                inputs.append(str(f))
            request = {
                **meta["request"],
                "rknn": str(tmp / "rebuilt.rknn"),
                "log": str(build.artifact.parent / "rknn-simulate.log"),
                "inputs": inputs,
                "outputs_dir": str(tmp / "out"),
            }
            resp = _run_worker(request, build.artifact.parent, task)
            # Ship what was scored: two builds of one request differ in a few hundred bytes (embedded addresses)
            os.replace(request["rknn"], build.artifact)
            meta["sha256"] = _sha256(build.artifact)
            meta["scored_by_simulator"] = True
            (build.artifact.parent / "rknpu2.json").write_text(json.dumps(meta, indent=2))
            host = _host_side(meta)
            sim = {}
            for (key, _, _), files in zip(rec.calls, resp["outputs"]):
                sim[key] = host([np.load(f) for f in files])
            agree = agreement(
                [y for _, _, y in rec.calls], [sim[key] for key, _, _ in rec.calls], task, meta["classes"], meta["kpt"]
            )
            with _outputs_hook("replay", sim):
                quant = validate_onnx(onnx_path, data_yaml, imgsz, task=task)
        record = {
            "artifact": str(build.artifact),
            "sha256": meta["sha256"],
            "scheme": meta["scheme"],
            "task": task,
            "images": len(rec.calls),
            "simulator_seconds": resp["seconds"].get("simulate"),
            "fp32_onnx": fp32,
            "simulator": quant,
            "agreement": agree,
        }
        (build.artifact.parent / "score.json").write_text(json.dumps(record, indent=2))
        return {**quant, **{f"fp32_{k}": v for k, v in fp32.items()}, **agree}


# ----------------------------------------------------------------------------------------------------- helpers


def head_split(onnx_path: str | Path) -> tuple[list[str], list[str], list[str]]:
    """Where ``deploy`` cuts any Ultralytics head: the INT8 part's outputs, and the graph outputs each side makes.

    The decoding is ``measure.quant.head_float_nodes``' structural rule (the head module's own ops and its DFL; the
    same split the ONNX ``deploy`` scheme keeps in float, per task). Only its tail runs on the host: the decode nodes
    from which every path leads through decode nodes to a graph output. A head op that feeds a convolution or a
    Linear (classify's flatten before its Linear) stays on the NPU side with what it feeds.

    Returns:
        ``cuts``: the tensors where the host's decoding starts (outputs of NPU-side nodes read by the tail), in graph
        order; ``decoded``: graph outputs the tail makes (run on the host from ``cuts``); ``side``: graph outputs
        the NPU side makes itself (segmentation's prototypes), which the ``.rknn`` outputs after ``cuts``.

    >>> head_split("yolo11n-seg.onnx")  # doctest: +SKIP
    (['/model.23/cv2.0/cv2.0.2/Conv_output_0', ...], ['output0'], ['output1'])
    """
    import onnx

    from ..measure.quant import head_float_nodes

    model = onnx.load(str(onnx_path), load_external_data=False)
    decode = set(head_float_nodes(model, float_tensors=False))
    graph_outputs = [o.name for o in model.graph.output]
    consumers: dict[str, list[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.name)
    by_name = {n.name: n for n in model.graph.node}
    tail: set[str] = set()
    changed = True
    while changed:  # grow the tail backwards from the outputs: a decode node all of whose readers are in it
        changed = False
        for name in decode - tail:
            readers = [r for out in by_name[name].output for r in consumers.get(out, [])]
            if all(r in tail for r in readers) and any(
                out in graph_outputs or out in consumers for out in by_name[name].output
            ):
                tail.add(name)
                changed = True
    producers = {o: n.name for n in model.graph.node for o in n.output}
    cuts = []
    for node in model.graph.node:
        if node.name in tail:
            for name in node.input:
                if name in producers and producers[name] not in tail and name not in cuts:
                    cuts.append(name)
    decoded = [o for o in graph_outputs if producers.get(o) in tail]
    side = [o for o in graph_outputs if producers.get(o) not in tail]
    if not decoded:
        raise ValueError("no graph output is made by the head's decoding: unexpected head")
    return cuts, decoded, side


def agreement(
    reference: list, other: list, task: str = "detect", nc: int | None = None, kpt_shape: list[int] | None = None
) -> dict[str, float]:
    """How far ``other`` is from ``reference``: Ultralytics' raw outputs per image, for the model's ``task``.

    Each item is one image's graph outputs (an array, or a list of arrays). The first output of detect, segment,
    pose and OBB is ``(1, 4 + nc + extra, anchors)``: box (xywh, pixels), class scores, then the task's own rows
    (segment: mask coefficients, its second output the prototypes; pose: keypoints ``x, y[, visibility]`` each;
    OBB: the angle in radians). Classify's is ``(1, nc)`` probabilities. ``nc`` defaults to detection's
    ``rows - 4``.

    Returns:
        ``score_max_abs`` and ``score_mean_abs``: the largest and the mean class-score (classify: probability)
        difference over all anchors (images) and classes; ``top_class_match``: fraction of confident anchors
        (float best class score at least ``SCORE_THRESHOLD``; classify: every image) whose best class is the same.
        Not classify: ``box_mean_abs_px``, the mean box difference on confident anchors. Segment:
        ``coef_mean_abs`` (mask coefficients, confident anchors), ``proto_mean_abs`` (prototypes, all). Pose:
        ``kpt_mean_abs_px`` (keypoint x and y, confident anchors) and ``kpt_vis_mean_abs`` (visibility). OBB:
        ``angle_mean_abs_rad`` (confident anchors).

    >>> a = np.zeros((1, 5, 3), np.float32); a[0, 4] = [0.9, 0.1, 0.3]
    >>> b = a.copy(); b[0, 4, 0] = 0.8; b[0, 0, 0] = 2.0
    >>> {k: round(v, 3) for k, v in agreement([a], [b]).items()}
    {'score_max_abs': 0.1, 'score_mean_abs': 0.033, 'top_class_match': 1.0, 'box_mean_abs_px': 0.25}
    >>> o = np.concatenate([a, np.full((1, 1, 3), 0.5, np.float32)], 1); p = o.copy(); p[0, 5] = 0.4
    >>> round(agreement([o], [p], "obb", nc=1)["angle_mean_abs_rad"], 3)
    0.1
    """
    ref_items = [r if isinstance(r, (list, tuple)) else [r] for r in reference]
    oth_items = [o if isinstance(o, (list, tuple)) else [o] for o in other]
    for r, o in zip(ref_items, oth_items):
        if [np.shape(x) for x in r] != [np.shape(x) for x in o]:
            raise ValueError(f"outputs differ in shape: {[np.shape(x) for x in r]} vs {[np.shape(x) for x in o]}")
    if task == "classify":
        ref = np.concatenate([np.asarray(r[0], np.float64).reshape(-1, r[0].shape[-1]) for r in ref_items])
        oth = np.concatenate([np.asarray(o[0], np.float64).reshape(-1, o[0].shape[-1]) for o in oth_items])
        diff = np.abs(ref - oth)
        return {
            "score_max_abs": float(diff.max()),
            "score_mean_abs": float(diff.mean()),
            "top_class_match": float((ref.argmax(1) == oth.argmax(1)).mean()),
        }
    ref = np.concatenate([np.asarray(r[0], np.float64).reshape(r[0].shape[-2], -1) for r in ref_items], axis=1)
    oth = np.concatenate([np.asarray(o[0], np.float64).reshape(o[0].shape[-2], -1) for o in oth_items], axis=1)
    nc = ref.shape[0] - 4 if nc is None else nc
    score_ref, score_oth = ref[4 : 4 + nc], oth[4 : 4 + nc]
    confident = score_ref.max(axis=0) >= SCORE_THRESHOLD
    diff = np.abs(score_ref - score_oth)

    def on_confident(rows) -> float:  # mean |difference| of these rows over the anchors the float model is sure of
        return float(np.abs(ref[rows][:, confident] - oth[rows][:, confident]).mean()) if confident.any() else 0.0

    out = {
        "score_max_abs": float(diff.max()),
        "score_mean_abs": float(diff.mean()),
        "top_class_match": (
            float((score_ref[:, confident].argmax(0) == score_oth[:, confident].argmax(0)).mean())
            if confident.any()
            else 1.0
        ),
        "box_mean_abs_px": on_confident(slice(0, 4)),
    }
    extra = list(range(4 + nc, ref.shape[0]))
    if task == "segment":
        out["coef_mean_abs"] = on_confident(extra)
        protos = [(np.asarray(r[1], np.float64), np.asarray(o[1], np.float64)) for r, o in zip(ref_items, oth_items)]
        out["proto_mean_abs"] = float(np.mean([np.abs(r - o).mean() for r, o in protos]))
    elif task == "pose":
        dims = (kpt_shape or [len(extra) // 3, 3])[1]
        out["kpt_mean_abs_px"] = on_confident([r for r in extra if (r - extra[0]) % dims < 2])
        if dims == 3:
            out["kpt_vis_mean_abs"] = on_confident([r for r in extra if (r - extra[0]) % dims == 2])
    elif task == "obb":
        out["angle_mean_abs_rad"] = on_confident(extra)
    return out


def fusions_from_log(log: Path) -> dict[str, int]:
    """What the toolkit's graph optimizers did, from its verbose log: each rule with the nodes it rewrote.

    Two kinds of lines are counted: ``fuse_ops`` results (``<rule>: remove node = [...]``, one per rewrite), and
    ``quant_optimizer`` results (``<rule>: ['node', ...]``, one per listed node). This is what rknn-toolkit2 reports
    on a host about what its compiler does with an activation (e.g. SiLU's ``Sigmoid`` + ``Mul`` become one exSwish
    op by ``fuse_sigmoid_mul_to_exswish``; a ReLU is folded into its producer's INT8 range by ``adjust_relu``); it
    prints no per-layer NPU/CPU placement without a board.

    >>> import tempfile; f = Path(tempfile.mkdtemp()) / "log"
    >>> _ = f.write_text("D     fuse_sigmoid_mul_to_exswish: remove node = ['a'], add node = ['b']\\n"
    ...                  "D     adjust_relu: ['/m.0/act/Relu', '/m.1/act/Relu']\\nD other\\n")
    >>> fusions_from_log(f)
    {'adjust_relu': 2, 'fuse_sigmoid_mul_to_exswish': 1}
    """
    if not Path(log).is_file():
        return {}
    fused = re.compile(r"^D\s+(?P<rule>[a-z][a-z0-9_]+): remove node = ")
    listed = re.compile(r"^D\s+(?P<rule>[a-z][a-z0-9_]+): \[(?P<nodes>.*)\]\s*$")
    found: Counter = Counter()
    for line in Path(log).read_text(errors="replace").splitlines():
        if m := fused.match(line):
            found[m["rule"]] += 1
        elif m := listed.match(line):
            found[m["rule"]] += len(re.findall(r"'[^']*'", m["nodes"]))
    return dict(sorted(found.items()))


def _write_dataset(calibration, folder: Path) -> Path:
    """The toolkit's calibration list: one ``.npy`` per image (NCHW, uint8 values, the letterboxed tensor x 255)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    lines = []
    for k, im in enumerate(calibration.images):
        f = folder / f"{k:05d}.npy"
        np.save(f, _to_uint8_nhwc(im[None]).transpose(0, 3, 1, 2))  # the toolkit wants .npy in the ONNX layout
        lines.append(str(f.resolve()))
    dataset = folder / "dataset.txt"
    dataset.write_text("\n".join(lines) + "\n")
    return dataset


def _to_uint8_nhwc(im) -> np.ndarray:
    """A ``(1, 3, H, W)`` float image in [0, 1] (letterboxed uint8 / 255) back to the uint8 ``(1, H, W, 3)`` it was."""
    x = np.asarray(im.cpu().numpy() if hasattr(im, "cpu") else im, dtype=np.float32)
    u8 = np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)
    if np.abs(u8.astype(np.float32) / 255 - x).max() > 1e-5:
        raise RuntimeError("bug: the validator's input is not a uint8 image / 255; the simulator would see another")
    return np.ascontiguousarray(u8.transpose(0, 2, 3, 1))


def _run_worker(request: dict, out_dir: Path, task: str) -> dict:
    """Run ``rknn_worker.py`` in the toolkit's venv; ``ToolchainRejected`` with its one-line message, the model's
    task and the log's path."""
    with tempfile.TemporaryDirectory(prefix="yolo-leaky-rknn-io-") as io:
        req, resp = Path(io) / "request.json", Path(io) / "response.json"
        req.write_text(json.dumps(request))
        proc = subprocess.run(
            [str(venv_python()), str(WORKER), str(req), str(resp)], capture_output=True, text=True, cwd=out_dir
        )
        result = json.loads(resp.read_text()) if resp.is_file() else None
    if result is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"bug: the rknn worker exited {proc.returncode} without a response: {tail[0]}")
    if not result["ok"]:
        raise ToolchainRejected("rknpu2", "rknn-toolkit2", f"{result['error']} ({task} model)", Path(request["log"]))
    return result


def _host_side(meta: dict):
    """The host side of the artifact: the simulator's outputs in, the model's graph outputs out (in graph order).

    ``deploy``: the first ``len(cuts)`` outputs go through the float decode ONNX in ONNX Runtime, the rest (the
    prototypes) are graph outputs already; ``naive``: the simulator's outputs are the graph outputs.
    """
    import onnx

    model = onnx.load(meta["request"]["onnx"], load_external_data=False)
    shapes = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output}
    names = meta["graph_outputs"]
    if meta["decode"] is None:
        return lambda outs: [_as_shape(y, shapes[n]) for n, y in zip(names, outs, strict=True)]
    import onnxruntime as ort

    session = ort.InferenceSession(meta["decode"], providers=["CPUExecutionProvider"])
    inputs = [(i.name, i.shape) for i in session.get_inputs()]
    made = [o.name for o in session.get_outputs()]
    side = [n for n in names if n not in made]

    def run(outs: list[np.ndarray]) -> list[np.ndarray]:
        if len(outs) != len(inputs) + len(side):
            raise RuntimeError(f"bug: the simulator gave {len(outs)} outputs, expected {len(inputs)} + {len(side)}")
        feed = {n: _as_shape(o, s).astype(np.float32) for (n, s), o in zip(inputs, outs)}
        got = dict(zip(made, session.run(None, feed)))
        got.update({n: _as_shape(o, shapes[n]) for n, o in zip(side, outs[len(inputs) :])})
        return [got[n] for n in names]

    return run


def _as_shape(y: np.ndarray, shape: list[int]) -> np.ndarray:
    """The simulator's output in the ONNX tensor's shape: a reshape only where it adds or drops unit axes."""
    y = np.asarray(y, np.float32)
    if [d for d in y.shape if d != 1] != [d for d in shape if d != 1]:
        raise RuntimeError(f"bug: the simulator's output is {list(y.shape)}, the ONNX tensor {shape}")
    return y.reshape(shape)


class _Calls:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object, list[np.ndarray]]] = []


@contextlib.contextmanager
def _outputs_hook(mode: str, replay: dict[str, np.ndarray] | None = None):
    """While validating: ``record`` every input and float output of Ultralytics' ``AutoBackend.forward``, or
    ``replay`` the output stored for the same input (by SHA-256 of its bytes) in its place."""
    import torch
    from ultralytics.nn.autobackend import AutoBackend

    original = AutoBackend.forward
    calls = _Calls()

    def forward(self, im, *args, **kwargs):
        y = original(self, im, *args, **kwargs)
        key = hashlib.sha256(im.detach().cpu().numpy().tobytes()).hexdigest()
        tensors = list(y) if isinstance(y, (list, tuple)) else [y]
        if mode == "record":
            calls.calls.append((key, im.detach().cpu().clone(), [t.detach().cpu().numpy() for t in tensors]))
            return y
        if key not in replay:
            raise RuntimeError("bug: the validator fed an image the simulator did not run")
        if len(replay[key]) != len(tensors):
            raise RuntimeError(f"bug: {len(replay[key])} replayed outputs for the model's {len(tensors)}")
        new = [
            torch.from_numpy(np.asarray(r, np.float32).reshape(t.shape)).to(t.device)
            for r, t in zip(replay[key], tensors)
        ]
        return new if isinstance(y, (list, tuple)) else new[0]

    AutoBackend.forward = forward
    try:
        yield calls
    finally:
        AutoBackend.forward = original


def _graph_outputs(onnx_path: Path) -> list[str]:
    import onnx

    return [o.name for o in onnx.load(str(onnx_path), load_external_data=False).graph.output]


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _main_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {
        "ultralytics": version("ultralytics"),
        "onnx": version("onnx"),
        "onnxruntime": version("onnxruntime"),  # runs the decode part on the CPU
        "python": sys.version.split()[0],
    }
