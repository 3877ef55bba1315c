"""When a run holds two judges' judgments of one system: how far they agree, and self-preference.

A run can hold judgments of the same completions by several judges (the embedding judge, then an
LLM judge; two LLM judges), each under its own judge key. For the judge that counts and every other
judge whose key belongs to the same version of the system (the same fingerprint):

- agreement on the completions both judged, every (completion, leaf) score pooled: Krippendorff's
  alpha (ordinal), QWK and the exact share (`valuelex.quality.judge.agreement`), and the mean
  difference ``mean(this - other)`` in scale points (a judge's leniency relative to the other);
- self-preference, when one of the two judges belongs to a model family (an LLM judge whose model
  the study names): with ``d_m`` the mean over respondent model m's completions and leaves of
  ``score_by_judge - score_by_other``,

      self-preference = mean_{m in the judge's family} d_m  -  mean_{m of other families} d_m,

  in points. Positive: the judge favours its own family beyond its general leniency (the second
  term removes that). Undefined (a notice) without a respondent of the judge's family, or of
  another family.

- the judge as a facet of the G-study (`valuelex.quality.gstudy.estimate_with_judges`), per
  dimension, on the completions both judged: the judges' share of the score variance, and G / Phi
  of a model's score from one judge against those from both.

Pure functions of stored judgments; the reliability stage feeds them (`valuelex.quality.stage`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from valuelex.evaluate.judgments import score_column
from valuelex.evaluate.scores import dimension_values
from valuelex.evaluate.systems import ValueSystem
from valuelex.quality import gstudy
from valuelex.quality.judge import agreement

if TYPE_CHECKING:
    from valuelex.spec import Study


def judge_family(study: Study | None, judge: str) -> str | None:
    """The model family of an LLM judge named ``llm:<model>``: the study's model of that name, or its
    inline judge model; None for the embedding judge or a model the study does not describe."""
    if study is None or not judge.startswith("llm:"):
        return None
    name = judge.removeprefix("llm:")
    spec = study.evaluation.judge_model
    if spec is not None and not isinstance(spec, str) and spec.name == name:
        return spec.family
    found = [m.family for m in study.models if m.name == name]
    return found[0] if found else None


def _paired(first: pd.DataFrame, second: pd.DataFrame, system: ValueSystem) -> pd.DataFrame:
    columns = [score_column(k) for k in system.leaf_keys()]
    keep = ["row_id", "model", *columns]
    a = first[first["valid"].astype(bool)][[c for c in keep if c in first]]
    b = second[second["valid"].astype(bool)][["row_id", *columns]]
    return a.merge(b, on="row_id", suffixes=("", "_other"))


def between_judges(counted: pd.DataFrame, other: pd.DataFrame, system: ValueSystem, *, judge: str,
                   other_judge: str, family: str | None, other_family: str | None,
                   families: dict[str, str]) -> list[dict[str, Any]]:
    """The agreement row and the self-preference row of two judges' judgments of one system."""
    columns = [score_column(k) for k in system.leaf_keys()]
    paired = _paired(counted, other, system)
    base = {"system": system.name, "judge": judge, "other_judge": other_judge}
    a = paired[columns].to_numpy(dtype=float)
    b = paired[[c + "_other" for c in columns]].to_numpy(dtype=float)
    result = agreement(a, b)
    note = result.pop("notice")
    if not len(paired):
        note = "the two judges share no validly judged completion"
    diff = a - b
    rows = [{**base, "check": "other judge", **result, "difference": float(np.nanmean(diff)) if diff.size else np.nan,
             "notice": note}]
    rows.append({**base, "check": "self-preference", **_self_preference(paired, diff, family, other_family,
                                                                         families)})
    return rows


def _self_preference(paired: pd.DataFrame, diff: np.ndarray, family: str | None, other_family: str | None,
                     families: dict[str, str]) -> dict[str, Any]:
    empty = {"n": 0, "krippendorff_alpha": np.nan, "qwk": np.nan, "exact": np.nan, "difference": np.nan}
    if family is None and other_family is None:
        return {**empty, "notice": "self-preference needs a judge of a known model family (an LLM judge the "
                                    "study names)"}
    if family is not None and other_family is not None and family == other_family:
        return {**empty, "notice": f"both judges are of family {family!r}: self-preference is not separable"}
    # the sign: positive when the family judge favours its own family, whichever of the two it is
    own, sign = (family, 1.0) if family is not None else (other_family, -1.0)
    per_model = pd.Series(np.nanmean(diff, axis=1), index=paired["model"].astype(str)).groupby(level=0).mean()
    same = per_model[[families.get(m) == own for m in per_model.index]]
    rest = per_model[[families.get(m) != own for m in per_model.index]]
    if not len(same) or not len(rest):
        missing = "no respondent of the judge's family" if not len(same) else "no respondent of another family"
        return {**empty, "n": len(paired), "notice": f"self-preference of family {own!r}: {missing}"}
    value = sign * float(same.mean() - rest.mean())
    return {**empty, "n": len(paired), "difference": value,
            "notice": f"family {own!r}: {len(same)} own and {len(rest)} other respondent model(s); points on the "
                      f"0-6 scale, positive = the {own} judge favours its own family"}


def judge_facet_rows(counted: pd.DataFrame, other: pd.DataFrame, system: ValueSystem, *, judge: str,
                     other_judge: str) -> list[dict[str, Any]]:
    """One ``judge facet`` row per dimension: judge share, G / Phi with one judge and with both."""
    columns = [score_column(k) for k in system.leaf_keys()]
    both = counted[counted["valid"].astype(bool)].merge(
        other[other["valid"].astype(bool)][["row_id", *columns]], on="row_id", suffixes=("", "_other"))
    mine = dimension_values(both, system)
    theirs = dimension_values(both.drop(columns=columns).rename(columns={c + "_other": c for c in columns}), system)
    base = {"system": system.name, "judge": judge, "other_judge": other_judge, "check": "judge facet"}
    rows = []
    for dim in system.all_dimensions():
        cells = mine[["model", "item_id", "config", "sample"]]
        y_a = gstudy.balanced(cells.assign(v=mine[dim.key]), "v")[0] if len(cells) else None
        y_b = gstudy.balanced(cells.assign(v=theirs[dim.key]), "v")[0] if len(cells) else None
        row: dict[str, Any] = {**base, "dimension": dim.name, "n": len(both), "judge_share": np.nan,
                               "G": np.nan, "Phi": np.nan, "G_both": np.nan, "notice": None}
        if y_a is None or y_b is None or y_a.shape != y_b.shape or min(y_a.shape) < 2:
            shape = "no completion" if y_a is None else "x".join(map(str, y_a.shape))
            row["notice"] = (f"the judge facet needs 2 or more models, stems, configs and samples judged by both "
                             f"judges (balanced design here: {shape})")
        else:
            g = gstudy.estimate_with_judges(np.stack([y_a, y_b], axis=-1))
            (big_g, phi), g_both = g.coefficients(1), g.coefficients(2)[0]
            row.update(judge_share=g.judge_share(), G=big_g, Phi=phi, G_both=g_both,
                       notice=f"{g.n_negative} negative estimate(s) set to 0" if g.n_negative else None)
        rows.append(row)
    return rows
