"""Spreads and the verdict rule: every reading of a difference states the difference, its
standard error, a 95% interval (Student's t), the number of runs and where the noise estimate
came from, and says "effect" only when the interval excludes zero, "equivalent" only when it
covers zero and lies within +-`MARGIN_POINTS`, and "inconclusive" otherwise; for a family of
comparisons, p-values of both questions (a difference from 0, equivalence within the margin by
two one-sided tests) with Holm's correction (`holm`).

Differences and standard errors here are in accuracy points (percent)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

# The smallest accuracy difference, in points, that the readings treat as mattering:
# "equivalent" claims the true difference lies within +- this.
MARGIN_POINTS = 1.0


def t975(df: float) -> float:
    """The 0.975 quantile of Student's t with `df` >= 1 degrees of freedom (scipy, exact)."""
    if not df >= 1:
        raise ValueError(f"a t quantile needs df >= 1, got {df}")
    return float(stats.t.ppf(0.975, df))


def spread(values: Sequence[float]) -> dict:
    """runs, mean, std (ddof=1) and stderr of `values`; std and stderr are None for one run."""
    x = np.asarray(values, dtype=float)
    std = float(np.std(x, ddof=1)) if x.size > 1 else None
    return {"runs": int(x.size), "mean": float(np.mean(x)) if x.size else None, "std": std,
            "stderr": None if std is None else std / math.sqrt(x.size)}


def interval(value: float, stderr: float | None, df: int | None) -> list[float] | None:
    """The 95% interval value +- t975(df) * stderr (None without a noise estimate)."""
    if stderr is None or df is None or df < 1 or not math.isfinite(stderr):
        return None
    half = t975(df) * stderr
    return [value - half, value + half]


def judge(difference: float, stderr: float | None, df: int | None, runs: int, noise: str,
          margin: float = MARGIN_POINTS) -> dict:
    """The verdict on a difference in points: "effect" (the 95% interval excludes 0),
    "equivalent" (it covers 0 and lies within +-margin), "inconclusive" (neither), or "no noise
    estimate". Returns the difference, stderr, df, interval, runs, noise source and verdict."""
    ci = interval(difference, stderr, df)
    if ci is None:
        verdict = "no noise estimate"
    elif ci[0] > 0 or ci[1] < 0:
        verdict = "effect"
    elif -margin <= ci[0] and ci[1] <= margin:
        verdict = "equivalent"
    else:
        verdict = "inconclusive"
    return {"difference": difference, "stderr": stderr, "df": df, "interval": ci, "runs": runs,
            "noise": noise, "verdict": verdict}


def against(value: float, stderr: float | None, df: int | None, threshold: float) -> str:
    """Where a measured value lies against a threshold, by its 95% interval: "below", "above",
    "inconclusive", or "no noise estimate"."""
    ci = interval(value, stderr, df)
    if ci is None:
        return "no noise estimate"
    return "below" if ci[1] < threshold else "above" if ci[0] > threshold else "inconclusive"


def pooled_std(groups: Sequence[Sequence[float]]) -> tuple[float | None, int]:
    """The pooled within-group standard deviation (ddof=1 per group) and its degrees of
    freedom, over the groups with at least two values ((None, 0) when there are none)."""
    sq, df = 0.0, 0
    for g in groups:
        x = np.asarray(g, dtype=float)
        if x.size > 1:
            sq += float(np.sum((x - x.mean()) ** 2))
            df += x.size - 1
    return (math.sqrt(sq / df), df) if df else (None, 0)


def describe(j: dict) -> str:
    """One reading in words: difference, interval, runs, verdict and noise source."""
    text = f"{j['difference']:+.2f}"
    if j["interval"] is not None:
        text += f" (95% CI {j['interval'][0]:+.2f}..{j['interval'][1]:+.2f})"
    return f"{text}, {j['verdict']}"


def p_difference(difference: float, stderr: float, df: float) -> float:
    """Two-sided p-value of a difference from 0 (Student's t)."""
    if stderr == 0:
        return 0.0 if difference else 1.0
    return float(2 * stats.t.sf(abs(difference) / stderr, df))


def p_equivalence(difference: float, stderr: float, df: float,
                  margin: float = MARGIN_POINTS) -> float:
    """p-value of equivalence within +-margin by two one-sided t tests (TOST): the larger of
    the two one-sided p-values. Below 0.025 exactly when the 95% interval lies inside the
    margin, the rule `judge` applies to one comparison."""
    if stderr == 0:
        return 0.0 if abs(difference) < margin else 1.0
    lower = stats.t.sf((difference + margin) / stderr, df)  # H0: difference <= -margin
    upper = stats.t.sf((margin - difference) / stderr, df)  # H0: difference >= +margin
    return float(max(lower, upper))


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None and does not count): reject where
    the adjusted value is below the level, and the chance of any false rejection in the family
    stays under it."""
    known = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(known):
        running = max(running, min(1.0, (len(known) - rank) * p))
        out[i] = running
    return out
