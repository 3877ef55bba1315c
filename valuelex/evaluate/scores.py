"""Scores: normalise judge scores to [0, 1], aggregate by Eq. 4, and bootstrap confidence intervals.

Eq. 4 of the paper: for model p and dimension v_i,
``w_i = 1 / (|S| |Θ| M) * Σ_stems Σ_configs Σ_samples φ(y)``, with φ the judge score divided by 6.
Here w is the mean of φ over the *valid* judged completions of the model; with every completion
valid this is exactly Eq. 4. Invalid judgments are left out of w and counted in ``n_invalid``.

Per completion, a leaf dimension's φ is its judge score / 6; a dimension with subdimensions gets
the mean of its subdimensions' φ (so its w is the mean of their w when all rows are valid).

Confidence intervals: a two-level (cluster) percentile bootstrap that follows the design -- stems
are resampled with replacement, then within each drawn stem its completions (configs x samples)
are resampled with replacement -- and w is recomputed on each resample. The same resamples serve
every dimension of a model, so the intervals of one model are mutually consistent.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from valuelex.evaluate.judgments import score_column
from valuelex.evaluate.systems import ValueSystem

MAX_SCORE = 6
SCORE_COLUMNS = ("model", "system", "judge", "judge_key", "dimension", "key", "level", "parent", "w", "ci_low",
                 "ci_high", "n", "n_invalid")
_CHUNK_ELEMENTS = 4_000_000  # bootstrap work is chunked to bound memory (~32 MB of float64)


def normalise(scores: np.ndarray | pd.Series | float) -> np.ndarray | pd.Series | float:
    """Judge scores 0..6 -> [0, 1]."""
    return scores / MAX_SCORE


def eq4(values: np.ndarray | Sequence[float]) -> float:
    """Eq. 4: the mean of φ over every (stem, config, sample) of one model; NaN when there is none."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()) if values.size else float("nan")


def dimension_values(judgments: pd.DataFrame, system: ValueSystem) -> pd.DataFrame:
    """Normalised φ per valid completion: one column per dimension key (leaves and parents)."""
    valid = judgments[judgments["valid"].astype(bool)]
    out = valid[["model", "item_id", "config", "sample"]].copy()
    for leaf in system.leaves():
        out[leaf.key] = normalise(valid[score_column(leaf.key)].astype(float))
    for parent in system.parents():
        out[parent.key] = out[[s.key for s in parent.subdimensions]].mean(axis=1)
    return out.reset_index(drop=True)


def cluster_bootstrap(groups: Sequence[np.ndarray], resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap means of clustered data; returns shape (resamples, D).

    `groups` holds one (n_j, D) array per cluster (stem). Each resample draws len(groups) clusters
    with replacement and, inside each drawn cluster, n_j rows with replacement; its statistic is
    the mean over all drawn rows (Eq. 4 on the resample).
    """
    groups = [np.asarray(g, dtype=float).reshape(len(g), -1) for g in groups if len(g)]
    if not groups:
        raise ValueError("no data to bootstrap")
    n_groups, width = len(groups), groups[0].shape[1]
    sizes = np.array([len(g) for g in groups])
    longest = int(sizes.max())
    padded = np.zeros((n_groups, longest, width))
    for j, g in enumerate(groups):
        padded[j, : len(g)] = g
    per_resample = n_groups * longest * width
    chunk = max(1, _CHUNK_ELEMENTS // per_resample)
    out = np.empty((resamples, width))
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        drawn = rng.integers(0, n_groups, size=(b, n_groups))
        drawn_sizes = sizes[drawn]
        rows = (rng.random((b, n_groups, longest)) * drawn_sizes[..., None]).astype(np.int64)
        mask = np.arange(longest)[None, None, :] < drawn_sizes[..., None]
        values = padded[drawn[..., None], rows]  # (b, n_groups, longest, width)
        sums = (values * mask[..., None]).sum(axis=(1, 2))
        out[start:start + b] = sums / drawn_sizes.sum(axis=1)[:, None]
    return out


def percentile_ci(boot: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = 1 - level
    return np.quantile(boot, alpha / 2, axis=0), np.quantile(boot, 1 - alpha / 2, axis=0)


def seeded_rng(seed: int, *labels: str) -> np.random.Generator:
    """A generator per (seed, labels): each system, model or comparison draws its own reproducible stream."""
    return np.random.default_rng([seed, *(zlib.crc32(label.encode()) for label in labels)])


def score_table(
    judgments: pd.DataFrame, system: ValueSystem, *, resamples: int = 1000, ci_level: float = 0.95, seed: int = 0,
    judge: str | None = None, judge_key: str | None = None,
) -> pd.DataFrame:
    """Eq. 4 scores with bootstrap CIs: one row per model x dimension (parents and leaves).

    Columns: model, system, judge, judge_key (which stored judgments the scores count, see
    `valuelex.store.run.RunStore.judgments`), dimension (name), key, level, parent, w, ci_low, ci_high, n (valid
    completions), n_invalid. A model without a valid completion gets NaN w and CI.
    """
    dims = system.all_dimensions()
    keys = [d.key for d in dims]
    values = dimension_values(judgments, system)
    judge = judge if judge is not None else (str(judgments["judge"].iloc[0]) if len(judgments) else "")
    if judge_key is None:
        judge_key = str(judgments["judge_key"].iloc[0]) if len(judgments) and "judge_key" in judgments else ""
    rows = []
    for model in sorted(judgments["model"].dropna().unique()):
        n_invalid = int((~judgments.loc[judgments["model"] == model, "valid"].astype(bool)).sum())
        mine = values[values["model"] == model]
        n = len(mine)
        if n:
            matrix = mine[keys].to_numpy(dtype=float)
            w = matrix.mean(axis=0)
            groups = [matrix[idx] for idx in mine.groupby("item_id", sort=True).indices.values()]
            boot = cluster_bootstrap(groups, resamples, seeded_rng(seed, system.name, str(model)))
            low, high = percentile_ci(boot, ci_level)
        else:
            w = low = high = np.full(len(keys), np.nan)
        for i, dim in enumerate(dims):
            rows.append({
                "model": model, "system": system.name, "judge": judge, "judge_key": judge_key, "dimension": dim.name,
                "key": dim.key, "level": dim.level, "parent": system.dimension(dim.parent).name if dim.parent else None,
                "w": float(w[i]), "ci_low": float(low[i]), "ci_high": float(high[i]), "n": n, "n_invalid": n_invalid,
            })
    return pd.DataFrame(rows, columns=list(SCORE_COLUMNS))
