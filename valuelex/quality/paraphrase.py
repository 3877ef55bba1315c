"""Prompt sensitivity: how far each score moves when the stems are asked in other words.

A study with ``prompts.paraphrases`` N asks every stem in its original wording (paraphrase 0) and N
hand-written paraphrases (`valuelex.instruments.paraphrases`). Version k of the instrument is every
stem in its k-th wording; for model p and dimension v its score is Eq. 4 on that version alone,

    w_k = mean of φ over the valid completions of p asked in wording k        (k = 0..N)

and the table ``quality/paraphrase`` gives, per model x dimension, w_0..w_N and their spread:

- ``sd``: the standard deviation of the w_k (ddof 1), ``range``: max - min;
- ``noise_sd``: the SD the w_k would have from sampling alone, sqrt(mean_k s²/n_k), with s² the
  variance of φ within (stem, config, wording) cells pooled over the cells (every wording covers the
  same stems and configs, so stem and config effects cancel between the w_k and are left out of s²);
  NaN when no cell holds two completions (M = 1);
- ``excess_sd`` = sqrt(max(0, sd² - noise_sd²)): the spread beyond sampling noise, what the wording adds;
- ``stem_sd``: per stem, the SD across its wordings of the stem's mean φ, root-mean-squared over
  stems: the wording effect on single stems, which averaging over stems in w_k partly cancels.

A score whose ``excess_sd`` is comparable to the differences between models depends on the wording.

The paraphrase variance component (``quality/paraphrase_components``): the G-study of
`valuelex.quality.gstudy` with the wording as a fourth facet. Wording k of one stem and wording k of
another are unrelated rewordings, so wordings are nested in stems: the design is
(m : p x c x (w : s)). Its components are sums of the crossed estimates (Brennan 2001, sec. 3.5: a
nested effect confounds the crossed main effect with its interaction with the nesting facet):
σ²(w:s) = σ²_w + σ²_sw, σ²(p x w:s) = σ²_pw + σ²_psw, σ²(c x w:s) = σ²_cw + σ²_scw and
σ²(p x c x w:s) = σ²_pcw + σ²_pscw, each summed raw and then set to 0 when negative. σ²(p x w:s) is
the one that ranks models differently by wording: error in a relative comparison of models. (The
main G-study, ``quality/components``, pools a cell's wordings into its samples: there the wording
effect is part of the residual.)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from valuelex.evaluate.systems import ValueSystem
from valuelex.quality.gstudy import estimate

NO_PARAPHRASES = ("this run asked every stem in its original wording only: set `prompts: {paraphrases: 3}` in the "
                  "study and rerun (only the paraphrase rows are generated) to measure how far each score moves "
                  "when the stems are reworded")


def with_paraphrase(values: pd.DataFrame, judged: pd.DataFrame, paraphrase_of: Mapping[str, int]) -> pd.DataFrame:
    """`dimension_values(judged)` with the ``paraphrase`` of each completion (0 when unknown: rows stored
    before paraphrases existed are original wordings)."""
    ids = judged.loc[judged["valid"].astype(bool), "row_id"].astype(str).to_numpy()
    if len(ids) != len(values):
        raise ValueError(f"{len(values)} value rows for {len(ids)} valid judgments")
    out = values.copy()
    out["paraphrase"] = np.array([int(paraphrase_of.get(i, 0)) for i in ids], dtype=np.int64)
    return out


def spread(values: pd.DataFrame, system: ValueSystem) -> pd.DataFrame:
    """The ``quality/paraphrase`` rows of one system (see the module docstring); empty without paraphrases."""
    if "paraphrase" not in values or values["paraphrase"].nunique() < 2:
        return pd.DataFrame()
    wordings = sorted(int(k) for k in values["paraphrase"].unique())
    names = {d.key: d.name for d in system.all_dimensions()}
    rows = []
    for model, mine in values.groupby("model", sort=True):
        for key in [d.key for d in system.all_dimensions()]:
            frame = mine[["item_id", "config", "paraphrase", key]].dropna(subset=[key])
            rows.append({"system": system.name, "model": str(model), "dimension": names[key], "key": key,
                         **_one(frame, key, wordings)})
    return pd.DataFrame(rows)


def _one(frame: pd.DataFrame, key: str, wordings: list[int]) -> dict[str, float | int | str | None]:
    by_wording = frame.groupby("paraphrase")[key]
    w = by_wording.mean().reindex(wordings)
    n = by_wording.size().reindex(wordings).fillna(0).astype(int)
    out: dict[str, float | int | str | None] = {"paraphrases": len(wordings), "n": int(n.sum())}
    out.update({f"w_{k}": float(w[k]) for k in wordings})
    present = w.dropna()
    if len(present) < 2:
        return {**out, "sd": np.nan, "range": np.nan, "noise_sd": np.nan, "excess_sd": np.nan, "stem_sd": np.nan,
                "notice": "fewer than two wordings with valid completions"}
    sd, spread_range = float(present.std(ddof=1)), float(present.max() - present.min())
    cells = frame.groupby(["item_id", "config", "paraphrase"])[key]
    dof = float((cells.size() - 1).clip(lower=0).sum())
    within = float(((frame[key] - cells.transform("mean")) ** 2).sum() / dof) if dof > 0 else np.nan
    noise = float(np.sqrt(np.mean(within / n[present.index].to_numpy()))) if dof > 0 else np.nan
    excess = float(np.sqrt(max(0.0, sd**2 - noise**2))) if dof > 0 else np.nan
    stem_means = frame.groupby(["item_id", "paraphrase"])[key].mean().unstack("paraphrase")
    stem_var = stem_means.var(axis=1, ddof=1).dropna()
    stem_sd = float(np.sqrt(stem_var.mean())) if len(stem_var) else np.nan
    notice = None if dof > 0 else "M = 1: no cell holds two completions, so the sampling noise is unknown"
    return {**out, "sd": sd, "range": spread_range, "noise_sd": noise, "excess_sd": excess, "stem_sd": stem_sd,
            "notice": notice}


NESTED_FACETS = ("model", "stem", "config", "paraphrase")


def balanced_wordings(frame: pd.DataFrame, key: str) -> np.ndarray | None:
    """φ as an array (model, stem, config, wording, sample): stems with a missing cell are dropped and
    every cell cut to the smallest cell's count; None when nothing balanced is left."""
    frame = frame[["model", "item_id", "config", "paraphrase", key]].dropna(subset=[key])
    cells = ["model", "item_id", "config", "paraphrase"]
    counts = frame.groupby(cells).size()
    shape = [frame[c].nunique() for c in cells]
    per_stem = counts.groupby(level="item_id").size()
    full = per_stem.index[per_stem == shape[0] * shape[2] * shape[3]]
    frame = frame[frame["item_id"].isin(full)].sort_values(cells)
    if frame.empty:
        return None
    m = int(counts[counts.index.get_level_values("item_id").isin(full)].min())
    frame = frame[frame.groupby(cells).cumcount() < m]
    shape[1] = len(full)
    return frame[key].to_numpy(dtype=float).reshape(*shape, m)


def paraphrase_components(values: pd.DataFrame, system: ValueSystem) -> pd.DataFrame:
    """The ``quality/paraphrase_components`` rows of one system: per dimension, the components of the
    nested design (module docstring) with their share of the total; empty without paraphrases."""
    if "paraphrase" not in values or values["paraphrase"].nunique() < 2:
        return pd.DataFrame()
    rows = []
    for dim in system.all_dimensions():
        y = balanced_wordings(values, dim.key)
        if y is None:
            continue
        g = estimate(y, NESTED_FACETS)
        nested: dict[str, float] = {}
        for effect, raw in g.raw.items():
            label = _nested_label(effect, g.facets, confounded=g.residual is None)
            nested[label] = nested.get(label, 0.0) + raw
        if g.residual is not None:
            nested["residual"] = g.residual
        total = sum(max(0.0, v) for v in nested.values())
        for label, raw in nested.items():
            variance = max(0.0, raw)
            rows.append({"system": system.name, "dimension": dim.name, "key": dim.key, "facet": label,
                         "variance": variance, "share": variance / total if total > 0 else np.nan,
                         "negative": raw < 0, "n_stems": int(y.shape[1]), "n_wordings": int(y.shape[3]),
                         "samples": int(y.shape[-1]), "notice": "; ".join(g.notices) or None})
    return pd.DataFrame(rows)


def _nested_label(effect: tuple[str, ...], facets: tuple[str, ...], confounded: bool) -> str:
    """The label of a crossed effect in the nested design: an effect with the wording joins its stem."""
    if "paraphrase" in effect:
        effect = (*[f for f in effect if f not in ("paraphrase", "stem")], "paraphrase:stem")
    name = "×".join(effect)
    top = len(effect) == len([f for f in facets if f != "stem"]) and "paraphrase:stem" in effect
    return f"{name},residual" if confounded and top else name
