"""Statistics over seeds, for the result tables: the mean, the sample standard deviation, a Student-t
confidence interval of the mean, the paired t-test of two methods run on the same seeds, and the
verdict a table prints from it.

For per-seed values :math:`x_1, \\dots, x_n`:

* mean :math:`\\bar x = \\frac{1}{n} \\sum_i x_i`;
* sample standard deviation :math:`s = \\sqrt{\\frac{1}{n - 1} \\sum_i (x_i - \\bar x)^2}` (``n >= 2``);
* the ``level`` confidence interval of the mean (Student t, ``n - 1`` degrees of freedom)
  :math:`\\bar x \\pm t_{(1 + \\text{level})/2,\\, n-1} \\, s / \\sqrt{n}`.

For paired values :math:`a_i, b_i` (method A and method B on seed ``i``), with :math:`d_i = a_i - b_i`:

* :math:`t = \\bar d / (s_d / \\sqrt{n})`, ``n - 1`` degrees of freedom;
* the two-sided p-value :math:`p = 2 \\, P(T_{n-1} \\geq |t|)`.

The Student t distribution comes from SciPy (the ``analysis`` extra: ``pip install "fptt[analysis]"``).
This module imports without it: the mean and the standard deviation need nothing, and the functions
that need a quantile or a tail probability raise an :class:`ImportError` that names the extra.
Every function rejects NaN and infinite values with a :class:`ValueError`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Sequence

__all__ = ["PairedTest", "Verdict", "mean", "sample_std", "confidence_interval", "paired_t_test", "verdict"]

Verdict = Literal["held", "tie", "reversed"]


def _student_t() -> Any:
    """``scipy.stats.t``, or an ImportError that says how to install it."""
    try:
        from scipy import stats
    except ImportError as error:
        raise ImportError("confidence intervals and p-values need SciPy: pip install \"fptt[analysis]\" "
                          "(or pip install \"scipy>=1.10\")") from error
    return stats.t


def _checked(values: Sequence[float], name: str, at_least: int) -> list[float]:
    numbers = [float(value) for value in values]
    if len(numbers) < at_least:
        raise ValueError(f"{name}: needs at least {at_least} value(s) (one per seed), got {len(numbers)}")
    bad = [value for value in numbers if not math.isfinite(value)]
    if bad:
        raise ValueError(f"{name}: every value must be finite, got {bad[0]} among {numbers}")
    return numbers


def mean(values: Sequence[float]) -> float:
    """:math:`\\bar x = \\frac{1}{n} \\sum_i x_i` (``n >= 1``)."""
    numbers = _checked(values, "mean", 1)
    return math.fsum(numbers) / len(numbers)


def sample_std(values: Sequence[float]) -> float:
    """The sample standard deviation :math:`s = \\sqrt{\\sum_i (x_i - \\bar x)^2 / (n - 1)}` (``n >= 2``)."""
    numbers = _checked(values, "sample_std", 2)
    centre = math.fsum(numbers) / len(numbers)
    return math.sqrt(math.fsum((value - centre) ** 2 for value in numbers) / (len(numbers) - 1))


def confidence_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """The ``level`` confidence interval of the mean, :math:`\\bar x \\pm t_{(1+\\text{level})/2,\\,n-1}
    \\, s / \\sqrt{n}` (Student t with ``n - 1`` degrees of freedom, ``n >= 2``)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence_interval: level must lie in (0, 1), got {level}")
    numbers = _checked(values, "confidence_interval", 2)
    t = _student_t()
    centre, spread = mean(numbers), sample_std(numbers)
    half = float(t.ppf((1.0 + level) / 2.0, len(numbers) - 1)) * spread / math.sqrt(len(numbers))
    return centre - half, centre + half


@dataclass(frozen=True)
class PairedTest:
    """The paired t-test of A against B over ``n`` seeds: the mean and the sample standard deviation
    of the differences :math:`d_i = a_i - b_i`, :math:`t = \\bar d / (s_d / \\sqrt{n})` and its
    two-sided p-value with ``n - 1`` degrees of freedom."""

    n: int
    mean_difference: float
    std_difference: float
    t: float
    p_value: float


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> PairedTest:
    """The two-sided paired t-test of ``a`` against ``b`` (the same seeds, in the same order).

    When every difference is the same (:math:`s_d = 0`), :math:`t` is :math:`\\pm\\infty` and
    :math:`p = 0` if that difference is not zero, and :math:`t = 0`, :math:`p = 1` if it is.
    """
    first, second = _checked(a, "paired_t_test (a)", 2), _checked(b, "paired_t_test (b)", 2)
    if len(first) != len(second):
        raise ValueError(f"paired_t_test: a and b must hold one value per shared seed, got {len(first)} and "
                         f"{len(second)} values")
    differences = [x - y for x, y in zip(first, second)]
    n = len(differences)
    centre, spread = mean(differences), sample_std(differences)
    if spread == 0.0:
        if centre == 0.0:
            return PairedTest(n, 0.0, 0.0, 0.0, 1.0)
        return PairedTest(n, centre, 0.0, math.copysign(math.inf, centre), 0.0)
    t_value = centre / (spread / math.sqrt(n))
    p_value = 2.0 * float(_student_t().sf(abs(t_value), n - 1))
    return PairedTest(n, centre, spread, t_value, min(1.0, p_value))


def verdict(claimed: Sequence[float], other: Sequence[float], *, higher_is_better: bool = True,
            alpha: float = 0.05) -> Verdict:
    """Whether "``claimed`` beats ``other``" holds over the paired seeds, by :func:`paired_t_test`:

    * ``"held"``: p < ``alpha`` and the mean difference favours ``claimed`` (higher when
      ``higher_is_better``, lower otherwise, e.g. for a loss);
    * ``"tie"``: p >= ``alpha``, whichever side the mean favours;
    * ``"reversed"``: p < ``alpha`` and the mean difference favours ``other``.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"verdict: alpha must lie in (0, 1), got {alpha}")
    test = paired_t_test(claimed, other)
    if test.p_value >= alpha:
        return "tie"
    favours_claimed = test.mean_difference > 0 if higher_is_better else test.mean_difference < 0
    return "held" if favours_claimed else "reversed"
