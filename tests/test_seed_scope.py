"""What a seed covers in the recovery protocol, on fixed inputs (no model): each repair judged against SiLU given the
same repair, per calibration draw; INT8 calibrated on the seed's own draw; and the report saying, next to each
interval, what varies across its seeds and what is held fixed."""

from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from yolo_leaky.harness.config import CompareConfig

BEFORE = {"map50": 0.70, "map50_95": 0.50}
AFTER = {"silu": BEFORE, "relu": {"map50": 0.46, "map50_95": 0.28}, "prelu": {"map50": 0.18, "map50_95": 0.09}}
# per seed (draws 0, 1, 2): mAP50-95 after each repair; mAP50 is mAP50-95 + 0.2
PER_SEED = {
    ("silu", "bn"): [0.524, 0.494, 0.510],
    ("relu", "bn"): [0.477, 0.454, 0.470],
    ("prelu", "bn"): [0.240, 0.230, 0.250],
    ("prelu", "fit"): [0.236, 0.238, 0.231],
    ("prelu", "fit+bn"): [0.320, 0.330, 0.310],
}


def fake_swap(seeds=(0, 1, 2)) -> dict:
    variants = {}
    for label, after in AFTER.items():
        repairs = [r for (v, r) in PER_SEED if v == label]
        row = {
            "after_swap": after,
            "seeds": {},
            "repairs": {},
            "start": {"repair": "fit+bn" if label == "prelu" else "bn"},
        }
        for i, seed in enumerate(seeds):
            row["seeds"][str(seed)] = {
                "repairs": {
                    r: {"metrics": {"map50": PER_SEED[(label, r)][i] + 0.2, "map50_95": PER_SEED[(label, r)][i]}}
                    for r in repairs
                }
            }
        for r in repairs:
            vals = np.array(PER_SEED[(label, r)][: len(seeds)])
            std = float(vals.std(ddof=1)) if len(vals) > 1 else None
            row["repairs"][r] = {
                "metrics": {"map50": float(vals.mean() + 0.2), "map50_95": float(vals.mean())},
                "metrics_std": {"map50": std, "map50_95": std},
            }
        variants[label] = row
    return {"seeds": list(seeds), "calibration": {"images": 64, "by_seed": {}}, "variants": variants}


def config(**kw) -> CompareConfig:
    base = dict(protocol="recover", weights="/x/standin.pt", variants=["silu", "relu", "prelu"], recovery=["finetune"])
    return CompareConfig(**{**base, **kw})


def test_each_repair_is_judged_against_silu_given_the_same_repair():
    from yolo_leaky.harness.summary import no_training_rows

    rows = no_training_rows(config(), fake_swap(), BEFORE)
    relu = rows["relu"]["repairs"]["bn"]
    assert relu["reference"] == "silu+bn" and relu["reference_values"]["map50_95"] == PER_SEED[("silu", "bn")]
    gaps = np.subtract(PER_SEED[("relu", "bn")], PER_SEED[("silu", "bn")])
    assert relu["gap_values"]["map50_95"] == pytest.approx(gaps.tolist())
    gap = relu["gap_to_reference"]["map50_95"]
    ref = stats.ttest_rel(PER_SEED[("relu", "bn")], PER_SEED[("silu", "bn")])
    half = stats.t.ppf(0.975, 2) * gaps.std(ddof=1) / np.sqrt(3)
    assert gap["diff"] == pytest.approx(gaps.mean()) and gap["p"] == pytest.approx(ref.pvalue)
    assert (gap["low"], gap["high"]) == pytest.approx((gaps.mean() - half, gaps.mean() + half))
    # share of the way from the naive swap (0.28) to SiLU + bn (mean 0.5093), on the means over draws
    share = (np.mean(PER_SEED[("relu", "bn")]) - 0.28) / (np.mean(PER_SEED[("silu", "bn")]) - 0.28)
    assert relu["share_of_cost_removed"]["map50_95"] == pytest.approx(share)
    # the slope fit does not apply to SiLU: fit alone is judged against SiLU untouched, fit+bn against SiLU + bn
    fit, fitbn = rows["prelu"]["repairs"]["fit"], rows["prelu"]["repairs"]["fit+bn"]
    assert fit["reference"] == "silu" and fit["reference_values"]["map50_95"] == [0.50] * 3
    assert fitbn["reference"] == "silu+bn" and fitbn["reference_values"]["map50_95"] == PER_SEED[("silu", "bn")]
    assert (
        rows["silu"]["repairs"]["bn"]["reference"] == "self" and "gap_to_reference" not in rows["silu"]["repairs"]["bn"]
    )
    assert rows["silu"]["repairs"]["bn"]["values"]["map50_95"] == PER_SEED[("silu", "bn")]


def test_one_seed_gives_no_interval():
    from yolo_leaky.harness.summary import no_training_rows

    rows = no_training_rows(config(seeds=[0]), fake_swap(seeds=(0,)), BEFORE)
    relu = rows["relu"]["repairs"]["bn"]
    assert relu["gap_to_reference"]["map50_95"] is None and relu["gap_values"]["map50_95"] == pytest.approx([-0.047])


def test_int8_calibrates_each_seed_on_its_own_draw(tmp_path, monkeypatch):
    """Seed s of the INT8 stage calibrates on draw s, the images seed s's repairs used (not draw 0 for every seed)."""
    from yolo_leaky.harness import compare

    seen = []

    def fake_measure_int8(weights, data, out_dir, **kw):
        seen.append(kw.get("seed", 0))
        return {"calibration": {"seed": kw.get("seed", 0)}, "latency": {}, "variants": {}}

    monkeypatch.setattr(compare, "measure_int8", fake_measure_int8)
    c = config(seeds=[0, 1, 2], int8=True, project=str(tmp_path), name="r")
    cells = {
        f"{v}-finetune-s{s}": {"status": "ok", "weights": f"{v}{s}.pt"}
        for v in ("silu", "relu", "prelu")
        for s in (0, 1, 2)
    }
    compare.measure_int8_stage(c, cells, "data.yaml")
    assert seen == [0, 1, 2]


@pytest.mark.parametrize(
    "kw, varies, fixed",
    [
        (
            {},
            [
                "recovery-training seed",
                "calibration draw (seed s draws 64 training images) that sets the repaired start",
            ],
            ["the SiLU checkpoint `standin.pt`", "the 64 validation images"],
        ),
        ({"repair": "none"}, ["recovery-training seed"], ["the start (`repair=none`: the naive swap"]),
        (
            {"protocol": "scratch", "weights": None},
            ["training seed (weight initialisation"],
            ["the model `yolo11n.yaml`"],
        ),
    ],
)
def test_scope_says_what_varies_and_what_is_fixed(kw, varies, fixed):
    from yolo_leaky.harness.summary import seed_scope

    scope = seed_scope(config(**kw), "recovered", 64, 64)
    for phrase in varies:
        assert any(phrase in v for v in scope["varies"]), (phrase, scope)
    for phrase in fixed:
        assert any(phrase in f for f in scope["fixed"]), (phrase, scope)
    if kw.get("repair") == "none" or kw.get("protocol") == "scratch":
        assert not any("calibration" in v for v in scope["varies"]), scope
    int8 = seed_scope(config(**kw), "int8", 32, 64)
    assert any(v.startswith("INT8 calibration draw (seed s draws 32 training images)") for v in int8["varies"]), int8
    assert seed_scope(config(**kw), "no_training", 64, 64)["varies"] == [
        "calibration draw (seed s draws 64 training images)"
    ]


def test_report_states_the_scope_next_to_each_interval():
    from yolo_leaky.harness.report import _recovery_section
    from yolo_leaky.harness.summary import recovery_tables

    c = config()
    cells = {
        f"{v}-finetune-s{s}": {
            "variant": v,
            "seed": s,
            "status": "ok",
            "recovery": "finetune",
            "metrics": {"map50": 0.7 + s / 100, "map50_95": 0.5 - s / 100 - (v != "silu") / 50},
        }
        for v in ("silu", "relu", "prelu")
        for s in (0, 1, 2)
    }
    swap = fake_swap()
    rec = recovery_tables(c, cells, swap, BEFORE, 64)
    text = _recovery_section(c, SimpleNamespace(recovery=rec, swap=swap, task="detect"))
    no_training, recovered = text.split("### After")
    assert "Across seeds, varies: calibration draw (seed s draws 64 training images). Held fixed:" in no_training
    assert "0.477 ± " not in no_training and f"{np.mean(PER_SEED[('relu', 'bn')]):.3f} ± 0.012" in no_training
    assert "SiLU + `bn`" in no_training and "SiLU untouched" in no_training
    assert "Across seeds, varies: recovery-training seed" in recovered and "the 64 validation images" in recovered


def test_report_says_how_the_learning_rate_was_chosen():
    """The stand-in path's lr0 was chosen on the tune split (benchmarks/tune_lr0.py); a run that sets its own lr0
    is not credited with that tuning."""
    import yaml

    from yolo_leaky.harness.config import DEFAULT_CONFIG
    from yolo_leaky.harness.report import _lr0_line

    tuned = yaml.safe_load(DEFAULT_CONFIG.read_text())["auto"]["standin"]["lr0"]
    line = _lr0_line(config(data="shapes", train_args={"lr0": tuned}))
    assert f"lr0 {tuned:g}" in line and "*tune* split" in line and "never the validation images" in line
    assert "set for this run" in _lr0_line(config(data="shapes", train_args={"lr0": tuned * 3}))
    assert "tune* split" not in _lr0_line(config(data="my.yaml", train_args={"lr0": tuned}))
