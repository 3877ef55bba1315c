"""Internal consistency and test-retest reliability of one dimension: alpha, omega, split-half, W.

Persons and items. The stems are the items; a person is a respondent (model x config), or, when
there are fewer respondents than `MIN_PERSONS`, a respondent's sample (model x config x sample):
a person's item score is the mean φ of its completions of that stem.

- Cronbach's alpha (Cronbach 1951): α = k / (k - 1) · (1 - Σ_i s²_i / s²_X), with s²_i the item
  variances and s²_X the variance of the persons' total scores (ddof 1).
- McDonald's omega total of a one-factor model (McDonald 1999, *Test theory*, ch. 6): standardised
  loadings λ from a one-factor minimum-residual fit of the item correlations (factor_analyzer),
  ω = (Σ λ)² / ((Σ λ)² + Σ (1 - λ²)). It needs more persons than items (else the correlation
  matrix is singular and a notice says so).
- Bootstrap CIs of both: persons resampled with replacement, percentile interval. Omega's resamples
  are fitted by iterated principal axes (`one_factor_loadings`), vectorised over resamples: at
  convergence it minimises the same unweighted least squares as minres (Harman 1976, ch. 8), and a
  test holds it to factor_analyzer's minres loadings; one minres fit per resample would cost
  ~0.7 s at 50 stems.
- Split-half over samples (test-retest within a run): per respondent, the mean over stems of the
  odd-index samples and of the even-index samples; r = their Pearson correlation across
  respondents; Spearman-Brown ρ = 2r / (1 + r) (Brown 1910; Spearman 1910).
- Rank stability of models across decoding configs: Kendall's coefficient of concordance
  W = 12 S / (m² (n³ - n) - m T), configs as the m raters of the n models, S the sum of squared
  deviations of the rank sums, T the tie correction Σ (t³ - t) (Kendall & Babington Smith 1939).

Each function returns NaN with a notice (never raises, never divides by zero) when its design is
too small or its data constant.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata

FLAG_BELOW = 0.7
MIN_PERSONS = 8


@dataclass
class Estimate:
    value: float = float("nan")
    low: float = float("nan")
    high: float = float("nan")
    notices: list[str] = field(default_factory=list)


def cronbach_alpha(x: np.ndarray) -> np.ndarray | float:
    """Alpha of a (persons, items) matrix; vectorised over leading axes (..., persons, items)."""
    x = np.asarray(x, dtype=float)
    k = x.shape[-1]
    item_var = x.var(axis=-2, ddof=1).sum(axis=-1)
    total_var = x.sum(axis=-1).var(axis=-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(total_var > 0, k / (k - 1) * (1 - item_var / total_var), np.nan)
    return float(out) if out.ndim == 0 else out


def omega_from_loadings(loadings: np.ndarray, uniquenesses: np.ndarray | None = None) -> float:
    """ω total = (Σλ)² / ((Σλ)² + Σψ); ψ = 1 - λ² for standardised loadings when not given."""
    lam = np.asarray(loadings, dtype=float)
    psi = 1 - lam ** 2 if uniquenesses is None else np.asarray(uniquenesses, dtype=float)
    common = lam.sum() ** 2
    return float(common / (common + psi.sum())) if common + psi.sum() > 0 else float("nan")


def omega_total(x: np.ndarray) -> float:
    """ω total of a one-factor minres fit of the item correlations of a (persons, items) matrix.

    Singular correlations (two stems scored alike by everyone) stop factor_analyzer's start values
    (squared multiple correlations need R⁻¹); then the iterated principal axes give the same ULS fit.
    """
    from factor_analyzer import FactorAnalyzer

    x = np.asarray(x, dtype=float)
    corr = np.corrcoef(x, rowvar=False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fa = FactorAnalyzer(n_factors=1, rotation=None, method="minres", is_corr_matrix=True)
            fa.fit(corr)
        lam = fa.loadings_[:, 0]
    except (np.linalg.LinAlgError, ValueError):  # singular correlations (duplicate stems): minres needs R^-1
        lam = one_factor_loadings(corr)
    lam = lam if lam.sum() >= 0 else -lam
    return omega_from_loadings(np.clip(lam, -1, 1))


def one_factor_loadings(corr: np.ndarray, iterations: int = 200, tol: float = 1e-7) -> np.ndarray:
    """One-factor loadings of correlation matrices (..., k, k) by iterated principal axes (ULS).

    Communalities start at the squared multiple correlations' stand-in max |r| and are replaced by
    λ² each step (clipped below 1, a Heywood case otherwise); the sign makes Σλ >= 0.
    """
    corr = np.asarray(corr, dtype=float)
    k = corr.shape[-1]
    off = corr - np.eye(k) * corr
    h2 = np.abs(off).max(axis=-1)
    eye = np.eye(k, dtype=bool)
    for _ in range(iterations):
        reduced = np.where(eye, h2[..., None, :] * np.eye(k), corr)
        vals, vecs = np.linalg.eigh(reduced)
        lam = vecs[..., -1] * np.sqrt(np.clip(vals[..., -1], 0, None))[..., None]
        new = np.clip(lam ** 2, 0, 0.995)
        if np.max(np.abs(new - h2)) < tol:
            h2 = new
            break
        h2 = new
    sign = np.where(lam.sum(axis=-1, keepdims=True) < 0, -1.0, 1.0)
    return lam * sign


def _too_small(x: np.ndarray, what: str, need_more_persons: bool = False) -> list[str]:
    n, k = x.shape
    if k < 2:
        return [f"{what} needs 2 or more stems (items); have {k}"]
    if n < 3:
        return [f"{what} needs 3 or more persons (respondents or samples); have {n}"]
    if need_more_persons and n <= k:
        return [f"{what} needs more persons than stems for a one-factor fit (have {n} persons, {k} stems): "
                f"more models, configs or samples make it computable"]
    if not np.isfinite(x).all():
        return [f"{what}: missing item scores"]
    if x.sum(axis=1).var() == 0:
        return [f"{what}: every person has the same total score (constant judgments): not computable"]
    return []


def alpha_estimate(x: np.ndarray, rng: np.random.Generator, resamples: int = 1000, level: float = 0.95) -> Estimate:
    """Alpha with a percentile bootstrap CI over persons (vectorised: all resamples at once)."""
    x = np.asarray(x, dtype=float)
    notes = _too_small(x, "alpha")
    if notes:
        return Estimate(notices=notes)
    value = cronbach_alpha(x)
    draws = rng.integers(0, x.shape[0], size=(resamples, x.shape[0]))
    boot = cronbach_alpha(x[draws])
    boot = boot[np.isfinite(boot)]
    low, high = (np.quantile(boot, [(1 - level) / 2, (1 + level) / 2]) if boot.size else (np.nan, np.nan))
    return Estimate(float(value), float(low), float(high))


def omega_estimate(x: np.ndarray, rng: np.random.Generator, resamples: int = 200, level: float = 0.95) -> Estimate:
    """Omega total (minres) with a percentile bootstrap CI over persons (iterated principal axes per resample)."""
    x = np.asarray(x, dtype=float)
    notes = _too_small(x, "omega", need_more_persons=True)
    if notes:
        return Estimate(notices=notes)
    if (x.var(axis=0) == 0).any():
        return Estimate(notices=["omega: a stem has the same score for every person: correlations undefined"])
    value = omega_total(x)
    samples = x[rng.integers(0, x.shape[0], size=(resamples, x.shape[0]))]
    usable = samples[(samples.var(axis=1) > 0).all(axis=1)]
    boot_a = np.array([])
    if len(usable):
        centred = usable - usable.mean(axis=1, keepdims=True)
        cov = np.einsum("bni,bnj->bij", centred, centred)
        sd = np.sqrt(np.einsum("bii->bi", cov))
        lam = one_factor_loadings(cov / sd[:, :, None] / sd[:, None, :])
        common = lam.sum(axis=-1) ** 2
        boot_a = common / (common + (1 - lam ** 2).sum(axis=-1))
    boot_a = boot_a[np.isfinite(boot_a)]
    low, high = (np.quantile(boot_a, [(1 - level) / 2, (1 + level) / 2]) if boot_a.size else (np.nan, np.nan))
    return Estimate(float(value), float(low), float(high))


def spearman_brown(r: float, factor: float = 2.0) -> float:
    """Reliability of a test `factor` times as long as one of reliability r."""
    return float(factor * r / (1 + (factor - 1) * r)) if 1 + (factor - 1) * r != 0 else float("nan")


def split_half(y: np.ndarray) -> Estimate:
    """Spearman-Brown split-half over sample halves of y (respondents, stems, samples); NaN = missing."""
    y = np.asarray(y, dtype=float)
    if y.shape[-1] < 2:
        return Estimate(notices=[f"split-half needs 2 or more samples (M); have {y.shape[-1]}"])
    if y.shape[0] < 3:
        return Estimate(notices=[f"split-half needs 3 or more respondents (model x config); have {y.shape[0]}"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        odd, even = np.nanmean(y[..., 1::2], axis=(1, 2)), np.nanmean(y[..., 0::2], axis=(1, 2))
    ok = np.isfinite(odd) & np.isfinite(even)
    if ok.sum() < 3 or odd[ok].std() == 0 or even[ok].std() == 0:
        return Estimate(notices=["split-half: the halves do not vary across respondents (constant judgments)"])
    r = float(np.corrcoef(odd[ok], even[ok])[0, 1])
    return Estimate(spearman_brown(r), notices=[] if ok.all() else ["split-half: respondents without both halves "
                                                                     "left out"])


def kendall_w(scores: np.ndarray) -> Estimate:
    """Kendall's W of a (raters, objects) matrix: here decoding configs ranking models (ties averaged)."""
    scores = np.asarray(scores, dtype=float)
    m, n = scores.shape
    if m < 2:
        return Estimate(notices=[f"rank stability across configs needs 2 or more configs; have {m}"])
    if n < 2:
        return Estimate(notices=[f"rank stability across configs needs 2 or more models; have {n}"])
    if not np.isfinite(scores).all():
        return Estimate(notices=["rank stability: a model has no score under some config"])
    ranks = np.vstack([rankdata(row) for row in scores])
    s = ((ranks.sum(axis=0) - m * (n + 1) / 2) ** 2).sum()
    ties = sum(((c := np.unique(row, return_counts=True)[1]) ** 3 - c).sum() for row in scores)
    denominator = m ** 2 * (n ** 3 - n) - m * ties
    if denominator <= 0:
        return Estimate(notices=["rank stability: every config ties every model (constant scores)"])
    return Estimate(float(12 * s / denominator))
