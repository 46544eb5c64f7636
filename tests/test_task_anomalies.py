"""What docs/tasks.md's "Three anomalies, measured" rests on, kept true: the images the repairs (and INT8) calibrate
on are each task's images exactly as that task's own Ultralytics validator feeds them to the network.

OBB's bn repair lowers its stand-in on one calibration draw and raises it on others, and the classifier's finetune
epoch shifts its BatchNorm statistics; both were explained as properties of the stand-ins, not of a preprocessing
mismatch between calibration and validation (a different letterbox, size, augmentation or scaling). This test keeps
that premise true: a change to ``core.repair.eval_dataset`` or ``calibration_set`` that makes the calibration images
differ by one bit from what the validator scores fails it.
"""

import numpy as np
import pytest
import torch

from yolo_leaky.core.repair import calibration_set

IMGSZ = {"segment": 64, "pose": 64, "obb": 64, "classify": 32}  # each stand-in's own size (docs/tasks.md)
N = 16  # every training image: calibration_set then returns them all, in the dataset's order


def _validator(task: str, data):
    """The task's own Ultralytics validator, its dataset resolved and its train-split loader built in val mode."""
    from ultralytics.data.utils import check_cls_dataset, check_det_dataset
    from ultralytics.models.yolo.classify import ClassificationValidator
    from ultralytics.models.yolo.obb import OBBValidator
    from ultralytics.models.yolo.pose import PoseValidator
    from ultralytics.models.yolo.segment import SegmentationValidator

    cls = {
        "segment": SegmentationValidator,
        "pose": PoseValidator,
        "obb": OBBValidator,
        "classify": ClassificationValidator,
    }[task]
    args = dict(task=task, data=str(data), imgsz=IMGSZ[task], batch=4, rect=False, split="train", mode="val")
    v = cls(args={**args, "workers": 0, "plots": False, "verbose": False, "device": "cpu"})
    v.data = check_cls_dataset(str(data), split="train") if task == "classify" else check_det_dataset(str(data))
    v.device, v.stride = torch.device("cpu"), 32
    return v, v.get_dataloader(v.data["train"], 4)


@pytest.mark.parametrize("task", list(IMGSZ))
def test_calibration_images_are_what_the_tasks_validator_feeds_the_network(task, tmp_path):
    if task == "classify":
        from yolo_leaky.data.crops import make_shape_crops

        data = make_shape_crops(tmp_path / "crops", n_train=N, n_val=4, imgsz=IMGSZ[task])
    else:
        from yolo_leaky.data.synthetic_tasks import make_task_dataset

        data = make_task_dataset(tmp_path / task, task, n_train=N, n_val=2, n_tune=0, imgsz=IMGSZ[task])
    files, images, _ = calibration_set(data, N, IMGSZ[task], seed=0, task=task)
    validator, loader = _validator(task, data)
    dataset = loader.dataset
    if task == "classify":  # Ultralytics' classification val loader shuffles (top-1 does not depend on the order)
        items = [dataset[i] for i in range(len(dataset))]
        batch = {"img": torch.stack([it["img"] for it in items]), "cls": torch.tensor([it["cls"] for it in items])}
        fed = validator.preprocess(batch)["img"].numpy()
    else:
        fed = torch.cat([validator.preprocess(batch)["img"] for batch in loader]).numpy()
    order = [s[0] for s in dataset.samples] if task == "classify" else list(dataset.im_files)
    assert len(files) == N and [str(f) for f in files] == [str(f) for f in order]
    assert images.dtype == np.float32 and images.shape == fed.shape == (N, 3, IMGSZ[task], IMGSZ[task])
    assert np.array_equal(images, fed), f"largest difference {np.abs(images - fed).max()}"
