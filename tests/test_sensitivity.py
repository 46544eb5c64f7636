"""``yolo-leaky sensitivity``: the per-image scorer reproduces Ultralytics' validator, the statistics (noise from
the image bootstrap and the calibration draws, Holm, separability, additivity) are right on fixed inputs, and on the
stand-in the scan tells apart what its measurement supports."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from yolo_leaky import cli
from yolo_leaky.harness.sensitivity import Z, analyse
from yolo_leaky.harness.summary import holm


def image(hit: bool, cls: int = 0, conf: float = 0.9) -> dict:
    """One validation image with one object: a matching prediction (hit) or a wrong-class one."""
    return {
        "tp": np.full((1, 10), hit),
        "conf": np.array([conf]),
        "pred_cls": np.array([float(cls if hit else cls + 1)]),
        "target_cls": np.array([float(cls)]),
    }


def scores_for(hits: dict[str, list[list[bool]]]) -> dict:
    return {k: [[image(h, cls=i % 2) for i, h in enumerate(draw)] for draw in v] for k, v in hits.items()}


BASE = [True] * 50 + [False] * 10
UNITS = [
    {"label": "same", "layer": 0, "type": "Conv", "sites": 1},
    {"label": "bad", "layer": 5, "type": "C3k2", "sites": 4},
]


def fixed_scores(full_misses: int = 30):
    """SiLU hits 50 of 60 images on both draws; ``same`` is SiLU itself; ``bad`` misses 20 more (draw 0) or 24
    (draw 1); the full swap misses ``full_misses`` more."""
    bad0 = [False] * 20 + BASE[20:]
    bad1 = [False] * 24 + BASE[24:]
    full = [False] * full_misses + BASE[full_misses:]
    return scores_for({"silu": [BASE, BASE], "same": [BASE, BASE], "bad": [bad0, bad1], "full": [full, full]})


def test_statistics_on_fixed_inputs():
    result = analyse(fixed_scores(), UNITS, boot=200)
    rows = {r["label"]: r for r in result["units"]}
    same, bad = rows["same"], rows["bad"]
    assert same["cost"] == 0 and same["noise"] == 0 and math.isnan(same["p"])  # SiLU itself: nothing to test
    assert bad["rank"] == 1 and same["rank"] == 2
    # noise = sqrt(bootstrap SE over images^2 + SD over the two draws^2 / 2), p from the normal, CI at 1.96 noise
    assert bad["sd_draws"] == pytest.approx(np.std(bad["by_draw"], ddof=1))
    assert bad["noise"] == pytest.approx(math.sqrt(bad["se_images"] ** 2 + bad["sd_draws"] ** 2 / 2))
    assert bad["p"] == pytest.approx(2 * stats.norm.sf(bad["cost"] / bad["noise"]))
    assert bad["high"] - bad["cost"] == pytest.approx(stats.norm.ppf(0.975) * bad["noise"]) and Z > 1.95
    assert bad["p_holm"] == pytest.approx(holm([bad["p"]])[0]) and bad["separable_from_zero"]
    assert bad["verdict"] == "costs mAP" and bad["separable_from"] == [2] and bad["separable_from_next"]
    assert 0 < bad["se_images"] < bad["cost"] / 3
    # additivity: the sum of the units' costs is bad's; the full swap costs more than that, on the same resamples
    assert result["sum"]["cost"] == pytest.approx(bad["cost"])
    assert result["full"]["cost"] > result["sum"]["cost"]
    assert result["additivity"]["verdict"].startswith("the whole swap costs more")
    assert result["top_vs_last"]["separable"]


def test_additive_when_the_full_swap_costs_what_its_parts_do():
    """The full swap misses 22 images, bad misses 20 and 24: the sum and the whole agree within the noise."""
    result = analyse(fixed_scores(full_misses=22), UNITS, boot=200)
    assert result["additivity"]["verdict"].startswith("additive within noise"), result["additivity"]


def test_the_scorer_reproduces_ultralytics_val(standin):
    """``ImageScorer`` (one read of the images, Ultralytics' validator pieces) gives the mAP50-95 that ``YOLO.val``
    gave when the stand-in was made (recorded with it), on the same 64 validation images."""
    from yolo_leaky import load
    from yolo_leaky.data.standin import standin_eval_data
    from yolo_leaky.measure.scorer import ImageScorer, map50_95

    weights, record = standin
    scorer = ImageScorer(standin_eval_data(64), 64, batch=32)
    per_image = scorer.score(load(weights))
    assert scorer.images == len(per_image) == 64
    assert map50_95(per_image) == pytest.approx(record["metrics"]["map50_95"], abs=1e-9)


BAD = {
    "units-range": (["units=0-40"], "layer 24-40 out of range: standin.pt has layers 0-23"),
    "units-empty": (["units=11-12"], "units=11-12: layers=11-12 leaves nothing swapped"),
    "not-a-checkpoint": (["model=yolo11n.yaml", "data=coco8.yaml"], "must be a SiLU .pt checkpoint"),
    "no-data": (["model=missing.pt"], "does not exist"),
    "standin-other-data": (["data=coco8.yaml"], "pretrained on the synthetic shapes data"),
    "draws": (["draws=0"], "draws=0 must be a whole number >= 1"),
    "unit": (["unit=block"], "unit='block' must be layer or site"),
    "int8-site": (["unit=site", "int8=True"], "int8=True measures whole layers"),
    "int8-word": (["int8=maybe"], "int8='maybe' must be True or False"),
    "standin-model-pt": (["model=missing.pt", "data=x.yaml", "standin_model=yolov8n.yaml"], "model=standin only"),
    "standin-model-path": (["standin_model=../x/yolov8n.yaml"], "must name a stock Ultralytics model YAML"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_is_one_line(case, capsys, tmp_path, monkeypatch, standin):
    monkeypatch.chdir(tmp_path)
    args, fragment = BAD[case]
    assert cli.main(["sensitivity", "act=relu", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and fragment in err, err
    assert not (tmp_path / "runs/sensitivity").exists() or not any((tmp_path / "runs/sensitivity").rglob("*.json"))


@pytest.mark.slow
def test_scan_on_the_standin_claims_only_what_it_measures(tmp_path, monkeypatch, standin):
    """Layers 0 and 23 of yolo11n -> relu on the stand-in (two draws, 256 validation images), with their INT8 costs.
    Measured (docs/sensitivity.md, with layer 16 too): the full swap costs +0.077 +- 0.019 mAP50-95 and neither
    layer is separable from zero; quantizing every layer costs +0.0149 +- 0.0128 against the FP32 ONNX (0.5052),
    layer 0 alone +0.0122 +- 0.0068 (separable), layer 23 alone +0.0012 +- 0.0046, and the INT8 costs add up. The test
    asserts those findings, that each INT8 cost carries both noises, and that every claim agrees with its interval."""
    monkeypatch.chdir(tmp_path)
    assert cli.main(["sensitivity", "model=standin", "act=relu", "units=0,23", "int8=True", "name=t"]) == 0
    out = tmp_path / "runs/sensitivity/t"
    result = json.loads((out / "sensitivity.json").read_text())
    assert {p.name for p in out.iterdir()} >= {"sensitivity.json", "sensitivity.md", "sensitivity.png"}
    assert result["data"]["images"] == 256 and result["data"]["standin"] and result["draws"] == 2
    assert result["full"]["low"] > 0  # the full swap costs mAP, separable from zero
    assert result["additivity"]["low"] > 0 and "only 2 of the 18 layers" in result["additivity"]["verdict"]
    q = result["int8"]
    assert q["full"]["cost"] > 0  # quantizing the whole SiLU network costs mAP against its own FP32 ONNX
    rows = {r["label"]: r["int8"] for r in result["units"]}
    assert rows["layer 0"]["low"] > 0 and rows["layer 0"]["separable_from_zero"]  # the stem alone costs mAP
    assert not rows["layer 23"].get("separable_from_zero")  # the Detect towers alone: within noise
    # the stem and the head's towers account for the whole INT8 cost within noise (a quantizer that touched the
    # whole network for each layer would double the sum; one that touched nothing would leave it at zero)
    assert q["additivity"]["verdict"].startswith("additive within noise"), q["additivity"]
    for row in [*rows.values(), q["full"]]:
        assert len(row["by_draw"]) == 2 and row["se_images"] > 0 and row["sd_draws"] > 0, row  # both noises
    assert "only 2 of the 18 layers" in q["additivity"]["verdict"]
    for row in [*result["units"], *q["units"]]:
        if row.get("separable_from_zero"):
            assert row["low"] > 0 or row["high"] < 0, row
    table = (out / "sensitivity.md").read_text()
    assert "| layer 23 |" in table and "INT8 cost" in table and "FP32 ONNX" in table


@pytest.mark.slow
def test_a_yolov8n_standin_pretrains_beats_chance_and_scans(tmp_path, monkeypatch):
    """``standin_model=yolov8n.yaml``: a SiLU yolov8n stand-in of its own (own cache key) pretrains and detects far
    above chance (the same network untrained, scored on the same images here), and a scan over two of its layers
    (the last C2f and the Detect head) runs on it. Measured (docs/sensitivity.md): the stand-in scores mAP50-95 0.472
    on its 64 validation images; the threshold 0.3 leaves a wide margin."""
    from yolo_leaky import load
    from yolo_leaky.data.standin import recipe_key, standin_checkpoint, standin_eval_data
    from yolo_leaky.measure.scorer import ImageScorer, map50_95

    weights, record = standin_checkpoint(log=lambda line: None, model="yolov8n.yaml")
    assert record["model"] == "yolov8n.yaml" and record["key"] == recipe_key("yolov8n.yaml") != recipe_key()
    chance = map50_95(ImageScorer(standin_eval_data(64, model="yolov8n.yaml"), 64).score(load("yolov8n.yaml")))
    assert record["metrics"]["map50_95"] > max(0.3, chance + 0.25), (record["metrics"], chance)
    monkeypatch.chdir(tmp_path)
    args = ["model=standin", "standin_model=yolov8n.yaml", "act=relu", "units=21-22", "val_images=64", "boot=20"]
    assert cli.main(["sensitivity", *args]) == 0
    result = json.loads((tmp_path / "runs/sensitivity/standin-yolov8n-relu/sensitivity.json").read_text())
    assert result["weights"]["sha256"] == record["weights_sha256"]
    assert {(r["label"], r["type"], r["sites"]) for r in result["units"]} == {
        ("layer 21", "C2f", 4),
        ("layer 22", "Detect", 12),
    }
    assert result["full"]["cost"] > 0 and all(len(r["by_draw"]) == 2 for r in result["units"])
