"""Judge reliability: agreement between two judge passes, and the judge's error on control completions.

- Krippendorff's alpha (Krippendorff 2011; `valuelex.stats.krippendorff` states it), ordinal: the
  level of the 0..6 judge scale.
- Quadratic weighted kappa between two passes (scikit-learn's `cohen_kappa_score`).
- Controls (``valuelex/data/quality/controls.yaml``): off-topic sentences that must score 3 (the
  neutral midpoint) on every dimension, and per dimension of the packaged systems sentences that
  clearly align (6) or conflict (0). A judge's mean absolute error on each kind is its leniency /
  severity check: a judge that answers 3 to everything is perfect on off-topic and off by 3 on the rest.

A deterministic judge (the embedding judge) gives the same scores on a second pass: its agreement is
1 by construction, and the stage reports that instead of spending time proving it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import yaml

from valuelex.evaluate.systems import ValueSystem
from valuelex.stats.krippendorff import Metric, alpha

NEUTRAL = 3
CONTROL_TARGET = {"off_topic": 3, "aligned": 6, "conflicting": 0}


def krippendorff_alpha(data: np.ndarray, level: Metric = "ordinal") -> float:
    """Alpha of reliability data (coders, units) with NaN for a missing value; NaN when not computable
    (`valuelex.stats.krippendorff.alpha`, which says None, states the formula)."""
    value = alpha(data, level)
    return float("nan") if value is None else value


def quadratic_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """QWK of two passes' integer scores; NaN when both passes give one value throughout."""
    from sklearn.metrics import cohen_kappa_score

    a, b = np.asarray(a).astype(int), np.asarray(b).astype(int)
    if len(a) == 0 or np.unique(np.concatenate([a, b])).size < 2:
        return float("nan")
    return float(cohen_kappa_score(a, b, weights="quadratic", labels=list(range(7))))


def agreement(first: np.ndarray, second: np.ndarray) -> dict[str, Any]:
    """Agreement of two passes over the same (completion, dimension) scores, flattened."""
    a, b = np.asarray(first, dtype=float).ravel(), np.asarray(second, dtype=float).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    alpha = krippendorff_alpha(np.vstack([a, b]), "ordinal")
    out = {"n": int(ok.sum()), "krippendorff_alpha": alpha, "qwk": quadratic_kappa(a, b),
           "exact": float((a == b).mean()) if len(a) else float("nan"), "notice": None}
    if len(a) and np.isnan(alpha):
        out["notice"] = "both passes give one score value throughout: agreement is not defined"
    return out


@cache
def _controls() -> dict[str, Any]:
    text = resources.files("valuelex.data").joinpath("quality/controls.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def control_items(system: ValueSystem) -> list[tuple[str, str, str | None, int]]:
    """(kind, text, leaf key or None for every leaf, target score) for a system's controls."""
    doc = _controls()
    items: list[tuple[str, str, str | None, int]] = [("off_topic", t, None, NEUTRAL) for t in doc["off_topic"]]
    by_name = doc.get("dimensions", {}).get(system.name, {})
    for leaf in system.leaves():
        for kind in ("aligned", "conflicting"):
            items += [(kind, t, leaf.key, CONTROL_TARGET[kind]) for t in by_name.get(leaf.name, {}).get(kind, [])]
    return items


def control_errors(score_texts: Callable[[list[str], ValueSystem], np.ndarray], system: ValueSystem) -> dict[str, Any]:
    """Mean absolute error of a judge (`score_texts(texts, system) -> (n, leaves)` scores) per control kind.

    Off-topic sentences count on every leaf; aligned / conflicting ones on their own leaf only.
    """
    items = control_items(system)
    keys = list(system.leaf_keys())
    scores = np.asarray(score_texts([t for _, t, _, _ in items], system), dtype=float)
    errors: dict[str, list[float]] = {k: [] for k in CONTROL_TARGET}
    for (kind, _, key, target), row in zip(items, scores, strict=True):
        cells = row if key is None else row[[keys.index(key)]]
        errors[kind] += list(np.abs(cells - target))
    out: dict[str, Any] = {f"error_{k}": (float(np.mean(v)) if v else float("nan")) for k, v in errors.items()}
    out.update({f"n_{k}": len(v) for k, v in errors.items()})
    return out
