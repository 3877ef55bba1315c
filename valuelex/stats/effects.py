"""Effect sizes of a difference between two sides.

Paired (two models, or groups compared by stem)
-----------------------------------------------
Cohen's d_z = mean(D) / sd(D) over the K paired cell differences D_sc, and Hedges' g_z = J·d_z with
the small-sample correction J = 1 − 3 / (4·df − 1), df = K − 1. It is standardised by the spread of
*cell* differences, so it grows with M (cell means get less noisy): compare effect sizes only at
equal M; ``diff`` is on the 0–1 scale of φ and does not depend on the design.

Groups of models (``unit="models"``)
------------------------------------
Hedges' g between the groups' model scores: d = (mean w_b − mean w_a) / s_p with the pooled
between-model variance s_p² = ((n_a − 1) s_a² + (n_b − 1) s_b²) / (n_a + n_b − 2), and
g = J·d with J = 1 − 3 / (4 (n_a + n_b − 2) − 1).
"""

from __future__ import annotations

import numpy as np


def cohen_dz(differences: np.ndarray) -> np.ndarray:
    """d_z per column of the paired differences (K, D); NaN with one difference or no spread."""
    n, width = differences.shape
    sd = differences.std(axis=0, ddof=1) if n > 1 else np.full(width, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sd > 0, differences.mean(axis=0) / sd, np.nan)


def hedges_correction(d: np.ndarray, df: float) -> np.ndarray:
    """Hedges' g = J·d, J = 1 − 3 / (4·df − 1); NaN when df <= 1."""
    if df <= 1:
        return np.full_like(d, np.nan)
    return d * (1 - 3 / (4 * df - 1))


def pooled_variance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The pooled variance per column of two samples (n_a, D) and (n_b, D), with n_a + n_b − 2 df."""
    df = len(a) + len(b) - 2
    return ((len(a) - 1) * np.var(a, axis=0, ddof=1 if len(a) > 1 else 0)
            + (len(b) - 1) * np.var(b, axis=0, ddof=1 if len(b) > 1 else 0)) / df


def hedges_g(difference: np.ndarray, pooled: np.ndarray, df: float) -> np.ndarray:
    """Hedges' g of a difference of group means standardised by the pooled SD (NaN where it is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(pooled > 0, difference / np.sqrt(pooled), np.nan)
    return hedges_correction(d, df)
