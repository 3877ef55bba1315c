"""The semantic step of construction: how the meaning of words adjusts the factor-analysis grouping.

Factor analysis groups words that the same respondents use; the embedding knows what the words
mean. The two disagree in two ways: a word that co-occurs by accident (a statistical error that
meaning can fix) and a word that respondents really hold together with words of another meaning
(the data's finding, which meaning would erase). The step is chosen by `semantic_step`:

- ``none``: each word stays in the factor of its highest |loading|.
- ``margin``: `clustering.refine_dimensions`, spherical KMeans from the EFA start with a cosine
  margin (the rule before issue 15). It moves every word that is closer in meaning to another
  cluster, confident or not, and so erases real co-occurrence across meaning groups.
- ``ambiguous``: only words whose factor assignment is ambiguous may move. With l1 >= l2 the two
  largest |loadings| of a word, it is ambiguous when l1 < `ambiguous_loading` or
  l1 - l2 < `ambiguous_gap`; an ambiguous word joins the cluster whose centroid of *confident* words
  (unit-normalised mean embedding) is closest in cosine. Confident words never move, so one pass
  suffices and the step stays out of the way of a clear factor structure.
- ``hierarchical``: Goldberg's (2006) "bass-ackwards" idea, for data with more factors than
  dimensions. The K factors are taken as subdimensions (after the ``ambiguous`` step) and grouped
  into D dimensions by average-linkage clustering of the factors on the distance
  1 - (r_ab + c_ab) / 2, where r_ab is the correlation over units of the factor scores (the fraction
  of the factor's words a unit used) and c_ab the cosine of the factors' word centroids, so that
  co-occurrence and meaning vote equally. D is `dimensions`, or ceil(K / subdimensions) when
  K >= 2 * subdimensions; with K <= D (or D < 2) nothing is grouped and the step is ``ambiguous``.

Goldberg, L. R. (2006). Doing it all bass-ackwards: The development of hierarchical factor
structures from personality data. Journal of Research in Personality, 40(4), 347-358.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from valuelex.construct.clustering import normalise, refine_dimensions

Step = Literal["none", "margin", "ambiguous", "hierarchical"]
WEIGHT = 0.5  # of co-occurrence against meaning in the factor distance
STEPS: tuple[str, ...] = ("none", "margin", "ambiguous", "hierarchical")


@dataclass(frozen=True)
class SemanticResult:
    """Dimension per word, the factors each dimension holds, and (hierarchical) the word's factor."""

    labels: np.ndarray  # dimension per word
    dimension_factors: list[list[int]]  # per dimension: the EFA factor columns it holds
    factor_labels: np.ndarray  # factor per word after the ambiguous step (== labels unless hierarchical)
    passes: int


def ambiguous_mask(loadings: np.ndarray, min_primary: float, min_gap: float) -> np.ndarray:
    """True where a word's factor assignment is ambiguous (module docstring)."""
    a = np.sort(np.abs(np.asarray(loadings, dtype=np.float64)), axis=1)[:, ::-1]
    primary = a[:, 0]
    second = a[:, 1] if a.shape[1] > 1 else np.zeros(len(a))
    return (primary < min_primary) | (primary - second < min_gap)


def refine_ambiguous(embeddings: np.ndarray, loadings: np.ndarray, efa_labels: np.ndarray, k: int,
                     min_primary: float, min_gap: float) -> np.ndarray:
    """Move each ambiguous word to the cluster whose confident-word centroid is closest in meaning.

    A cluster without confident words keeps its centroid of all its words; a cluster never loses
    its last word (the most confident of its words stays).
    """
    x = normalise(np.asarray(embeddings, dtype=np.float64))
    labels = np.asarray(efa_labels, dtype=np.int64).copy()
    loose = ambiguous_mask(loadings, min_primary, min_gap)
    if not loose.any():
        return labels
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, labels[~loose], x[~loose])
    empty = ~sums.any(axis=1)
    if empty.any():
        fallback = np.zeros_like(sums)
        np.add.at(fallback, labels, x)
        sums[empty] = fallback[empty]
    sims = x @ normalise(sums).T
    sims[:, ~sums.any(axis=1)] = -np.inf
    target = np.where(loose, np.argmax(sims, axis=1), labels)
    primary = np.max(np.abs(loadings), axis=1)
    for cluster in range(k):
        members = np.flatnonzero(labels == cluster)
        if len(members) and not np.any(target[members] == cluster):
            target[members[np.argmax(primary[members])]] = cluster
    return target


def factor_scores(binary: sp.spmatrix | np.ndarray, factor_labels: np.ndarray, k: int) -> np.ndarray:
    """Units x k: the fraction of each factor's words a unit used (empty factors score 0)."""
    b = sp.csr_matrix(binary, dtype=np.float64)
    member = sp.csr_matrix((np.ones(len(factor_labels)), (np.arange(len(factor_labels)), factor_labels)),
                           shape=(len(factor_labels), k))
    sizes = np.maximum(np.asarray(member.sum(axis=0)).ravel(), 1)
    return np.asarray((b @ member).todense()) / sizes


def factor_distance(scores: np.ndarray, embeddings: np.ndarray, factor_labels: np.ndarray, k: int) -> np.ndarray:
    """k x k distance 1 - (r + cosine) / 2 between factors (module docstring)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.nan_to_num(np.atleast_2d(np.corrcoef(scores, rowvar=False)), nan=0.0)
    sums = np.zeros((k, embeddings.shape[1]))
    np.add.at(sums, factor_labels, normalise(np.asarray(embeddings, dtype=np.float64)))
    c = normalise(sums) @ normalise(sums).T
    d = 1.0 - (WEIGHT * r + (1 - WEIGHT) * c)
    np.fill_diagonal(d, 0.0)
    return np.clip((d + d.T) / 2.0, 0.0, None)


def group_factors(distance: np.ndarray, n_groups: int) -> np.ndarray:
    """Group of each factor (0..n_groups-1, numbered by first factor) by average linkage."""
    k = len(distance)
    if n_groups >= k:
        return np.arange(k)
    raw = fcluster(linkage(squareform(distance, checks=False), method="average"), n_groups, criterion="maxclust")
    order = {g: i for i, g in enumerate(dict.fromkeys(raw.tolist()))}
    return np.array([order[g] for g in raw.tolist()], dtype=np.int64)


def hierarchical_dimensions(k: int, subdimensions: int, dimensions: int | None) -> int | None:
    """D for the hierarchical step, or None when the factors are the dimensions (module docstring)."""
    if dimensions is None:
        if k < 2 * subdimensions:
            return None
        dimensions = -(-k // subdimensions)  # ceil(K / subdimensions)
    return dimensions if 2 <= dimensions < k else None


def semantic_step(step: Step, embeddings: np.ndarray, loadings: np.ndarray, binary: sp.spmatrix | np.ndarray,
                  *, margin: float = 0.1, min_primary: float = 0.3, min_gap: float = 0.05,
                  dimensions: int | None = None, subdimensions: int = 2) -> SemanticResult:
    """Run the chosen semantic step on the kept words (module docstring)."""
    loadings = np.asarray(loadings, dtype=np.float64)
    k = loadings.shape[1]
    efa_labels = np.argmax(np.abs(loadings), axis=1).astype(np.int64)
    identity = [[f] for f in range(k)]
    if step == "none":
        return SemanticResult(efa_labels, identity, efa_labels, 1)
    if step == "margin":
        labels, passes = refine_dimensions(embeddings, efa_labels, k, margin)
        return SemanticResult(labels, identity, labels, passes)
    if step not in ("ambiguous", "hierarchical"):
        raise ValueError(f"semantic_step: one of {', '.join(STEPS)}, not {step!r}")
    factor_labels = refine_ambiguous(embeddings, loadings, efa_labels, k, min_primary, min_gap)
    d = hierarchical_dimensions(k, subdimensions, dimensions) if step == "hierarchical" else None
    if d is None:
        return SemanticResult(factor_labels, identity, factor_labels, 1)
    groups = group_factors(factor_distance(factor_scores(binary, factor_labels, k), embeddings, factor_labels, k), d)
    dimension_factors = [np.flatnonzero(groups == g).tolist() for g in range(int(groups.max()) + 1)]
    return SemanticResult(groups[factor_labels], dimension_factors, factor_labels, 1)
