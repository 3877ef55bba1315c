"""Judgments with planted variance components, for the simulation tests and the cost benchmark.

φ_pscm = μ + p + s + c + ps + pc + sc + psc + e, each effect drawn N(0, σ²) for its facets' levels
(the linear model of `valuelex.quality.gstudy`), then clipped to [0, 1] only when asked (clipping
changes the components; the recovery tests leave it off).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from valuelex.evaluate.systems import ValueSystem

EFFECTS = ("model", "stem", "config", "model×stem", "model×config", "stem×config", "model×stem×config", "residual")
_AXES = {"model": 0, "stem": 1, "config": 2}


def planted_array(shape: tuple[int, int, int, int], variances: dict[str, float], rng: np.random.Generator,
                  batch: int | None = None, mean: float = 0.5) -> np.ndarray:
    """An array (batch?, models, stems, configs, samples) of the linear model with the given σ² per effect."""
    lead = () if batch is None else (batch,)
    y = np.full((*lead, *shape), mean, dtype=float)
    for effect, var in variances.items():
        if var <= 0:
            continue
        if effect == "residual":
            y += rng.normal(0, np.sqrt(var), (*lead, *shape))
            continue
        size = [1, 1, 1, 1]
        for facet in effect.split("×"):
            size[_AXES[facet]] = shape[_AXES[facet]]
        y += rng.normal(0, np.sqrt(var), (*lead, *size))
    return y


def synthetic_values(system: ValueSystem, shape: tuple[int, int, int, int], variances: dict[str, float],
                     rng: np.random.Generator, clip: bool = True) -> pd.DataFrame:
    """`dimension_values`-shaped rows (model, item_id, config, sample, one column per dimension key)."""
    n_p, n_s, n_c, n_m = shape
    grid = np.stack(np.meshgrid(np.arange(n_p), np.arange(n_s), np.arange(n_c), np.arange(n_m), indexing="ij"),
                    axis=-1).reshape(-1, 4)
    out = pd.DataFrame({"model": [f"model-{i}" for i in grid[:, 0]], "item_id": [f"stem-{i:03d}" for i in grid[:, 1]],
                        "config": [f"config-{i}" for i in grid[:, 2]], "sample": grid[:, 3]})
    for dim in system.all_dimensions():
        y = planted_array(shape, variances, rng).reshape(-1)
        out[dim.key] = np.clip(y, 0, 1) if clip else y
    return out
