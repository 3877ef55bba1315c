"""One engine interface: request rows in, result batches (pyarrow Tables) out, as they finish.

Callers build every request row with `request_row` (the one place that knows which columns an
engine reads) and call ``build_engine(model, use_gpu=...).generate(rows, batch_rows=n)``. Every
engine returns each request row once, with its carried columns and `RESULT_COLUMNS` added, whether
it succeeded or failed: a failure is data (``error`` set), never a dropped row.

Engines run as Ray Data pipelines, but Ray Data stays inside this package: the Dataset of request
blocks, the streaming without prefetch and the ray.data.llm column workarounds are details of the
engines, so a caller cannot get them wrong.
"""

from __future__ import annotations

import importlib
import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

if TYPE_CHECKING:
    import ray.data

    from valuelex.engines.sink import ShardSink, ShardStats
    from valuelex.spec import ModelSpec

RESULT_FIELDS = (
    pa.field("response", pa.string()),
    pa.field("n_prompt_tokens", pa.int64()),
    pa.field("n_completion_tokens", pa.int64()),
    pa.field("finish_reason", pa.string()),
    pa.field("error", pa.string()),
    pa.field("engine", pa.string()),
    pa.field("reasoning", pa.string()),  # what a reasoning model thought; `response` is its answer only
    pa.field("n_reasoning_tokens", pa.int64()),
)
RESULT_COLUMNS = tuple(f.name for f in RESULT_FIELDS)
PROMPTINGS = ("chat", "completion")
CHUNK_ROWS = 50_000  # request rows an engine holds at once (a few hundred MB at most)


def request_row(
    row_id: str, prompt: str, *, prompting: str, temperature: float, top_p: float, max_tokens: int, seed: int,
    json_schema: str | None = None, **carried: Any,
) -> dict[str, Any]:
    """One engine request: the columns engines read, then `carried` columns, handed back untouched.

    ``prompting`` is chat (the model's chat template) or completion (the raw prompt);
    ``json_schema`` (JSON text, left out when None) constrains the answer.
    """
    if prompting not in PROMPTINGS:
        raise ValueError(f"request {row_id}: prompting must be one of {PROMPTINGS}, not {prompting!r}")
    row: dict[str, Any] = {
        "row_id": row_id, "prompt": prompt, "prompting": prompting, "temperature": float(temperature),
        "top_p": float(top_p), "max_tokens": int(max_tokens), "seed": int(seed),
    }
    if json_schema is not None:
        row["json_schema"] = json_schema
    return {**row, **carried}


class Engine(Protocol):
    """Generates answers for request rows of one model."""

    name: str

    def generate(self, requests: Iterable[dict[str, Any]], *, batch_rows: int) -> Iterator[pa.Table]:
        """Result batches of `batch_rows` rows (the last one smaller), each as soon as it exists."""
        ...


_REGISTRY: dict[str, str] = {
    "vllm": "valuelex.engines.vllm:VLLMEngine",
    "openai": "valuelex.engines.openai_compat:OpenAIEngine",
    "openai-batch": "valuelex.engines.openai_batch:BatchEngine",  # engine openai with options.batch
}


def build_engine(model: ModelSpec, *, use_gpu: bool | None, journal: Any = None) -> Engine:
    """The engine a model spec names; the implementation module is imported only when used.

    ``use_gpu`` is required so that every caller decides: None asks the cluster (any GPU in it).
    ``journal`` (`valuelex.store.run.BatchJournal`) is where an ``options.batch`` model's Batch API
    jobs are journaled; an engine that sends requests as they go ignores it.
    """
    batch = model.engine == "openai" and model.options.batch
    module_name, _, class_name = _REGISTRY["openai-batch" if batch else model.engine].partition(":")
    engine_class: Callable[..., Engine] = getattr(importlib.import_module(module_name), class_name)
    return engine_class(model, use_gpu=use_gpu, journal=journal) if batch else engine_class(model, use_gpu=use_gpu)


class RayDataEngine:
    """What every engine shares: rows -> a Ray Dataset -> the engine's stages (`_pipeline`) -> Tables."""

    name: str
    model: ModelSpec
    local_engine = False  # whether each pipeline starts an engine here (vLLM) or calls one that runs (an API)
    starts = 0  # pipelines that started a local engine: what `stages/<stage>.json` counts

    def generate(self, requests: Iterable[dict[str, Any]], *, batch_rows: int) -> Iterator[pa.Table]:
        """Result batches of `batch_rows` rows (the last one smaller), each as soon as it exists.

        `requests` is read lazily, one chunk of about `CHUNK_ROWS` rows (whole batches) at a time,
        so a grid of any size never sits in memory; each chunk is one pipeline (for vLLM, one engine
        start per chunk). No requests start no engine. Ray is started here when nothing has started it.
        """
        for rows in chunks(requests, chunk_rows(batch_rows)):
            from valuelex.runtime import ensure_ray

            ensure_ray()
            self.starts += self.local_engine
            dataset = request_dataset(rows, self.model.options.batch_size)
            yield from result_batches(self._pipeline(dataset), batch_rows)

    def write(self, requests: Iterable[dict[str, Any]], sink: ShardSink, *, batch_rows: int) -> Iterator[ShardStats]:
        """Generate and store in the workers: each chunk's result rows go to `sink`, not to the caller.

        The chunks are `generate`'s (about `CHUNK_ROWS` rows, read lazily); each one is a pipeline
        ending in `Dataset.write_datasink(sink)`, whose write tasks publish whole shards of
        `sink.shard_rows` rows where the rows are. What comes back is each chunk's `ShardStats`,
        yielded once all its shards are published (a caller's progress moves per chunk).
        """
        for rows in chunks(requests, chunk_rows(batch_rows)):
            from valuelex.runtime import ensure_ray

            ensure_ray()
            self._pipeline(request_dataset(rows, self.model.options.batch_size)).write_datasink(sink)
            yield sink.completed

    def _pipeline(self, requests: ray.data.Dataset) -> ray.data.Dataset:
        """The engine's Ray Data stages: request rows in, the same rows with `RESULT_COLUMNS` out."""
        raise NotImplementedError


def chunk_rows(batch_rows: int) -> int:
    """Request rows per pipeline: about `CHUNK_ROWS`, in whole batches of `batch_rows`."""
    return batch_rows * max(1, CHUNK_ROWS // batch_rows)


def chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Lists of `size` rows (the last one smaller, none empty), each read only when asked for."""
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def request_dataset(rows: list[dict[str, Any]], rows_per_block: int) -> ray.data.Dataset:
    """Request rows as a Ray Dataset of about one engine batch per block.

    `ray.data.from_items` cuts any list into 200 blocks: 200 tiny pre-processing tasks whose
    scheduling competes with the engine for a small node's CPUs and delays its start.
    """
    import ray.data

    return ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / max(1, rows_per_block))))


def result_batches(results: ray.data.Dataset, batch_rows: int) -> Iterator[pa.Table]:
    """An engine's result rows in Tables, each handed over as soon as it exists.

    `Dataset.iter_batches` prefetches one batch by default, holding each batch until the next one
    exists: a shard would be stored one engine batch late (lost by a kill, the tail of every run).
    """
    return results.iter_batches(batch_size=batch_rows, batch_format="pyarrow", prefetch_batches=0)


def finish_reason(n_completion_tokens: int, max_tokens: int) -> str:
    """vLLM's batch output drops the finish reason; hitting max_tokens is the only 'length' case."""
    return "length" if n_completion_tokens >= max_tokens else "stop"
