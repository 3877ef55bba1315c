"""A local engine for tests: a Ray Data pipeline that answers each prompt with its own text, and
counts its starts like vLLM does (`RayDataEngine.local_engine`). What it measures is the
pipeline around an engine (streaming, shards, resume, engine starts), not a model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from valuelex.engines.base import RESULT_COLUMNS, RayDataEngine

if TYPE_CHECKING:
    import ray.data

    from valuelex.spec import ModelSpec


class EchoEngine(RayDataEngine):
    """Stands in for `valuelex.engines.vllm.VLLMEngine`: the response is the prompt's last words."""

    name = "echo"
    local_engine = True

    def __init__(self, model: ModelSpec, *, use_gpu: bool | None = None):
        self.model = model

    def _pipeline(self, requests: ray.data.Dataset) -> ray.data.Dataset:
        return requests.map_batches(echo, batch_format="pyarrow", num_cpus=0.25)


def echo(batch: pa.Table) -> pa.Table:
    words = pc.utf8_slice_codeunits(batch["prompt"], -40)
    n = batch.num_rows
    columns: dict[str, Any] = {
        "response": pc.binary_join_element_wise("I value honesty, kindness and ", words, ""),
        "n_prompt_tokens": pa.array([8] * n, pa.int64()), "n_completion_tokens": pa.array([6] * n, pa.int64()),
        "finish_reason": pa.array(["stop"] * n), "error": pa.nulls(n, pa.string()),
        "reasoning": pa.nulls(n, pa.string()), "n_reasoning_tokens": pa.nulls(n, pa.int64()),
        "engine": pa.array(["echo"] * n),
    }
    for name in RESULT_COLUMNS:
        batch = batch.append_column(name, columns[name]) if name not in batch.column_names else batch
    return batch
