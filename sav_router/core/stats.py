"""Exact statistics every capability shares: binomial bounds, beta quantiles, the KS test.

Defined once, here: the precision promise (calibration), the live-precision
estimate from audit samples (review), the drift monitor and the console's
intervals all use these functions, so a bound means the same thing everywhere.

Pure Python (math only): the routing Lambda and the CLI import it without numpy or scipy.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

CONFIDENCE = 0.95  # default two-sided confidence of a reported interval


def _continued_fraction(a: float, b: float, x: float) -> float:
    """Lentz's evaluation of the incomplete beta continued fraction."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the Beta(a, b) distribution function at x."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):  # the fraction converges fast on this side
        return math.exp(log_front) * _continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _continued_fraction(b, a, 1.0 - x) / b


def beta_quantile(p: float, a: float, b: float) -> float:
    """x with I_x(a, b) = p: safeguarded Newton steps (the density is the derivative), bisection when a step leaves the bracket."""
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    low, high = 0.0, 1.0
    x = a / (a + b)
    log_norm = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    for _ in range(200):
        error = regularized_beta(a, b, x) - p
        if error < 0:
            low = x
        else:
            high = x
        if abs(error) < 1e-15 or high - low < 1e-17:
            break
        density = math.exp(log_norm + (a - 1.0) * math.log(x) + (b - 1.0) * math.log1p(-x))
        step = x - error / density if density > 0 else -1.0
        step = step if low < step < high else (low + high) / 2.0
        if abs(step - x) <= 1e-15 * x:
            return step
        x = step
    return x


def clopper_pearson_lower(successes: int, trials: int, confidence: float) -> float:
    """One-sided exact (Clopper-Pearson) lower bound of a binomial proportion, at `confidence`."""
    if trials <= 0 or successes <= 0:
        return 0.0
    if successes >= trials:
        return (1.0 - confidence) ** (1.0 / trials)  # closed form of the quantile at k = n
    return beta_quantile(1.0 - confidence, successes, trials - successes + 1)


def clopper_pearson_upper(successes: int, trials: int, confidence: float) -> float:
    """One-sided exact (Clopper-Pearson) upper bound of a binomial proportion, at `confidence`."""
    if trials <= 0 or successes >= trials:
        return 1.0
    return 1.0 - clopper_pearson_lower(trials - successes, trials, confidence)


def clopper_pearson(successes: int, trials: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Two-sided exact interval for a binomial proportion (each side at (1 + confidence) / 2)."""
    if trials <= 0:
        raise ValueError("an interval needs at least one trial")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be within [0, {trials}], got {successes}")
    side = 1.0 - (1.0 - confidence) / 2.0
    return clopper_pearson_lower(successes, trials, side), clopper_pearson_upper(successes, trials, side)


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    return regularized_beta(k, n - k + 1, p)


def kolmogorov_sf(statistic: float, n: int, m: int) -> float:
    """Asymptotic P(D >= statistic) of the two-sample KS statistic (Stephens' correction)."""
    if n == 0 or m == 0 or statistic <= 0:
        return 1.0
    effective = n * m / (n + m)
    lam = (math.sqrt(effective) + 0.12 + 0.11 / math.sqrt(effective)) * statistic
    total = sum((-1) ** (j - 1) * math.exp(-2.0 * j * j * lam * lam) for j in range(1, 101))
    return min(1.0, max(0.0, 2.0 * total))


def ks_statistic(sample: Sequence[float], reference: Sequence[float]) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical distribution functions."""
    a, b = sorted(sample), sorted(reference)
    if not a or not b:
        return 0.0
    points = sorted(set(a) | set(b))
    return max(abs(bisect.bisect_right(a, x) / len(a) - bisect.bisect_right(b, x) / len(b)) for x in points)
