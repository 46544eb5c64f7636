"""The statistics behind every accuracy verdict, checked against scipy and textbook definitions on fixed inputs:
Welch's interval (Welch–Satterthwaite df), the paired t, zero spread, Holm–Bonferroni within a table, and the words
a verdict uses. Fast: no training, no models."""

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from yolo_leaky.harness.config import CompareConfig
from yolo_leaky.harness.report import _accuracy_section, _diff, _recovery_section
from yolo_leaky.harness.summary import (
    NO_SPREAD,
    accuracy_verdict,
    difference,
    difference_verdict,
    holm,
    int8_tables,
    recovery_tables,
    seed_scope,
    variant_rows,
    verdicts,
)

N_VAL = 500  # enough validation images for a verdict to be allowed

WELCH_CASES = {
    "equal-n-similar-var": ([0.412, 0.425, 0.419], [0.431, 0.440, 0.428]),
    "unequal-variances": ([0.30, 0.31, 0.32, 0.305], [0.20, 0.45, 0.38, 0.29]),
    "unequal-n": ([0.51, 0.49, 0.55, 0.52, 0.50], [0.47, 0.44]),
    "n2-each-side": ([0.40, 0.43], [0.36, 0.37]),
    "one-side-constant": ([0.5, 0.5, 0.5], [0.44, 0.47, 0.45, 0.49]),
}


def welch_satterthwaite(a, b):
    """The Welch–Satterthwaite df, written out from the textbook formula (not from the code under test)."""
    sa, sb = (
        sum((x - sum(a) / len(a)) ** 2 for x in a) / (len(a) - 1),
        sum((x - sum(b) / len(b)) ** 2 for x in b) / (len(b) - 1),
    )
    va, vb = sa / len(a), sb / len(b)
    return (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy, on the constant side
@pytest.mark.parametrize("a, b", WELCH_CASES.values(), ids=WELCH_CASES.keys())
def test_welch_matches_scipy(a, b):
    d = difference(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert d["diff"] == pytest.approx(np.mean(a) - np.mean(b), abs=1e-12)
    assert d["df"] == pytest.approx(welch_satterthwaite(a, b), rel=1e-9)
    assert d["df"] == pytest.approx(ref.df, rel=1e-9)
    assert (d["low"], d["high"]) == pytest.approx((ci.low, ci.high), rel=1e-9, abs=1e-12)
    assert d["p"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert (d["n"], d["n_b"], d["paired"], d["test"], d["no_spread"]) == (len(a), len(b), False, "Welch", False)
    assert (d["low"] > 0 or d["high"] < 0) == (d["p"] < 0.05)  # one se and one df behind both


def test_welch_df_is_not_the_pooled_df():
    """Unequal variances and unequal n move the df far from n_a + n_b − 2: a pooled test would pass the CI checks
    of the end-to-end tests (any symmetric interval does) but not this one."""
    a, b = WELCH_CASES["unequal-variances"]
    # by hand: s_a^2 = 2.1875e-4 / 3, s_b^2 = 0.0354 / 3; (s_a^2/4 + s_b^2/4)^2 / ((s_a^2/4)^2/3 + (s_b^2/4)^2/3)
    assert difference(a, b)["df"] == pytest.approx(3.037, abs=0.001)  # pooled: 6
    assert difference([0.5, 0.5, 0.5], [0.44, 0.47, 0.45, 0.49])["df"] == pytest.approx(3.0)  # the spread side's n − 1


PAIRED_CASES = {
    "three-seeds": ([0.452, 0.470, 0.461], [0.440, 0.451, 0.458]),
    "n2": ([0.30, 0.34], [0.28, 0.31]),
    "five-seeds-mixed-sign": ([0.51, 0.49, 0.55, 0.52, 0.50], [0.50, 0.50, 0.53, 0.53, 0.48]),
}


@pytest.mark.parametrize("a, b", PAIRED_CASES.values(), ids=PAIRED_CASES.keys())
def test_paired_t_matches_scipy(a, b):
    d = difference(a, b, paired=True)
    ref = stats.ttest_rel(a, b)
    ci = ref.confidence_interval(0.95)
    assert d["diff"] == pytest.approx(np.mean(np.subtract(a, b)), abs=1e-12)
    assert d["df"] == len(a) - 1 == ref.df
    assert (d["low"], d["high"]) == pytest.approx((ci.low, ci.high), rel=1e-9, abs=1e-12)
    assert d["p"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert (d["paired"], d["test"]) == (True, "paired t")


def test_too_few_values_give_no_interval():
    assert difference([0.5], [0.4, 0.41]) is None
    assert difference([0.5, 0.52], [0.4]) is None
    assert difference([0.5, 0.52], [0.4, 0.41, 0.42], paired=True) is None


@pytest.mark.parametrize(
    "a, b, paired",
    [
        ([0.5] * 3, [0.4] * 3, False),  # identical seeds on both sides (np.var gives 4e-17 here, not 0)
        ([0.5, 0.6, 0.7], [0.4, 0.5, 0.6], True),  # every per-seed difference the same (up to float rounding)
        ([0.5, 0.6, 0.7], [0.5, 0.6, 0.7], True),  # identical runs
        ([0.3, 0.3], [0.3, 0.3], False),
    ],
)
def test_zero_spread_cannot_be_tested(a, b, paired):
    """The old code called ``[.5]*3`` vs ``[.4]*3`` "higher (Welch p=0.000)": a rounding residue made se 4e-17."""
    d = difference(a, b, paired=paired)
    assert difference_verdict(d, a + b, N_VAL) == NO_SPREAD == "no spread across seeds: cannot test"
    assert d["no_spread"] and math.isnan(d["p"]) and math.isnan(d["low"]) and math.isnan(d["high"])
    assert d["diff"] == pytest.approx(np.mean(a) - np.mean(b), abs=1e-12)
    assert accuracy_verdict(a, b, N_VAL) == NO_SPREAD or paired
    assert "no spread" in _diff(d) and "nan" not in _diff(d)


def test_one_constant_side_is_still_tested():
    a, b = WELCH_CASES["one-side-constant"]
    d = difference(a, b)
    assert not d["no_spread"] and d["p"] < 0.05
    assert difference_verdict(d, a + b, N_VAL).startswith("higher (Welch p=")


def closed_testing_holm(p):
    """Holm's adjusted p from its definition as a closed test of Bonferroni tests: the largest, over every subset
    of hypotheses that contains i, of min(1, |subset| x the subset's smallest p)."""
    m = len(p)
    out = []
    for i in range(m):
        worst = 0.0
        for k in range(1, m + 1):
            for subset in itertools.combinations(range(m), k):
                if i in subset:
                    worst = max(worst, min(1.0, k * min(p[j] for j in subset)))
        out.append(worst)
    return out


def test_holm_by_hand():
    # sorted 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # 0.2 x3 = 0.6, 0.5 x2 = 1.0, 0.9 x1 -> 1.0 (monotone), all capped at 1
    assert holm([0.5, 0.2, 0.9]) == pytest.approx([1.0, 0.6, 1.0])
    assert holm([0.02]) == [0.02]
    assert holm([]) == []
    assert holm([0.01, 0.01]) == pytest.approx([0.02, 0.02])  # ties


def test_holm_matches_its_closed_testing_definition():
    rng = np.random.default_rng(17)
    for m in (2, 3, 5, 6):
        for _ in range(20):
            p = list(rng.uniform(0, 0.3, m) ** rng.uniform(0.5, 3))
            got = holm(p)
            assert got == pytest.approx(closed_testing_holm(p), rel=1e-12)
            assert all(g >= x for g, x in zip(got, p)) and max(got) <= 1.0
            order = np.argsort(p)
            assert np.all(np.diff(np.asarray(got)[order]) >= 0)  # step-down: monotone in the raw p's order


def test_holm_refuses_nan():
    with pytest.raises(ValueError, match="NaN"):
        holm([0.01, float("nan")])


# 0.05 apart with a spread of 0.02: Welch p ~ 0.037 alone, not significant once three such tests are adjusted
CLOSE = ([0.45, 0.47, 0.49], [0.50, 0.52, 0.54])
FAR = ([0.30, 0.31, 0.32], [0.50, 0.51, 0.52])


def test_verdicts_use_the_holm_adjusted_p():
    raw = difference(*CLOSE)["p"]
    assert 0.0167 < raw < 0.05  # significant alone, not after x3
    alone = difference_verdict(difference(*CLOSE), CLOSE[0] + CLOSE[1], N_VAL)
    assert alone == f"lower (Welch p={raw:.3f}, 3 seeds)"
    entries = [(difference(*pair), pair[0] + pair[1]) for pair in (CLOSE, CLOSE, FAR)]
    far_p = difference(*FAR)["p"]
    expected = holm([raw, raw, far_p])
    got = verdicts(entries, N_VAL)
    assert got[0] == f"not significant (Welch p={raw:.3f}, Holm-adjusted p={expected[0]:.3f} over 3 tests, 3 seeds)"
    assert got[2].startswith(f"lower (Welch p={far_p:.1e}, Holm-adjusted p={expected[2]:.1e} over 3 tests")
    assert [d["holm_tests"] for d, _ in entries] == [3, 3, 3]


def test_untestable_comparisons_are_not_counted():
    entries = [
        (difference(*FAR), FAR[0] + FAR[1]),
        (difference([0.5], [0.4, 0.41]), [0.5, 0.4, 0.41]),  # one seed
        (difference([0.5] * 3, [0.4] * 3), [0.5] * 3 + [0.4] * 3),  # no spread
        (difference([0.001, 0.002], [0.003, 0.001]), [0.001, 0.002, 0.003, 0.001]),  # no signal
    ]
    got = verdicts(entries, N_VAL)
    assert got[1:] == ["not significant: one seed", NO_SPREAD, "no signal: mAP ~0 for both"]
    assert got[0].startswith("lower (Welch p=") and "Holm" not in got[0]  # a family of one
    assert entries[0][0]["holm_tests"] == 1 and "p_holm" not in entries[2][0]
    assert verdicts(entries, 4)[0] == "not significant: only 4 validation images"


def test_accuracy_verdict_is_welch_from_difference():
    a, b = FAR
    p = stats.ttest_ind(a, b, equal_var=False).pvalue
    assert accuracy_verdict(a, b, N_VAL) == f"lower (Welch p={p:.1e}, 3 seeds)"
    assert accuracy_verdict(list(b), list(a), N_VAL).startswith("higher")
    assert accuracy_verdict([0.5, 0.52, 0.49], [0.48, 0.5], N_VAL).endswith("3 vs 2 seeds)")
    assert accuracy_verdict([], b, N_VAL) == "no result"


# ---------------------------------------------------------------- tables


def _cells(maps: dict, methods) -> dict:
    """Completed cells: ``maps[label]`` is one mAP50-95 per seed (mAP50 = mAP50-95 + 0.2); distill adds a
    per-variant shift and a little per-seed noise."""
    cells = {}
    for label, values in maps.items():
        for method in methods:
            shift = {"finetune": 0.0, "distill": 0.01 * (len(label) % 3)}[method]
            for seed, v in enumerate(values):
                metrics = {"map50_95": v + shift + 0.003 * (seed % 2) * (method == "distill"), "precision": 0.5}
                metrics.update(map50=metrics["map50_95"] + 0.2, recall=0.5)
                cells[f"{label}-{method}-s{seed}"] = {
                    "variant": label,
                    "recovery": method,
                    "seed": seed,
                    "status": "ok",
                    "metrics": metrics,
                    "epoch_seconds": 1.0,
                }
    return cells


MAPS = {  # relu: clearly lower; leaky: CLOSE (p ~ 0.037 alone); prelu: no difference
    "silu": CLOSE[1],
    "relu": FAR[0],
    "leaky_relu0.1": CLOSE[0],
    "prelu": [0.51, 0.53, 0.52],
}


def test_recovery_and_accuracy_tables_adjust_per_family_and_agree():
    c = CompareConfig(
        variants=["silu", "relu", "leaky_relu:0.1", "prelu"],
        seeds=[0, 1, 2],
        weights="standin",
        recovery=["finetune", "distill"],
    )
    assert [s.label for s in c.specs] == list(MAPS)
    cells = _cells(MAPS, c.recovery)
    metric = {"map50": 0.7, "map50_95": 0.5}
    swap = {  # swap.json's per-seed layout (cells.swap_stage), with no repairs: these tests are about recovery
        "seeds": list(c.seeds),
        "calibration": {"images": 4, "by_seed": {}},
        "variants": {
            label: {"after_swap": metric, "start": {"repair": "none"}, "repairs": {}, "seeds": {}} for label in MAPS
        },
    }
    rec = recovery_tables(c, cells, swap, metric, N_VAL)
    leaky = rec["recovered"]["leaky_relu0.1/finetune"]
    assert leaky["map50_95_verdict"].startswith("not significant (Welch p=0.03")  # lower before the correction
    assert "Holm-adjusted p=" in leaky["map50_95_verdict"] and "over 3 tests" in leaky["map50_95_verdict"]
    assert rec["recovered"]["relu/finetune"]["map50_95_verdict"].startswith("lower (Welch p=")
    assert rec["tests"] == {
        "finetune": {"map50": 3, "map50_95": 3},
        "distill": {"map50": 3, "map50_95": 3},
        "distill_minus_finetune": {"map50": 4, "map50_95": 4},  # every variant, SiLU included
    }
    assert "over 4 tests" in rec["distill_minus_finetune"]["relu"]["map50_95_verdict"]
    rows = variant_rows(c, cells, metric, {}, {}, {}, N_VAL)
    for label in MAPS:
        if label != "silu":
            assert rows[label]["verdict_accuracy"] == rec["recovered"][f"{label}/finetune"]["map50_95_verdict"]
            assert rows[label]["accuracy_holm_tests"] == 3
    assert "(the variants against `silu`, as in the `finetune` rows of the recovery table: 3 tests)" in (
        _accuracy_section(c, rows, cells, seed_scope(c, "recovered", 4, N_VAL))
    )
    text = _recovery_section(c, SimpleNamespace(recovery=rec, swap={}, task="detect"))
    assert "Holm–Bonferroni-adjusted within each family (`finetune` rows: 3 tests; `distill` rows: 3 tests)" in text
    assert "(the variants, mAP50-95: 4 tests)" in text
    rec_one_seed = recovery_tables(c, {k: v for k, v in cells.items() if k.endswith("s0")}, swap, metric, N_VAL)
    assert rec_one_seed["tests"]["finetune"]["map50_95"] == 0
    text = _recovery_section(c, SimpleNamespace(recovery=rec_one_seed, swap={}, task="detect"))
    assert text.count("No comparison in this table reached a test") == 2


def _int8(drops: dict) -> dict:
    """An INT8 stage result: FP32 mAP50-95 0.5 + 0.01 x seed, INT8 = FP32 + that seed's drop."""
    seeds = {}
    for seed in range(3):
        variants = {}
        for label, d in drops.items():
            fp32 = 0.5 + 0.01 * seed
            scheme = {"metrics": {"map50_95": fp32 + d[seed]}, "nodes": {"QuantizeLinear": 1, "DequantizeLinear": 1}}
            scheme["nodes"]["QLinear"] = 0
            variants[label] = {"fp32": {"map50_95": fp32}, "int8": {"deploy": scheme, "conv-only": scheme}}
        seeds[str(seed)] = {
            "variants": variants,
            "calibration": {"digest": "x", "files_digest": f"d{seed}", "n": 4},
            "settings": {},
        }
    return {"seeds": seeds}


def test_int8_drop_verdicts_say_loses_less_or_more():
    """The old verdict on "drop − SiLU's drop" read "higher" when the variant loses less."""
    drops = {
        "silu": [-0.050, -0.060, -0.055],
        "relu": [-0.010, -0.012, -0.008],  # loses less than SiLU
        "prelu": [-0.150, -0.160, -0.140],  # loses more
    }
    c = CompareConfig(variants=list(drops), seeds=[0, 1, 2])
    q = int8_tables(c, _int8(drops), N_VAL)
    relu, prelu = q["rows"]["relu"], q["rows"]["prelu"]
    assert relu["deploy_drop_vs_base"]["diff"] > 0 and prelu["deploy_drop_vs_base"]["diff"] < 0
    assert relu["deploy_drop_verdict"].startswith("loses less than silu (Welch p=")
    assert prelu["deploy_drop_verdict"].startswith("loses more than silu (Welch p=")
    assert "over 2 tests" in relu["deploy_drop_verdict"] and q["drop_vs_base_tests"] == 2
    p = stats.ttest_ind(relu["deploy_drops"], drops["silu"], equal_var=False).pvalue
    assert relu["deploy_drop_vs_base"]["p"] == pytest.approx(p, rel=1e-9)
