"""What API models cost: a price table in USD per 1M tokens, packaged and overridable per study.

cost = (prompt tokens x input price + completion tokens x output price) / 1e6, with cached
prompt tokens at the cached price where the table has one, and x ``batch_discount`` for
requests sent through a batch API. A model missing from the table has no cost (None), never 0:
a plan must not claim a study is free because its price is unknown.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

import yaml

from valuelex.errors import StudyError


@cache
def _packaged() -> dict[str, Any]:
    text = resources.files("valuelex.data").joinpath("prices.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def load_prices(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The packaged table with a study's ``prices:`` entries (model id -> input/output/cached) on top."""
    table = _packaged()
    models = {k: dict(v) for k, v in table["models"].items()}
    for name, entry in (overrides or {}).items():
        models[name] = {**models.get(name, {"cached": None}), **dict(entry)}
    for name, entry in models.items():
        for key in ("input", "output"):
            value = entry.get(key)
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise StudyError(f"prices: {name}: {key}: must be a number of USD per 1M tokens >= 0")
    return {"batch_discount": float(table["batch_discount"]), "models": models}


def usd(
    source: str,
    prompt: float,
    completion: float,
    prices: Mapping[str, Any],
    *,
    cached: float = 0.0,
    batch: bool = False,
) -> float | None:
    """Dollars for these token counts of one model id (see the module docstring); None when unpriced."""
    entry = prices["models"].get(source)
    if entry is None:
        return None
    cached_price = entry.get("cached")
    cached = cached if cached_price is not None else 0.0
    dollars = ((prompt - cached) * entry["input"] + cached * (cached_price or 0.0) + completion * entry["output"]) / 1e6
    return dollars * (prices["batch_discount"] if batch else 1.0)
