"""The recovery curve's statistics (benchmarks/recovery_curve.py) on fixed inputs, against scipy: the per-epoch Welch
interval of variant − SiLU, the band check against the harness's practical band, and the epochs needed."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

SCRIPT = Path(__file__).parents[1] / "benchmarks/recovery_curve.py"
spec = importlib.util.spec_from_file_location("recovery_curve", SCRIPT)
recovery_curve = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recovery_curve)

SILU = {0: [0.50, 0.600, 0.610, 0.620], 1: [0.52, 0.605, 0.612, 0.618], 2: [0.51, 0.610, 0.615, 0.621]}
# relu: far below after epoch 1, within the band after 2, out again after 3 (one bad seed), within after 4
RELU = {0: [0.30, 0.600, 0.610, 0.619], 1: [0.33, 0.605, 0.540, 0.617], 2: [0.31, 0.610, 0.616, 0.620]}


@pytest.fixture(scope="module")
def table():
    return recovery_curve.curve_table({"distill": {"silu": SILU, "relu": RELU}}, band=0.02)["distill"]


def test_interval_is_welchs_as_scipy_computes_it(table):
    for e in range(4):
        relu, silu = [RELU[s][e] for s in range(3)], [SILU[s][e] for s in range(3)]
        ci = stats.ttest_ind(relu, silu, equal_var=False).confidence_interval(0.95)
        d = table["relu"]["diff"][e]
        assert d["low"] == pytest.approx(ci.low, abs=1e-12) and d["high"] == pytest.approx(ci.high, abs=1e-12)
        assert table["relu"]["mean"][e] == pytest.approx(np.mean(relu))
        assert table["relu"]["within"][e] == (ci.low >= -0.02 * np.mean(silu))


def test_epochs_needed_is_the_first_epoch_from_which_it_stays_within(table):
    assert table["relu"]["within"] == [False, True, False, True]
    assert table["relu"]["epochs_needed"] == 4  # epoch 2 was within, but epoch 3 left the band again
    assert table["silu"]["diff"] == [None] * 4 and table["silu"]["epochs_needed"] is None


def test_one_seed_gives_no_interval_and_no_claim():
    one = recovery_curve.curve_table({"finetune": {"silu": {0: [0.6, 0.6]}, "relu": {0: [0.6, 0.61]}}}, band=0.02)
    row = one["finetune"]["relu"]
    assert row["diff"] == [None, None] and row["within"] == [None, None] and row["epochs_needed"] is None
