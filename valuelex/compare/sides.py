"""One comparison of side b against side a (lists of models) on φ per completion: one row per dimension.

Cells
-----
For each (stem s, config c) cell, ȳ_m,sc is the mean φ of model m's valid completions there (a
side's cell mean is the mean of its models' cell means), and the cell difference is
D_sc = ȳ_b,sc − ȳ_a,sc. Cells where a model of either side has no valid completion are left out
and counted in ``cells_dropped``.

- ``diff`` = w_b − w_a, the difference of the Eq. 4 scores (all valid completions; a side's w is
  the mean of its models' w).
- ``unit="stem"`` (default) / ``"cell"``: the sign-flip test of the mean cell difference
  (`valuelex.stats.permutation`), Cohen's d_z and Hedges' g_z (`valuelex.stats.effects`), the
  variance components and the M and stems needed (`valuelex.stats.power_analysis`).
- ``unit="models"`` (groups of models): the group labels permuted over the models, Hedges' g
  between the groups' model scores and the models needed per group.
- CI of ``diff``: the paired cluster bootstrap (`valuelex.stats.bootstrap`), percentile interval.
- ``p_adj``, ``significant``: Holm or Benjamini–Hochberg across every (sub)dimension
  (`valuelex.stats.multiple`).

M (``samples``) is the mean number of *judged* completions per paired cell and model; the valid
fraction f is the harmonic mean of the valid counts over M.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from valuelex.compare.load import Dim
from valuelex.errors import StudyError
from valuelex.evaluate.scores import percentile_ci, seeded_rng
from valuelex.stats import (
    CORRECTIONS,
    adjust,
    cohen_dz,
    components_from_cells,
    hedges_correction,
    hedges_g,
    label_permutation_test,
    models_needed,
    paired_bootstrap,
    pooled_variance,
    power,
    sign_flip_test,
)

UNITS = ("stem", "cell", "models")
MIN_PERMUTATIONS = 2000
DEFAULT_PERMUTATIONS = 10_000

COLUMNS = (
    "comparison", "kind", "a", "b", "models_a", "models_b", "system", "judge", "dimension", "key", "level",
    "parent", "w_a", "w_b", "diff", "ci_low", "ci_high", "statistic", "p", "p_adj", "significant", "d_z",
    "g", "n_a", "n_b", "n_stems", "n_configs", "n_cells", "cells_dropped", "samples", "valid_fraction",
    "var_between_stem", "var_stem_config", "var_within", "var_between_models", "se", "delta", "target_power",
    "power_now", "samples_needed", "stems_needed", "models_needed", "unit", "correction", "alpha", "permutations",
    "exact", "resamples", "ci_level", "seed",
)


@dataclass
class Cells:
    """Per-model cell statistics on a common grid of stems x configs (NaN / 0 where a model has nothing)."""

    models: list[str]
    stems: list[str]
    configs: list[str]
    mean: np.ndarray  # (models, S, C, D)
    var: np.ndarray  # (models, S, C, D), ddof=1, NaN with fewer than 2 completions
    count: np.ndarray  # (models, S, C)


def cell_stats(values: pd.DataFrame, models: Sequence[str], keys: Sequence[str]) -> Cells:
    mine = values[values["model"].isin(models)]
    model_code = pd.Index(list(models)).get_indexer(mine["model"])
    stem_code, stems = pd.factorize(mine["item_id"].astype(str), sort=True)
    config_code, configs = pd.factorize(mine["config"].astype(str), sort=True)
    shape = (len(models), len(stems), len(configs))
    flat = np.ravel_multi_index((model_code, stem_code, config_code), shape) if len(mine) else np.zeros(0, int)
    size = int(np.prod(shape))
    data = mine[list(keys)].to_numpy(dtype=float)
    count = np.bincount(flat, minlength=size)
    sums = np.stack([np.bincount(flat, data[:, d], minlength=size) for d in range(len(keys))], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = sums / count[:, None]
        centred = data - mean[flat]
        squares = np.stack([np.bincount(flat, centred[:, d] ** 2, minlength=size) for d in range(len(keys))], axis=1)
        var = np.where(count[:, None] > 1, squares / (count[:, None] - 1), np.nan)
    mean[count == 0] = np.nan
    width = len(keys)
    return Cells(list(models), [str(x) for x in stems], [str(x) for x in configs], mean.reshape(*shape, width),
                 var.reshape(*shape, width), count.reshape(shape))


def _judged_counts(judged: pd.DataFrame, cells: Cells) -> np.ndarray:
    """Judged completions (valid or not) per (model, stem, config) on the grid of `cells`."""
    mine = judged[judged["model"].isin(cells.models)]
    codes = (pd.Index(cells.models).get_indexer(mine["model"]), pd.Index(cells.stems).get_indexer(
        mine["item_id"].astype(str)), pd.Index(cells.configs).get_indexer(mine["config"].astype(str)))
    inside = (codes[1] >= 0) & (codes[2] >= 0)
    shape = cells.count.shape
    flat = np.ravel_multi_index(tuple(c[inside] for c in codes), shape)
    return np.bincount(flat, minlength=int(np.prod(shape))).reshape(shape)


def validate(unit: str, correction: str, permutations: int, resamples: int, alpha: float, ci_level: float) -> None:
    """`StudyError` for settings outside their ranges."""
    if unit not in UNITS:
        raise StudyError(f"unit: {unit!r} is not one of {', '.join(UNITS)}")
    if correction not in CORRECTIONS:
        raise StudyError(f"correction: {correction!r} is not one of {', '.join(CORRECTIONS)}")
    if permutations < MIN_PERMUTATIONS:
        raise StudyError(f"permutations: at least {MIN_PERMUTATIONS} are needed for stable p-values, "
                         f"got {permutations}")
    if resamples < 0:
        raise StudyError(f"resamples: must be >= 0, got {resamples}")
    if not 0 < alpha < 1 or not 0 < ci_level < 1:
        raise StudyError(f"alpha and ci_level must lie in (0, 1), got {alpha} and {ci_level}")


def comparison_name(label_a: str, label_b: str) -> str:
    return f"{label_a}__vs__{label_b}"


def compare_values(
    values: pd.DataFrame, dims: Sequence[Dim], side_a: Sequence[str], side_b: Sequence[str], *,
    label_a: str | None = None, label_b: str | None = None, system: str = "", judge: str = "",
    unit: str = "stem", correction: str = "holm", alpha: float = 0.05, permutations: int = DEFAULT_PERMUTATIONS,
    resamples: int = 2000, ci_level: float = 0.95, seed: int = 0, delta: float | None = 0.05,
    target_power: float = 0.8, judged: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The comparison of side b against side a (lists of models) on φ per completion (`values`: model,
    item_id, config, one column per dims key). One row per dimension; see the module docstring.
    `judged` (model, item_id, config of every judged completion, invalid ones too) gives M and the
    valid fraction f; without it every completion counts as valid.

    With one model per side this is the paired comparison of two models. ``resamples=0`` skips the CI;
    ``delta=None`` skips the power part.
    """
    validate(unit, correction, permutations, resamples, alpha, ci_level)
    side_a, side_b = list(side_a), list(side_b)
    if set(side_a) & set(side_b):
        raise StudyError(f"the two sides share models: {', '.join(sorted(set(side_a) & set(side_b)))}")
    if unit == "models" and (len(side_a) < 2 and len(side_b) < 2):
        raise StudyError("unit 'models' permutes models between the groups: it needs more than one model a side")
    label_a = label_a or "+".join(side_a)
    label_b = label_b or "+".join(side_b)
    keys = [d.key for d in dims]
    models = [*side_a, *side_b]
    ia, ib = list(range(len(side_a))), list(range(len(side_a), len(models)))
    rng = seeded_rng(seed, system, label_a, label_b, unit)
    cells = cell_stats(values, models, keys)
    width = len(keys)

    # Eq. 4 per model and per side (all valid completions)
    mine = values[values["model"].isin(models)]
    w_model = mine.groupby("model")[keys].mean().reindex(models).to_numpy(dtype=float)
    n_model = mine.groupby("model").size().reindex(models).fillna(0).to_numpy(dtype=int)
    w_a, w_b = np.nanmean(w_model[ia], axis=0), np.nanmean(w_model[ib], axis=0)

    # paired cells: every model of both sides has a valid completion there
    valid = (cells.count > 0).all(axis=0)  # (S, C)
    n_cells_total = int((cells.count > 0).any(axis=0).sum())
    side_mean_a = cells.mean[ia].mean(axis=0)
    side_mean_b = cells.mean[ib].mean(axis=0)
    diff_cells = np.where(valid[..., None], side_mean_b - side_mean_a, np.nan)  # (S, C, D)
    kept_stems = valid.any(axis=1)
    n_cells = int(valid.sum())
    n_stems = int(kept_stems.sum())
    n_configs = len(cells.configs)
    counts = cells.count[:, valid]
    valid_samples = float(counts.size / np.sum(1.0 / counts)) if counts.size else float("nan")
    samples = _judged_counts(judged, cells)[:, valid].mean() if judged is not None and counts.size else float(
        counts.mean() if counts.size else np.nan)
    valid_fraction = min(1.0, valid_samples / samples) if samples > 0 else float("nan")
    row: dict[str, Any] = {
        "comparison": comparison_name(label_a, label_b), "a": label_a, "b": label_b,
        "models_a": ", ".join(side_a), "models_b": ", ".join(side_b), "system": system, "judge": judge,
        "n_a": int(n_model[ia].sum()), "n_b": int(n_model[ib].sum()), "n_stems": n_stems, "n_configs": n_configs,
        "n_cells": n_cells, "cells_dropped": n_cells_total - n_cells, "samples": samples,
        "valid_fraction": valid_fraction, "unit": unit,
        "correction": correction, "alpha": alpha, "permutations": permutations, "resamples": resamples,
        "ci_level": ci_level, "seed": seed, "delta": delta, "target_power": target_power,
    }
    nan = np.full(width, np.nan)
    columns: dict[str, np.ndarray] = {k: nan.copy() for k in (
        "statistic", "p", "d_z", "g", "ci_low", "ci_high", "var_between_stem", "var_stem_config", "var_within",
        "var_between_models", "se", "power_now", "samples_needed", "stems_needed", "models_needed")}
    exact = False
    if n_cells == 0:
        raise StudyError(f"{label_a} vs {label_b}: no (stem, config) cell has valid judgments on both sides")

    flat = diff_cells[valid]  # (K, D)
    if unit in ("stem", "cell"):
        kind = "paired" if len(models) == 2 else "groups-paired-by-stem"
        # stem: a stem's cell differences are flipped together; cell: each on its own
        units = np.nansum(diff_cells[kept_stems], axis=1) if unit == "stem" else flat
        statistic, p, exact = sign_flip_test(units, n_cells, permutations, rng)
        columns["statistic"], columns["p"] = statistic, p
        d_z = cohen_dz(flat)
        columns["d_z"], columns["g"] = d_z, hedges_correction(d_z, n_cells - 1)
        # τ²: Σ over the models of a side of their within-cell variances / |side|²
        within_model = np.full((len(models), width), np.nan)
        for m in range(len(models)):
            spread = cells.var[m][valid]  # (K, D), NaN where a cell has one completion
            if np.isfinite(spread).any():
                within_model[m] = np.nanmean(spread, axis=0)
        tau2 = np.nansum(within_model[ia], axis=0) / len(ia) ** 2 + np.nansum(within_model[ib], axis=0) / len(ib) ** 2
        components = components_from_cells(diff_cells, tau2, samples, unit, valid_fraction)
        columns["var_between_stem"] = np.array([c.between_stem for c in components])
        columns["var_stem_config"] = np.array([c.stem_config for c in components])
        columns["var_within"] = tau2
        columns["se"] = np.array([math.sqrt(c.variance()) if c.n_stems >= 1 else np.nan for c in components])
        if delta:
            for d, comp in enumerate(components):
                result = power(comp, delta, alpha=alpha, target=target_power)
                columns["power_now"][d] = result.power_now
                columns["samples_needed"][d] = np.nan if result.samples_needed is None else result.samples_needed
                columns["stems_needed"][d] = np.nan if result.stems_needed is None else result.stems_needed
    else:
        kind = "groups-by-models"
        ok = np.isfinite(w_model).all(axis=1)
        if not ok.all():
            missing = [m for m, good in zip(models, ok, strict=True) if not good]
            raise StudyError(f"{label_a} vs {label_b}: models without a valid judgment: {', '.join(missing)}")
        statistic, p, exact = label_permutation_test(w_model, len(side_b), permutations, rng)
        columns["statistic"], columns["p"] = statistic, p
        df = len(models) - 2
        if df > 0:
            pooled = pooled_variance(w_model[ia], w_model[ib])
            columns["g"] = hedges_g(statistic, pooled, df)
            columns["var_between_models"] = pooled
            columns["se"] = np.sqrt(pooled * (1 / len(ia) + 1 / len(ib)))
            if delta:
                for d_index in range(width):
                    needed = models_needed(float(pooled[d_index]), delta, alpha=alpha, target=target_power)
                    columns["models_needed"][d_index] = np.nan if needed is None else needed

    if resamples:
        stem_idx = np.flatnonzero(kept_stems)
        groups = []
        wanted = {cells.stems[s] for s in stem_idx}
        for model in models:
            frame = mine[(mine["model"] == model) & mine["item_id"].astype(str).isin(wanted)]
            by_stem = frame.groupby(frame["item_id"].astype(str))[keys]
            groups.append([by_stem.get_group(cells.stems[s]).to_numpy(dtype=float) for s in stem_idx])
        boot = paired_bootstrap(groups, ia, ib, resamples, rng, resample_models=unit == "models")
        columns["ci_low"], columns["ci_high"] = percentile_ci(boot, ci_level)

    p_adj = adjust(columns["p"], correction)
    frame = pd.DataFrame({
        **{name: [value] * width for name, value in row.items()}, "kind": [kind] * width,
        "dimension": [d.name for d in dims], "key": keys, "level": [d.level for d in dims],
        "parent": [d.parent for d in dims], "w_a": w_a, "w_b": w_b, "diff": w_b - w_a, **columns,
        "p_adj": p_adj, "significant": p_adj < alpha, "exact": [exact] * width,
    })
    for name in ("samples_needed", "stems_needed", "models_needed"):
        frame[name] = frame[name].astype("Int64")
    return frame[list(COLUMNS)]
