"""Interleaved latency benchmark on real yolo11n variants: torch eager and real ONNX Runtime sessions.

Nothing here asserts a speed: timings on a shared CI machine mean little. The tests check the protocol (every
variant timed every round, paired statistics, baseline at exactly 1) and the export plumbing.
"""

import copy
import json
import math
import os
import tempfile

os.environ["YOLO_OFFLINE"] = "1"  # also set by tests/conftest.py; kept so this file stands alone
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-leaky-cfg-"))
os.environ.setdefault("YOLO_AUTOINSTALL", "False")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from conftest import require  # noqa: E402

from yolo_leaky import load  # noqa: E402
from yolo_leaky.measure.bench import MIN_ROUNDS, benchmark, export_onnx, latency_stats, prepare_network, round_orders  # noqa: E402

IMGSZ = 64
ACTS = {"silu": "silu", "relu": "relu", "leaky": "leaky_relu:0.1"}


@pytest.fixture(scope="module")
def yolos() -> dict:
    return {key: load("yolo11n.yaml", act=act) for key, act in ACTS.items()}


@pytest.fixture(scope="module")
def onnx_paths(yolos, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("onnx")
    return {key: str(export_onnx(y, out, IMGSZ)) for key, y in yolos.items()}


def check_result(res, labels):
    assert list(res.stats) == labels
    assert res.rounds >= MIN_ROUNDS
    base = res.stats["silu"]
    assert (
        base.ratio_of_medians == 1.0
        and base.ratio_of_medians_ci_low == 1.0
        and base.ratio_of_medians_ci_high == 1.0
        and base.ratio_of_medians_half_width_pct == 0.0
    )
    assert base.paired_ratio == 1.0 and base.paired_ci_low == base.paired_ci_high == 1.0
    for label, s in res.stats.items():
        assert len(res.samples_ns[label]) == res.rounds == s.rounds
        assert (res.samples_ns[label] > 0).all()
        assert all(math.isfinite(v) and v > 0 for v in (s.median_ms, s.mean_ms, s.p10_ms, s.p90_ms, s.ratio_of_medians))
        assert s.p10_ms <= s.median_ms <= s.p90_ms
        assert s.ratio_of_medians_ci_low <= s.ratio_of_medians <= s.ratio_of_medians_ci_high
        assert s.paired_ci_low <= s.paired_ratio <= s.paired_ci_high
        if label != "silu":
            assert s.ratio_of_medians_ci_low < s.ratio_of_medians_ci_high and s.paired_ci_low < s.paired_ci_high
            assert s.ratio_of_medians_half_width_pct == pytest.approx(
                100 * (s.ratio_of_medians_ci_high - s.ratio_of_medians_ci_low) / 2
            )
    text = res.format_table()
    assert all(label in text for label in labels) and res.runtime in text
    assert json.loads(json.dumps(res.to_dict(samples=True)))["rounds"] == res.rounds
    check_fresh_processes(res)


def check_fresh_processes(res):
    """Every block ran in its own worker process, none of them this one."""
    pids = res.settings["block_pids"]
    assert res.settings["isolation"] == "process" and res.settings["parent_pid"] == os.getpid()
    assert len(pids) == res.settings["blocks"] == len(set(pids)) and os.getpid() not in pids
    assert res.settings["overhead_s"] > 0


@pytest.fixture(scope="module")
def ort_result(yolos, onnx_paths):
    models = {key: y.model for key, y in yolos.items()}
    return benchmark(
        models, imgsz=IMGSZ, runtime="ort-cpu", seconds=1, threads=1, warmup=2, onnx_paths=onnx_paths, blocks=3
    )  # 3 blocks of 10+ rounds reach MIN_ROUNDS


def test_torch_cpu_benchmark(yolos):
    models = {key: y.model for key, y in yolos.items()}
    threads_before = torch.get_num_threads()
    res = benchmark(models, imgsz=IMGSZ, runtime="torch-cpu", seconds=1, threads=1, warmup=2, blocks=3)
    check_result(res, list(ACTS))  # the networks reached the workers through a file
    assert torch.get_num_threads() == threads_before


def test_ort_cpu_benchmark(ort_result):
    check_result(ort_result, list(ACTS))
    assert ort_result.env["onnxruntime"]


def test_speed_section_says_what_each_interval_covers(ort_result):
    """The report reads the stored result (JSON round trip) and names what the interval is taken over: blocks in
    fresh processes here; a result timed in one process is called too narrow, not given the coverage figures."""
    from yolo_leaky.harness.config import CompareConfig
    from yolo_leaky.harness.report import SPEED_CI_COVERAGE, _speed_section

    stored = json.loads(json.dumps(ort_result.to_dict(samples=True)))
    c = CompareConfig(variants=["silu", "relu", "leaky_relu:0.1"])
    text = _speed_section(c, {}, {"timings": {"ort-cpu": stored}})
    assert "95% CI over 3 blocks, each in a fresh process" in text
    assert f"`{SPEED_CI_COVERAGE['command']}`" in text and "Documentation, not this run" in text
    for label in ("relu", "leaky"):
        s = stored["stats"][label]
        assert f"[{s['paired_ci_low']:.3f}, {s['paired_ci_high']:.3f}]" in text
    one = {**stored, "settings": {**stored["settings"], "isolation": "none"}}
    text = _speed_section(c, {}, {"timings": {"ort-cpu": one}})
    assert "95% CI over 3 blocks in one process" in text and "does not cover what varies between processes" in text
    assert "remove `speed.json`" in text  # only an earlier version timed blocks in one process
    assert "Documentation, not this run" not in text


def test_benchmark_leaves_the_callers_model_alone(yolos):
    net = yolos["relu"].model
    training, state = net.training, {k: v.clone() for k, v in net.state_dict().items()}
    fused = prepare_network(net)
    assert fused.is_fused() and not fused.training
    assert not net.is_fused() and net.training == training
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    x = torch.rand(1, 3, IMGSZ, IMGSZ)
    with torch.inference_mode():
        torch.testing.assert_close(fused(x)[0], copy.deepcopy(net).eval()(x)[0], rtol=1e-3, atol=1e-3)


def test_export_onnx_writes_only_into_out_dir(yolos, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    net = yolos["leaky"].model
    had_pt_path = "pt_path" in net.__dict__
    path = export_onnx(yolos["leaky"], tmp_path / "out", IMGSZ, name="leaky64")
    assert path == tmp_path / "out" / "leaky64.onnx" and path.stat().st_size > 0
    assert list(cwd.iterdir()) == []
    assert ("pt_path" in net.__dict__) == had_pt_path
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["leaky64.onnx"]


def test_default_export_name_carries_the_activation(onnx_paths):
    assert os.path.basename(onnx_paths["leaky"]) == "yolo11n-leaky_relu0.1.onnx"
    assert os.path.basename(onnx_paths["silu"]) == "yolo11n-silu.onnx"


def test_summarize_on_known_samples():
    rng = np.random.default_rng(1)
    base = rng.integers(1_000_000, 2_000_000, size=200)
    samples = {"silu": base, "double": 2 * base, "same": base.copy()}
    stats = latency_stats(samples, "silu", resamples=500)
    assert stats["double"].ratio_of_medians == pytest.approx(2.0)
    assert stats["double"].ratio_of_medians_ci_low == pytest.approx(2.0) and stats[
        "double"
    ].ratio_of_medians_ci_high == pytest.approx(2.0)
    assert stats["double"].paired_ratio == 2.0 and stats["double"].paired_half_width_pct == 0.0
    assert stats["same"].ratio_of_medians == 1.0 and stats["same"].ratio_of_medians_half_width_pct == 0.0
    noisy = {"silu": base, "other": base + rng.integers(0, 500_000, size=200)}
    s = latency_stats(noisy, "silu", resamples=500)["other"]
    assert 1.0 < s.ratio_of_medians_ci_low < s.ratio_of_medians < s.ratio_of_medians_ci_high
    assert 1.0 < s.paired_ci_low < s.paired_ratio < s.paired_ci_high


def test_pairing_cancels_drift_shared_by_a_round():
    """A slow drift that hits every model of a round alike widens the ratio of medians, not the paired ratio."""
    rng = np.random.default_rng(2)
    drift = np.exp(rng.normal(0, 0.3, size=300))  # machine speed, per round
    base = 1e7 * drift * np.exp(rng.normal(0, 0.01, size=300))
    other = 0.9e7 * drift * np.exp(rng.normal(0, 0.01, size=300))
    s = latency_stats({"silu": base, "other": other}, "silu", resamples=1000)["other"]
    assert s.paired_ci_low < 0.9 < s.paired_ci_high
    assert s.paired_half_width_pct < s.ratio_of_medians_half_width_pct / 3


def test_round_orders_alternate_and_cover_everyone():
    labels = ["a", "b", "c", "d"]
    orders = round_orders(labels, seed=0)
    seen = [next(orders) for _ in range(20)]
    for even, odd in zip(seen[::2], seen[1::2]):
        assert sorted(even) == labels and odd == even[::-1]
    assert len({tuple(o) for o in seen[::2]}) > 1  # shuffled, not a fixed order
    assert [next(round_orders(labels, seed=0)) for _ in range(2)] == [seen[0], seen[0]]  # seeded


def test_bad_arguments_are_refused(yolos, onnx_paths):
    models = {key: y.model for key, y in yolos.items()}
    with pytest.raises(ValueError, match="unknown runtime"):
        benchmark(models, runtime="tensorrt")
    with pytest.raises(ValueError, match="baseline"):
        benchmark(models, baseline="gelu")
    with pytest.raises(ValueError, match="onnx_paths"):
        benchmark(models, runtime="ort-cpu", onnx_paths={"silu": onnx_paths["silu"]})
    with pytest.raises(ValueError, match="imgsz"):
        benchmark(models, imgsz=2 * IMGSZ, runtime="ort-cpu", seconds=0, onnx_paths=onnx_paths)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            benchmark(models, runtime="torch-cuda-fp16")


def test_block_ci_covers_a_between_block_shift_that_the_round_ci_misses():
    """Each block (a fresh session) shifts the variant's speed a little, as memory layout does between processes;
    rounds within one session never sample that, so a single session's bootstrap CI is far too narrow."""
    rng = np.random.default_rng(3)
    true, blocks, rounds = 0.9, 8, 60
    shifts = np.exp(rng.normal(0, 0.02, size=blocks))  # ~2% between sessions
    base = 1e7 * np.exp(rng.normal(0, 0.005, size=blocks * rounds))
    block_of_round = np.repeat(np.arange(blocks), rounds)
    other = base * true * shifts[block_of_round] * np.exp(rng.normal(0, 0.005, size=blocks * rounds))
    s = latency_stats({"silu": base, "other": other}, "silu", resamples=1000, block_of_round=block_of_round)["other"]
    assert s.blocks == blocks and len(s.block_ratios) == blocks
    assert s.paired_ci_low < true < s.paired_ci_high  # the block CI covers the truth
    misses = 0
    for b in range(blocks):  # what one session would have reported on its own
        one = block_of_round == b
        single = latency_stats({"silu": base[one], "other": other[one]}, "silu", resamples=1000)["other"]
        misses += not single.paired_ci_low < true < single.paired_ci_high
    assert misses >= blocks // 2, misses


@pytest.mark.parametrize(
    "ci, verdict",
    [
        ((0.90, 0.89, 0.91), "faster by 10.0%"),
        ((1.10, 1.09, 1.11), "slower by 10.0%"),
        ((1.005, 0.99, 1.015), "no practical difference (within ±2%)"),
        ((0.985, 0.975, 0.995), "inconclusive"),
        ((1.00, 0.97, 1.03), "inconclusive"),
        ((0.97, 0.96, 0.979), "faster by 3.0%"),
    ],
)
def test_speed_verdict_uses_the_practical_band(ci, verdict):
    from yolo_leaky.harness.summary import speed_verdict

    stats = {"label": "relu", "paired_ratio": ci[0], "paired_ci_low": ci[1], "paired_ci_high": ci[2]}
    assert speed_verdict(stats, "silu", band=0.02) == verdict
    assert speed_verdict({**stats, "label": "silu"}, "silu") == "baseline"


def test_raw_samples_round_trip_into_the_same_table(yolos):
    from dataclasses import asdict

    from yolo_leaky.measure.bench import stats_from_dict

    nets = {k: yolos[k].model for k in ("silu", "relu")}
    res = benchmark(
        nets, imgsz=IMGSZ, runtime="torch-cpu", seconds=0.3, threads=1, baseline="silu", blocks=3, isolate=False
    )
    assert res.settings["isolation"] == "none" and res.settings["block_pids"] == [os.getpid()] * 3
    stored = json.loads(json.dumps(res.to_dict(samples=True)))
    assert sorted(set(stored["block_of_round"])) == [0, 1, 2] and stored["stats"]["relu"]["blocks"] == 3
    assert stats_from_dict(stored) == {k: asdict(v) for k, v in res.stats.items()}
    assert stats_from_dict(stored) == stored["stats"]


def test_openvino_cpu_benchmark(yolos, onnx_paths):
    require("openvino", "openvino")
    models = {key: y.model for key, y in yolos.items()}
    res = benchmark(
        models, imgsz=IMGSZ, runtime="openvino-cpu", seconds=1, threads=1, warmup=2, openvino_paths=onnx_paths, blocks=3
    )  # 3 blocks of 10+ rounds reach MIN_ROUNDS; each block compiles every model afresh (the slow part)
    check_result(res, list(ACTS))
    assert res.env["openvino"]


def test_openvino_runtime_needs_its_files_and_the_extra(yolos, onnx_paths, monkeypatch):
    import sys

    from yolo_leaky import UserError

    models = {key: y.model for key, y in yolos.items()}
    with pytest.raises(ValueError, match="openvino_paths"):
        benchmark(models, runtime="openvino-cpu", onnx_paths=onnx_paths)  # ONNX paths go to ort-cpu only
    monkeypatch.setitem(sys.modules, "openvino", None)  # an environment without yolo-leaky[openvino]
    with pytest.raises(UserError, match=r"pip install yolo-leaky\[openvino\]"):
        benchmark(models, runtime="openvino-cpu", openvino_paths=onnx_paths)
