"""The reliability tables of one value system, from the judgments that count.

Input: `valuelex.evaluate.scores.dimension_values` rows (model, item_id, config, sample and one φ
column per dimension key), so every figure here is about the same per-completion values Eq. 4
averages. Output: four frames, one row per dimension (or per component / curve point), each with
a ``notice`` that says, instead of a NaN, what is missing and what would make a figure computable.

- ``components``: the G-study's variance components (`valuelex.quality.gstudy`);
- ``coefficients``: G and Phi at the run's design, the negative estimates set to 0, and the D-study's
  stems / configs / samples needed for G >= 0.8 and Phi >= 0.8;
- ``dstudy``: G and Phi against samples M and against stems;
- ``consistency``: alpha and omega with bootstrap CIs (flagged under 0.7), split-half
  (Spearman-Brown) and Kendall's W of model ranks across configs (`valuelex.quality.consistency`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from valuelex.evaluate.scores import seeded_rng
from valuelex.evaluate.systems import ValueSystem
from valuelex.quality import consistency as ic
from valuelex.quality import gstudy

SAMPLE_POINTS = (1, 2, 3, 5, 10, 20, 50, 100)
STEM_POINTS = (5, 10, 20, 50, 100, 200)


def _join(notes: list[str]) -> str | None:
    return "; ".join(dict.fromkeys(notes)) or None


def _g_rows(system: ValueSystem, dim_key: str, dim_name: str, y: np.ndarray | None,
            notes: list[str]) -> tuple[list[dict], dict, list[dict]]:
    base = {"system": system.name, "key": dim_key, "dimension": dim_name}
    coef: dict = {**base, "n_models": 0, "n_stems": 0, "n_configs": 0, "n_samples": 0, "G": np.nan, "Phi": np.nan,
                  "n_negative": 0}
    for which in ("G", "Phi"):
        for facet in ("stems", "configs", "samples"):
            coef[f"{facet}_for_{which}"] = None
    if y is None:
        return [], {**coef, "notice": _join(notes)}, []
    coef.update(n_models=y.shape[0], n_stems=y.shape[1], n_configs=y.shape[2], n_samples=y.shape[3])
    if y.shape[0] < 2:
        notes.append("one model: G and Phi measure differences between models (2 or more models make them "
                     "computable)")
    g = gstudy.estimate(y)
    notes += g.notices
    if np.nanvar(y) == 0:
        notes.append("every judgment of this dimension is equal: there is no variance to analyse")
        return [], {**coef, "notice": _join(notes)}, []
    comps = [{**base, **row} for row in g.table().to_dict("records")]
    big_g, phi = g.coefficients()
    coef.update(G=big_g, Phi=phi, n_negative=g.n_negative)
    if g.n_negative:
        notes.append(f"{g.n_negative} negative variance estimate(s) set to 0")
    if "model" in g.facets and g.components[("model",)] == 0:
        notes.append("σ²(model) is estimated 0: the models do not differ beyond error on this dimension, so G = 0")
    if y.shape[0] == 2:
        notes.append("2 models: σ²(model) rests on 1 degree of freedom (more models make G steadier)")
    if "model" in g.facets and np.isfinite(big_g):
        for which in ("G", "Phi"):
            coef[f"stems_for_{which}"] = gstudy.needed(g, "stem", which)
            coef[f"configs_for_{which}"] = gstudy.needed(g, "config", which)
            coef[f"samples_for_{which}"] = gstudy.needed(g, "sample", which)
    elif "model" in g.facets:
        notes.append("no variance between models or error: G and Phi undefined")
    curves = []
    if "model" in g.facets:
        for facet, points in (("sample", SAMPLE_POINTS), ("stem", STEM_POINTS)):
            if facet == "sample" and g.residual is None:
                continue
            if facet == "stem" and "stem" not in g.facets:
                continue
            counts = sorted({*points, g.samples if facet == "sample" else g.sizes["stem"]})
            curves += [{**base, **r} for r in gstudy.curve(g, facet, np.asarray(counts)).to_dict("records")]
    return comps, {**coef, "notice": _join(notes)}, curves


def _persons(values: pd.DataFrame, key: str) -> tuple[np.ndarray, str, list[str]]:
    """(persons, stems) item scores: respondents, or respondents' samples when respondents are few."""
    frame = values[["model", "config", "sample", "item_id", key]].dropna(subset=[key])
    respondents = frame.groupby(["model", "config"]).ngroups
    unit = ["model", "config"] if respondents >= ic.MIN_PERSONS else ["model", "config", "sample"]
    label = "×".join(unit)
    table = frame.pivot_table(index=unit, columns="item_id", values=key, aggfunc="mean")
    notes = []
    complete = table.dropna(axis=1)
    if complete.shape[1] < table.shape[1]:
        notes.append(f"{table.shape[1] - complete.shape[1]} stem(s) without a value for every person left out")
    return complete.to_numpy(dtype=float), label, notes


def g_coefficients(values: pd.DataFrame, system: ValueSystem) -> pd.DataFrame:
    """G and Phi of every dimension at the design of `values` (the rule of adaptive M ``g``); NaN where
    they cannot be estimated (no balanced design, one model, no variance)."""
    rows = []
    for dim in system.all_dimensions():
        y = gstudy.balanced(values, dim.key)[0] if dim.key in values else None
        big_g = phi = np.nan
        if y is not None and y.shape[0] >= 2 and np.nanvar(y) > 0:
            big_g, phi = gstudy.estimate(y).coefficients()
        rows.append({"system": system.name, "key": dim.key, "dimension": dim.name, "G": big_g, "Phi": phi})
    return pd.DataFrame(rows)


def assess(values: pd.DataFrame, system: ValueSystem, *, resamples: int = 1000, omega_resamples: int = 200,
           seed: int = 0) -> dict[str, pd.DataFrame]:
    """Every reliability table of one system (see the module docstring)."""
    components, coefficients, dstudy, consistency = [], [], [], []
    for dim in system.all_dimensions():
        y, _, notes = gstudy.balanced(values, dim.key) if dim.key in values else (None, {}, ["no values"])
        comps, coef, curve = _g_rows(system, dim.key, dim.name, y, list(notes))
        components += comps
        coefficients.append(coef)
        dstudy += curve
        row: dict = {"system": system.name, "key": dim.key, "dimension": dim.name}
        if dim.key in values and values[dim.key].notna().any():
            x, label, pnotes = _persons(values, dim.key)
        else:
            x, label, pnotes = np.zeros((0, 0)), "", ["no values"]
        rng = seeded_rng(seed, system.name, dim.key, "consistency")
        alpha = ic.alpha_estimate(x, rng, resamples) if x.size else ic.Estimate(notices=["no values"])
        omega = (ic.omega_estimate(x, rng, omega_resamples) if x.size else ic.Estimate(notices=["no values"]))
        halves = ic.split_half(y.reshape(-1, y.shape[1], y.shape[3]) if y is not None else np.zeros((0, 0, 0)))
        w = ic.kendall_w(np.nanmean(y, axis=(1, 3)).T if y is not None else np.zeros((0, 0)))
        row.update(persons=label, n_persons=int(x.shape[0]), n_items=int(x.shape[1]) if x.ndim == 2 else 0,
                   alpha=alpha.value, alpha_low=alpha.low, alpha_high=alpha.high, omega=omega.value,
                   omega_low=omega.low, omega_high=omega.high, split_half=halves.value, kendall_w=w.value)
        row["flag"] = bool((np.isfinite(alpha.value) and alpha.value < ic.FLAG_BELOW)
                           or (np.isfinite(omega.value) and omega.value < ic.FLAG_BELOW))
        row["notice"] = _join(pnotes + alpha.notices + omega.notices + halves.notices + w.notices)
        consistency.append(row)
    return {"components": pd.DataFrame(components), "coefficients": pd.DataFrame(coefficients),
            "dstudy": pd.DataFrame(dstudy), "consistency": pd.DataFrame(consistency)}
