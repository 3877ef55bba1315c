"""Does the constructed taxonomy replicate? Factorability, split-half EFA, CFA on the other half, oblique view.

A factor structure fitted to LLM answers can be a phantom (Peereboom, Schwabe & Kleinberg 2025): EFA
returns K factors from any data, noise included. These checks ask whether the structure is in the
data. All functions are pure: the incidence, the respondent of each unit and the settings are
injected; `valuelex.construct.stage` calls `validity` and stores the result.

Factorability (before EFA), on the correlation matrix R (p words) of n units:

- Kaiser-Meyer-Olkin: with partial correlations q_ij = -S_ij / sqrt(S_ii S_jj), S = R^-1,
  KMO_j = sum_{i != j} r_ij^2 / (sum_{i != j} r_ij^2 + sum_{i != j} q_ij^2), and overall the same
  sums over every i != j. Words with KMO_j < 0.5 are reported ("unacceptable", Kaiser 1974).
- Bartlett's sphericity: chi2 = -(n - 1 - (2p + 5) / 6) ln|R|, df = p(p - 1) / 2 (H0: R = I).

Split-half replication, repeated over `n_splits` seeded splits of the *respondents* (model x
config; an answer goes with its respondent, so the halves share no respondent):

- EFA with the taxonomy's K, rotation and method on each half (words that do not vary within a
  half are left out of that split);
- Tucker's congruence phi(x, y) = sum x_i y_i / sqrt(sum x_i^2 sum y_i^2) between every factor of
  half A and of half B; factors matched by the Hungarian algorithm on |phi| (one-to-one); per split
  the smallest and the mean matched |phi| (Lorenzo-Seva & ten Berge 2006: >= 0.85 fair similarity,
  >= 0.95 the factors can be taken as equal);
- word -> dimension agreement: the share of words whose strongest factor in A is matched to their
  strongest factor in B;
- confirmatory fit: each word of loading >= `min_loading` in A on its A factor (the `cfa_words`
  strongest per factor, factors of >= 2 words, correlated factors) fitted by semopy (ML, "MLW") to
  half B's correlation matrix; CFI, TLI, RMSEA from semopy, SRMR = sqrt(mean over i <= j of
  (r_ij - sigma_ij)^2). Cut-offs (Hu & Bentler 1999): CFI >= 0.95, TLI >= 0.95, RMSEA <= 0.06,
  SRMR <= 0.08.

The oblique view: the full data refitted with the other kind of rotation (oblimin beside an
orthogonal rotation, varimax beside an oblique one), its factor correlation matrix, and each
factor's congruence with the taxonomy's own factors.

Verdict (medians over splits): *replicated* when the smallest matched congruence is >= 0.85, the
word agreement >= 0.80 and the CFA meets every cut-off; *not replicated* when the mean matched
congruence is < 0.85; *weak* otherwise. Too small a design gets no verdict and a notice.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy import stats
from scipy.optimize import linear_sum_assignment

from valuelex.construct.cooccurrence import correlation_matrix
from valuelex.construct.efa import ledermann_bound, run_efa, smooth_correlation
from valuelex.errors import ConstructionError

log = logging.getLogger(__name__)

FAIR, EQUAL = 0.85, 0.95
MIN_AGREEMENT = 0.80
KMO_FLOOR = 0.5
CUTOFFS = {"cfi": (">=", 0.95), "tli": (">=", 0.95), "rmsea": ("<=", 0.06), "srmr": ("<=", 0.08)}
MIN_RESPONDENTS_PER_HALF = 10


@dataclass(frozen=True)
class Factorability:
    """KMO overall and per word, Bartlett's test, and the words below KMO 0.5."""

    kmo: float
    kmo_words: np.ndarray
    bartlett_chi2: float
    bartlett_df: int
    bartlett_p: float
    low_kmo_words: list[str]


def factorability(corr: np.ndarray, n: int, words: Sequence[str]) -> Factorability:
    """KMO and Bartlett's sphericity of a correlation matrix of `n` units (formulas in the module docstring)."""
    p = corr.shape[0]
    inverse = np.linalg.pinv(corr)
    scale = 1 / np.sqrt(np.abs(np.diag(inverse)))
    partial = -inverse * np.outer(scale, scale)
    off = ~np.eye(p, dtype=bool)
    r2, q2 = np.where(off, corr**2, 0.0), np.where(off, partial**2, 0.0)
    kmo_words = r2.sum(axis=0) / (r2.sum(axis=0) + q2.sum(axis=0))
    kmo = float(r2.sum() / (r2.sum() + q2.sum()))
    sign, logdet = np.linalg.slogdet(corr)
    chi2 = float(-(n - 1 - (2 * p + 5) / 6) * (logdet if sign > 0 else -np.inf))
    df = p * (p - 1) // 2
    return Factorability(
        kmo,
        kmo_words,
        chi2,
        df,
        float(stats.chi2.sf(chi2, df)),
        [w for w, v in zip(words, kmo_words, strict=True) if v < KMO_FLOOR],
    )


def congruence(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Tucker's congruence between every column of `a` and of `b` (same rows): a K_a x K_b matrix."""
    norms = np.outer(np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(a.T @ b / norms)


def match_factors(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian matching on |congruence|: (for each factor of `a` its factor of `b`, the matched |phi|)."""
    phi = np.abs(congruence(a, b))
    rows, cols = linear_sum_assignment(-phi)
    order = np.argsort(rows)
    return cols[order], phi[rows[order], cols[order]]


@dataclass(frozen=True)
class CFAFit:
    cfi: float
    tli: float
    rmsea: float
    srmr: float
    n_words: int
    n_factors: int

    def within_cutoffs(self) -> bool:
        return all(getattr(self, k) >= v if op == ">=" else getattr(self, k) <= v for k, (op, v) in CUTOFFS.items())


def cfa_fit(corr: np.ndarray, n: int, words: Sequence[str], assignment: dict[int, list[int]]) -> CFAFit:
    """Fit the given word -> factor structure to a correlation matrix with semopy; raises ConstructionError."""
    import pandas as pd
    import semopy

    factors = {f: members for f, members in assignment.items() if len(members) >= 2}
    if len(factors) < 1:
        raise ConstructionError("no factor has two words to fit")
    used = sorted(i for members in factors.values() for i in members)
    names = {i: f"w{i}" for i in used}
    lines = [f"F{f} =~ " + " + ".join(names[i] for i in members) for f, members in factors.items()]
    keys = list(factors)
    lines += [f"F{a} ~~ F{b}" for x, a in enumerate(keys) for b in keys[x + 1 :]]
    sub = corr[np.ix_(used, used)]
    frame = pd.DataFrame(sub, index=[names[i] for i in used], columns=[names[i] for i in used])
    model = semopy.Model("\n".join(lines))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model.fit(cov=frame, n_samples=n)
            fit = semopy.calc_stats(model).iloc[0]
            sigma = model.calc_sigma()[0]
        except Exception as exc:  # semopy raises bare Exceptions and numpy errors alike
            raise ConstructionError(f"CFA did not fit: {exc}") from exc
    order = [list(frame.columns).index(v) for v in model.vars["observed"]]
    observed = sub[np.ix_(order, order)]
    lower = np.tril_indices(len(used))
    srmr = float(np.sqrt(np.mean((observed[lower] - sigma[lower]) ** 2)))
    values = {k: float(fit[k.upper()]) for k in ("cfi", "tli", "rmsea")}
    if not all(np.isfinite(v) for v in (*values.values(), srmr)):
        raise ConstructionError("CFA fit indices are not finite")
    return CFAFit(**values, srmr=srmr, n_words=len(used), n_factors=len(factors))


@dataclass(frozen=True)
class Split:
    """One split: matched congruences (per factor of half A), word agreement, and the CFA of A's structure on B."""

    seed: int
    n_units: tuple[int, int]
    n_words: int
    congruences: np.ndarray
    agreement: float
    cfa: CFAFit | None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Settings:
    """What the halves are analysed with: the taxonomy's own choices."""

    k: int
    correlation: str = "phi"
    correction: float = 0.5
    rotation: str | None = "varimax"
    method: str = "minres"
    min_loading: float = 0.3
    cfa_words: int = 10


def _half_corr(binary: sp.csr_matrix, settings: Settings) -> np.ndarray:
    corr = correlation_matrix(binary, settings.correlation, settings.correction)  # type: ignore[arg-type]
    return smooth_correlation(corr, True)[0]


def split_once(
    binary: sp.csr_matrix, units_a: np.ndarray, units_b: np.ndarray, settings: Settings, seed: int = 0
) -> Split:
    """EFA on both halves, matched factors, word agreement and the CFA of A's structure on B."""
    a, b = binary[units_a], binary[units_b]
    used_a, used_b = np.asarray(a.sum(axis=0)).ravel(), np.asarray(b.sum(axis=0)).ravel()
    keep = np.flatnonzero((used_a > 0) & (used_a < a.shape[0]) & (used_b > 0) & (used_b < b.shape[0]))
    if settings.k > ledermann_bound(len(keep)):
        raise ConstructionError(f"only {len(keep)} words vary in both halves: too few for K={settings.k}")
    corr_a, corr_b = _half_corr(a[:, keep], settings), _half_corr(b[:, keep], settings)
    efa_a = run_efa(corr_a, settings.k, settings.rotation, settings.method)
    efa_b = run_efa(corr_b, settings.k, settings.rotation, settings.method)
    matched, phi = match_factors(efa_a.loadings, efa_b.loadings)
    label_a = np.argmax(np.abs(efa_a.loadings), axis=1)
    label_b = np.argmax(np.abs(efa_b.loadings), axis=1)
    agreement = float(np.mean(matched[label_a] == label_b))
    strong = np.max(np.abs(efa_a.loadings), axis=1) >= settings.min_loading
    assignment: dict[int, list[int]] = {}
    for f in range(settings.k):
        members = np.flatnonzero(strong & (label_a == f))
        members = members[np.argsort(-np.abs(efa_a.loadings[members, f]), kind="stable")][: settings.cfa_words]
        assignment[f] = sorted(int(i) for i in members)
    notes: list[str] = []
    try:
        cfa: CFAFit | None = cfa_fit(corr_b, len(units_b), [str(i) for i in keep], assignment)
    except ConstructionError as exc:
        cfa = None
        notes.append(str(exc))
    return Split(seed, (len(units_a), len(units_b)), len(keep), phi, agreement, cfa, notes)


def seeded_halves(groups: np.ndarray, n_splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """`n_splits` random halves of the respondents (`groups[u]` = respondent of unit u), as unit indices."""
    respondents = np.unique(groups)
    out = []
    for s in range(n_splits):
        rng = np.random.default_rng([seed, s, 17])
        order = rng.permutation(respondents)
        half = set(order[: len(order) // 2].tolist())
        in_a = np.array([g in half for g in groups.tolist()])
        out.append((np.flatnonzero(in_a), np.flatnonzero(~in_a)))
    return out


def verdict(congruence_min: float, congruence_mean: float, agreement: float, cfa_ok: bool | None) -> tuple[str, str]:
    """replicated / weak / not replicated, with its reason (rules in the module docstring)."""
    shown = (
        f"smallest matched congruence {congruence_min:.2f}, mean {congruence_mean:.2f}, word agreement {agreement:.2f}"
    )
    if congruence_mean < FAIR:
        return "not replicated", f"the halves' factors differ ({shown}; fair similarity needs >= {FAIR})"
    if congruence_min >= FAIR and agreement >= MIN_AGREEMENT and cfa_ok:
        return "replicated", f"{shown}; the CFA of one half's structure on the other meets every cut-off"
    missing = []
    if congruence_min < FAIR:
        missing.append(f"a factor's congruence is below {FAIR}")
    if agreement < MIN_AGREEMENT:
        missing.append(f"word agreement is below {MIN_AGREEMENT}")
    if cfa_ok is None:
        missing.append("the CFA could not be fitted")
    elif not cfa_ok:
        missing.append("the CFA misses a cut-off")
    return "weak", f"{shown}; " + ", ".join(missing)


def _median(values: Sequence[float]) -> float | None:
    return float(np.median(values)) if len(values) else None


def replicate(
    binary: sp.csr_matrix,
    groups: np.ndarray,
    settings: Settings,
    *,
    n_splits: int = 5,
    seed: int = 0,
    halves: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Split-half replication summary (plain JSON-able values) and its per-split rows.

    `halves` injects the splits (unit indices of A and B); by default `n_splits` seeded halves of
    the respondents. A design with fewer than 10 respondents per half gets a notice, no numbers.
    """
    n_respondents = len(np.unique(groups))
    if halves is None and n_respondents < 2 * MIN_RESPONDENTS_PER_HALF:
        return {
            "computable": False,
            "n_respondents": n_respondents,
            "rows": [],
            "notice": f"split-half replication needs at least {2 * MIN_RESPONDENTS_PER_HALF} respondents "
            f"(model x config, {MIN_RESPONDENTS_PER_HALF} per half); this run has {n_respondents}: "
            "add models or decoding configs",
        }
    splits, notes = [], []
    for s, (a, b) in enumerate(halves if halves is not None else seeded_halves(groups, n_splits, seed)):
        try:
            splits.append(split_once(binary, np.asarray(a), np.asarray(b), settings, seed=s))
        except ConstructionError as exc:
            notes.append(f"split {s}: {exc}")
    if not splits:
        return {
            "computable": False,
            "n_respondents": n_respondents,
            "rows": [],
            "notice": "no split could be analysed: " + "; ".join(notes),
        }
    c_min = _median([float(sp_.congruences.min()) for sp_ in splits])
    c_mean = _median([float(sp_.congruences.mean()) for sp_ in splits])
    agreement = _median([sp_.agreement for sp_ in splits])
    fits = [sp_.cfa for sp_ in splits if sp_.cfa is not None]
    cfa = {k: _median([getattr(f, k) for f in fits]) for k in CUTOFFS} if fits else None
    cfa_ok = None if cfa is None else CFAFit(**cfa, n_words=0, n_factors=0).within_cutoffs()  # type: ignore[arg-type]
    label, reason = verdict(c_min, c_mean, agreement, cfa_ok)  # type: ignore[arg-type]
    rows = [
        {
            "split": sp_.seed,
            "factor": f + 1,
            "congruence": float(c),
            "agreement": sp_.agreement,
            "n_units_a": sp_.n_units[0],
            "n_units_b": sp_.n_units[1],
            "n_words": sp_.n_words,
            **{k: (getattr(sp_.cfa, k) if sp_.cfa else None) for k in CUTOFFS},
        }
        for sp_ in splits
        for f, c in enumerate(sp_.congruences)
    ]
    return {
        "computable": True,
        "n_respondents": n_respondents,
        "n_splits": len(splits),
        "congruence_min": c_min,
        "congruence_mean": c_mean,
        "agreement": agreement,
        "cfa": cfa,
        "cfa_within_cutoffs": cfa_ok,
        "verdict": label,
        "reason": reason,
        "notice": "; ".join(notes + [n for sp_ in splits for n in sp_.notes]) or None,
        "rows": rows,
    }


def oblique_view(
    corr: np.ndarray, loadings: np.ndarray, k: int, rotation: str | None, method: str = "minres"
) -> dict[str, Any]:
    """The other kind of rotation beside the taxonomy's: its factor correlations and congruence per factor."""
    other = "varimax" if rotation in ("oblimin", "promax") else "oblimin"
    if k < 2:
        return {
            "rotation": other,
            "factor_correlations": None,
            "congruence": None,
            "notice": "one factor: no rotation, no factor correlations",
        }
    efa = run_efa(corr, k, other, method)
    matched, phi = match_factors(loadings, efa.loadings)
    phi_matrix = efa.factor_correlations
    if phi_matrix is not None:  # in the taxonomy's factor order
        phi_matrix = phi_matrix[np.ix_(matched, matched)]
    return {
        "rotation": other,
        "congruence": [float(round(v, 6)) for v in phi],
        "factor_correlations": None
        if phi_matrix is None
        else [[float(round(v, 6)) for v in row] for row in phi_matrix],
        "notice": None,
    }


def _finite(x: float) -> float | None:
    return float(round(x, 6)) if np.isfinite(x) else None


def validity(
    binary: sp.csr_matrix,
    groups: np.ndarray,
    words: Sequence[str],
    corr: np.ndarray,
    loadings: np.ndarray,
    settings: Settings,
    *,
    n_splits: int = 5,
    seed: int = 0,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """Every check of the taxonomy: (summary for taxonomy.json, per-word KMO rows, per-split rows).

    `binary` (units x words) and `corr` are what the taxonomy was built from, `loadings` its EFA
    loadings, `groups[u]` the respondent of unit u (the unit itself when units are respondents).
    """
    notices: list[str] = []
    fact = factorability(corr, binary.shape[0], words)
    word_rows = [
        {"word": w, "kmo": float(v), "low": bool(v < KMO_FLOOR)} for w, v in zip(words, fact.kmo_words, strict=True)
    ]
    if fact.low_kmo_words:
        notices.append(
            f"{len(fact.low_kmo_words)} word(s) have KMO < {KMO_FLOOR}: "
            + ", ".join(fact.low_kmo_words[:10])
            + (" ..." if len(fact.low_kmo_words) > 10 else "")
        )
    if fact.kmo < KMO_FLOOR:
        notices.append(f"overall KMO {fact.kmo:.2f} < {KMO_FLOOR}: the correlations are not factorable")
    rep = replicate(binary, groups, settings, n_splits=n_splits, seed=seed)
    if rep["notice"]:
        notices.append(rep["notice"])
    try:
        oblique = oblique_view(corr, loadings, settings.k, settings.rotation, settings.method)
    except ConstructionError as exc:
        oblique = {"rotation": None, "factor_correlations": None, "congruence": None, "notice": str(exc)}
    if oblique["notice"]:
        notices.append(oblique["notice"])
    summary = {
        "verdict": rep.get("verdict"),
        "reason": rep.get("reason"),
        "notices": notices,
        "kmo": _finite(fact.kmo),
        "kmo_low_words": fact.low_kmo_words,
        "bartlett_chi2": _finite(fact.bartlett_chi2),
        "bartlett_df": fact.bartlett_df,
        "bartlett_p": _finite(fact.bartlett_p) if np.isfinite(fact.bartlett_chi2) else None,
        "n_respondents": rep["n_respondents"],
        "n_splits": rep.get("n_splits", 0),
        **{
            k: (None if rep.get(k) is None else _finite(rep[k]))
            for k in ("congruence_min", "congruence_mean", "agreement")
        },
        "cfa": None if rep.get("cfa") is None else {k: _finite(v) for k, v in rep["cfa"].items()},
        "cfa_within_cutoffs": rep.get("cfa_within_cutoffs"),
        "oblique_rotation": oblique["rotation"],
        "oblique_factor_correlations": oblique["factor_correlations"],
        "oblique_congruence": oblique["congruence"],
    }
    return summary, word_rows, rep["rows"]


def validity_tables(
    binary: sp.csr_matrix,
    groups: np.ndarray,
    words: Sequence[str],
    corr: np.ndarray,
    loadings: np.ndarray,
    settings: Settings,
    *,
    seed: int = 0,
    label: str = "",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`validity` with its rows as the RUN/quality/ tables (pandas), each row tagged with the taxonomy label."""
    import pandas as pd

    summary, word_rows, split_rows = validity(binary, groups, words, corr, loadings, settings, seed=seed)
    flat = {
        k: v
        for k, v in summary.items()
        if k not in ("cfa", "oblique_factor_correlations", "oblique_congruence", "kmo_low_words", "notices")
    }
    flat.update({f"cfa_{k}": (summary["cfa"] or {}).get(k) for k in CUTOFFS})
    flat["notices"] = "; ".join(summary["notices"]) or None
    columns = ["taxonomy", "split", "factor", "congruence", "agreement", "n_units_a", "n_units_b", "n_words", *CUTOFFS]
    tables = {
        "taxonomy_validity": pd.DataFrame([{"taxonomy": label, **flat}]),
        "taxonomy_kmo": pd.DataFrame(
            [{"taxonomy": label, **r} for r in word_rows], columns=["taxonomy", "word", "kmo", "low"]
        ),
        "taxonomy_replication": pd.DataFrame([{"taxonomy": label, **r} for r in split_rows], columns=columns),
    }
    return summary, tables
