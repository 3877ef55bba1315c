"""A trend of w across models: the OLS slope of w on log10(size), with its t interval.

For n models with x = log10(size_b) and y = w: the least-squares fit y = a + b·x, r its correlation,
and the t interval of the slope b ± t_{(1+level)/2, n−2} · se(b) with its two-sided p (H0: b = 0).
The slope needs 2 points of 2 sizes; its interval and p need 3 (NaN below). Non-finite pairs are
left out.
"""

from __future__ import annotations

import numpy as np


def slope_fit(x: np.ndarray, y: np.ndarray, ci_level: float = 0.95) -> dict[str, float]:
    """OLS of y on x; the t interval of the slope and its p need 3 points (NaN below), the slope 2 of 2 x."""
    from scipy import stats

    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    empty = {"slope": np.nan, "slope_low": np.nan, "slope_high": np.nan, "intercept": np.nan, "r": np.nan,
             "p": np.nan}
    if len(x) < 2 or np.ptp(x) == 0:
        return empty
    fit = stats.linregress(x, y)
    result = {"slope": float(fit.slope), "intercept": float(fit.intercept), "r": float(fit.rvalue),
              "slope_low": np.nan, "slope_high": np.nan, "p": np.nan}
    if len(x) >= 3:
        t = float(stats.t.ppf(0.5 + ci_level / 2, len(x) - 2))
        result.update(slope_low=float(fit.slope - t * fit.stderr), slope_high=float(fit.slope + t * fit.stderr),
                      p=float(fit.pvalue))
    return result
