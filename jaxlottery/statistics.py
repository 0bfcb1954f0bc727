"""Spreads and the verdict rule: every reading of a difference states the difference, its
standard error, a 95% interval (Student's t), the number of runs and where the noise estimate
came from, and says "effect" only when the interval excludes zero, "no difference" only when it
covers zero and lies within +-`MARGIN_POINTS`, and "inconclusive" otherwise.

Differences and standard errors here are in accuracy points (percent)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# The smallest accuracy difference, in points, that the readings treat as mattering: "no
# difference" claims the true difference lies within +- this.
MARGIN_POINTS = 1.0

# Two-sided 95% quantiles of Student's t (t_0.975) by degrees of freedom; between tabulated
# values the smaller df is used (a wider interval), past the last the normal quantile.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120,
         17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000,
         120: 1.980}


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` >= 1 degrees of freedom."""
    if df < 1:
        raise ValueError(f"a t quantile needs df >= 1, got {df}")
    if df > max(_T975):
        return 1.960
    return _T975[max(d for d in _T975 if d <= df)]


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
    """The verdict on a difference in points: "effect" (the 95% interval excludes 0), "no
    difference" (it covers 0 and lies within +-margin), "inconclusive" (neither), or "no noise
    estimate". Returns the difference, stderr, df, interval, runs, noise source and verdict."""
    ci = interval(difference, stderr, df)
    if ci is None:
        verdict = "no noise estimate"
    elif ci[0] > 0 or ci[1] < 0:
        verdict = "effect"
    elif -margin <= ci[0] and ci[1] <= margin:
        verdict = "no difference"
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
