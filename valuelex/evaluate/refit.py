"""Refit the embedding judge's calibrations on the development set, and choose the stance model by
cross-validation inside the calibration half.

- isotonic (`valuelex.evaluate.calibration`): `embedding_features` gives each labelled (completion,
  dimension) of a half its ``d``; `refit` fits on the calibration half and writes the JSON.
- stance (`valuelex.evaluate.stance`): `stance_frame` gives each labelled pair its named stance
  features; `fit_stance` fits the ordinal model per system (or one pooled over the systems) on the
  chosen features; `cross_validate` scores every variant of `VARIANTS` x `C_GRID` x pooling by
  `CV_FOLDS`-fold cross-validation grouped by `devset.phrase_groups` (a phrase never in both a fold's
  fit and its assessment, as the split keeps it out of both halves), beside the fixed rule on the same
  labels; `choose` picks the variant whose worst system gains most over the fixed rule in balanced
  accuracy and QWK (the adoption test of docs/benchmarks.md section 6), ties broken by the mean gain.
  The test half is never read here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

from valuelex.evaluate import stance
from valuelex.evaluate.calibration import digest, fit, packaged, packaged_path
from valuelex.evaluate.devset import load_devset, metrics, phrase_groups
from valuelex.evaluate.embedding import calibrate, differences
from valuelex.evaluate.judgments import completed_sentence

if TYPE_CHECKING:
    from valuelex.evaluate.systems import ValueSystem

VARIANTS: dict[str, tuple[str, ...]] = {
    "d": ("d",),
    "d+cue": ("d", "cue_d"),
    "prototypes": ("ea_ec", "rc_ra"),
    "prototypes+cue": ("ea_ec", "cue_ea_ec", "rc_ra"),
    "prototypes+cue2": ("ea_ec", "cue_ea_ec", "rc_ra", "cue_rc_ra"),
    "prototypes+cue+d": ("d", "cue_d", "ea_ec", "cue_ea_ec", "rc_ra"),
    "prototypes+cue+relevance": ("ea_ec", "cue_ea_ec", "rc_ra", "rel_ea_ec"),
}
C_GRID = (0.1, 1.0, 10.0)
CV_FOLDS = 5
SHOWN = ("balanced_accuracy", "qwk", "auc")


def embedding_features(judge: Any, systems: list[ValueSystem], split: str = "calibration") -> pd.DataFrame:
    """The development labels of `split` with the embedding judge's ``d`` on each labelled dimension."""
    frames = []
    for system in systems:
        labels = load_devset(system.name, split)
        if labels.empty:
            continue
        items = labels.drop_duplicates("id")
        texts = [completed_sentence(r.stem, r.response) for r in items.itertuples()]
        d = differences(*judge.similarities(texts, system))
        row = {item: i for i, item in enumerate(items["id"])}
        column = {k: i for i, k in enumerate(system.leaf_keys())}
        labels = labels.copy()
        labels["d"] = [float(d[row[r.id], column[r.dimension]]) for r in labels.itertuples()]
        frames.append(labels)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def refit(judge: Any, systems: list[ValueSystem], out: str | Path | None = None) -> dict[str, Any]:
    """Fit `judge`'s calibration on the calibration half and write it (default: the packaged file)."""
    features = embedding_features(judge, systems, "calibration")
    calibration = fit(features, systems, model=judge.name, fitted_on="devset calibration half")
    path = Path(out) if out else packaged_path(judge.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(calibration, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    packaged.cache_clear()
    return {"file": str(path), "digest": digest(calibration), "labels": len(features),
            "systems": sorted(calibration["systems"])}


def stance_frame(judge: Any, systems: list[ValueSystem], split: str = "calibration") -> pd.DataFrame:
    """The development labels of `split` with every named stance feature, the fixed rule's score
    (``fixed``) and the phrase ``group`` of each labelled pair."""
    frames = []
    for system in systems:
        labels = load_devset(system.name, split)
        if labels.empty or not stance.applies(system):
            continue
        items = labels.drop_duplicates("id")
        texts = [completed_sentence(r.stem, r.response) for r in items.itertuples()]
        emb = judge._encode(texts)
        columns = judge.stance_features(texts, system, emb)
        fixed = calibrate(*judge.similarities(texts, system, emb))
        row = np.array([{i: k for k, i in enumerate(items["id"])}[r] for r in labels["id"]])
        col = np.array([system.leaf_keys().index(k) for k in labels["dimension"]])
        labels = labels.copy()
        for name, values in columns.items():
            labels[name] = values[row, col]
        labels["fixed"] = fixed[row, col]
        labels["group"] = phrase_groups(labels)
        frames.append(labels)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def fit_stance(frame: pd.DataFrame, systems: list[ValueSystem], *, model: str, features: tuple[str, ...],
               c: float, pooled: bool, variant: str = "") -> dict[str, Any]:
    """A stance calibration fitted on labelled features `frame` (columns system, y and the features)."""
    names = [s.name for s in systems if s.name in set(frame["system"])]
    shared = stance.fit_ordinal(stance.design(frame, features), frame["y"], c) if pooled else None
    out: dict[str, Any] = {"kind": "stance", "version": stance.STANCE_VERSION, "model": model,
                           "fitted_on": "devset calibration half", "lexicon": stance.lexicon().digest(),
                           "features": list(features), "c": c, "pooled": pooled, "variant": variant, "systems": {}}
    for system in systems:
        if system.name not in names:
            continue
        mine = frame[frame["system"] == system.name]
        params = shared or stance.fit_ordinal(stance.design(mine, features), mine["y"], c)
        out["systems"][system.name] = {"fingerprint": system.fingerprint(), **params}
    return out


def _cv_scores(frame: pd.DataFrame, features: tuple[str, ...], c: float, pooled: bool) -> np.ndarray:
    """Out-of-fold scores of every row of `frame` (folds grouped by phrase, within a system unless pooled)."""
    scores = np.zeros(len(frame), dtype=int)
    blocks = [np.arange(len(frame))] if pooled else [np.flatnonzero(frame["system"] == s)
                                                     for s in frame["system"].unique()]
    x, y, groups = stance.design(frame, features), frame["y"].to_numpy(), frame["group"].to_numpy()
    for block in blocks:
        for train, held in GroupKFold(n_splits=CV_FOLDS).split(x[block], y[block], groups[block]):
            params = stance.fit_ordinal(x[block][train], y[block][train], c)
            scores[block[held]] = stance.ordinal_scores(x[block][held], params)
    return scores


def _figures(frame: pd.DataFrame, scores: np.ndarray) -> dict[str, dict[str, float]]:
    out = {}
    for system in sorted(frame["system"].unique()):
        mine = (frame["system"] == system).to_numpy()
        m = metrics(frame["y"].to_numpy()[mine], scores[mine])
        out[system] = {k: m[k] for k in SHOWN}
    return out


def cross_validate(frame: pd.DataFrame) -> dict[str, Any]:
    """Grouped CV figures per system of the fixed rule and of every stance variant (see the module docstring)."""
    fixed = _figures(frame, frame["fixed"].to_numpy())
    variants = []
    for name, features in VARIANTS.items():
        for pooled in (False, True):
            for c in C_GRID:
                figures = _figures(frame, _cv_scores(frame, features, c, pooled))
                gains = [min(figures[s]["balanced_accuracy"] - fixed[s]["balanced_accuracy"],
                             figures[s]["qwk"] - fixed[s]["qwk"]) for s in figures]
                variants.append({"variant": name, "features": list(features), "c": c, "pooled": pooled,
                                 "systems": figures, "worst_gain": min(gains), "mean_gain": float(np.mean(gains))})
    return {"folds": CV_FOLDS, "grouped_by": "devset.phrase_groups", "fixed_rule": fixed, "variants": variants}


def choose(cv: dict[str, Any]) -> dict[str, Any]:
    """The variant whose worst system gains most over the fixed rule (balanced accuracy and QWK), then by mean."""
    return max(cv["variants"], key=lambda v: (round(v["worst_gain"], 6), v["mean_gain"]))


def refit_stance(judge: Any, systems: list[ValueSystem], out: str | Path | None = None,
                 cv_out: str | Path | None = None) -> dict[str, Any]:
    """Cross-validate the stance variants on the calibration half, fit the chosen one on the whole half and
    write it (default: the packaged file); the CV figures go to `cv_out` when given."""
    frame = stance_frame(judge, systems, "calibration")
    cv = cross_validate(frame)
    best = choose(cv)
    calibration = fit_stance(frame, systems, model=judge.name, features=tuple(best["features"]), c=best["c"],
                             pooled=best["pooled"], variant=best["variant"])
    path = Path(out) if out else stance.packaged_path(judge.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(calibration, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    stance.packaged.cache_clear()
    if cv_out:
        Path(cv_out).parent.mkdir(parents=True, exist_ok=True)
        Path(cv_out).write_text(json.dumps(cv | {"chosen": best}, indent=1) + "\n", encoding="utf-8")
    return {"file": str(path), "labels": len(frame), "chosen": best, "systems": sorted(calibration["systems"])}
