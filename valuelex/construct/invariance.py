"""Measurement invariance of the taxonomy across respondent groups: configural, metric, scalar multi-group CFA.

Can the dimensions' scores of pretrained, instruction-tuned and aligned models (or of model families)
be compared? Only if the taxonomy measures the same thing in every group. A pure core: the units x
words matrix, each unit's group label and the words' factors are injected;
`valuelex.construct.stage` calls `invariance` per grouping (``training``, ``family``).

No maintained Python library fits *constrained* multi-group CFA: semopy's ``multigroup`` fits each
group on its own (no equality across groups), factor_analyzer has no CFA across groups. So the
models are fitted here by maximum likelihood on the groups' moments (scipy L-BFGS-B, analytic
gradient). For group g (n_g units, N = sum n_g, G groups, p words, k factors) with sample mean m_g
and ML covariance S_g, the model is x = nu_g + Lambda_g eta + e, eta ~ N(alpha_g, Phi_g), e ~ N(0, Theta_g)
with Theta_g diagonal, so

    Sigma_g = Lambda_g Phi_g Lambda_g' + Theta_g,     mu_g = nu_g + Lambda_g alpha_g,
    F_g = ln|Sigma_g| + tr(S_g Sigma_g^-1) - ln|S_g| - p + (m_g - mu_g)' Sigma_g^-1 (m_g - mu_g),
    chi2 = sum_g n_g F_g  (minimised).

Each word loads on its taxonomy factor only; a factor's marker (its word of the largest summed |r|
with the factor's other words) has loading 1 in every group, which sets the factor's scale;
Phi_g = L_g L_g' (free factor variances and covariances in every group), Theta_g = exp(t_g).

- configural: Lambda_g free per group; nu_g free (means saturated: they fit m_g exactly);
- metric: Lambda_g = Lambda in every group; nu_g free;
- scalar: Lambda and nu equal across groups; alpha_1 = 0, alpha_g free for the other groups (the
  latent mean differences are what scalar invariance lets one compare).

Degrees of freedom: G (p(p+1)/2 + p) moments minus the free parameters, so metric has (G-1)(free
loadings) and scalar (G-1)(p-k) more than the model before it. Fit: the baseline is the independence
model with saturated means, chi2_0 = sum_g n_g (sum_j ln S_g,jj - ln|S_g|), df_0 = G p(p-1)/2;
CFI = 1 - max(chi2 - df, 0) / max(chi2_0 - df_0, chi2 - df, 0) and RMSEA = sqrt(G) sqrt(max(chi2 - df,
0) / (df N)) (Steiger's multi-group form, as lavaan).

Decision, step by step: configural holds when its fit is acceptable (CFI >= 0.90, RMSEA <= 0.08);
metric holds when, from configural, CFI drops by <= 0.01 (Cheung & Rensvold 2002) and RMSEA rises by
<= 0.015 (Chen 2007); scalar the same from metric. The level reached says which comparisons the data
support: scalar, latent means; metric, correlations and regressions but not means; configural, the
same structure only; none, no comparison.

The incidence is 0/1: the fit is the linear (normal-theory ML) factor model of the 0/1 words, the
intercepts playing the thresholds' part. That is an approximation for binary data (the planted
binary scenario in the tests recovers scalar invariance all the same). Floors: a group needs at least
max(30, 5 p) units (smaller groups are skipped with a notice), two groups must remain, and a word
must vary within every kept group.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize

LEVELS = ("none", "configural", "metric", "scalar")
CFI_DROP, RMSEA_RISE = 0.01, 0.015
CONFIGURAL_CFI, CONFIGURAL_RMSEA = 0.90, 0.08
MIN_GROUP_UNITS, UNITS_PER_WORD = 30, 5
WORDS_PER_FACTOR = 4
GROUPINGS = ("training", "family")
FIT_OPTIONS = {"maxiter": 20000, "maxfun": 50000, "ftol": 1e-14, "gtol": 1e-9, "maxcor": 30}  # `fit_level`
JITTERED_STARTS, JITTER_SDS = 8, (0.2, 0.5)  # `fit_level`: perturbed starts, their spreads taken in turn

SENTENCES = {
    "scalar": "loadings and intercepts are equal across {groups}: the dimensions' means can be compared across "
    "these groups",
    "metric": "loadings are equal across {groups} but intercepts are not: correlations and regressions of the "
    "dimensions can be compared across these groups, their means cannot",
    "configural": "the same dimensions appear in {groups}, but their loadings differ: only the structure is "
    "shared; neither means nor correlations can be compared across these groups",
    "none": "the taxonomy's structure does not fit {groups} acceptably: no comparison across these groups is "
    "supported",
}


@dataclass(frozen=True)
class Moments:
    """One group's sample size, mean vector and ML covariance (divisor n)."""

    name: str
    n: int
    mean: np.ndarray
    cov: np.ndarray


def group_moments(x: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> list[Moments]:
    out = []
    for name in names:
        rows = x[labels == name]
        out.append(Moments(str(name), len(rows), rows.mean(axis=0), np.cov(rows, rowvar=False, bias=True)))
    return out


@dataclass(frozen=True)
class Fit:
    """One model's fit: chi2, df, CFI, RMSEA and the estimates (loadings per group, latent means)."""

    level: str
    chi2: float
    df: int
    cfi: float
    rmsea: float
    converged: bool
    loadings: np.ndarray  # G x p x k
    latent_means: np.ndarray  # G x k (zero unless scalar)
    params: np.ndarray


class _Model:
    """Parameter packing and the ML discrepancy with its gradient for one invariance level."""

    def __init__(self, groups: list[Moments], factor_of: np.ndarray, markers: np.ndarray, level: str) -> None:
        self.groups, self.level = groups, level
        self.p, self.k, self.g = len(factor_of), int(factor_of.max()) + 1, len(groups)
        self.factor_of = factor_of
        free = np.ones(self.p, dtype=bool)
        free[markers] = False
        self.free = np.flatnonzero(free)  # words whose loading is estimated
        self.n_load = len(self.free) * (self.g if level == "configural" else 1)
        self.tril = np.tril_indices(self.k)
        self.n_phi = len(self.tril[0])
        self.n_mean = (self.p + (self.g - 1) * self.k) if level == "scalar" else 0
        self.size = self.n_load + self.g * (self.n_phi + self.p) + self.n_mean
        self.n_total = sum(m.n for m in groups)
        self.logdet_s = [np.linalg.slogdet(m.cov)[1] for m in groups]

    def df(self) -> int:
        moments = self.g * (self.p * (self.p + 1) // 2 + (self.p if self.level == "scalar" else 0))
        return moments - (self.n_load + self.g * (self.n_phi + self.p) + self.n_mean)

    def unpack(self, theta: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray],
                                                   np.ndarray, np.ndarray]:
        at = 0
        per = len(self.free)
        markers = np.setdiff1d(np.arange(self.p), self.free)
        lambdas = []
        for g in range(self.g):
            lam = np.zeros((self.p, self.k))
            lam[markers, self.factor_of[markers]] = 1.0
            start = at + (g * per if self.level == "configural" else 0)
            lam[self.free, self.factor_of[self.free]] = theta[start:start + per]
            lambdas.append(lam)
        at += self.n_load
        chols, thetas = [], []
        for _ in range(self.g):
            low = np.zeros((self.k, self.k))
            low[self.tril] = theta[at:at + self.n_phi]
            chols.append(low)
            at += self.n_phi
        for _ in range(self.g):
            thetas.append(np.exp(theta[at:at + self.p]))
            at += self.p
        if self.level == "scalar":
            nu = theta[at:at + self.p]
            alpha = np.vstack([np.zeros(self.k), theta[at + self.p:].reshape(self.g - 1, self.k)])
        else:
            nu, alpha = np.zeros(self.p), np.zeros((self.g, self.k))
        return lambdas, chols, thetas, nu, alpha

    def objective(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """sum_g n_g F_g / N and its gradient."""
        lambdas, chols, thetas, nu, alpha = self.unpack(theta)
        total = 0.0
        g_lam = [np.zeros((self.p, self.k)) for _ in range(self.g)]
        g_chol, g_t = [], []
        g_nu, g_alpha = np.zeros(self.p), np.zeros((self.g, self.k))
        for g, m in enumerate(self.groups):
            lam, low, th = lambdas[g], chols[g], thetas[g]
            phi = low @ low.T
            sigma = lam @ phi @ lam.T + np.diag(th)
            try:
                c = np.linalg.cholesky(sigma)
            except np.linalg.LinAlgError:
                return 1e10, np.zeros_like(theta)
            w = np.linalg.inv(sigma)
            logdet = 2 * np.sum(np.log(np.diag(c)))
            value = logdet + np.trace(m.cov @ w) - self.logdet_s[g] - self.p
            grad_sigma = w - w @ m.cov @ w
            if self.level == "scalar":
                r = m.mean - nu - lam @ alpha[g]
                wr = w @ r
                value += float(r @ wr)
                grad_sigma -= np.outer(wr, wr)
                g_nu += m.n * (-2 * wr)
                g_alpha[g] = m.n * (-2 * lam.T @ wr)
                g_lam[g] += m.n * (-2 * np.outer(wr, alpha[g]))
            total += m.n * value
            g_lam[g] += m.n * 2 * grad_sigma @ lam @ phi
            g_chol.append((m.n * 2 * lam.T @ grad_sigma @ lam @ low)[self.tril])
            g_t.append(m.n * np.diag(grad_sigma) * th)
        parts = []
        if self.level == "configural":
            parts += [gl[self.free, self.factor_of[self.free]] for gl in g_lam]
        else:
            parts.append(sum(gl[self.free, self.factor_of[self.free]] for gl in g_lam))
        parts += g_chol + g_t
        if self.level == "scalar":
            parts += [g_nu, g_alpha[1:].ravel()]
        return total / self.n_total, np.concatenate(parts) / self.n_total

    def start(self, previous: Fit | None) -> np.ndarray:
        """Starting values: the previous (less constrained) fit's estimates, else from the groups' moments
        (factor variance half the marker's variance, loadings cov(word, marker) / that variance)."""
        markers = np.setdiff1d(np.arange(self.p), self.free)
        marker_of = {int(self.factor_of[j]): int(j) for j in markers}
        loads, chol_parts, t_parts = [], [], []
        for g, m in enumerate(self.groups):
            phi = np.array([max(0.5 * m.cov[marker_of[f], marker_of[f]], 1e-4) for f in range(self.k)])
            loads.append(np.array([m.cov[j, marker_of[int(self.factor_of[j])]] / phi[self.factor_of[j]]
                                   for j in self.free]) if previous is None
                         else previous.loadings[g][self.free, self.factor_of[self.free]])
            chol_parts.append(np.diag(np.sqrt(phi))[self.tril])
            t_parts.append(np.log(np.maximum(0.5 * np.diag(m.cov), 1e-6)))
        load = np.concatenate(loads) if self.level == "configural" else np.mean(loads, axis=0)
        middle = np.concatenate([*chol_parts, *t_parts])
        if previous is not None:  # its factor covariances and residual variances
            n_prev = len(self.free) * (self.g if previous.level == "configural" else 1)
            middle = previous.params[n_prev:n_prev + middle.size]
        parts = [load, middle]
        if self.level == "scalar":
            index = [marker_of[f] for f in range(self.k)]
            base = self.groups[0].mean
            parts += [base, *[self.groups[g].mean[index] - base[index] for g in range(1, self.g)]]
        return np.concatenate(parts)

    def bounds(self) -> list[tuple[float | None, float | None]]:
        out: list[tuple[float | None, float | None]] = [(None, None)] * (self.n_load + self.g * self.n_phi)
        for m in self.groups:
            out += [(float(np.log(max(1e-6 * v, 1e-10))), None) for v in np.diag(m.cov)]
        return out + [(None, None)] * self.n_mean


def baseline_chi2(groups: list[Moments]) -> tuple[float, int]:
    """The independence model (free variances and means per group): chi2_0 and df_0."""
    p = groups[0].cov.shape[0]
    chi2 = sum(m.n * (np.sum(np.log(np.diag(m.cov))) - np.linalg.slogdet(m.cov)[1]) for m in groups)
    return float(chi2), len(groups) * p * (p - 1) // 2


def fit_level(groups: list[Moments], factor_of: np.ndarray, markers: np.ndarray, level: str,
              previous: Fit | None = None, *, explore: bool = True) -> Fit:
    """Fit one invariance level by ML (the model in the module docstring).

    The discrepancy of small binary groups is flat and has local minima. From one start, with
    L-BFGS-B's default tolerances, the metric fit of the same data stopped at chi2 values up to 6
    apart when only the groups' order changed (10 of 30 planted cases of 2 x 60 units), overstating
    the misfit and the drop in CFI; the local study's metric fit stopped at 115.8 where 111.0 (the
    lowest of 60 random starts) exists. So each fit starts from `previous`'s estimates (another
    level's fit), from the moments' start and from `JITTERED_STARTS` perturbations of it (a fixed
    seed per level), runs to tight tolerances (`FIT_OPTIONS`) and keeps the lowest minimum: on
    those 30 cases 29 reach the lowest minimum that 18 starts per order found. ``explore=False``
    starts from `previous` only (those other starts give what they gave before: `fit_levels`).
    """
    model = _Model(groups, factor_of, markers, level)
    starts = [model.start(previous)] if previous is not None else []
    if explore or previous is None:
        moments = model.start(None)
        lower = np.array([-np.inf if low is None else low for low, _ in model.bounds()])
        rng = np.random.default_rng(LEVELS.index(level))
        starts += [moments] + [
            np.maximum(moments + rng.normal(0.0, JITTER_SDS[i % len(JITTER_SDS)], moments.size), lower)
            for i in range(JITTERED_STARTS)]
    result = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for start in starts:
            found = minimize(model.objective, start, jac=True, method="L-BFGS-B", bounds=model.bounds(),
                             options=FIT_OPTIONS)
            if result is None or found.fun < result.fun:
                result = found
    assert result is not None
    chi2 = float(result.fun * model.n_total)
    df = model.df()
    chi2_0, df_0 = baseline_chi2(groups)
    excess = max(chi2 - df, 0.0)
    cfi = 1.0 - excess / max(chi2_0 - df_0, excess, 1e-12)
    rmsea = float(np.sqrt(len(groups)) * np.sqrt(excess / (df * model.n_total))) if df > 0 else 0.0
    lambdas, _, _, _, alpha = model.unpack(result.x)
    return Fit(level, chi2, df, float(cfi), rmsea, bool(result.success), np.stack(lambdas), alpha, result.x)


def canonical_order(groups: list[Moments]) -> list[Moments]:
    """The groups in an order set by their data (size, then means, then variances), not their names.

    The fit is the same model in any order, but a local optimiser's path is not: ordering by content
    makes the reported fit a function of the data alone (renaming a group cannot change it).
    """
    return sorted(groups, key=lambda m: (-m.n, np.round(m.mean, 12).tolist(), np.round(np.diag(m.cov), 12).tolist()))


def fit_levels(groups: list[Moments], factor_of: np.ndarray, markers: np.ndarray) -> dict[str, Fit]:
    """Configural, metric and scalar fits, each started from the one before.

    The models are nested, so a looser model's minimum can never lie above a tighter one's: the
    tighter fit's estimates are a point of the looser model. When it does (a local minimum), the
    looser model is fitted again from there (that start only), from the tightest level down.
    """
    fits: dict[str, Fit] = {}
    previous = None
    for level in LEVELS[1:]:
        fits[level] = previous = fit_level(groups, factor_of, markers, level, previous)
    for looser, tighter in reversed(list(itertools.pairwise(LEVELS[1:]))):
        if fits[looser].chi2 > fits[tighter].chi2:
            again = fit_level(groups, factor_of, markers, looser, fits[tighter], explore=False)
            if again.chi2 < fits[looser].chi2:
                fits[looser] = again
    return fits


def decide(fits: dict[str, Fit]) -> tuple[str, list[dict[str, Any]]]:
    """The level supported (rules in the module docstring) and one row per model with its deltas."""
    rows: list[dict[str, Any]] = []
    level = "none"
    before: Fit | None = None
    holding = True
    for name in LEVELS[1:]:
        fit = fits.get(name)
        if fit is None:
            holding = False
            continue
        if before is None:
            delta_cfi = delta_rmsea = None
            ok = fit.cfi >= CONFIGURAL_CFI and fit.rmsea <= CONFIGURAL_RMSEA
        else:
            delta_cfi, delta_rmsea = before.cfi - fit.cfi, fit.rmsea - before.rmsea
            ok = delta_cfi <= CFI_DROP and delta_rmsea <= RMSEA_RISE
        holding = holding and ok
        if holding:
            level = name
        rows.append({"model": name, "chi2": fit.chi2, "df": fit.df, "cfi": fit.cfi, "rmsea": fit.rmsea,
                     "delta_cfi": delta_cfi, "delta_rmsea": delta_rmsea, "holds": bool(ok),
                     "converged": fit.converged})
        before = fit
    return level, rows


def select_words(loadings: np.ndarray, min_loading: float = 0.3,
                 per_factor: int = WORDS_PER_FACTOR) -> np.ndarray:
    """Each word's factor (-1: not used): its strongest factor when |loading| >= `min_loading`, the
    `per_factor` strongest words of each factor (the first is the factor's marker)."""
    label = np.argmax(np.abs(loadings), axis=1)
    strength = np.max(np.abs(loadings), axis=1)
    factor_of = np.full(len(loadings), -1)
    for f in range(loadings.shape[1]):
        members = np.flatnonzero((label == f) & (strength >= min_loading))
        members = members[np.argsort(-strength[members], kind="stable")][:per_factor]
        factor_of[members] = f
    return factor_of


def choose_markers(groups: list[Moments], pattern: np.ndarray) -> np.ndarray:
    """Each factor's marker: its word of the largest summed |correlation| with the factor's other words,
    pooled over the groups (a word that barely loads would make a poor scale)."""
    pooled = sum(m.n * m.cov for m in groups) / sum(m.n for m in groups)
    scale = 1 / np.sqrt(np.diag(pooled))
    corr = np.abs(pooled * np.outer(scale, scale))
    markers = []
    for f in range(int(pattern.max()) + 1):
        members = np.flatnonzero(pattern == f)
        markers.append(int(members[np.argmax(corr[np.ix_(members, members)].sum(axis=1))]))
    return np.array(markers)


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def _not_computable(grouping: str, notice: str, **extra: Any) -> dict[str, Any]:
    return {"grouping": grouping, "computable": False, "level": None, "sentence": None, "groups": [],
            "n_units": {}, "skipped": [], "words": [], "fits": [], "notice": notice, **extra}


def invariance(x: np.ndarray, labels: Sequence[str | None], factor_of: np.ndarray, *, words: Sequence[str],
               grouping: str) -> dict[str, Any]:
    """Configural, metric and scalar fits of the words' factor pattern across the groups in `labels`.

    `x` is units x words (0/1 or continuous), `labels[u]` unit u's group (None: no group),
    `factor_of[j]` word j's factor (-1: word not used; `select_words` picks them from the taxonomy's
    loadings). Returns plain JSON-able values.
    """
    x = np.asarray(x, dtype=float)
    labels_arr = np.array(["" if v is None else str(v) for v in labels], dtype=object)
    used = np.flatnonzero(np.asarray(factor_of) >= 0)
    p = len(used)
    floor = max(MIN_GROUP_UNITS, UNITS_PER_WORD * p)
    names, counts = np.unique(labels_arr[labels_arr != ""], return_counts=True)
    kept = [str(n) for n, c in zip(names, counts, strict=True) if c >= floor]
    skipped = [f"{n} ({c} units)" for n, c in zip(names, counts, strict=True) if c < floor]
    notes = [f"groups below {floor} units (max({MIN_GROUP_UNITS}, {UNITS_PER_WORD} per word x {p} words)) "
             f"skipped: {', '.join(skipped)}"] if skipped else []

    def stop(reason: str) -> dict[str, Any]:
        return _not_computable(grouping, "; ".join([*notes, reason]), skipped=skipped)

    if len(kept) < 2:
        return stop(f"measurement invariance across {grouping} needs two groups of at least {floor} units; "
                    f"{len(kept)} qualify")
    rows = np.isin(labels_arr, kept)
    varies = [j for j in used if all(np.ptp(x[rows & (labels_arr == g), j]) > 0 for g in kept)]
    if len(varies) < p:
        notes.append(f"{p - len(varies)} word(s) constant within a group left out")
    cols = [j for j in varies if sum(factor_of[i] == factor_of[j] for i in varies) >= 2]
    factors = sorted({int(factor_of[j]) for j in cols})
    if not factors or (len(factors) == 1 and len(cols) < 3):
        return stop("too few words per factor to fit a CFA (a factor needs two words, a single factor three)")
    remap = {f: i for i, f in enumerate(factors)}
    pattern = np.array([remap[int(factor_of[j])] for j in cols])
    groups = group_moments(x[:, cols], labels_arr, kept)
    markers = choose_markers(groups, pattern)
    if any(np.linalg.eigvalsh(m.cov).min() <= 1e-10 for m in groups):
        return stop("a group's covariance matrix is singular")
    fits = fit_levels(canonical_order(groups), pattern, markers)
    level, fit_rows = decide(fits)
    if not all(f.converged for f in fits.values()):
        notes.append("an optimisation stopped before converging: " + ", ".join(
            name for name, f in fits.items() if not f.converged))
    shown = f"{grouping} groups ({', '.join(kept)})"
    return {
        "grouping": grouping,
        "computable": True,
        "level": level,
        "sentence": f"Measurement invariance across {grouping}: {level}. " + _capitalised(
            SENTENCES[level].format(groups=shown)) + ".",
        "groups": kept,
        "n_units": {m.name: m.n for m in groups},
        "skipped": skipped,
        "words": [str(words[j]) for j in cols],
        "fits": [{k: round(float(v), 6) if isinstance(v, float) else v for k, v in row.items()} for row in fit_rows],
        "notice": "; ".join(notes) or None,
    }


def invariance_tables(x: Any, labels_by_grouping: dict[str, Sequence[str | None]], loadings: np.ndarray,
                      words: Sequence[str], *, min_loading: float = 0.3,
                      label: str = "") -> tuple[list[dict[str, Any]], Any]:
    """`invariance` per grouping on the taxonomy's strongest words (`select_words`): the summaries for
    taxonomy.json and the ``quality/taxonomy_invariance`` table (one row per grouping x model, or one
    row with the notice when a grouping is not computable). `x` is units x words, dense or sparse."""
    import pandas as pd
    import scipy.sparse as sp

    factor_of = select_words(loadings, min_loading)
    used = np.flatnonzero(factor_of >= 0)
    dense = x[:, used].toarray() if sp.issparse(x) else np.asarray(x)[:, used]
    summaries, rows = [], []
    for grouping, labels in labels_by_grouping.items():
        result = invariance(dense, labels, factor_of[used], words=[words[j] for j in used], grouping=grouping)
        summaries.append(result)
        base = {"taxonomy": label, "grouping": grouping, "level": result["level"], "sentence": result["sentence"],
                "groups": ", ".join(result["groups"]), "skipped": ", ".join(result["skipped"]),
                "n_words": len(result["words"]), "notice": result["notice"]}
        rows += [{**base, **fit} for fit in result["fits"]] or [{**base, "model": None}]
    columns = ["taxonomy", "grouping", "model", "chi2", "df", "cfi", "rmsea", "delta_cfi", "delta_rmsea", "holds",
               "converged", "level", "sentence", "groups", "skipped", "n_words", "notice"]
    return summaries, pd.DataFrame(rows, columns=columns)
