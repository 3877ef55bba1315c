"""Offline value-word filter: drop candidate nouns that do not name a value ("stuff", "book").

The rules of the lexicon keep every noun that stands in a list, so a plain comma list ("honesty,
stuff and care") brings non-value nouns in. The filter compares each candidate's embedding e_w
(unit-normalised) with two packaged prototypes (``valuelex/data/lexicon/value_prototype.yaml``):
the unit centroid v of a list of value words and n of common concrete nouns, and keeps w when

    s(w) = cos(e_w, v) - cos(e_w, n) > threshold.

The threshold is `construction.word_filter_threshold`; its default was tuned (best F1) on one
planted set of value words and noise nouns and is reported on another (docs/benchmarks.md,
bench/word_filter.py). The filter is a `lexicon.Judge`, so it composes with an LLM word judge.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import numpy as np
import yaml

from valuelex.construct.clustering import Embedder, normalise
from valuelex.construct.lexicon import Judge

PROTOTYPE_FILE = "valuelex/data/lexicon/value_prototype.yaml"


@cache
def prototype_words() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(value words, non-value words) of the packaged prototype file."""
    raw = yaml.safe_load(resources.files("valuelex.data").joinpath("lexicon", "value_prototype.yaml")
                         .read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or raw.get("version") != 1:
        raise ValueError(f"{PROTOTYPE_FILE}: expected version 1")
    out = []
    for key in ("values", "non_values"):
        words = raw.get(key)
        if not isinstance(words, list) or len(words) < 3 or not all(isinstance(w, str) for w in words):
            raise ValueError(f"{PROTOTYPE_FILE}: {key}: expected a list of at least 3 words")
        out.append(tuple(words))
    return out[0], out[1]


def value_scores(embedder: Embedder, words: Sequence[str]) -> np.ndarray:
    """s(w) of the module docstring for each word."""
    values, non_values = prototype_words()
    if not words:
        return np.zeros(0)
    v = normalise(np.asarray(embedder(list(values)), dtype=np.float64).mean(axis=0))
    n = normalise(np.asarray(embedder(list(non_values)), dtype=np.float64).mean(axis=0))
    e = normalise(np.asarray(embedder(list(words)), dtype=np.float64))
    return e @ v - e @ n


@dataclass
class EmbeddingWordFilter:
    """A `Judge` that keeps the words whose value score beats `threshold`; `rejected` lists the rest."""

    embedder: Embedder
    threshold: float = 0.0
    rejected: list[str] = field(default_factory=list)

    def __call__(self, words: list[str]) -> Iterable[str]:
        scores = value_scores(self.embedder, words)
        self.rejected += [w for w, s in zip(words, scores, strict=True) if s <= self.threshold]
        return [w for w, s in zip(words, scores, strict=True) if s > self.threshold]


def both(first: Judge | None, second: Judge | None) -> Judge | None:
    """A judge that accepts what both accept (None stands for accept-all)."""
    if first is None or second is None:
        return first or second

    def judge(words: list[str]) -> Iterable[str]:
        kept = set(first(words))
        return [w for w in second([w for w in words if w in kept]) if w in kept]

    return judge
