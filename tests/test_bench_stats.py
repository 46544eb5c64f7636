"""The speed statistics against scipy on fixed inputs: the paired ratio's Student-t interval over blocks (log scale,
blocks - 1 degrees of freedom), down to two blocks, and the words that say what an interval covers. No timing."""

import numpy as np
import pytest
from scipy import stats

from yolo_leaky.harness.summary import speed_ci_covers_processes, speed_ci_scope
from yolo_leaky.measure.bench import block_interval, latency_stats

BLOCK_RATIOS = {
    2: [0.912, 0.947],
    3: [1.31, 1.44, 1.37],
    8: [0.903, 0.921, 0.915, 0.932, 0.899, 0.944, 0.918, 0.925],
}


def scipy_interval(ratios) -> tuple[float, float, float]:
    """Geometric mean and 95% CI from scipy's one-sample t-test on the log ratios, mapped back."""
    logs = np.log(ratios)
    ci = stats.ttest_1samp(logs, 0.0).confidence_interval(0.95)
    return float(np.exp(logs.mean())), float(np.exp(ci.low)), float(np.exp(ci.high))


@pytest.mark.parametrize("n", sorted(BLOCK_RATIOS))
def test_block_interval_is_scipys_t_interval_on_log_ratios(n):
    ratios = np.asarray(BLOCK_RATIOS[n])
    assert block_interval(ratios) == pytest.approx(scipy_interval(ratios), rel=1e-12)
    point, lo, hi = block_interval(ratios)
    logs = np.log(ratios)  # the t quantile has n - 1 degrees of freedom (12.71 for two blocks)
    half = stats.t.ppf(0.975, n - 1) * logs.std(ddof=1) / np.sqrt(n)
    assert np.log(hi) - np.log(point) == pytest.approx(half, rel=1e-12)
    assert np.log(point) - np.log(lo) == pytest.approx(half, rel=1e-12)


def test_two_blocks_give_the_wide_interval_of_one_degree_of_freedom():
    ratios = np.asarray(BLOCK_RATIOS[2])
    point, lo, hi = block_interval(ratios)
    sd = np.log(ratios).std(ddof=1)
    assert np.log(hi / lo) / 2 == pytest.approx(12.706204736 * sd / np.sqrt(2), rel=1e-9)


def per_block_samples(block_ratios, rounds) -> tuple[dict, np.ndarray]:
    """Samples whose per-block median of round ratios is exactly ``block_ratios`` (odd rounds per block, noise
    symmetric about each block's ratio), with uneven rounds per block."""
    rng = np.random.default_rng(7)
    base, other, block_of_round = [], [], []
    for b, (r, n) in enumerate(zip(block_ratios, rounds)):
        t = rng.uniform(9e6, 11e6, size=n)
        wiggle = np.sort(rng.uniform(0.001, 0.03, size=n // 2))
        factors = np.concatenate([r * (1 - wiggle), [r], r * (1 + wiggle)])
        base.append(t)
        other.append(t * factors)
        block_of_round.append(np.full(n, b))
    samples = {"silu": np.concatenate(base), "relu": np.concatenate(other)}
    return samples, np.concatenate(block_of_round)


@pytest.mark.parametrize("n", [2, 3])
def test_latency_stats_take_the_interval_over_block_medians_as_scipy_does(n):
    ratios = BLOCK_RATIOS[n]
    samples, block_of_round = per_block_samples(ratios, rounds=[11, 21, 15][:n])
    s = latency_stats(samples, "silu", resamples=200, block_of_round=block_of_round)["relu"]
    assert s.blocks == n and s.block_ratios == pytest.approx(ratios, rel=1e-6)
    point, lo, hi = scipy_interval(ratios)
    assert (s.paired_ratio, s.paired_ci_low, s.paired_ci_high) == pytest.approx((point, lo, hi), rel=1e-6)
    assert s.paired_half_width_pct == pytest.approx(100 * (hi - lo) / 2, rel=1e-6)
    base = latency_stats(samples, "silu", resamples=200, block_of_round=block_of_round)["silu"]
    assert (base.paired_ratio, base.paired_ci_low, base.paired_ci_high) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    "settings, scope, covers",
    [
        ({"blocks": 8, "isolation": "process"}, "95% CI over 8 blocks, each in a fresh process", True),
        ({"blocks": 2, "isolation": "process"}, "95% CI over 2 blocks, each in a fresh process", True),
        ({"blocks": 8, "isolation": "none"}, "95% CI over 8 blocks in one process", False),
        ({"blocks": 8}, "95% CI over 8 blocks in one process", False),  # timed before blocks had processes
        ({"blocks": 1, "isolation": "process"}, "95% bootstrap CI over the rounds of one session", False),
    ],
)
def test_the_interval_says_what_it_is_taken_over(settings, scope, covers):
    assert speed_ci_scope(settings) == scope
    assert speed_ci_covers_processes(settings) is covers
