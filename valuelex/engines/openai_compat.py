"""OpenAI-compatible HTTP behind the engine interface: API models and any served model.

Requests run inside a Ray Data actor with the async `openai` client: at most `max_concurrency`
in flight, at most `max_qps` started per second, and bounded retries with exponential backoff and
jitter on rate limits, server errors, timeouts and unparseable replies. Each attempt has a deadline
(`request_timeout_s` for the whole exchange: httpx's timeout is per read, so a server that trickles
a byte a second would hold a request forever), so a row ends within
(max_retries + 1) x (request_timeout_s + the backoff cap). Every reply is type-checked
(`valuelex.engines.replies`). A row that still fails is returned with its error, never dropped, so
the next run retries it. The API key is read from the environment variable the spec names; it is
never stored: an error that echoes it (or any other secret of the worker's environment) is
redacted here, before the row leaves the worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from typing import TYPE_CHECKING, Any

import pandas as pd

from valuelex.engines.base import RESULT_COLUMNS, RayDataEngine
from valuelex.engines.reasoning import answer_columns
from valuelex.engines.replies import parse_reply
from valuelex.errors import EngineError
from valuelex.redact import Redactor

if TYPE_CHECKING:
    import ray.data

    from valuelex.spec import ModelSpec

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIEngine(RayDataEngine):
    """A model behind an OpenAI-compatible endpoint (`/v1/chat/completions` or `/v1/completions`)."""

    name = "openai"

    def __init__(self, model: ModelSpec, *, use_gpu: bool | None = None):
        self.model = model  # `use_gpu` is accepted for the common signature: an endpoint has no placement
        opts = model.options
        if opts.api_key_env and opts.api_key_env not in os.environ:
            raise EngineError(f"model {model.name}: environment variable {opts.api_key_env} (the API key) is not set")

    def _pipeline(self, requests: ray.data.Dataset) -> ray.data.Dataset:
        opts = self.model.options
        return requests.map_batches(
            OpenAIBatchCaller,
            fn_constructor_kwargs={"model": self.model.model_dump(mode="json")},
            batch_size=max(opts.batch_size, opts.max_concurrency),
            batch_format="pandas",
            concurrency=opts.concurrency,
            num_cpus=0.25,
        )


class RateLimiter:
    """Spaces request starts so that no more than `qps` start in any second."""

    def __init__(self, qps: float | None):
        self.interval = 1.0 / qps if qps else 0.0
        self.next_start = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self.lock:
            now = time.monotonic()
            delay = self.next_start - now
            self.next_start = max(now, self.next_start) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


class ReplyError(ValueError):
    """A reply that is not a usable answer (retried like an unparseable one)."""


def backoff_seconds(attempt: int, base: float = 0.5, cap: float = 20.0) -> float:
    """Full-jitter exponential backoff (AWS architecture blog): uniform in [0, min(cap, base*2^n)]."""
    return random.uniform(0, min(cap, base * 2**attempt))


def is_retryable(exc: Exception) -> bool:
    import openai

    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRYABLE_STATUS
    # connection drops, timeouts, deadlines, and replies that are not the JSON the API promises
    return isinstance(exc, openai.APIConnectionError | openai.APIResponseValidationError | ValueError | TimeoutError)


def error_text(exc: Exception, deadline_s: float) -> str:
    """The stored error of a failed attempt; a deadline says so (asyncio's TimeoutError has no text)."""
    if isinstance(exc, TimeoutError):
        return f"deadline: no whole reply within request_timeout_s={deadline_s:g} s"
    return f"{type(exc).__name__}: {exc}"[:500]


class OpenAIBatchCaller:
    """Ray Data UDF: answers one batch of request rows concurrently."""

    name = "openai"

    def __init__(self, model: dict[str, Any]):
        from valuelex.spec import ModelSpec

        self.model = ModelSpec.model_validate(model)
        self.redact = Redactor.from_spec(self.model)  # this node's environment: the key the requests send

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        results = asyncio.run(self._run(batch.to_dict("records")))
        out = batch.copy()
        for column in RESULT_COLUMNS:
            out[column] = [r.get(column) for r in results]
        return out

    async def _run(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        import openai

        opts = self.model.options
        api_key = os.environ.get(opts.api_key_env, "") if opts.api_key_env else "EMPTY"
        client = openai.AsyncOpenAI(
            base_url=opts.base_url, api_key=api_key, max_retries=0, timeout=opts.request_timeout_s
        )
        gate = asyncio.Semaphore(opts.max_concurrency)
        limiter = RateLimiter(opts.max_qps)
        try:
            return await asyncio.gather(*(self._answer(client, gate, limiter, row) for row in rows))
        finally:
            await client.close()

    async def _answer(self, client: Any, gate: asyncio.Semaphore, limiter: RateLimiter, row: dict) -> dict:
        opts = self.model.options
        last_error = ""
        for attempt in range(opts.max_retries + 1):
            async with gate:
                await limiter.wait()
                try:
                    return await asyncio.wait_for(self._call(client, row), timeout=opts.request_timeout_s)
                except Exception as exc:
                    last_error = (self.redact(error_text(exc, opts.request_timeout_s)) or "")[:500]
                    if not is_retryable(exc) or attempt == opts.max_retries:
                        break
            await asyncio.sleep(backoff_seconds(attempt))
        return {"response": None, "n_prompt_tokens": 0, "n_completion_tokens": 0, "finish_reason": None,
                "error": last_error, "engine": self.name}

    async def _call(self, client: Any, row: dict) -> dict:
        common: dict[str, Any] = {
            "model": self.model.source, "temperature": float(row["temperature"]), "top_p": float(row["top_p"]),
            "max_tokens": int(row["max_tokens"]), "seed": int(row["seed"]),
        }
        schema = row.get("json_schema")
        if row["prompting"] == "chat":
            if schema:
                common["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": json.loads(schema), "strict": True},
                }
            raw = await client.chat.completions.with_raw_response.create(
                messages=[{"role": "user", "content": row["prompt"]}], **common
            )
        else:
            if schema:  # vLLM's server accepts structured outputs on completions as an extra field
                common["extra_body"] = {"structured_outputs": {"json": json.loads(schema)}}
            raw = await client.completions.with_raw_response.create(prompt=row["prompt"], **common)
        # the raw JSON, not the client's objects: those are built without validation and pass odd values on
        return reply_columns(self.model, row, json.loads(raw.http_response.content), self.name)


def reply_columns(model: ModelSpec, row: dict, payload: Any, engine: str) -> dict:
    """The result columns of one reply's JSON (type-checked; `ReplyError` when it is no usable answer):
    the one place both the synchronous and the Batch API paths turn a reply into a row."""
    reply = parse_reply(payload, row["prompting"])
    if reply.reason is not None:
        raise ReplyError(reply.reason)
    return {
        **answer_columns(reply.text, mode=model.options.reasoning, finish_reason=reply.finish_reason,
                         max_tokens=int(row["max_tokens"]), reasoning=reply.reasoning,
                         reasoning_tokens=reply.n_reasoning_tokens),
        "n_prompt_tokens": reply.n_prompt_tokens,
        "n_completion_tokens": reply.n_completion_tokens,
        "finish_reason": reply.finish_reason,
        "engine": engine,
    }


def request_body(model: ModelSpec, row: dict) -> tuple[str, dict[str, Any]]:
    """The endpoint path and JSON body of one request row, as the synchronous path sends it."""
    body: dict[str, Any] = {
        "model": model.source, "temperature": float(row["temperature"]), "top_p": float(row["top_p"]),
        "max_tokens": int(row["max_tokens"]), "seed": int(row["seed"]),
    }
    schema = row.get("json_schema")
    if row["prompting"] == "chat":
        if schema:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "answer", "schema": json.loads(schema), "strict": True}}
        return "/v1/chat/completions", {**body, "messages": [{"role": "user", "content": row["prompt"]}]}
    if schema:
        body["structured_outputs"] = {"json": json.loads(schema)}
    return "/v1/completions", {**body, "prompt": row["prompt"]}
