"""One engine interface: a Ray Dataset of requests in, the same rows with answers out.

Request rows carry the grid columns (see `valuelex.grid`) — at least ``row_id``, ``prompt``,
``prompting`` (chat | completion), ``temperature``, ``top_p``, ``max_tokens``, ``seed`` — and may
carry ``json_schema`` (a JSON string) to constrain the answer. Every engine returns each request
row once, with `RESULT_COLUMNS` added, whether it succeeded or failed: a failure is data (``error``
set), never a dropped row.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

if TYPE_CHECKING:
    import ray.data

    from valuelex.spec import ModelSpec

RESULT_FIELDS = (
    pa.field("response", pa.string()),
    pa.field("n_prompt_tokens", pa.int64()),
    pa.field("n_completion_tokens", pa.int64()),
    pa.field("finish_reason", pa.string()),
    pa.field("error", pa.string()),
    pa.field("engine", pa.string()),
)
RESULT_COLUMNS = tuple(f.name for f in RESULT_FIELDS)


class Engine(Protocol):
    """Generates answers for a dataset of request rows of one model."""

    name: str

    def generate(self, requests: ray.data.Dataset) -> ray.data.Dataset: ...


_REGISTRY: dict[str, str] = {
    "vllm": "valuelex.engines.vllm:VLLMEngine",
    "openai": "valuelex.engines.openai_compat:OpenAIEngine",
}


def build_engine(model: ModelSpec, **overrides: Any) -> Engine:
    """The engine a model spec names; the implementation module is imported only when used."""
    module_name, _, class_name = _REGISTRY[model.engine].partition(":")
    engine_class: Callable[..., Engine] = getattr(importlib.import_module(module_name), class_name)
    return engine_class(model, **overrides)


def finish_reason(n_completion_tokens: int, max_tokens: int) -> str:
    """vLLM's batch output drops the finish reason; hitting max_tokens is the only 'length' case."""
    return "length" if n_completion_tokens >= max_tokens else "stop"
