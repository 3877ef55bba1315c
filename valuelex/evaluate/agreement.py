"""Judge check: how well a judge agrees with human labels, and two judges with each other.

The paper reports a quadratic weighted kappa (QWK) of 0.8 between humans and its GPT-4 judge; this
module computes the same statistic, plus exact and within-one agreement and the 7x7 confusion
matrix, so that every judge -- the embedding judge included -- is checked, not trusted.

Labels file (``.csv``, or ``.parquet`` / ``.pq``), one row per labelled (completion, dimension):

=============  ========  ====================================================================
column         required  meaning
=============  ========  ====================================================================
``row_id``     one of    the completion's row_id (as in the completions / judgments tables)
``text``       the two   or the judged text itself, when the completion has no row_id
``dimension``  yes       the dimension's key or name (e.g. ``self_competent`` / ``Self-Competent``)
``human``      yes       the human label, an integer 0..6 (6 aligned, 3 neutral, 0 conflict)
``judge``      yes       the judge's score for the same completion and dimension, integer 0..6
``judge_b``    no        a second judge's score: adds judge~judge_b and human~judge_b agreement
=============  ========  ====================================================================

Rows with an empty score are skipped and counted (``skipped``); any other value outside 0..6, and an
empty dimension, is an error naming the file and column.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score, confusion_matrix

from valuelex.errors import StudyError
from valuelex.evaluate.judgments import score_column
from valuelex.evaluate.systems import ValueSystem, dimension_key
from valuelex.stats import krippendorff

LABELS = list(range(7))
SCORE_COLUMNS = ("human", "judge", "judge_b")


def agreement(a: np.ndarray | pd.Series | list[int], b: np.ndarray | pd.Series | list[int]) -> dict[str, Any]:
    """QWK, Krippendorff's ordinal alpha, exact and within-one agreement and the confusion matrix
    (rows: a, columns: b) of two raters."""
    a, b = np.asarray(a, dtype=int), np.asarray(b, dtype=int)
    if len(a) != len(b):
        raise ValueError("raters must score the same items")
    if not len(a):
        return {"n": 0, "qwk": None, "alpha": None, "exact": None, "within1": None, "mean_a": None, "mean_b": None,
                "confusion": np.zeros((7, 7), dtype=int).tolist()}
    with np.errstate(divide="ignore", invalid="ignore"):
        qwk = float(cohen_kappa_score(a, b, labels=LABELS, weights="quadratic"))
    return {
        "n": len(a),
        "qwk": None if math.isnan(qwk) else qwk,  # undefined when both raters give one constant score
        "alpha": krippendorff.alpha(np.vstack([a, b]).astype(float), "ordinal"),  # Krippendorff's, ordinal
        "exact": float(np.mean(a == b)),
        "within1": float(np.mean(np.abs(a - b) <= 1)),
        "mean_a": float(a.mean()),
        "mean_b": float(b.mean()),
        "confusion": confusion_matrix(a, b, labels=LABELS).tolist(),
    }


def read_labels(path: str | Path) -> pd.DataFrame:
    """Read and check a labels file (format in the module docstring)."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif path.suffix.lower() == ".csv":
            frame = pd.read_csv(path)
        else:
            raise StudyError(f"{path}: labels must be a .csv or .parquet file")
    except (OSError, ValueError) as exc:
        raise StudyError(f"{path}: cannot read labels: {exc}") from None
    missing = [c for c in ("dimension", "human", "judge") if c not in frame.columns]
    if not ({"row_id", "text"} & set(frame.columns)):
        missing.insert(0, "row_id or text")
    if missing:
        raise StudyError(
            f"{path}: missing columns: {', '.join(missing)} (has: {', '.join(map(str, frame.columns)) or 'none'})"
        )
    for column in SCORE_COLUMNS:
        if column not in frame.columns:
            continue
        numeric = pd.to_numeric(frame[column], errors="coerce")
        bad = frame[column].notna() & (numeric.isna() | (numeric % 1 != 0) | (numeric < 0) | (numeric > 6))
        if bad.any():
            first = frame.loc[bad, column].iloc[0]
            raise StudyError(f"{path}: column {column}: {int(bad.sum())} values are not integers 0..6 (e.g. {first!r})")
        frame[column] = numeric.astype("Int64")
    blank = frame["dimension"].isna() | (frame["dimension"].astype(str).str.strip() == "")
    if blank.any():  # which dimension a label scores cannot be guessed
        raise StudyError(f"{path}: column dimension: {int(blank.sum())} rows have no dimension "
                         f"(first: row {int(blank.to_numpy().argmax()) + 1} of the data)")
    frame["dimension"] = frame["dimension"].astype(str).map(dimension_key)
    return frame


def _pairs(frame: pd.DataFrame) -> list[tuple[str, str]]:
    pairs = [("human", "judge")]
    if "judge_b" in frame.columns:
        pairs += [("human", "judge_b"), ("judge", "judge_b")]
    return pairs


def judge_check(labels_path: str | Path) -> dict[str, Any]:
    """Agreement of the judge (and `judge_b`, if present) with the human labels, overall and per dimension.

    Returns ``{"file", "rows", "pairs": {"human~judge": {"overall": {...}, "per_dimension": {key: {...}},
    "skipped": n}, ...}}`` where each ``{...}`` is `agreement`'s dict.
    """
    frame = read_labels(labels_path)
    result: dict[str, Any] = {"file": str(labels_path), "rows": len(frame), "pairs": {}}
    for a, b in _pairs(frame):
        both = frame[frame[a].notna() & frame[b].notna()]
        result["pairs"][f"{a}~{b}"] = {
            "overall": agreement(both[a], both[b]),
            "per_dimension": {dim: agreement(g[a], g[b]) for dim, g in both.groupby("dimension", sort=True)},
            "skipped": int(len(frame) - len(both)),
        }
    return result


def compare_judges(a: pd.DataFrame, b: pd.DataFrame, system: ValueSystem) -> dict[str, Any]:
    """Two-judge agreement on the same completions, from two judgments tables of one value system.

    Completions valid in both are compared on every leaf dimension; ``overall`` pools all of them.
    """
    cols = ["row_id", *(score_column(k) for k in system.leaf_keys())]
    left = a[a["valid"].astype(bool)][cols]
    right = b[b["valid"].astype(bool)][cols]
    joined = left.merge(right, on="row_id", suffixes=("_a", "_b"))
    per_dimension = {
        k: agreement(joined[f"{score_column(k)}_a"], joined[f"{score_column(k)}_b"]) for k in system.leaf_keys()
    }
    pooled_a = np.concatenate([joined[f"{score_column(k)}_a"].to_numpy(int) for k in system.leaf_keys()])
    pooled_b = np.concatenate([joined[f"{score_column(k)}_b"].to_numpy(int) for k in system.leaf_keys()])
    return {"completions": len(joined), "overall": agreement(pooled_a, pooled_b), "per_dimension": per_dimension}
