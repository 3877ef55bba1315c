"""The stance calibration of the embedding judge: features that read *rejection*, and an ordinal model.

Why: the fixed rule and the isotonic calibration (`valuelex.evaluate.calibration`) both read one
number, ``d = cos(y, aligned) - cos(y, conflict)``, which measures what a completion is *about*.
"I hate lying" is about lying, so it sits near the conflict pole although it holds honesty; a
monotone map of ``d`` cannot undo that (docs/benchmarks.md section 6).

Features of a completion ``y`` (unit embedding) on one dimension, all from package data
(``valuelex/data/judge/stance.yaml``, never development-set text):

- prototypes: for each pole P (anchors ``A`` or conflicts ``C``) and frame F (endorse ``E`` or
  reject ``R``) the normalised mean embedding of the templates of F filled with each word of P
  ("I value honesty", "I hate lying", ...); ``s_FP = cos(y, prototype_FP)``;
- ``cue`` in {0, 1}: whether the completed sentence contains a rejection cue word (whole tokens,
  lower case; "n't" counts as "not");
- ``n = cos(y, neutral prototype)`` (sentences that state no value), for a relevance feature.

The named feature columns a model may use (``d`` as in `valuelex.evaluate.embedding`)::

    d, cue_d = cue * d,
    ea_ec = s_EA - s_EC,  cue_ea_ec = cue * (s_EA - s_EC),
    rc_ra = s_RC - s_RA,  cue_rc_ra = cue * (s_RC - s_RA),
    rel_ea_ec = (max(s_EA, s_EC) - n) * (s_EA - s_EC)

The model (one per system; optionally one pooled over the packaged systems) is ordinal logistic with a
shared slope, fitted as two cumulative binary splits by data replication (scikit-learn
`LogisticRegression`, L2 penalty ``1/C`` on standardised features): for a feature row ``x``,

    eta = w . x,   P(label >= k) = sigma(eta + b_k),  k = 1 (neutral or high), 2 (high),

maximising the class-balanced sum over both splits of the binary log-likelihoods (each label weighted
``n / (3 n_label)``, so balanced accuracy is the target). The class is the number of splits with
``P >= 1/2`` (the model orders them: ``b_1 > b_2``), and the 0..6 score is monotone in ``eta``:

    high:         round(3 + 3 P(label >= 2)), clipped to 4..6,
    conflicting:  round(3 P(label >= 1)),     clipped to 0..2,
    neutral:      3.

Standardisation is folded into ``w`` and ``b`` before storing, so the stored weights apply to raw
features. A stance calibration is JSON (``valuelex/data/judge/calibration/<model>.stance.json``): the
lexicon's digest, the feature names, and per system its fingerprint and ``(w, b_1, b_2)``. It applies
to a system only when the fingerprint and the lexicon digest match and every leaf has conflict words;
a constructed taxonomy (no conflict words) keeps the fixed rule.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from sklearn.linear_model import LogisticRegression

if TYPE_CHECKING:
    from valuelex.evaluate.systems import ValueDimension, ValueSystem

STANCE_VERSION = 1
PROTOTYPES = ("endorse_anchors", "endorse_conflicts", "reject_anchors", "reject_conflicts")
FEATURES = ("d", "cue_d", "ea_ec", "cue_ea_ec", "rc_ra", "cue_rc_ra", "rel_ea_ec")
LEXICON_FILE = "valuelex/data/judge/stance.yaml"


@dataclass(frozen=True)
class Lexicon:
    """The stance package data: rejection cue words, prototype templates and neutral sentences."""

    rejection_cues: frozenset[str]
    endorse_templates: tuple[str, ...]
    reject_templates: tuple[str, ...]
    neutral_texts: tuple[str, ...]

    def digest(self) -> str:
        blob = json.dumps({"cues": sorted(self.rejection_cues), "endorse": self.endorse_templates,
                           "reject": self.reject_templates, "neutral": self.neutral_texts}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]


@cache
def lexicon() -> Lexicon:
    """The packaged stance lexicon (``valuelex/data/judge/stance.yaml``)."""
    raw = yaml.safe_load(resources.files("valuelex.data").joinpath("judge", "stance.yaml").read_text(encoding="utf-8"))
    return Lexicon(frozenset(w.lower() for w in raw["rejection_cues"]), tuple(raw["endorse_templates"]),
                   tuple(raw["reject_templates"]), tuple(raw["neutral_texts"]))


def rejection_cue(text: str, cues: frozenset[str]) -> float:
    """1.0 when `text` has a cue word as a whole lower-case token ("n't" endings count as "not"), else 0.0."""
    tokens = re.findall(r"[a-z]+(?:'[a-z]+)?", text.lower().replace("\u2019", "'"))
    words = {t for t in tokens} | {"not" for t in tokens if t.endswith("n't")}
    return float(bool(words & cues))


def prototype_texts(dim: ValueDimension, lex: Lexicon) -> dict[str, list[str]]:
    """The sentences of a dimension's four prototypes (empty conflict lists without conflict words)."""
    fill = {"anchors": dim.anchors, "conflicts": dim.conflicts}
    return {f"{frame}_{pole}": [t.format(w=w) for t in templates for w in words]
            for frame, templates in (("endorse", lex.endorse_templates), ("reject", lex.reject_templates))
            for pole, words in fill.items()}


def feature_columns(d: np.ndarray, sims: dict[str, np.ndarray], neutral: np.ndarray,
                    cue: np.ndarray) -> dict[str, np.ndarray]:
    """The named features (n, L) of the module docstring from ``d`` (n, L), the prototype similarities
    `sims` (name -> (n, L)), the neutral similarity (n,) and the cue (n,)."""
    cue_, neutral_ = np.asarray(cue, dtype=float)[:, None], np.asarray(neutral, dtype=float)[:, None]
    ea_ec = sims["endorse_anchors"] - sims["endorse_conflicts"]
    rc_ra = sims["reject_conflicts"] - sims["reject_anchors"]
    relevance = np.maximum(sims["endorse_anchors"], sims["endorse_conflicts"]) - neutral_
    return {"d": d, "cue_d": cue_ * d, "ea_ec": ea_ec, "cue_ea_ec": cue_ * ea_ec, "rc_ra": rc_ra,
            "cue_rc_ra": cue_ * rc_ra, "rel_ea_ec": relevance * ea_ec}


def fit_ordinal(x: np.ndarray, y: np.ndarray, c: float = 1.0) -> dict[str, Any]:
    """``{"w", "b"}`` of the cumulative ordinal logistic model of labels `y` (0..2) on features `x` (n, k),
    class-balanced, on raw-feature scale (see the module docstring)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=int)
    n, k = x.shape
    mean, sd = x.mean(axis=0), x.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    z = (x - mean) / sd
    counts = np.bincount(y, minlength=3).astype(float)
    weight = n / (3 * np.maximum(counts[y], 1))
    rows = np.vstack([np.column_stack([z, np.ones(n), np.zeros(n)]), np.column_stack([z, np.zeros(n), np.ones(n)])])
    target = np.concatenate([y >= 1, y >= 2]).astype(int)
    model = LogisticRegression(C=c, fit_intercept=False, max_iter=5000)
    model.fit(rows, target, sample_weight=np.concatenate([weight, weight]))
    coef = model.coef_[0]
    w = coef[:k] / sd
    b = coef[k:] - w @ mean
    return {"w": [float(v) for v in w], "b": [float(v) for v in b]}


def ordinal_scores(x: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """Integer scores 0..6 of feature rows `x` (n, k) under fitted ``{"w", "b"}`` (see the module docstring)."""
    eta = np.asarray(x, dtype=float) @ np.asarray(params["w"], dtype=float)
    b1, b2 = params["b"]
    p_up = 1 / (1 + np.exp(-(eta + b1)))
    p_high = 1 / (1 + np.exp(-(eta + b2)))
    high = np.clip(np.rint(3 + 3 * p_high), 4, 6)
    low = np.clip(np.rint(3 * p_up), 0, 2)
    return np.where(p_high >= 0.5, high, np.where(p_up < 0.5, low, 3)).astype(int)


def design(columns: dict[str, np.ndarray], names: list[str] | tuple[str, ...]) -> np.ndarray:
    """Stack the named (n,) feature columns into a design matrix (n, k)."""
    return np.column_stack([np.asarray(columns[name], dtype=float) for name in names])


def applies(system: ValueSystem) -> bool:
    """Whether the stance features exist for `system`: every leaf has conflict words."""
    return all(d.conflicts for d in system.leaves())


def digest(part: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()[:8]


def for_system(calibration: dict[str, Any] | None, system: ValueSystem) -> dict[str, Any] | None:
    """The system's model with the calibration's features and lexicon digest, when it was fitted on this
    version of the system with the current lexicon; else None (the fixed rule)."""
    if not calibration or calibration.get("lexicon") != lexicon().digest() or not applies(system):
        return None
    part = calibration.get("systems", {}).get(system.name)
    if not part or part.get("fingerprint") != system.fingerprint():
        return None
    return {"features": list(calibration["features"]), "lexicon": calibration["lexicon"], **part}


def packaged_name(model_name: str) -> str:
    """``embedding:all-MiniLM-L6-v2`` -> ``all-MiniLM-L6-v2.stance.json``."""
    return model_name.split(":", 1)[-1] + ".stance.json"


@cache
def packaged(model_name: str) -> dict[str, Any] | None:
    """The packaged stance calibration of an embedding model (by judge name), or None."""
    resource = resources.files("valuelex.data").joinpath("judge", "calibration", packaged_name(model_name))
    return json.loads(resource.read_text(encoding="utf-8")) if resource.is_file() else None


def packaged_path(model_name: str) -> Path:
    """Where `valuelex judge-calibrate --method stance` writes a model's stance calibration."""
    return Path(__file__).resolve().parents[1] / "data" / "judge" / "calibration" / packaged_name(model_name)
