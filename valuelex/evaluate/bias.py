"""Response bias: is "model A is more ethical" more than "model A rates everything higher"?

Meyer, Garcia & Wulff (2026) found that one directional response bias explains 81-90% of the
variance between LLMs' questionnaire profiles. For one value system and judge, with W the models x
leaf-dimensions matrix of Eq. 4 scores w:

- acquiescence of model m: a_m = mean_j W_mj, its mean score over every (leaf) dimension;
- respondent-centred score: w_centred = w - a_m, for every row of the model (leaves and parents;
  a parent's w is the mean of its leaves', so its centred value is the mean of theirs);
- general-factor share: with X = W minus each dimension's mean over models (between-model
  variation only), the share of trace(X'X) on the first principal component, lambda_1 / sum lambda
  (from the singular values of X). It needs >= 3 models and >= 2 dimensions (two models give a
  rank-one X and a share of 1 by construction); otherwise it is missing with a notice.

A share near 1 with large acquiescence differences says the models differ mostly by level, and
only differences in the centred scores are differences in values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MIN_MODELS = 3


def general_factor_share(matrix: np.ndarray) -> float:
    """lambda_1 / sum lambda of the column-centred models x dimensions matrix; NaN when it has no variance."""
    x = np.asarray(matrix, dtype=float)
    x = x - x.mean(axis=0, keepdims=True)
    singular = np.linalg.svd(x, compute_uv=False) ** 2
    total = float(singular.sum())
    return float(singular[0] / total) if total > 0 else float("nan")


def add_centred(scores: pd.DataFrame) -> pd.DataFrame:
    """`scores` with ``acquiescence`` (the model's mean leaf w in its system and judge) and ``w_centred``.

    The existing columns are left as they are; rows of a model without scores get NaN in both.
    """
    out = scores.drop(columns=[c for c in ("acquiescence", "w_centred") if c in scores.columns])
    if out.empty:
        return out.assign(acquiescence=pd.Series(dtype=float), w_centred=pd.Series(dtype=float))
    leaves = out[out["key"].isin(_leaf_keys(out))]
    mean = leaves.groupby(["system", "judge", "model"])["w"].mean().rename("acquiescence")
    out = out.join(mean, on=["system", "judge", "model"])
    out["w_centred"] = out["w"] - out["acquiescence"]
    return out


def _leaf_keys(scores: pd.DataFrame) -> set[str]:
    """Keys that are no row's parent within their system: the dimensions the judge scores."""
    leaves: set[str] = set()
    for _, rows in scores.groupby("system"):
        parents = set(rows["parent"].dropna())
        leaves |= {k for k, name in zip(rows["key"], rows["dimension"], strict=True) if name not in parents}
    return leaves


def bias_table(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per (system, judge, model): acquiescence, and the system's general-factor share with its notice."""
    columns = ["system", "judge", "model", "acquiescence", "general_share", "n_models", "n_dimensions", "notice"]
    if scores.empty:
        return pd.DataFrame(columns=columns)
    scored = add_centred(scores)
    leaves = scored[scored["key"].isin(_leaf_keys(scored))]
    rows = []
    for (system, judge), part in leaves.groupby(["system", "judge"], sort=True):
        wide = part.pivot_table(index="model", columns="key", values="w", aggfunc="first").dropna()
        n_models, n_dims = wide.shape
        notice = None
        share = float("nan")
        if n_models < MIN_MODELS or n_dims < 2:
            notice = (
                f"the general-factor share needs at least {MIN_MODELS} models with scores on 2 or more "
                f"dimensions; {system} has {n_models} model(s) x {n_dims} dimension(s)"
            )
        else:
            share = general_factor_share(wide.to_numpy())
            if not np.isfinite(share):
                notice = "the models' scores do not vary: no general factor"
        acq = part.groupby("model")["acquiescence"].first()
        rows += [
            {
                "system": system,
                "judge": judge,
                "model": m,
                "acquiescence": float(a),
                "general_share": share if notice is None else None,
                "n_models": n_models,
                "n_dimensions": n_dims,
                "notice": notice,
            }
            for m, a in acq.items()
        ]
    return pd.DataFrame(rows, columns=columns)
