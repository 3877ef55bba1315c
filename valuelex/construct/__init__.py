"""Generative value construction (paper section 3.2, Algorithm 1): answers -> value taxonomy.

Modules in data-flow order: `lexicon` (value words from answers), `cooccurrence` (who used which
word, correlations), `efa` (K and loadings), `clustering` (semantic refinement, subdimensions),
`naming`, `taxonomy` (taxonomy.json and its reader), `stability` (bootstrap), `stage` (the
store-to-taxonomy stage). `config` holds the `construction:` settings of a study.

The public names below are imported lazily, so reading a study file does not load the
numerical stack.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ConstructionSpec": "valuelex.construct.config",
    "ConstructionStage": "valuelex.construct.stage",
    "construct": "valuelex.construct.stage",
    "select_rows": "valuelex.construct.stage",
    "Taxonomy": "valuelex.construct.taxonomy",
    "load_taxonomy": "valuelex.construct.taxonomy",
    "parse_taxonomy": "valuelex.construct.taxonomy",
    "extract_words": "valuelex.construct.lexicon",
    "judge_words": "valuelex.construct.lexicon",
    "normalize_word": "valuelex.construct.lexicon",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'valuelex.construct' has no attribute {name!r}")
