"""What differs between Ultralytics' tasks, in one table: each task's validator metrics and its headline metric.

Every stage that validates a model (compare's cells, the stand-in, repairs' calibration) reads the task's metrics
from here instead of naming detection's box metrics, so a task is added by adding a row (issue 21). The keys are
the ones the task's Ultralytics validator writes in ``metrics.results_dict``; the record keys (``map50_95``,
``top1``) are what yolo-leaky's results files hold.
"""

from __future__ import annotations

# task -> {record key: Ultralytics results_dict key}, in the order the records keep them
METRICS: dict[str, dict[str, str]] = {
    "detect": {
        "precision": "metrics/precision(B)",
        "recall": "metrics/recall(B)",
        "map50": "metrics/mAP50(B)",
        "map50_95": "metrics/mAP50-95(B)",
    },
    "classify": {"top1": "metrics/accuracy_top1", "top5": "metrics/accuracy_top5"},
}

# task -> (record key of the metric that verdicts, CIs and rankings are on, its name in reports)
HEADLINE: dict[str, tuple[str, str]] = {"detect": ("map50_95", "mAP50-95"), "classify": ("top1", "top-1")}


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
    return HEADLINE[task]
