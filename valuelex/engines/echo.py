"""A fake engine that answers each prompt with the prompt itself: the pipeline measured, not a model.

For benchmarks and tests of what surrounds an engine (the grid walk, Ray Data, the store); not
in `build_engine`'s registry, so no study can ask for it. Token counts are words (the prompt's,
and the echoed response's); ``delay_s`` sleeps once per batch (a slow engine, for kill tests);
rows whose ``sample`` is in ``fail_samples`` fail with `PLANTED_ERROR` (failures as data).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from valuelex.engines.base import RayDataEngine

if TYPE_CHECKING:
    import ray.data

    from valuelex.spec import ModelSpec

PLANTED_ERROR = "echo: planted failure (Bearer sk-echo-0123456789abcdef0123)\nsecond line"
"""The error of a planted failure: its first line holds a key-shaped token, which the store must redact."""


class EchoEngine(RayDataEngine):
    """Echoes each request's prompt as its response, in one Ray Data map_batches stage."""

    name = "echo"
    local_engine = True  # stands in for vLLM: each pipeline counts as an engine start (`RayDataEngine.starts`)

    def __init__(self, model: ModelSpec, *, use_gpu: bool | None = None, delay_s: float = 0.0,
                 fail_samples: frozenset[int] = frozenset()):
        self.model = model
        self.delay_s = delay_s
        self.fail_samples = fail_samples

    def _pipeline(self, requests: ray.data.Dataset) -> ray.data.Dataset:
        delay_s, fail_samples = self.delay_s, self.fail_samples
        return requests.map_batches(
            lambda batch: echo(batch, delay_s=delay_s, fail_samples=fail_samples),
            batch_size=self.model.options.batch_size, batch_format="pyarrow",
        )


def echo(batch: pa.Table, *, delay_s: float = 0.0, fail_samples: frozenset[int] = frozenset()) -> pa.Table:
    """The batch with `RESULT_COLUMNS` added: response = prompt, tokens = words."""
    if delay_s:
        time.sleep(delay_s)
    n = batch.num_rows
    words = pc.add(pc.list_value_length(pc.utf8_split_whitespace(batch["prompt"])), 0).cast(pa.int64())
    failed = (pc.is_in(batch["sample"], pa.array(sorted(fail_samples), pa.int64())) if fail_samples
              else pa.array([False] * n))
    error = pc.if_else(failed, pa.scalar(PLANTED_ERROR), pa.scalar(None, pa.string()))
    columns = {
        "response": pc.if_else(failed, pa.scalar(None, pa.string()), batch["prompt"]),
        "n_prompt_tokens": words,
        "n_completion_tokens": pc.if_else(failed, 0, words),
        "finish_reason": pc.if_else(failed, pa.scalar(None, pa.string()), pa.scalar("stop")),
        "error": error,
        "engine": pa.array(["echo"] * n, pa.string()),
        "reasoning": pa.nulls(n, pa.string()),
        "n_reasoning_tokens": pa.array([0] * n, pa.int64()),
    }
    for name, column in columns.items():
        batch = batch.append_column(name, column)
    return batch
