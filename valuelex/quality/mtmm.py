"""Convergent and discriminant validity of the scores: a multitrait-multimethod table across value systems.

The value systems are the methods, their leaf dimensions the traits. For units u (respondents =
model x config when there are >= 10 of them, else (model, config, stem) cells; the output says
which), each dimension's score is the mean phi over the unit's valid completions, and
r(X, Y) is the Pearson correlation across units of two dimensions of different systems.

- convergent: mean |r| over the expected related pairs (``valuelex/data/quality/related_pairs.yaml``,
  each with its reason) of the systems judged in the run;
- discriminant: mean |r| over every other cross-system pair of leaves (heterotrait-heteromethod);
- gap = convergent - discriminant (the bar of the DeepMind personality study, Serapio-Garcia et al.
  2023, is a gap >= 0.40).

A pair whose dimension does not vary across units has no r and is counted as missing. Fewer than 3
units, or no expected pair between the judged systems, gives a notice instead of numbers.

Across judges (`mtmm_judges`), when two or more judges scored the same completions of one system:
the judges are the methods and the system's leaves the traits, so convergent is the mean |r| of the
same leaf by two judges (monotrait-heteromethod) and discriminant the mean |r| of different leaves by
two judges (heterotrait-heteromethod), on the completions every judge scored validly. With trait
scores T of correlation rho_ab across units and each judge adding independent error of variance s_j^2,
r(a by j, a by j') = var T / sqrt((var T + s_j^2)(var T + s_j'^2)) and r(a by j, b by j') is rho_ab
times the same attenuation, so the gap is (1 - mean |rho_ab|) times it.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
import yaml

MIN_RESPONDENTS = 10
MIN_UNITS = 3
BAR = 0.40


@cache
def related_pairs() -> tuple[tuple[str, str, str, str, str], ...]:
    """(system a, dimension a, system b, dimension b, reason) of the packaged expected related pairs."""
    text = resources.files("valuelex.data").joinpath("quality/related_pairs.yaml").read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    return tuple((p["a"][0], p["a"][1], p["b"][0], p["b"][1], p["reason"]) for p in doc["pairs"])


def unit_scores(values: dict[str, pd.DataFrame], leaves: dict[str, list[tuple[str, str]]]) -> tuple[pd.DataFrame, str]:
    """Units x (system: dimension name) mean phi, and the unit kind.

    `values[system]` is `dimension_values` (model, item_id, config, sample, one column per key);
    `leaves[system]` its leaf (key, name) pairs.
    """
    respondents = set()
    for frame in values.values():
        respondents |= set(map(tuple, frame[["model", "config"]].drop_duplicates().to_numpy().tolist()))
    unit = "respondent" if len(respondents) >= MIN_RESPONDENTS else "cell"
    by = ["model", "config"] if unit == "respondent" else ["model", "config", "item_id"]
    parts = []
    for system, frame in values.items():
        keys = [k for k, _ in leaves[system]]
        means = frame.groupby(by)[keys].mean()
        means.columns = [f"{system}: {name}" for _, name in leaves[system]]
        parts.append(means)
    return pd.concat(parts, axis=1, join="inner"), unit


def mtmm(
    values: dict[str, pd.DataFrame],
    leaves: dict[str, list[tuple[str, str]]],
    pairs: tuple[tuple[str, str, str, str, str], ...] | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """The MTMM summary (convergent, discriminant, gap, units) and one row per cross-system pair."""
    pairs = related_pairs() if pairs is None else pairs
    table, unit = unit_scores(values, leaves)
    expected = {}
    for sa, da, sb, db, reason in pairs:
        expected[(f"{sa}: {da}", f"{sb}: {db}")] = reason
        expected[(f"{sb}: {db}", f"{sa}: {da}")] = reason
    columns = list(table.columns)
    system_of = {c: c.split(": ", 1)[0] for c in columns}
    n = len(table)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(table.to_numpy(dtype=float), rowvar=False) if n >= 2 and columns else None
    rows = []
    for i, x in enumerate(columns):
        for j in range(i + 1, len(columns)):
            y = columns[j]
            if system_of[x] == system_of[y]:
                continue
            r = float(corr[i, j]) if corr is not None and np.isfinite(corr[i, j]) else None
            rows.append(
                {
                    "a": x,
                    "b": y,
                    "kind": "convergent" if (x, y) in expected else "discriminant",
                    "r": r,
                    "reason": expected.get((x, y)),
                }
            )
    frame = pd.DataFrame(rows, columns=["a", "b", "kind", "r", "reason"])
    summary: dict[str, Any] = {
        "unit": unit,
        "n_units": n,
        "systems": sorted(values),
        "convergent": None,
        "discriminant": None,
        "gap": None,
        "n_convergent": 0,
        "n_discriminant": 0,
        "notice": None,
    }
    conv = frame.loc[frame["kind"] == "convergent", "r"].dropna().abs()
    disc = frame.loc[frame["kind"] == "discriminant", "r"].dropna().abs()
    summary["n_convergent"], summary["n_discriminant"] = len(conv), len(disc)
    if len(values) < 2:
        summary["notice"] = "the MTMM table needs two judged value systems"
    elif n < MIN_UNITS:
        summary["notice"] = f"the MTMM table needs at least {MIN_UNITS} {unit}s with scores in every system; got {n}"
    elif not len(conv) or not len(disc):
        summary["notice"] = "no expected related pair (or no other pair) between the judged systems has a correlation"
    else:
        summary.update(
            convergent=float(conv.mean()), discriminant=float(disc.mean()), gap=float(conv.mean() - disc.mean())
        )
    if unit == "cell" and summary["notice"] is None:
        summary["notice"] = (
            f"fewer than {MIN_RESPONDENTS} respondents: units are (model, config, stem) cells, "
            "so the correlations mix respondents and stems"
        )
    return summary, frame


def mtmm_judges(values: dict[str, pd.DataFrame], leaves: list[tuple[str, str]],
                *, system: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """The MTMM summary and pairs with the judges as methods and one system's leaves as traits.

    `values[judge]` is `dimension_values` of that judge's judgments of the same completions.
    """
    judges = list(values)
    pairs = tuple((a, name, b, name, "same trait, other judge")
                  for x, a in enumerate(judges) for b in judges[x + 1:] for _, name in leaves)
    summary, frame = mtmm(values, {j: leaves for j in judges}, pairs)
    if len(values) < 2:
        summary["notice"] = "the MTMM table across judges needs two judges of the system"
    return {**summary, "across": "judges", "system": system}, frame.assign(across="judges", system=system)
