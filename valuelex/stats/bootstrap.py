"""The paired cluster bootstrap of a difference w_b − w_a between two sides.

For one model, `valuelex.evaluate.scores.cluster_bootstrap` follows the design of the study: each
resample draws the stems with replacement and, inside each drawn stem, that model's completions
(configs × samples) with replacement; w* is the mean φ over the drawn completions (Eq. 4 on the
resample). `paired_bootstrap` does the same for several models at once, *paired*: each resample
draws one set of stems, shared by every model of both sides, then each model's completions inside
each drawn stem. The statistic is mean_b(w*) − mean_a(w*), the difference of the sides' mean scores;
its percentile interval (`valuelex.evaluate.scores.percentile_ci`) is the CI of ``diff``.

With ``resample_models`` (groups compared over models, ``unit="models"``) each resample also draws
the models of each side with replacement, so the interval covers the spread between models too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_CHUNK_ELEMENTS = 4_000_000  # resamples are drawn in chunks to bound memory (~32 MB of float64)


def paired_bootstrap(groups: Sequence[Sequence[np.ndarray]], side_a: Sequence[int], side_b: Sequence[int],
                     resamples: int, rng: np.random.Generator, resample_models: bool = False) -> np.ndarray:
    """Bootstrap of mean_b(w) − mean_a(w), shape (resamples, D).

    `groups[m][s]` holds model m's (n, D) completions of stem s (every n >= 1). Each resample draws
    the stems with replacement once, shared by every model (the pairing), then each model's
    completions within each drawn stem with replacement, as `valuelex.evaluate.scores.cluster_bootstrap`
    does for one model. With `resample_models`, the models of each side are drawn with replacement too.
    """
    n_stems = len(groups[0])
    width = np.asarray(groups[0][0]).reshape(len(groups[0][0]), -1).shape[1]
    padded, sizes = [], []
    for model_groups in groups:
        arrays = [np.asarray(g, dtype=float).reshape(len(g), -1) for g in model_groups]
        longest = max(len(g) for g in arrays)
        block = np.zeros((n_stems, longest, width))
        for j, g in enumerate(arrays):
            block[j, : len(g)] = g
        padded.append(block)
        sizes.append(np.array([len(g) for g in arrays]))
    longest_all = max(p.shape[1] for p in padded)
    chunk = max(1, _CHUNK_ELEMENTS // (n_stems * longest_all * width))
    out = np.empty((resamples, width))
    side_a, side_b = list(side_a), list(side_b)
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        drawn = rng.integers(0, n_stems, size=(b, n_stems))
        w = np.empty((b, len(groups), width))
        for m, (block, size) in enumerate(zip(padded, sizes, strict=True)):
            longest = block.shape[1]
            drawn_sizes = size[drawn]
            rows = (rng.random((b, n_stems, longest)) * drawn_sizes[..., None]).astype(np.int64)
            mask = np.arange(longest)[None, None, :] < drawn_sizes[..., None]
            sums = (block[drawn[..., None], rows] * mask[..., None]).sum(axis=(1, 2))
            w[:, m] = sums / drawn_sizes.sum(axis=1)[:, None]

        def side(members: list[int], w: np.ndarray = w, b: int = b) -> np.ndarray:
            if resample_models:
                picks = np.asarray(members)[rng.integers(0, len(members), size=(b, len(members)))]
                return w[np.arange(b)[:, None], picks].mean(axis=1)
            return w[:, members].mean(axis=1)

        out[start:start + b] = side(side_b) - side(side_a)
    return out
