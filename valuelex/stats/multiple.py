"""Multiple comparisons: adjusted p-values across the (sub)dimensions of one comparison.

With m finite p-values sorted p_(1) ≤ … ≤ p_(m):

- Holm (``"holm"``, step-down; controls the family-wise error rate under any dependence):
  p̃_(j) = min(1, max_{i ≤ j} (m − i + 1) · p_(i));
- Benjamini–Hochberg (``"bh"``, step-up; controls the false discovery rate under positive
  dependence): p̃_(j) = min(1, min_{i ≥ j} m / i · p_(i));
- ``"none"``: the p-values as they are.

A comparison's family is every (sub)dimension of its value system; parents are means of their
subdimensions, so the family is positively dependent and both corrections hold. NaN p-values stay
NaN and are not counted in m.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from valuelex.errors import StudyError

CORRECTIONS = ("holm", "bh", "none")


def adjust(p: Sequence[float] | np.ndarray, method: str = "holm") -> np.ndarray:
    """Adjusted p-values: Holm step-down, Benjamini–Hochberg step-up, or none. NaN stays NaN and is
    not counted in the family."""
    if method not in CORRECTIONS:
        raise StudyError(f"correction: {method!r} is not one of {', '.join(CORRECTIONS)}")
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out
    values = p[ok]
    if method == "none":
        out[ok] = values
        return out
    order = np.argsort(values, kind="stable")
    ranked = values[order]
    if method == "holm":
        adjusted = np.maximum.accumulate((m - np.arange(m)) * ranked)
    else:  # bh
        adjusted = np.minimum.accumulate((m / np.arange(m, 0, -1)) * ranked[::-1])[::-1]
    result = np.empty(m)
    result[order] = np.minimum(adjusted, 1.0)
    out[ok] = result
    return out
