"""Score many networks on one split quickly, image by image, with Ultralytics' own detection validator.

``YOLO.val`` rebuilds its dataloader and re-reads every image for each network; a sensitivity scan scores dozens
of networks on the same images. ``ImageScorer`` reads and preprocesses the split once, then runs Ultralytics'
``DetectionValidator`` (its NMS, its box matching, its ``ap_per_class``) on each network, and keeps each image's
matches, so that the validation set's resolution can be measured by resampling images (``map50_95``).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.swap import network_of

STAT_KEYS = ("tp", "conf", "pred_cls", "target_cls")


class ImageScorer:
    """A split of a detection dataset, loaded once, and Ultralytics' validator to score networks on it.

    Args:
        data_yaml: A dataset YAML that Ultralytics' ``check_det_dataset`` resolves.
        imgsz: Square letterbox size (``rect=False``, as every accuracy figure of ``compare``).
        split: ``val``, ``train`` or another split the YAML names.
        batch: Images per forward.

    Examples:
        >>> scorer = ImageScorer("shapes.yaml", 64)  # doctest: +SKIP
        >>> per_image = scorer.score(load("standin.pt"))  # doctest: +SKIP
        >>> round(map50_95(per_image), 3)  # doctest: +SKIP
        0.511
    """

    def __init__(self, data_yaml: str | Path, imgsz: int, split: str = "val", batch: int = 64) -> None:
        from ultralytics.data.utils import check_det_dataset
        from ultralytics.models.yolo.detect import DetectionValidator
        from ultralytics.utils import LOGGER

        args = dict(task="detect", data=str(data_yaml), imgsz=imgsz, batch=batch, device="cpu", rect=False)
        args.update(workers=0, plots=False, verbose=False, mode="val", split=split, save_json=False)
        self.validator = v = DetectionValidator(args=args)
        level = LOGGER.level
        LOGGER.setLevel("WARNING")
        try:
            v.data = check_det_dataset(str(data_yaml), autodownload=False)
            v.device, v.stride = torch.device("cpu"), 32
            v.dataloader = v.get_dataloader(v.data[split], batch)
            self.batches = [v.preprocess(b) for b in v.dataloader]
        finally:
            LOGGER.setLevel(level)
        self.images = sum(len(b["im_file"]) for b in self.batches)

    def score(self, model) -> list[dict]:
        """Per image of the split: its ``tp`` matrix, ``conf``, ``pred_cls`` and ``target_cls`` (NumPy), from one
        eval forward of a fused copy of ``model`` (left unchanged)."""
        return self._score(fused_copy(network_of(model)))

    def score_onnx(self, path: str | Path, names: dict, end2end: bool = False, threads: int = 0) -> list[dict]:
        """``score`` for an exported ONNX (FP32 or INT8 QDQ) run by ONNX Runtime on the same images, in batches of the
        export's static batch (a short last batch padded with zero images whose outputs are dropped).

        Args:
            path: The ``.onnx`` file (input ``imgsz`` square).
            names: The class names (the PyTorch network's ``names``).
            end2end: The export ends in the one-to-one head's top-k (yolo26n's Detect): no NMS, as Ultralytics'
                validator treats such a model.
            threads: ONNX Runtime intra-op threads (0: its default).

        Examples:
            >>> per_image = scorer.score_onnx("int8.onnx", names={0: "circle"})  # doctest: +SKIP
        """
        return self._score(OnnxNet(path, names, end2end, threads))

    def _score(self, net) -> list[dict]:
        v, recorded = self.validator, []
        v.init_metrics(net)
        update = v.metrics.update_stats

        def record(stat: dict) -> None:
            recorded.append({k: np.asarray(stat[k]) for k in STAT_KEYS})
            update(stat)

        v.metrics.update_stats = record
        try:
            with torch.inference_mode():
                for batch in self.batches:
                    v.update_metrics(v.postprocess(net(batch["img"])), batch)
        finally:
            v.metrics.update_stats = update
        return recorded


class OnnxNet:
    """An ONNX Runtime session that a ``DetectionValidator`` can run like an eval network: ``names``, ``end2end``,
    and a call on a float tensor batch that returns the graph's first output as a tensor."""

    def __init__(self, path: str | Path, names: dict, end2end: bool = False, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        first = self.session.get_inputs()[0]
        self.input, self.batch = first.name, first.shape[0]
        self.names, self.end2end = names, end2end

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x, outputs = images.float().numpy(), []
        for i in range(0, len(x), self.batch):  # the export's static batch; a short last batch is padded with zeros
            chunk = x[i : i + self.batch]
            padded = np.concatenate([chunk, np.zeros((self.batch - len(chunk), *chunk.shape[1:]), chunk.dtype)])
            outputs.append(self.session.run(None, {self.input: padded})[0][: len(chunk)])
        return torch.from_numpy(np.concatenate(outputs))


def map50_95(per_image: list[dict], index: np.ndarray | None = None) -> float:
    """mAP50-95 over the images ``index`` picks (all by default; repeats allowed, for a bootstrap resample), with
    Ultralytics' ``ap_per_class`` (the mean over the classes present, as its validator reports).

    Examples:
        >>> stats = [{"tp": np.ones((1, 10), bool), "conf": np.array([0.9]), "pred_cls": np.array([0.0]),
        ...           "target_cls": np.array([0.0])}]
        >>> round(map50_95(stats), 3)
        0.995
    """
    from ultralytics.utils.metrics import ap_per_class

    picked = per_image if index is None else [per_image[i] for i in index]
    target = np.concatenate([s["target_cls"] for s in picked])
    if not len(target):
        return 0.0
    tp = np.concatenate([s["tp"].reshape(-1, 10) for s in picked])
    conf = np.concatenate([s["conf"] for s in picked])
    pred = np.concatenate([s["pred_cls"] for s in picked])
    if not len(conf):
        return 0.0
    return float(ap_per_class(tp, conf, pred, target)[5].mean())


def fused_copy(net: nn.Module) -> nn.Module:
    """A fused eval copy (Conv+BatchNorm folded), as Ultralytics' validator runs a network."""
    net = copy.deepcopy(net).float().eval()
    return net.fuse(verbose=False) if hasattr(net, "fuse") else net
