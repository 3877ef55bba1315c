"""Permutation tests of a difference between two sides: sign flips (paired) and label permutations.

Sign flips (`sign_flip_test`, a paired design)
----------------------------------------------
The statistic is T = the mean of the K paired cell differences D_sc = ȳ_b,sc − ȳ_a,sc (equal to
w_b − w_a in a balanced design). Under the null of no difference every unit's differences are as
likely to have the opposite sign, so the null distribution of T comes from flipping signs:

- ``unit="stem"``: every stem's cell differences are flipped together. The stem is the sampling
  unit, so the test generalises over stems and stays valid when the models' difference varies
  from stem to stem (a stem × model interaction);
- ``unit="cell"``: each cell is flipped on its own (valid only without a between-stem component:
  it is anti-conservative when there is one).

The caller passes each unit's *sum* of cell differences and K. When 2^units ≤ ``permutations``
every sign pattern is enumerated (an exact test, p = #{|T*| ≥ |T|} / 2^units, ``exact=True``);
otherwise ``permutations`` random patterns, with p = (1 + #{|T*| ≥ |T|}) / (1 + permutations).
Two-sided; |T*| ≥ |T| is compared with a relative tolerance of 1e-12 so that the observed pattern
counts itself.

Label permutations (`label_permutation_test`, groups of models)
---------------------------------------------------------------
For two groups of models compared by their scores w (``unit="models"``), T = mean(w of group b) −
mean(w of group a), and the null distribution comes from reassigning the group labels over the
models: every split of the n = n_a + n_b models into groups of those sizes when there are at most
``permutations`` of them (C(n, n_b), exact), else ``permutations`` random splits with the same
(1 + hits) / (1 + permutations) rule. The test generalises to models like these, so with few models
it cannot be significant (2 vs 2 models give p ≥ 1/3) -- that is the honest answer.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

_CHUNK_ELEMENTS = 4_000_000  # sign patterns are drawn in chunks to bound memory


def sign_flip_test(units: np.ndarray, n_cells: int, permutations: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, bool]:
    """Two-sided sign-flip test of mean cell difference = 0.

    `units` (U, D): each unit's sum of cell differences (a stem's, or one cell's); T = Σ units / n_cells.
    Returns (T, p, exact): every pattern when 2^U <= permutations, else `permutations` random ones.
    """
    n_units, width = units.shape
    observed = units.sum(axis=0) / n_cells
    tolerance = 1e-12 * np.maximum(1.0, np.abs(observed))
    exact = n_units <= 30 and 2 ** n_units <= permutations
    total = 2 ** n_units if exact else permutations
    hits = np.zeros(width)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, n_units))
    for start in range(0, total, chunk):
        b = min(chunk, total - start)
        if exact:
            codes = np.arange(start, start + b)[:, None]
            signs = 1 - 2 * ((codes >> np.arange(n_units)[None, :]) & 1)
        else:
            signs = 2.0 * rng.integers(0, 2, size=(b, n_units)) - 1
        flipped = np.einsum("bu,ud->bd", signs, units) / n_cells  # einsum: no BLAS threads for a small product
        hits += (np.abs(flipped) >= np.abs(observed) - tolerance).sum(axis=0)
    p = hits / total if exact else (hits + 1) / (permutations + 1)
    return observed, np.minimum(p, 1.0), exact


def label_permutation_test(w: np.ndarray, n_b: int, permutations: int,
                           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, bool]:
    """Two-sided test of mean(w of the last n_b models) − mean(w of the others) = 0 by relabelling models."""
    n = len(w)
    n_a = n - n_b
    observed = w[n_a:].mean(axis=0) - w[:n_a].mean(axis=0)
    tolerance = 1e-12 * np.maximum(1.0, np.abs(observed))
    splits = math.comb(n, n_b)
    exact = splits <= permutations
    if exact:
        members = np.array([[i in chosen for i in range(n)] for chosen in itertools.combinations(range(n), n_b)])
    else:
        order = np.argsort(rng.random((permutations, n)), axis=1)
        members = np.zeros((permutations, n), dtype=bool)
        np.put_along_axis(members, order[:, :n_b], True, axis=1)
    stats_b = np.einsum("bm,md->bd", members.astype(float), w) / n_b
    stats_a = np.einsum("bm,md->bd", (~members).astype(float), w) / n_a
    hits = (np.abs(stats_b - stats_a) >= np.abs(observed) - tolerance).sum(axis=0)
    p = hits / len(members) if exact else (hits + 1) / (permutations + 1)
    return observed, np.minimum(p, 1.0), exact
