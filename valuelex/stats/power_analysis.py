"""Power analysis: variance components of paired cell differences, and the power of the comparison's test.

Model
-----
D_sc = δ + u_s + v_sc + ē_sc with Var(u_s) = σ_S² (between stems: how much the models' difference
varies by stem), Var(v_sc) = σ_C² (stem × config), and the sampling noise of the cell means
Var(ē_sc) = τ² / M_v (within stems), where τ² = σ²_W,a + σ²_W,b is the sum of the two models'
within-cell completion variances and M_v = f·M the valid completions per cell and model: M counts
the judged ones (the study's ``samples``), f is the observed ratio of the harmonic mean of the valid
counts to the mean judged count (1 when every judgment is valid).

Moment estimates (`components_from_cells`; ANOVA of the cell differences with S stems, C configs)
-------------------------------------------------------------------------------------------------

    τ² = mean_cells s²_a,sc + mean_cells s²_b,sc                       (pooled within-cell variances)
    MS_within = Σ_s Σ_c (D_sc − D̄_s)² / Σ_s (C_s − 1)       E = σ_C² + τ²/M_v
    MS_stems  = var_s(D̄_s)                                   E = σ_S² + (σ_C² + τ²/M_v) / C
    σ_C² = max(0, MS_within − τ²/M_v),   σ_S² = max(0, MS_stems − MS_within / C)

(with C = 1, σ_C² is not identifiable and is folded into σ_S²; for groups compared by stem, a side's
cell mean is the mean of its k models' cell means and its part of τ² is Σ_m s²_m / k²; τ² is the
caller's).

Power (`power_at`, `power`)
---------------------------
The variance of the test statistic T (the mean cell difference) at a design (S stems, C configs,
M samples) is

    Var(T) = σ_S²/S + σ_C²/(S·C) + τ²/(S·C·f·M)     (unit="cell": (σ_S² + σ_C² + τ²/(f·M)) / (S·C))

and the power of the two-sided test at level α to detect a true difference δ is that of a t test
with df = S − 1 (``unit="cell"``: S·C − 1) and noncentrality |δ| / sqrt(Var(T)):
power = P(|t_df(ncp)| > t_{1−α/2, df}). `power` returns the power now, the smallest M that reaches
the target at the current stems (``None`` when σ_S²/S + σ_C²/(S·C) alone is too large: raising M
cannot do it, raise the stems), and the smallest number of stems at the current M. The power is per
test (α uncorrected); pass ``alpha=0.05 / n_dimensions`` for the strictest Holm step.

Groups of models (`models_needed`)
----------------------------------
For groups compared over models (``unit="models"``): the number of models per group for a
two-sample t test of the group means with between-model variance σ_M² (the pooled variance of the
models' w): ncp = |δ| / sqrt(2 σ_M² / n), df = 2n − 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from valuelex.errors import StudyError


@dataclass(frozen=True)
class VarianceComponents:
    """Variance components of the cell differences D_sc of one dimension (see the module docstring)."""

    between_stem: float  # σ_S²
    stem_config: float  # σ_C²
    within: float  # τ² = σ²_W,a + σ²_W,b, per completion
    n_stems: int
    n_configs: float
    samples: float  # M: judged completions per (stem, config) and model
    unit: str = "stem"
    valid_fraction: float = 1.0  # f: M_valid = f·M (harmonic mean of valid counts / mean judged count)

    @classmethod
    def from_row(cls, row: Any) -> VarianceComponents:
        """The components stored in one row of a comparison (a dict, Series or itertuples row)."""
        get = row.get if hasattr(row, "get") else (lambda name: getattr(row, name))
        return cls(between_stem=float(get("var_between_stem")), stem_config=float(get("var_stem_config")),
                   within=float(get("var_within")), n_stems=int(get("n_stems")), n_configs=float(get("n_configs")),
                   samples=float(get("samples")), unit=str(get("unit")), valid_fraction=float(get("valid_fraction")))

    def variance(self, n_stems: float | None = None, samples: float | None = None,
                 n_configs: float | None = None) -> float:
        """Var(T) of the mean cell difference at a design (defaults: the observed one)."""
        s = float(self.n_stems if n_stems is None else n_stems)
        m = float(self.samples if samples is None else samples) * self.valid_fraction
        c = float(self.n_configs if n_configs is None else n_configs)
        if self.unit == "cell":
            return (self.between_stem + self.stem_config + self.within / m) / (s * c)
        return self.between_stem / s + self.stem_config / (s * c) + self.within / (s * c * m)

    def df(self, n_stems: float | None = None, n_configs: float | None = None) -> float:
        s = float(self.n_stems if n_stems is None else n_stems)
        c = float(self.n_configs if n_configs is None else n_configs)
        return s * c - 1 if self.unit == "cell" else s - 1


@dataclass(frozen=True)
class Power:
    delta: float
    alpha: float
    target: float
    power_now: float
    se_now: float
    samples_needed: int | None  # M at the current stems; None: raising M alone cannot reach the target
    stems_needed: int | None  # stems at the current M


def components_from_cells(diff: np.ndarray, within: np.ndarray, samples: float, unit: str,
                          valid_fraction: float = 1.0) -> list[VarianceComponents]:
    """Moment estimates of σ_S², σ_C² (from the cell differences `diff` (S, C, D), NaN = no cell) given
    τ² per dimension (`within`), M and f; one `VarianceComponents` per dimension."""
    present = np.isfinite(diff[:, :, 0])
    per_stem = present.sum(axis=1)
    kept = per_stem > 0
    cells = diff[kept]  # (S', C, D)
    n_stems = int(kept.sum())
    n_configs = float(per_stem[kept].mean()) if n_stems else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        stem_means = np.nansum(cells, axis=1) / per_stem[kept][:, None]  # (S', D)
        df_within = int((per_stem[kept] - 1).sum())
        ms_within = (np.nansum((cells - stem_means[:, None, :]) ** 2, axis=(0, 1)) / df_within if df_within
                     else np.full(diff.shape[2], np.nan))
        ms_stems = stem_means.var(axis=0, ddof=1) if n_stems > 1 else np.full(diff.shape[2], np.nan)
    out = []
    for d in range(diff.shape[2]):
        tau2 = float(within[d])
        valid_samples = samples * valid_fraction
        noise = tau2 / valid_samples if np.isfinite(tau2) and valid_samples > 0 else 0.0
        if np.isfinite(ms_within[d]) and n_configs > 1:
            stem_config = max(0.0, float(ms_within[d]) - noise)
            between = max(0.0, float(ms_stems[d] - ms_within[d] / n_configs)) if np.isfinite(ms_stems[d]) else np.nan
        else:
            stem_config = 0.0
            between = max(0.0, float(ms_stems[d]) - noise) if np.isfinite(ms_stems[d]) else np.nan
        out.append(VarianceComponents(between_stem=float(between), stem_config=float(stem_config),
                                      within=tau2 if np.isfinite(tau2) else 0.0, n_stems=n_stems,
                                      n_configs=n_configs, samples=float(samples), unit=unit,
                                      valid_fraction=float(valid_fraction)))
    return out


def t_power(ncp: float, df: float, alpha: float) -> float:
    """P(|t_df(ncp)| > t_{1-alpha/2, df}); scipy's noncentral t returns NaN far in the tail, where the
    normal approximation is exact to many digits."""
    from scipy import stats

    crit = float(stats.t.ppf(1 - alpha / 2, df))
    if ncp - crit > 12:
        return 1.0
    value = float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))
    if not np.isfinite(value):
        value = float(stats.norm.sf(crit - ncp) + stats.norm.cdf(-crit - ncp))
    return min(1.0, value)


def power_at(components: VarianceComponents, delta: float, *, n_stems: float | None = None,
             samples: float | None = None, n_configs: float | None = None, alpha: float = 0.05) -> float:
    """Power of the two-sided test at level `alpha` to detect a true difference `delta` at a design."""
    df = components.df(n_stems, n_configs)
    variance = components.variance(n_stems, samples, n_configs)
    if not (np.isfinite(variance) and np.isfinite(df)) or df < 1:
        return float("nan")
    if variance <= 0:
        return 1.0 if delta != 0 else alpha
    return t_power(abs(delta) / math.sqrt(variance), df, alpha)


def _smallest(ok: Callable[[int], bool], low: int, high: int) -> int | None:
    """The smallest n in [low, high] with ok(n), for a monotone ok; None when ok(high) fails."""
    if not ok(high):
        return None
    while low < high:
        middle = (low + high) // 2
        if ok(middle):
            high = middle
        else:
            low = middle + 1
    return low


def power(components: VarianceComponents, delta: float, *, alpha: float = 0.05, target: float = 0.8,
          n_stems: int | None = None, samples: float | None = None, max_samples: int = 1_000_000,
          max_stems: int = 1_000_000) -> Power:
    """How far must M (or the stems) be raised to detect `delta` at level `alpha` with power `target`?

    `n_stems` / `samples` default to the observed design. See the module docstring for the formula.
    """
    if not 0 < alpha < 1 or not 0 < target < 1:
        raise StudyError(f"power: alpha and target must lie in (0, 1), got {alpha} and {target}")
    if not delta:
        raise StudyError("power: delta must be a non-zero difference on the 0-1 scale of w")
    stems = components.n_stems if n_stems is None else n_stems
    m_now = components.samples if samples is None else samples
    now = power_at(components, delta, n_stems=stems, samples=m_now, alpha=alpha)
    se = math.sqrt(components.variance(stems, m_now)) if stems >= 1 else float("nan")
    if not np.isfinite(now):
        return Power(delta, alpha, target, now, se, None, None)
    samples_needed = _smallest(lambda m: power_at(components, delta, n_stems=stems, samples=m, alpha=alpha) >= target,
                               1, max_samples)
    stems_needed = _smallest(lambda s: power_at(components, delta, n_stems=s, samples=m_now, alpha=alpha) >= target,
                             2, max_stems)
    return Power(delta, alpha, target, now, se, samples_needed, stems_needed)


def models_needed(between_models: float, delta: float, *, alpha: float = 0.05, target: float = 0.8,
                  limit: int = 100_000) -> int | None:
    """Models per group for a two-sample t test of group means with between-model variance σ_M²."""
    if not (np.isfinite(between_models) and delta):
        return None

    def ok(n: int) -> bool:
        if between_models <= 0:
            return True
        return t_power(abs(delta) / math.sqrt(2 * between_models / n), 2 * n - 2, alpha) >= target

    return _smallest(ok, 2, limit)
