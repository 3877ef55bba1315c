"""The judge development set: labelled completions, and how well a judge agrees with them.

The set is package data (``valuelex/data/judge/devset/devset.csv``, made by bench/make_devset.py
from ``source.yaml``; how, in that folder's README.md): completions of the packaged stems, each
labelled ``high``, ``neutral`` or ``conflicting`` on one or more dimensions of a packaged value
system, with a one-line reason. It has a fixed ``calibration`` half (what a judge may be fitted on)
and a ``test`` half (what it is measured on).

A judge's 0..6 score is read as a class: below 3 conflicting, 3 neutral, above 3 high (the scale of
the judge prompt). On the labelled (completion, dimension) pairs, pooled and per dimension:

- ``qwk``: Cohen's kappa with quadratic weights of the 3-level label and the judge's class;
- ``alpha``: Krippendorff's alpha, ordinal metric, of the same two ratings (`valuelex.stats.krippendorff`);
- ``auc``: area under the ROC curve of the raw score, high against conflicting labels (neutral left
  out): the chance that a high item scores above a conflicting one, ties counting half;
- ``balanced_accuracy``: the mean over the three labels of the share the judge's class gets right
  (1/3 by chance, whatever the label mix), and ``accuracy``;
- ``share_high`` / ``share_labelled_high``: how often the judge says high, and the labels do.
"""

from __future__ import annotations

import csv
import re
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score, roc_auc_score

from valuelex.errors import StudyError
from valuelex.evaluate.judgments import score_column
from valuelex.stats.krippendorff import alpha as krippendorff_alpha

if TYPE_CHECKING:
    from valuelex.evaluate.systems import ValueSystem
    from valuelex.spec import Study

DEVSET_FILE = "valuelex/data/judge/devset/devset.csv"
LABELS = {"conflicting": 0, "neutral": 1, "high": 2}
SPLITS = ("calibration", "test", "all")


@cache
def _rows() -> tuple[dict[str, str], ...]:
    text = resources.files("valuelex.data").joinpath("judge", "devset", "devset.csv").read_text(encoding="utf-8")
    return tuple(csv.DictReader(text.splitlines(keepends=True)))


def load_devset(system: str | None = None, split: str = "all") -> pd.DataFrame:
    """The labels, one row per (completion, dimension): id, system, split, stem_id, stem, response,
    dimension, label, reason, style, kind; ``y`` is the label as 0 (conflicting), 1 (neutral), 2 (high)."""
    if split not in SPLITS:
        raise StudyError(f"judge-check: --split: {split!r} is not one of {', '.join(SPLITS)}")
    frame = pd.DataFrame(list(_rows()))
    unknown = set(frame["label"]) - set(LABELS)
    if unknown:
        raise StudyError(f"{DEVSET_FILE}: label: unknown labels {sorted(unknown)}")
    frame["y"] = frame["label"].map(LABELS).astype(int)
    if system is not None:
        frame = frame[frame["system"] == system]
    if split != "all":
        frame = frame[frame["split"] == split]
    return frame.reset_index(drop=True)


@cache
def _neutral_texts() -> tuple[str, ...]:
    raw = yaml.safe_load(resources.files("valuelex.data").joinpath("judge", "devset", "source.yaml")
                         .read_text(encoding="utf-8"))
    return tuple(n["text"].lower().rstrip(".") for n in raw["neutral"])


def phrase_groups(labels: pd.DataFrame) -> pd.Series:
    """The group of each label row, as the split keeps them apart: a targeted item's phrase (quoted in its
    reason), a neutral item's source text (whatever its style); cross-validation folds split by group."""
    def group(row: Any) -> str:
        quoted = re.search(r"'(.+)'", row.reason)
        if row.kind == "targeted" and quoted:
            return f"phrase:{quoted.group(1)}"
        response = row.response.lower()
        return next((f"text:{t}" for t in _neutral_texts() if t in response), f"item:{row.id}")
    return pd.Series([group(r) for r in labels.itertuples()], index=labels.index, dtype=object)


def devset_systems() -> list[str]:
    return sorted({r["system"] for r in _rows()})


def score_class(scores: np.ndarray) -> np.ndarray:
    """0 (conflicting) below 3, 1 (neutral) at 3, 2 (high) above 3."""
    scores = np.asarray(scores, dtype=float)
    return np.where(scores < 3, 0, np.where(scores > 3, 2, 1))


def metrics(y: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """Agreement of labels `y` (0..2) with judge scores 0..6 (see the module docstring); None where undefined."""
    y, scores = np.asarray(y, dtype=int), np.asarray(scores, dtype=float)
    out: dict[str, Any] = {"n": len(y)}
    if not len(y):
        return out | {k: None for k in ("qwk", "alpha", "auc", "balanced_accuracy", "accuracy", "share_high",
                                        "share_labelled_high")}
    pred = score_class(scores)
    with np.errstate(divide="ignore", invalid="ignore"):
        qwk = float(cohen_kappa_score(y, pred, labels=[0, 1, 2], weights="quadratic"))
    extremes = y != 1
    both = extremes.any() and len(set(y[extremes])) == 2
    out.update(
        qwk=None if np.isnan(qwk) else qwk,
        alpha=krippendorff_alpha(np.vstack([y, pred]), "ordinal"),
        auc=float(roc_auc_score(y[extremes] == 2, scores[extremes])) if both else None,
        balanced_accuracy=float(balanced_accuracy_score(y, pred)) if len(set(y)) > 1 else None,
        accuracy=float(np.mean(y == pred)),
        share_high=float(np.mean(pred == 2)),
        share_labelled_high=float(np.mean(y == 2)),
    )
    return out


def completion_rows(labels: pd.DataFrame) -> list[dict[str, Any]]:
    """The labelled completions as completion rows a judge takes (row_id = the item's id), one per item."""
    items = labels.drop_duplicates("id")
    return [{"row_id": r.id, "item_id": r.stem_id, "stem": r.stem, "response": r.response, "model": "devset",
             "config": "devset", "sample": 0} for r in items.itertuples()]


def judge_labels(judge: Any, system: ValueSystem, labels: pd.DataFrame) -> pd.DataFrame:
    """`labels` with the judge's ``score`` (0..6, NaN when its judgment is invalid) of each labelled pair,
    and ``all_neutral``: whether the judge scored the completion 3 on every dimension.

    Any judge with ``judge(completions, system, sink)`` (the embedding and the LLM judge) will do.
    """
    judged: list[dict[str, Any]] = []
    judge.judge(completion_rows(labels), system, judged.extend)
    by_id = {j["row_id"]: j for j in judged}
    out = labels.copy()
    out["score"] = [by_id.get(r.id, {}).get(score_column(r.dimension)) for r in labels.itertuples()]
    out["score"] = pd.to_numeric(out["score"], errors="coerce")
    columns = [score_column(k) for k in system.leaf_keys()]
    out["all_neutral"] = [bool(by_id.get(r.id, {}).get("valid")) and all(by_id[r.id][c] == 3 for c in columns)
                          for r in labels.itertuples()]
    return out


def summarize(judged: pd.DataFrame) -> dict[str, Any]:
    """Pooled and per-dimension `metrics` of judged labels (rows with no valid score are counted, not scored)."""
    valid = judged[judged["score"].notna()]
    return {
        "n_invalid": int(len(judged) - len(valid)),
        "overall": metrics(valid["y"], valid["score"]),
        "per_dimension": {d: metrics(g["y"], g["score"]) for d, g in valid.groupby("dimension", sort=True)},
    }


JUDGES = ("embedding", "embedding-calibrated", "embedding-stance", "embedding-uncalibrated", "study")
CALIBRATION_OF = {"embedding-calibrated": "packaged", "embedding-stance": "stance", "embedding-uncalibrated": "none"}


def named_judge(name: str, study: Study | None = None) -> Any:
    """The judge `valuelex judge-check --judge NAME` means: ``embedding`` (the study's calibration
    setting, uncalibrated without a study), ``embedding-calibrated`` (isotonic), ``embedding-stance``,
    ``embedding-uncalibrated``, or ``study`` (the study's own judge, e.g. its LLM judge)."""
    from valuelex.evaluate.embedding import EmbeddingJudge
    from valuelex.evaluate.stage import build_judge

    model = study.evaluation.embedding_model if study is not None else None
    if name == "embedding":
        return EmbeddingJudge(model, calibration=study.evaluation.embedding_calibration if study else "none")
    if name in CALIBRATION_OF:
        return EmbeddingJudge(model, calibration=CALIBRATION_OF[name])
    if name == "study":
        if study is None:
            raise StudyError("judge-check: --judge study needs --study STUDY")
        return build_judge(study)
    raise StudyError(f"judge-check: --judge: {name!r} is not one of {', '.join(JUDGES)}")


def check_judge(judge: Any, systems: list[ValueSystem], split: str = "test") -> dict[str, Any]:
    """`summarize` of a judge on the development set's `split`, per packaged system that has labels."""
    report: dict[str, Any] = {"judge": getattr(judge, "name", str(judge)), "split": split, "systems": {}}
    for system in systems:
        labels = load_devset(system.name, split)
        if labels.empty or system.source != "package":
            report["systems"][system.name] = {"note": "no development labels for this system"}
            continue
        report["systems"][system.name] = {"judge_key": judge.key(system), **summarize(
            judge_labels(judge, system, labels))}
    return report
