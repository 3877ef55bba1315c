"""Semantic clustering, eq. (3): refine the EFA clusters by meaning, then split each into subdimensions.

Factor analysis groups words that the same respondents use; it knows nothing about what the
words mean, so a word that co-occurs by accident lands in a factor it does not belong to.

The margin rule (``semantic_step: margin``; the default step is chosen in semantic.py, which
also holds the other variants) is configurable by ``semantic_margin``: start from the EFA clusters
(each word in the factor of its highest |loading|), embed every word (sentence-transformers,
unit-normalised), and iterate: a word moves from its cluster A to cluster B only when its cosine
similarity to B's centroid exceeds that to A's centroid (A computed without the word itself) by
more than the margin; centroids are recomputed and the pass repeats until nothing moves. With
margin 0 this is spherical KMeans started at the EFA clusters; a large margin keeps the EFA
clusters unchanged. A dimension never loses its last word.

Subdimensions: FAISS KMeans (spherical, fixed seed, several restarts) with k = `subdimensions`
inside each dimension, as the paper's 3 dimensions x 2 subdimensions.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Protocol

import numpy as np

from valuelex.embeddings import default_model_path, sentence_model
from valuelex.errors import ConstructionError

SMALL_KMEANS = 20_000
SMALL_EMBEDDING = 5_000


class Embedder(Protocol):
    """Words in, one unit-length vector per word out (float32, words x dim)."""

    def __call__(self, words: Sequence[str]) -> np.ndarray: ...


class SentenceEmbedder:
    """A sentence-transformers model on CPU; words are embedded as short texts."""

    def __init__(self, model: str | None = None, batch_size: int = 256):
        self.name = model or default_model_path()
        self.batch_size = batch_size
        self.model = sentence_model(self.name)

    def __call__(self, words: Sequence[str]) -> np.ndarray:
        if not words:
            return np.zeros((0, self.model.get_sentence_embedding_dimension() or 0), dtype=np.float32)
        import torch

        threads = torch.get_num_threads()
        if len(words) < SMALL_EMBEDDING:
            torch.set_num_threads(1)  # a vocabulary is small: spinning intra-op threads cost more than they give
        try:
            vectors = self.model.encode(list(words), batch_size=self.batch_size, normalize_embeddings=True,
                                        convert_to_numpy=True, show_progress_bar=False)
        finally:
            torch.set_num_threads(threads)
        return np.ascontiguousarray(vectors, dtype=np.float32)


@cache
def load_embedder(model: str | None = None) -> SentenceEmbedder:
    """One embedder per model and process: loading takes seconds, embedding a few hundred words less."""
    return SentenceEmbedder(model)


def normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def refine_dimensions(embeddings: np.ndarray, efa_labels: np.ndarray, k: int, margin: float = 0.1,
                      max_iter: int = 50) -> tuple[np.ndarray, int]:
    """Dimension of each word after semantic refinement (module docstring); returns (labels, passes)."""
    x = normalise(np.asarray(embeddings, dtype=np.float64))
    labels = np.asarray(efa_labels, dtype=np.int64).copy()
    for iteration in range(1, max_iter + 1):
        sums = np.zeros((k, x.shape[1]))
        np.add.at(sums, labels, x)
        sizes = np.bincount(labels, minlength=k)
        centroids = normalise(sums)
        sims = x @ centroids.T  # words x k
        own_sum = sums[labels] - x  # leave-one-out centroid of each word's own cluster
        own = np.einsum("ij,ij->i", x, normalise(own_sum))
        others = sims.copy()
        others[np.arange(len(labels)), labels] = -np.inf
        others[:, sizes == 0] = -np.inf
        best = np.argmax(others, axis=1)
        gain = others[np.arange(len(labels)), best] - own
        move = (gain > margin) & (sizes[labels] > 1)
        if not move.any():
            return labels, iteration
        # keep at least one word in every cluster: among movers from one cluster, keep the least eager
        for cluster in np.unique(labels[move]):
            leaving = np.flatnonzero(move & (labels == cluster))
            if len(leaving) >= sizes[cluster]:
                move[leaving[np.argmin(gain[leaving])]] = False
        labels[move] = best[move]
    return labels, max_iter


def kmeans(x: np.ndarray, k: int, seed: int = 0, niter: int = 50, nredo: int = 5, spherical: bool = True,
           threads_for_small_inputs: int | None = 1) -> tuple[np.ndarray, np.ndarray]:
    """FAISS KMeans with a fixed seed; returns (labels, centroids).

    Inputs under SMALL_KMEANS points (every per-dimension split of a vocabulary) run on one
    OpenMP thread: on a busy machine, spinning OpenMP workers made a 120-word split take seconds.
    """
    import faiss

    data = np.ascontiguousarray(x, dtype=np.float32)
    if len(data) < k:
        raise ConstructionError(f"KMeans with k={k} needs at least {k} points, got {len(data)}")
    model = faiss.Kmeans(data.shape[1], k, niter=niter, nredo=nredo, seed=seed, spherical=spherical,
                         verbose=False, min_points_per_centroid=1, max_points_per_centroid=1_000_000)
    threads = faiss.omp_get_max_threads()
    if threads_for_small_inputs and len(data) < SMALL_KMEANS:
        faiss.omp_set_num_threads(threads_for_small_inputs)  # OpenMP start-up dwarfs a few hundred points
    try:
        model.train(data)
        _, labels = model.index.search(data, 1)
    finally:
        faiss.omp_set_num_threads(threads)
    return labels.ravel().astype(np.int64), np.asarray(model.centroids)


def split_subdimensions(embeddings: np.ndarray, words: Sequence[str], k: int,
                        seed: int = 0) -> list[list[int]]:
    """Indices (into `words`) of each of k subclusters, largest first; every subcluster is non-empty."""
    n = len(words)
    if n < k:
        raise ConstructionError(f"{n} words cannot form {k} subdimensions")
    if k == 1:
        return [list(range(n))]
    labels, _ = kmeans(embeddings, k, seed=seed)
    groups = [sorted(np.flatnonzero(labels == c).tolist(), key=lambda i: words[i]) for c in range(k)]
    if any(not g for g in groups):  # FAISS re-seeds empty clusters, so this is a guard, not a path
        order = np.argsort(normalise(embeddings) @ normalise(embeddings.mean(axis=0)))
        groups = [sorted(part.tolist(), key=lambda i: words[i]) for part in np.array_split(order, k)]
    return sorted(groups, key=lambda g: (-len(g), words[g[0]]))


def pca_2d(x: np.ndarray) -> np.ndarray:
    """2-D principal-component positions (signs fixed so each axis' largest coordinate is positive)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros((len(x), 2))
    if len(x) < 2:
        return out
    centred = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    coords = u[:, :2] * s[:2]
    for axis in range(coords.shape[1]):
        if coords[np.argmax(np.abs(coords[:, axis])), axis] < 0:
            coords[:, axis] *= -1
    out[:, : coords.shape[1]] = coords
    return out
