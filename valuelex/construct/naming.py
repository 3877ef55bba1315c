"""Naming, the last line of Algorithm 1: an LLM names each cluster from its words.

The LLM is any callable from a cluster's words (most important first) to a name, so an engine
can back it. Without one the name is deterministic: the cluster's most central word (closest to
the centroid of its members' embeddings), title-cased. Names are unique across a taxonomy, also
after the evaluation stage's key folding ("Self-Competent" -> self_competent), so a subdimension
never repeats its dimension's name; the words behind every name are kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import yaml

if TYPE_CHECKING:
    from valuelex.spec import ModelSpec

T = TypeVar("T")

Namer = Callable[[list[str]], str]
"""An LLM naming a cluster: its words, most important first -> a short name."""

MAX_NAME_CHARS = 60


def central_order(words: Sequence[str], embeddings: np.ndarray) -> list[str]:
    """Words sorted by cosine similarity to their centroid, most central first (ties by word)."""
    x = np.asarray(embeddings, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    centroid = x.mean(axis=0)
    sims = x @ (centroid / max(np.linalg.norm(centroid), 1e-12))
    return [words[i] for i in sorted(range(len(words)), key=lambda i: (-round(float(sims[i]), 9), words[i]))]


def name_key(name: str) -> str:
    """The identity of a name for the evaluation stage: lower-cased, non-alphanumerics collapsed to '_'."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def title(word: str) -> str:
    """'open-minded' -> 'Open-Minded'."""
    return "-".join(part[:1].upper() + part[1:] for part in word.split("-"))


def definition(anchors: Sequence[str]) -> str:
    """The deterministic definition the evaluation stage reads: 'Values such as a, b, c.'"""
    return f"Values such as {', '.join(anchors)}."


def _clean(name: str) -> str:
    first = (name or "").strip().splitlines()[0] if (name or "").strip() else ""
    first = re.sub(r"^(?:name|dimension|cluster)\s*:\s*", "", first, flags=re.IGNORECASE)
    return first.strip(" \t\"'`*.:").strip()[:MAX_NAME_CHARS]


@dataclass(frozen=True)
class Naming:
    """A cluster's name and how it was obtained."""

    name: str
    method: str  # "llm" | "fallback"


class ClusterNamer:
    """Names clusters one after another, keeping names unique (case-insensitive)."""

    def __init__(self, namer: Namer | None = None):
        self.namer = namer
        self.used: set[str] = set()
        self.failures: list[str] = []

    def _unique(self, name: str) -> str:
        candidate, n = name, 2
        while name_key(candidate) in self.used:
            candidate, n = f"{name} ({n})", n + 1
        self.used.add(name_key(candidate))
        return candidate

    def name(self, ranked_words: Sequence[str], central_words: Sequence[str]) -> Naming:
        """Name one cluster: `ranked_words` go to the LLM, `central_words` feed the fallback."""
        if self.namer is not None:
            try:
                proposed = _clean(self.namer(list(ranked_words)))
            except Exception as exc:  # an engine failure must not lose the taxonomy
                self.failures.append(f"{type(exc).__name__}: {exc}")
                proposed = ""
            if name_key(proposed):
                return Naming(self._unique(proposed), "llm")
        for word in central_words:
            if name_key(title(word)) not in self.used:
                return Naming(self._unique(title(word)), "fallback")
        return Naming(self._unique(title(central_words[0])), "fallback")


@cache
def packaged_prompts(name: str) -> dict[str, str]:
    """A packaged prompt file ``valuelex/data/construct/<name>`` by prompting style (chat, completion):
    prompt wording is data, not code. Each is a `str.format` template with one field, ``{words}``."""
    path = f"valuelex/data/construct/{name}"
    raw = yaml.safe_load(resources.files("valuelex.data").joinpath("construct", name).read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or raw.get("version") != 1:
        raise ValueError(f"{path}: expected version 1")
    prompts = {style: raw.get(style) for style in ("chat", "completion")}
    for style, template in prompts.items():
        if not isinstance(template, str) or "{words}" not in template:
            raise ValueError(f"{path}: {style}: expected a prompt with a {{words}} field")
    return prompts  # type: ignore[return-value]


def naming_prompts() -> dict[str, str]:
    """The naming prompts (``valuelex/data/construct/naming.yaml``)."""
    return packaged_prompts("naming.yaml")


NAMING_PROMPT = naming_prompts()["chat"]
"""The naming prompt of a chat model; read on import (a few hundred bytes) since requests use this name."""
NAMING_COMPLETION = naming_prompts()["completion"]
"""The naming prompt of a base model: the continuation is the name."""


def naming_requests(model: ModelSpec, clusters: Sequence[Sequence[str]], seed: int = 0) -> list[dict]:
    """One greedy engine request per cluster, asking for its name from its first 15 words."""
    from valuelex.engines.base import request_row

    template = NAMING_PROMPT if model.prompting == "chat" else NAMING_COMPLETION
    return [request_row(f"name-{i}", template.format(words=", ".join(words[:15])), prompting=model.prompting,
                        temperature=0.0, top_p=1.0, max_tokens=16, seed=seed + i, model=model.name)
            for i, words in enumerate(clusters)]


def engine_names(
    model: ModelSpec, clusters: Sequence[Sequence[str]], seed: int = 0, *, use_gpu: bool | None = None
) -> list[str]:
    """Ask a model (any engine) to name every cluster, one request per cluster, in one engine run."""
    from valuelex.engines.base import build_engine

    rows = naming_requests(model, clusters, seed)
    answers: dict[str, str] = {}
    for batch in build_engine(model, use_gpu=use_gpu).generate(rows, batch_rows=max(1, len(rows))):
        answers.update((r["row_id"], r["response"] or "") for r in batch.select(["row_id", "response"]).to_pylist())
    return [answers.get(f"name-{i}", "") for i in range(len(clusters))]


def named_by_engine(
    model: ModelSpec, build: Callable[[Namer | None], T], seed: int = 0, *, use_gpu: bool | None = None
) -> T:
    """Run `build` (which names clusters through the namer it is given) with an engine's names.

    A first pass records which word lists ask for a name; one engine run names them all; the
    second pass gets them from a table. A name the model leaves empty falls back to the
    deterministic one, as does every name when the engine fails.
    """
    asked: list[list[str]] = []

    def record(words: list[str]) -> str:
        asked.append(list(words))
        return ""

    build(record)
    names = dict(zip((tuple(w) for w in asked), engine_names(model, asked, seed, use_gpu=use_gpu), strict=True))
    return build(lambda words: names.get(tuple(words), ""))
