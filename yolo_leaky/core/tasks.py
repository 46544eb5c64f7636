"""What differs between Ultralytics' tasks, in one table: each task's validator metrics and its headline metric.

Every stage that validates a model (compare's cells, the stand-in, repairs' calibration) reads the task's metrics
from here instead of naming detection's box metrics, so a task is added by adding a row (issue 21). The keys are
the ones the task's Ultralytics validator writes in ``metrics.results_dict``; the record keys (``map50_95``,
``top1``) are what yolo-leaky's results files hold.
"""

from __future__ import annotations

# the box metrics every detection-family validator writes (OBB's are rotated-box metrics under the same (B) keys)
_BOX_KEYS = {
    "precision": "metrics/precision(B)",
    "recall": "metrics/recall(B)",
    "map50": "metrics/mAP50(B)",
    "map50_95": "metrics/mAP50-95(B)",
}

# task -> {record key: Ultralytics results_dict key}, in the order the records keep them
METRICS: dict[str, dict[str, str]] = {
    "detect": _BOX_KEYS,
    "segment": {**_BOX_KEYS, "mask_map50": "metrics/mAP50(M)", "mask_map50_95": "metrics/mAP50-95(M)"},
    "pose": {**_BOX_KEYS, "pose_map50": "metrics/mAP50(P)", "pose_map50_95": "metrics/mAP50-95(P)"},
    "obb": _BOX_KEYS,  # what the keys measure (rotated IoU) is in metric_name
    "classify": {"top1": "metrics/accuracy_top1", "top5": "metrics/accuracy_top5"},
}

# task -> record key of the metric that verdicts, CIs and rankings are on (its report name: metric_name)
HEADLINE: dict[str, str] = {
    "detect": "map50_95",
    "segment": "mask_map50_95",
    "pose": "pose_map50_95",
    "obb": "map50_95",
    "classify": "top1",
}

# task -> record key of the looser metric reports show beside the headline: mAP50 beside mAP50-95
SECOND: dict[str, str] = {"detect": "map50", "segment": "mask_map50", "pose": "pose_map50", "obb": "map50"}
SECOND["classify"] = "top5"

TASKS = tuple(METRICS)  # every task yolo-leaky measures, in one order

# task -> why recovery by distillation cannot run for it (compare runs finetune only and its report says why)
NO_DISTILL: dict[str, str] = {
    "classify": "Ultralytics 8.4's distillation trainer needs a detection-family head (Detect or a subclass)",
}


def task_metrics(results_dict: dict, task: str = "detect") -> dict[str, float]:
    """A validator's ``results_dict`` as the record keys of ``task`` (NaN for a metric the validator did not write).

    Args:
        results_dict: ``metrics.results_dict`` of an Ultralytics validation.
        task: The model's task (``core.loading.model_task``).

    Returns:
        ``{record key: float}`` in the order of ``METRICS[task]``.

    Raises:
        KeyError: ``task`` has no row (a bug: callers check the task first).

    Examples:
        >>> task_metrics({"metrics/accuracy_top1": 0.75, "metrics/accuracy_top5": 1.0}, "classify")
        {'top1': 0.75, 'top5': 1.0}
        >>> task_metrics({}, "detect")["map50_95"]
        nan
    """
    return {k: float(results_dict.get(v, float("nan"))) for k, v in METRICS[task].items()}


def headline(task: str = "detect") -> tuple[str, str]:
    """The record key and report name of ``task``'s headline metric.

    Examples:
        >>> headline("detect"), headline("classify")
        (('map50_95', 'mAP50-95'), ('top1', 'top-1'))
    """
    return HEADLINE[task], metric_name(HEADLINE[task], task)


def second(task: str = "detect") -> tuple[str, str]:
    """The record key and report name of the looser metric shown beside ``task``'s headline.

    Examples:
        >>> second("pose"), second("classify")
        (('pose_map50', 'pose mAP50'), ('top5', 'top-5'))
    """
    return SECOND[task], metric_name(SECOND[task], task)


# the prefix that says what a task's box metrics measure (a segment or pose model's box metrics are secondary)
_BOX_PREFIX = {"detect": "", "segment": "box ", "pose": "box ", "obb": "rotated-box "}
_NAMES = {"mask_map50": "mask mAP50", "mask_map50_95": "mask mAP50-95", "pose_map50": "pose mAP50"}
_NAMES.update(pose_map50_95="pose mAP50-95", top1="top-1", top5="top-5")


def metric_name(key: str, task: str = "detect") -> str:
    """How reports name the record key ``key`` of ``task`` (one name per meaning: OBB's ``map50_95`` is rotated).

    Examples:
        >>> metric_name("map50_95"), metric_name("map50_95", "obb"), metric_name("precision", "segment")
        ('mAP50-95', 'rotated-box mAP50-95', 'box precision')
        >>> metric_name("top1", "classify")
        'top-1'
    """
    if key in _NAMES:
        return _NAMES[key]
    base = {"map50": "mAP50", "map50_95": "mAP50-95"}.get(key, key)
    return _BOX_PREFIX[task] + base
