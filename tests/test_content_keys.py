"""Reused stage results are keyed by the checkpoints they measured, never by variant labels: a cell that failed (and
was timed and inspected as an untrained network) and is trained on a rerun, or a checkpoint whose bytes changed
under the same label, is measured again; the report labels an untrained network as such."""

import dataclasses
import time

import pytest
import torch

from yolo_leaky.core.loading import load
from yolo_leaky.data.datasets import file_digest, resolve_data
from yolo_leaky.harness.cells import run_cells, variant_models
from yolo_leaky.harness.compare import measure_cost, measure_int8_stage, measure_speed, measure_units
from yolo_leaky.harness.config import CompareConfig
from yolo_leaky.harness.report import render_markdown
from yolo_leaky.harness.summary import summarize
from yolo_leaky.measure.diagnostics import unit_health
from yolo_leaky.utils import atomic

UNTRAINED = "untrained (cell relu-s0 failed)"


def _config(tmp_path, **kw) -> CompareConfig:
    values = dict(
        protocol="scratch",
        variants=["silu", "relu"],
        seeds=[0],
        epochs=1,
        imgsz=64,
        batch=4,
        bench_imgsz=64,
        bench_seconds=1.0,
        bench_blocks=2,
        runtimes=["ort-cpu"],
        project=str(tmp_path / "runs"),
        name="keys",
    )
    return CompareConfig(**{**values, **kw})


def _stages(c, cells, data) -> dict:
    """The reusable per-variant stages on this run folder, and the report they make (plots left out)."""
    models = variant_models(c, cells)
    cost, speed, units = measure_cost(c, models), measure_speed(c, models), measure_units(c, models, data)
    summary = summarize(c, cells, None, cost, speed, units, data, time.time())
    return {"models": models, "cost": cost, "speed": speed, "units": units, "report": render_markdown(c, summary, {})}


def _health(c, weights, data) -> dict:
    """Unit health measured now on ``weights``: what units.json must hold for that network."""
    return unit_health(load(weights), data, imgsz=min(c.imgsz, 128), batch=c.batch)


@pytest.fixture(scope="module")
def rerun(tmp_path_factory, coco8_yaml):
    """Two scratch cells; relu's fails the first time (a file where its training folder must go) and is trained on
    the rerun, after the obstacle is removed. Every reusable stage runs after each attempt."""
    tmp = tmp_path_factory.mktemp("keys")
    c = _config(tmp)
    data = resolve_data(str(coco8_yaml), out_dir=tmp)
    blocker = c.run_dir / "cells/relu-s0/train"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the training folder must go")
    cells = run_cells(c, data, "cpu")
    assert cells["relu-s0"]["status"] == "failed" and cells["silu-s0"]["status"] == "ok"
    first = _stages(c, cells, data)
    blocker.unlink()
    cells = run_cells(c, data, "cpu")
    assert cells["relu-s0"]["status"] == "ok"
    second = _stages(c, cells, data)
    return c, data, cells, first, second


@pytest.mark.slow
def test_a_failed_cell_is_labelled_untrained_and_measured_again_once_trained(rerun):
    c, data, cells, first, second = rerun
    weights = cells["relu-s0"]["weights"]
    # first attempt: relu was an untrained network, and the report says so wherever its measurements appear
    assert first["models"].sources["relu"]["kind"] == "untrained"
    floor = first["models"].sources["identity"]  # the floor is silu's trained network: the baseline cell completed
    assert (floor["kind"], floor["cell"], floor["key"]) == (
        "trained",
        "silu-s0",
        f"{file_digest(floor['weights'])}:identity",
    )
    assert first["speed"]["checkpoints"]["relu"]["kind"] == "untrained"
    assert first["report"].count(UNTRAINED) >= 5  # speed table, export check, cost, unit health, verdict
    # rerun: cost, speed (export check and timings) and unit health measured the trained checkpoint
    digest = file_digest(weights)
    assert second["models"].sources["relu"] == {
        "kind": "trained",
        "key": digest,
        "weights": weights,
        "act": None,
        "cell": "relu-s0",
    }
    assert second["cost"]["relu"]["checkpoint"]["key"] == digest
    assert second["speed"]["checkpoints"]["relu"]["key"] == digest
    assert second["speed"]["timings"] != first["speed"]["timings"]  # timed again, not reused
    assert second["units"]["relu"]["checkpoint"]["key"] == digest
    assert second["units"]["relu"]["health"] == _health(c, weights, data)
    assert second["units"]["relu"]["health"] != first["units"]["relu"]["health"]
    assert "untrained" not in second["report"]
    # silu's checkpoint did not change: its unit health is the same measurement
    assert second["units"]["silu"]["health"] == first["units"]["silu"]["health"]


@pytest.mark.slow
def test_changed_checkpoint_bytes_under_the_same_label_invalidate_speed_units_and_int8(rerun, monkeypatch):
    c, data, cells, _, second = rerun
    calls = _fake_int8(monkeypatch)
    c8 = dataclasses.replace(c, int8=True)
    measure_int8_stage(c8, cells, data)
    measure_int8_stage(c8, cells, data)
    assert len(calls) == 1  # same checkpoints: reused
    again = _stages(c, cells, data)
    assert again["speed"]["timings"] == second["speed"]["timings"]  # same checkpoints: reused as they were
    assert again["units"] == second["units"] and again["cost"] == second["cost"]

    weights = cells["relu-s0"]["weights"]
    ckpt = torch.load(weights, weights_only=False)
    first_conv = ckpt["model"].model[0].conv.weight
    first_conv.data = -first_conv.data  # other bytes under the same label and path
    torch.save(ckpt, weights)

    after = _stages(c, cells, data)
    digest = file_digest(weights)
    assert digest != second["speed"]["checkpoints"]["relu"]["key"]
    assert after["speed"]["checkpoints"]["relu"]["key"] == digest
    assert after["speed"]["timings"] != second["speed"]["timings"]
    assert after["cost"]["relu"]["checkpoint"]["key"] == digest
    assert after["units"]["relu"]["checkpoint"]["key"] == digest
    assert after["units"]["relu"]["health"] == _health(c, weights, data)
    result = measure_int8_stage(c8, cells, data)
    assert len(calls) == 2 and calls[-1]["relu"] == digest and result["fresh"]
    assert result["seeds"]["0"]["checkpoints"]["relu"] == digest


def _fake_int8(monkeypatch) -> list:
    """Stand in for ``quant.measure_int8`` (the reuse decision is under test, not INT8): record the digests of the
    checkpoints each call was given."""
    calls = []

    def fake(weights, data, out_dir, runtimes=(), **kw):
        calls.append({label: file_digest(w) for label, w in weights.items()})
        return {"variants": {label: {"weights": w} for label, w in weights.items()}, "latency": dict.fromkeys(runtimes)}

    monkeypatch.setattr("yolo_leaky.harness.compare.measure_int8", fake)
    return calls


def test_int8_reuses_only_the_seeds_whose_checkpoints_are_unchanged(tmp_path, monkeypatch):
    """Per seed: a seed is measured again when one of its checkpoints changed or a failed cell completed; the other
    seeds are reused, and the INT8 vs FP32 timing (first seed) counts as fresh only when the first seed ran."""
    calls = _fake_int8(monkeypatch)
    c = _config(tmp_path, seeds=[0, 1], int8=True)
    cells = {}
    for seed in (0, 1):
        for label in ("silu", "relu"):
            path = tmp_path / f"{label}-s{seed}.pt"
            path.write_bytes(f"{label} {seed}".encode())
            cells[f"{label}-s{seed}"] = {"variant": label, "seed": seed, "status": "ok", "weights": str(path)}
    cells["relu-s1"]["status"] = "failed"

    first = measure_int8_stage(c, cells, "data.yaml")
    assert [sorted(call) for call in calls] == [["relu", "silu"], ["silu"]] and first["fresh"]
    assert atomic.read_json(c.run_dir / "int8.json")["seeds"]["1"]["checkpoints"] == {
        "silu": file_digest(tmp_path / "silu-s1.pt")
    }

    cells["relu-s1"]["status"] = "ok"  # the failed cell completed on a rerun
    second = measure_int8_stage(c, cells, "data.yaml")
    assert [sorted(call) for call in calls[2:]] == [["relu", "silu"]] and not second["fresh"]
    assert second["seeds"]["0"] == first["seeds"]["0"]

    (tmp_path / "silu-s0.pt").write_bytes(b"retrained")  # the first seed's bytes change under the same label
    third = measure_int8_stage(c, cells, "data.yaml")
    assert len(calls) == 4 and calls[3]["silu"] == file_digest(tmp_path / "silu-s0.pt") and third["fresh"]
    assert third["seeds"]["1"] == second["seeds"]["1"]

    measure_int8_stage(c, cells, "data.yaml")
    assert len(calls) == 4  # nothing changed: everything reused


def test_a_completed_cell_is_reused_only_for_the_start_it_was_trained_from(tmp_path, monkeypatch):
    """A cell is keyed on the bytes of its start checkpoint and teacher, not its name: the same cell name whose start
    was made again with other bytes (another calibration draw, another machine) is trained again."""
    import yolo_leaky.harness.cells as cells_mod

    start, teacher = tmp_path / "start.pt", tmp_path / "teacher.pt"
    start.write_bytes(b"start v1")
    teacher.write_bytes(b"teacher")
    c = CompareConfig(
        protocol="recover",
        weights=str(teacher),
        variants=["silu"],
        seeds=[0],
        recovery=["distill"],
        project=str(tmp_path),
    )
    swap = {"variants": {"silu": {"seeds": {"0": {"start": {"path": str(start), "repair": "bn"}}}}}}
    submitted = []
    monkeypatch.setattr(cells_mod, "execute", lambda todo, *a, **k: submitted.extend(job.key for job in todo))
    job = cells_mod.cell_jobs(c, "data.yaml", "cpu", swap, str(teacher))[0]
    folder = c.run_dir / "cells" / job["key"]
    done = {"variant": "silu", "seed": 0, "status": "ok", "metrics": {}, "input_digests": cells_mod.input_digests(job)}
    atomic.write_json(folder / "cell.json", done)
    assert run_cells(c, "data.yaml", "cpu", swap=swap, teacher=str(teacher))[job["key"]]["status"] == "ok"
    assert submitted == []  # the same start and teacher: reused
    start.write_bytes(b"start v2")  # the start made again, other bytes, same path and cell name
    with pytest.raises(KeyError):  # nothing ran (execute is faked), so the cell has no result this time
        run_cells(c, "data.yaml", "cpu", swap=swap, teacher=str(teacher))
    assert submitted == [job["key"]]
    assert set(done["input_digests"]) == {"start", "teacher"}
