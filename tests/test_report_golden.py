"""report.md, word for word: each fixture is a results.json (what ``write_report`` saves, trimmed of what the report
does not read) plus the few config fields it does not keep, and its golden report.md was rendered by the report
code as it was before its prose moved into ``report_text.md``. A change to any word of a report shows up here as a
diff; a deliberate change regenerates the golden file and shows the diff in review.

The fixtures (tests/fixtures/report/):
- ``quick``: the real ``yolo-leaky compare --quick`` run (offline stand-in path, recovery, speed, export, cost, units);
  its golden file is that run's own report.md, byte for byte.
- ``int8``, ``untimed``: synthetic runs of ``test_report.synthetic_run`` (INT8 with ONNX Runtime and OpenVINO, the
  INT8 latency baseline timed against another variant or not timed, timings from an earlier version).
- ``scratch``, ``user``: the real run edited to reach the other branches (scratch on COCO8, no signal, warm-up, a
  failed cell, one timing block, a GPU; a user checkpoint, unresolved data, the COCO path's learning rate).
- ``task-segment``, ``task-pose``, ``task-obb``, ``task-classify``: synthetic runs of ``test_report.synthetic_run``
  with each task's metrics (``core.tasks``), saved by ``write_report`` (plots and the raw INT8 stage left out).
- ``mixed``: the real ``compare --quick variants=[silu,relu,relu@keep1] recovery=[finetune]`` run of
  tests/test_mixed.py, as it ran then with --quick's timing of 4 blocks of 3 s (the test now times 2 blocks of 1 s);
  its golden file is that run's report.md but for one blank line removed since.

After a deliberate wording change, ``YOLO_LEAKY_REGOLDEN=1 python -m pytest tests/test_report_golden.py`` rewrites
the golden files; review their diff.
"""

import dataclasses
import difflib
import json
import os
import re
from pathlib import Path

import pytest

import yolo_leaky.harness.report as report
from yolo_leaky.harness.config import CompareConfig
from yolo_leaky.harness.summary import Summary

FIXTURES = Path(__file__).parent / "fixtures" / "report"
NAMES = [
    "quick",
    "int8",
    "untimed",
    "scratch",
    "user",
    "mixed",
    *(f"task-{t}" for t in ("segment", "pose", "obb", "classify")),
]
REPO = Path(__file__).resolve().parents[1]
RUN_RECORDS = {"gpu-check.md"}  # a past run's output quoted as it was measured (a report excerpt), not a method page


def load_fixture(name: str) -> tuple[CompareConfig, Summary, dict]:
    """The config, Summary and plots that ``write_report`` rendered, rebuilt from a saved results.json."""
    results = json.loads((FIXTURES / f"{name}.json").read_text())
    extra = results["render"]  # not in results.json: the run's name, weights=auto's note, its wall time
    fields = {f.name for f in dataclasses.fields(CompareConfig)}
    c = CompareConfig(**{k: v for k, v in results["settings"].items() if k in fields}, **extra["config"])
    dataset = dict(results["dataset"])
    n_val = dataset.pop("val_images")
    summary = Summary(
        rows=results["variants"],
        cells=results["cells"],
        baseline=results["pretrained"],
        cost=results["cost"],
        speed=results["speed"],
        units=results["units"],
        n_val=n_val,
        dataset=dataset,
        environment=results["environment"],
        seconds=extra["seconds"],
        floor_ratio={},  # plots only
        stages=results["time"],
        recovery=results["recovery"],
        swap=results["swap"],
        standin=results["standin"],
        int8=results["int8"],
        int8_raw=results["int8_stage"],  # plots only (trimmed from the fixtures)
        mixed=results.get("mixed"),
        task=results.get("task", "detect"),  # fixtures saved before a run recorded its task were detection runs
    )
    return c, summary, results["plots"]


def render(name: str) -> str:
    return report.render_markdown(*load_fixture(name))


@pytest.mark.parametrize("name", NAMES)
def test_report_is_word_for_word_the_golden_one(name):
    got = render(name)
    if os.environ.get("YOLO_LEAKY_REGOLDEN"):
        (FIXTURES / f"{name}.md").write_text(got)
    want = (FIXTURES / f"{name}.md").read_text()
    diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True), "golden", "rendered", n=0))
    assert got == want, f"report {name} differs from tests/fixtures/report/{name}.md:\n{diff[:4000]}"


def test_fixtures_reach_every_entry_of_the_report_text(monkeypatch):
    """Every entry of report_text.md is rendered by some golden fixture, so none of the report's words is
    unchecked, and none is dead."""
    used = set()
    fill = report.text

    def spy(key: str, **values) -> str:
        used.add(key)
        return fill(key, **values)

    monkeypatch.setattr(report, "text", spy)
    for name in NAMES:
        render(name)
    assert set(report.report_text()) - used == set()


def test_report_text_is_not_copied_into_the_docs():
    """The words that explain a method live once: a sentence of report_text.md (12 words or more, placeholders
    and figures aside) copied into the README or a docs page would drift from the report; link to it instead."""
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    pages = {p.name: _words(p.read_text()) for p in docs if p.is_file() and p.name not in RUN_RECORDS}
    copied = []
    for key, entry in report.report_text().items():
        for sentence in re.split(r"(?<=[.:;])\s+", entry):
            run = _words(re.sub(r"\{[^}]*\}", " ", sentence))
            if len(run.split()) < 12:
                continue
            copied += [f"{page}: {key}: {sentence[:80]}" for page, words in pages.items() if run in words]
    assert not copied, "report prose copied into the docs:\n" + "\n".join(copied)


def _words(text: str) -> str:
    """Lower-case words only, one space apart: markup, figures and line breaks do not hide a copy."""
    return " ".join(re.findall(r"[a-z]+(?:'[a-z]+)?", text.lower()))
