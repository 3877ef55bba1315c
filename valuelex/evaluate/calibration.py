"""Calibration of the embedding judge: a monotone map, per dimension, from similarity to score.

The uncalibrated rule (`valuelex.evaluate.embedding.calibrate`) turns the similarity difference
``d = cos(y, aligned) - cos(y, conflict)`` (or ``cos(y, aligned) - NEUTRAL_SIMILARITY`` for a
dimension without conflict words) into ``round(3 + 3 * clip(d / SCALE, -1, 1))``: the same constants
for every dimension and system. But each dimension's poles sit differently in embedding space, so
one threshold undercalls some dimensions and overcalls others.

The calibrated rule keeps the direction (a larger ``d`` never scores lower) and fits where the
steps are, per dimension, on the development set's *calibration* half
(`valuelex.evaluate.devset`): an isotonic regression (scikit-learn, pool-adjacent-violators) of
the label ``y`` (0 conflicting, 1 neutral, 2 high) on ``d``,

    g = argmin over non-decreasing g of  sum_i w_i (y_i - g(d_i))^2,   0 <= g <= 2,

with class-balanced weights ``w_i = n / (3 n_{y_i})`` so that the many neutral items do not pull
every fitted value toward 1 (balanced accuracy is the target). The score is
``round(3 * g(d))`` in 0..6 (``g = 1``: neutral 3). Outside the fitted range ``g`` is clipped to its
end values; inside, it is the linear interpolation of the fitted steps (what
`IsotonicRegression.predict` does), so the stored steps alone reproduce it exactly.

A calibration is stored as JSON (package data ``valuelex/data/judge/calibration/<model>.json``):
per system, the system's fingerprint (a calibration applies only to the version it was fitted on)
and per dimension the steps ``x`` and ``g(x)``. Its digest is part of the judge key, so a refit
makes new judgments. A system without one (a constructed taxonomy) keeps the uncalibrated rule.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.isotonic import IsotonicRegression

if TYPE_CHECKING:
    import pandas as pd

    from valuelex.evaluate.systems import ValueSystem

CALIBRATION_VERSION = 1
MAX_LABEL = 2


def fit_dimension(d: np.ndarray, y: np.ndarray) -> dict[str, list[float]]:
    """The isotonic steps (x, g) of labels `y` (0..2) on differences `d`, class-balanced (see the docstring)."""
    d, y = np.asarray(d, dtype=float), np.asarray(y, dtype=int)
    counts = np.bincount(y, minlength=MAX_LABEL + 1).astype(float)
    weights = len(y) / ((MAX_LABEL + 1) * counts[y])
    model = IsotonicRegression(y_min=0, y_max=MAX_LABEL, increasing=True, out_of_bounds="clip")
    model.fit(d, y, sample_weight=weights)
    return {"x": [float(v) for v in model.X_thresholds_], "g": [float(v) for v in model.y_thresholds_]}


def apply_dimension(steps: dict[str, list[float]], d: np.ndarray) -> np.ndarray:
    """Integer scores 0..6 of differences `d` under one dimension's fitted steps."""
    g = np.interp(np.asarray(d, dtype=float), steps["x"], steps["g"])
    return np.rint(3 * g).astype(int)


def fit(features: pd.DataFrame, systems: list[ValueSystem], *, model: str, fitted_on: str) -> dict[str, Any]:
    """A calibration from labelled differences: `features` has columns system, dimension, d, y."""
    out: dict[str, Any] = {"version": CALIBRATION_VERSION, "model": model, "fitted_on": fitted_on,
                           "method": "isotonic, class-balanced weights, score = round(3 g(d))", "systems": {}}
    for system in systems:
        mine = features[features["system"] == system.name]
        if mine.empty:
            continue
        out["systems"][system.name] = {
            "fingerprint": system.fingerprint(),
            "dimensions": {dim: fit_dimension(g["d"], g["y"]) for dim, g in mine.groupby("dimension", sort=True)},
        }
    return out


def digest(calibration: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(calibration, sort_keys=True).encode()).hexdigest()[:8]


def for_system(calibration: dict[str, Any] | None, system: ValueSystem) -> dict[str, Any] | None:
    """The system's part of a calibration, when it was fitted on this version of it with every leaf; else None."""
    if not calibration:
        return None
    part = calibration.get("systems", {}).get(system.name)
    if not part or part.get("fingerprint") != system.fingerprint():
        return None
    if set(part.get("dimensions", {})) != set(system.leaf_keys()):
        return None
    return part


def packaged_name(model_name: str) -> str:
    """The file name of a model's packaged calibration: ``embedding:all-MiniLM-L6-v2`` -> ``all-MiniLM-L6-v2.json``."""
    return model_name.split(":", 1)[-1] + ".json"


@cache
def packaged(model_name: str) -> dict[str, Any] | None:
    """The packaged calibration of an embedding model (by judge name), or None when there is none."""
    resource = resources.files("valuelex.data").joinpath("judge", "calibration", packaged_name(model_name))
    if not resource.is_file():
        return None
    return json.loads(resource.read_text(encoding="utf-8"))


def packaged_path(model_name: str) -> Path:
    """Where `valuelex judge-calibrate` writes a model's calibration in the source tree."""
    return Path(__file__).resolve().parents[1] / "data" / "judge" / "calibration" / packaged_name(model_name)

