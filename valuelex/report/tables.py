"""The stored scores (``scores.parquet``) as every report section reads them, and their table.

One row per model x system x dimension: w, ci_low, ci_high, n, n_invalid, and the dimension's key,
name, level and parent. The per-system evaluation section (`valuelex.report.evaluation`) and the
comparison of systems (`valuelex.report.systems`) both read cells and dimensions through these
helpers, so a cell means the same in every figure and table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from valuelex.report.figures import TableItem, fmt_ci, fmt_int, model_label

if TYPE_CHECKING:
    from valuelex.report.load import RunData

NEUTRAL = 0.5  # a judge score of 3 of 6


def bootstrap_level(data: RunData) -> str:
    """The level of the stored score CIs, as text: the study's evaluation.ci_level (not stored with the scores)."""
    level = ((data.study or {}).get("evaluation") or {}).get("ci_level")
    try:
        return f"{float(level) * 100:g}%"
    except (TypeError, ValueError):
        return "bootstrap (level not recorded)"


def dimensions(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The (sub)dimensions of one system's scores in stored order: key, name, level, parent."""
    seen: dict[str, dict[str, Any]] = {}
    for row in frame[["key", "dimension", "level", "parent"]].to_dict("records"):
        seen.setdefault(row["key"], {"key": row["key"], "name": row["dimension"], "level": row["level"],
                                     "parent": row["parent"]})
    return list(seen.values())


def top_level(dims: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The dimensions without a parent (a flat system's are all of them)."""
    return [d for d in dims if d["level"] == "dimension"]


def children(dims: list[dict[str, Any]], parent: dict[str, Any]) -> list[dict[str, Any]]:
    """The subdimensions of one dimension, in stored order."""
    return [d for d in dims if d["level"] == "subdimension" and d["parent"] == parent["name"]]


def cell(frame: pd.DataFrame, model: str, key: str) -> tuple[float, float, float]:
    """One model's w with its CI on one dimension (all NaN when the model has no row there)."""
    row = frame[(frame["model"] == model) & (frame["key"] == key)]
    if row.empty:
        return (np.nan, np.nan, np.nan)
    r = row.iloc[0]
    return float(r["w"]), float(r["ci_low"]), float(r["ci_high"])


def scores_table(frame: pd.DataFrame, system: str, models: list[str], meta: dict[str, dict],
                 collapsed: bool = False, level: str = "95%") -> TableItem:
    """Every model's w [CI] on every (sub)dimension of one system, with its valid and invalid judgment counts."""
    dims = dimensions(frame)
    rows = []
    for model in models:
        mine = frame[frame["model"] == model]
        n = int(mine["n"].iloc[0]) if len(mine) else 0
        n_invalid = int(mine["n_invalid"].iloc[0]) if len(mine) else 0
        rows.append([model_label(model, meta.get(model, {}).get("training")), fmt_int(n), fmt_int(n_invalid),
                     *(fmt_ci(*cell(frame, model, d["key"])) for d in dims)])
    judge = str(frame["judge"].iloc[0]) if "judge" in frame.columns and len(frame) else "—"
    return TableItem(
        id=f"table-scores-{system}", title=f"Scores in the {system} system", css="scores", collapsed=collapsed,
        columns=["Model", "Valid", "Invalid", *(d["name"] if d["level"] == "dimension" else f"· {d['name']}"
                                               for d in dims)],
        rows=rows, numeric=[False, True, True, *([True] * len(dims))],
        caption=f"w [{level} CI] per (sub)dimension; Valid / Invalid: judged completions used / "
                f"left out (judge {judge}).")
