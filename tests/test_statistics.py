"""fptt.run.statistics: the numbers against references computed by hand (closed forms of the Student t
distribution with 2 degrees of freedom) and against SciPy, and the errors on bad input."""
from __future__ import annotations

import math
import random
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from fptt.run.statistics import PairedTest, confidence_interval, mean, paired_t_test, sample_std, verdict

SRC = Path(__file__).resolve().parents[1] / "src"


def _t2_upper_tail(t: float) -> float:
    """P(T > t) for Student t with 2 degrees of freedom, in closed form: (1 - t / sqrt(2 + t²)) / 2."""
    return (1.0 - t / math.sqrt(2.0 + t * t)) / 2.0


def _t2_quantile(q: float) -> float:
    """The q quantile of Student t with 2 degrees of freedom, in closed form: (2q - 1) / sqrt(2q(1 - q))."""
    return (2.0 * q - 1.0) / math.sqrt(2.0 * q * (1.0 - q))


def test_mean_and_sample_std_by_hand() -> None:
    assert mean([1.0, 2.0, 3.0, 6.0]) == 3.0
    # deviations -2, -1, 0, 3: squares 4 + 1 + 0 + 9 = 14, over n - 1 = 3
    assert sample_std([1.0, 2.0, 3.0, 6.0]) == pytest.approx(math.sqrt(14.0 / 3.0), rel=1e-15)
    assert sample_std([0.5, 0.5]) == 0.0


def test_confidence_interval_by_hand() -> None:
    # 1, 2, 3: mean 2, s = 1, n = 3, half-width t(0.975; 2) / sqrt(3)
    half = _t2_quantile(0.975) / math.sqrt(3.0)
    assert _t2_quantile(0.975) == pytest.approx(4.3026527297494639, rel=1e-12)  # 40-digit Decimal of the form
    low, high = confidence_interval([1.0, 2.0, 3.0])
    assert low == pytest.approx(2.0 - half, rel=1e-12) and high == pytest.approx(2.0 + half, rel=1e-12)
    low90, high90 = confidence_interval([1.0, 2.0, 3.0], level=0.90)
    assert high90 - 2.0 == pytest.approx(_t2_quantile(0.95) / math.sqrt(3.0), rel=1e-12)
    assert low < low90 < high90 < high


def test_paired_t_test_by_hand() -> None:
    # differences 0.03, 0.02, 0.02: mean 0.07/3, s_d = sqrt(1/30000), t = (0.07/3) / (s_d / sqrt 3) = 7
    test = paired_t_test([0.90, 0.88, 0.91], [0.87, 0.86, 0.89])
    assert test.n == 3
    assert test.mean_difference == pytest.approx(0.07 / 3, rel=1e-12)
    assert test.std_difference == pytest.approx(math.sqrt(1.0 / 30000.0), rel=1e-10)
    assert test.t == pytest.approx(7.0, rel=1e-10)
    assert test.p_value == pytest.approx(2.0 * _t2_upper_tail(7.0), rel=1e-9)  # 0.0198…
    assert 0.0198 < test.p_value < 0.0199
    swapped = paired_t_test([0.87, 0.86, 0.89], [0.90, 0.88, 0.91])
    assert swapped.t == pytest.approx(-7.0, rel=1e-10) and swapped.p_value == pytest.approx(test.p_value)


def test_against_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(31)
    for n in (2, 3, 5, 8):
        a = [rng.uniform(0.8, 0.95) for _ in range(n)]
        b = [value - rng.uniform(-0.03, 0.05) for value in a]
        ours = paired_t_test(a, b)
        theirs = stats.ttest_rel(a, b)
        assert ours.t == pytest.approx(float(theirs.statistic), rel=1e-9)
        assert ours.p_value == pytest.approx(float(theirs.pvalue), rel=1e-9)
        low, high = confidence_interval(a)
        ref_low, ref_high = stats.t.interval(0.95, n - 1, loc=mean(a), scale=stats.sem(a))
        assert (low, high) == (pytest.approx(ref_low, rel=1e-12), pytest.approx(ref_high, rel=1e-12))
        assert sample_std(a) == pytest.approx(float(stats.tstd(a)), rel=1e-12)


def test_constant_differences() -> None:
    # every difference 0.25 (exact in binary): s_d = 0, t = +inf, p = 0; every difference 0: t = 0, p = 1
    assert paired_t_test([1.0, 0.5], [0.75, 0.25]) == PairedTest(2, 0.25, 0.0, math.inf, 0.0)
    assert paired_t_test([0.25, 0.5], [0.5, 0.75]) == PairedTest(2, -0.25, 0.0, -math.inf, 0.0)
    assert paired_t_test([0.9, 0.8], [0.9, 0.8]) == PairedTest(2, 0.0, 0.0, 0.0, 1.0)
    assert verdict([1.0, 0.5], [0.75, 0.25]) == "held" and verdict([0.9, 0.8], [0.9, 0.8]) == "tie"


def test_verdict() -> None:
    better, worse = [0.90, 0.88, 0.91], [0.87, 0.86, 0.89]  # p = 0.0198
    assert verdict(better, worse) == "held"
    assert verdict(worse, better) == "reversed"
    assert verdict(better, worse, alpha=0.01) == "tie"
    # a lower loss is better
    assert verdict(worse, better, higher_is_better=False) == "held"
    assert verdict(better, worse, higher_is_better=False) == "reversed"
    # a mean that favours the claim but p >= 0.05 is a tie (differences 0.05, -0.01, 0.01: t ≈ 0.89)
    noisy = paired_t_test([0.92, 0.86, 0.90], [0.87, 0.87, 0.89])
    assert noisy.mean_difference > 0 and noisy.p_value >= 0.05
    assert verdict([0.92, 0.86, 0.90], [0.87, 0.87, 0.89]) == "tie"


@pytest.mark.parametrize("call", [
    lambda: confidence_interval([0.9]),
    lambda: sample_std([0.9]),
    lambda: mean([]),
    lambda: paired_t_test([0.9], [0.8]),
])
def test_too_few_seeds(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="at least"):
        call()


def test_unequal_lengths() -> None:
    with pytest.raises(ValueError, match="one value per shared seed"):
        paired_t_test([0.9, 0.8, 0.7], [0.8, 0.7])
    with pytest.raises(ValueError, match="one value per shared seed"):
        verdict([0.9, 0.8], [0.8, 0.7, 0.6])


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values(bad: float) -> None:
    for call in (lambda: mean([0.9, bad]), lambda: sample_std([0.9, bad]), lambda: confidence_interval([0.9, bad]),
                 lambda: paired_t_test([0.9, 0.8], [0.8, bad]), lambda: verdict([bad, 0.8], [0.8, 0.7])):
        with pytest.raises(ValueError, match="finite"):
            call()


def test_bad_levels() -> None:
    with pytest.raises(ValueError, match="level"):
        confidence_interval([1.0, 2.0], level=95)
    with pytest.raises(ValueError, match="alpha"):
        verdict([1.0, 2.0], [0.0, 1.0], alpha=0.0)


def test_imports_without_scipy() -> None:
    """Without SciPy the module imports and gives the mean and the std; an interval or a p-value
    raises an ImportError that names the extra."""
    code = (
        "import sys\n"
        "sys.modules['scipy'] = None\n"  # `from scipy import stats` now raises ImportError
        "from fptt.run import statistics as s\n"
        "assert s.mean([1.0, 3.0]) == 2.0 and abs(s.sample_std([1.0, 3.0]) - 2 ** 0.5) < 1e-12\n"
        "for call in (lambda: s.confidence_interval([1.0, 2.0]), lambda: s.paired_t_test([1, 2, 4], [0, 0, 0]),\n"
        "             lambda: s.verdict([1, 2, 4], [0, 0, 0])):\n"
        "    try:\n"
        "        call()\n"
        "    except ImportError as error:\n"
        "        assert 'fptt[analysis]' in str(error), error\n"
        "    else:\n"
        "        raise AssertionError('no ImportError')\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(SRC), "PATH": ""})
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
