"""One engine interface: a Ray Dataset of requests in, the same rows with answers out.

Request rows carry the grid columns (see `valuelex.grid`) — at least ``row_id``, ``prompt``,
``prompting`` (chat | completion), ``temperature``, ``top_p``, ``max_tokens``, ``seed`` — and may
carry ``json_schema`` (a JSON string) to constrain the answer. Every engine returns each request
row once, with `RESULT_COLUMNS` added, whether it succeeded or failed: a failure is data (``error``
set), never a dropped row.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterator
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


def request_dataset(rows: list[dict[str, Any]], rows_per_block: int) -> ray.data.Dataset:
    """Request rows as a Ray Dataset of about one engine batch per block.

    `ray.data.from_items` cuts any list into 200 blocks: 200 tiny pre-processing tasks whose
    scheduling competes with the engine for a small node's CPUs and delays its start.
    """
    import ray.data

    return ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / max(1, rows_per_block))))


def result_batches(results: ray.data.Dataset, batch_size: int, batch_format: str) -> Iterator[Any]:
    """An engine's result rows in batches, each handed over as soon as it exists.

    `Dataset.iter_batches` prefetches one batch by default, holding each batch until the next one
    exists: a shard would be stored one engine batch late (lost by a kill, the tail of every run).
    """
    return results.iter_batches(batch_size=batch_size, batch_format=batch_format, prefetch_batches=0)


def finish_reason(n_completion_tokens: int, max_tokens: int) -> str:
    """vLLM's batch output drops the finish reason; hitting max_tokens is the only 'length' case."""
    return "length" if n_completion_tokens >= max_tokens else "stop"
