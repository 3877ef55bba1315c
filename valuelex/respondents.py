"""What a respondent is made of: a model (with its engine options) and a decoding config.

These spec types sit below every config that names a model — the study (`valuelex.spec`), the
evaluation's judge (`valuelex.evaluate.config`) and construction's namer — so each of them can
validate an inline model mapping without importing the study spec (no import cycle).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


class Strict(BaseModel):
    """Base for spec models: unknown keys are errors, values are immutable once loaded, and nothing is
    coerced (``samples: "3"`` or ``temperature: true`` is a typo to report, not a value to guess; an int
    is still a float, and enums and literals take their string values)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Training(StrEnum):
    pretrained = "pretrained"
    instruction_tuned = "instruction-tuned"
    aligned = "aligned"


TrainingName = Annotated[Training, Field(strict=False)]
"""A `Training` given by its value (``aligned``), as YAML and study.json write it."""


def not_blank(value: str) -> str:
    """A name the user must write: whitespace alone is refused (min_length lets it through)."""
    if not value.strip():
        raise ValueError("must not be blank")
    return value


class EngineOptions(Strict):
    """How a model's engine is placed and configured; passed through to vLLM where it applies.

    Every number has an upper bound and is finite, so what a run derives from it stays bounded.
    """

    tensor_parallel_size: int = Field(1, ge=1)
    pipeline_parallel_size: int = Field(1, ge=1)
    max_model_len: int | None = Field(None, ge=16)
    dtype: str = "auto"
    enforce_eager: bool = False
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    accelerator_type: str | None = None
    batch_size: int = Field(32, ge=1, le=100_000, description="rows per engine batch")
    concurrency: int = Field(1, ge=1, le=1024, description="engine replicas (actors) for this model")
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="extra vLLM engine args")
    # OpenAI-compatible engines
    base_url: str | None = None
    # a variable's name only: a pasted key fails here instead of landing in study.json and messages
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
                                    description="name of the env var holding the API key")
    max_concurrency: int = Field(8, ge=1, le=4096, description="requests in flight at once")
    max_qps: float | None = Field(None, gt=0, le=1e6, allow_inf_nan=False,
                                   description="requests started per second, at most")
    max_retries: int = Field(4, ge=0, le=20)
    request_timeout_s: float = Field(120.0, gt=0, le=3600, allow_inf_nan=False,
                                     description="seconds one attempt may take in all, reading the reply included")
    # reasoning models (see valuelex.engines.reasoning)
    reasoning: str = Field("none", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
                           description="none (the whole output is the answer), auto (the reply's reasoning field, "
                                       "else the thinking tags), or a vLLM reasoning parser name (deepseek_r1, qwen3)")
    reasoning_budget: int | None = Field(None, ge=0, le=1_000_000,
                                         description="plan: expected reasoning tokens per request")
    max_tokens: int | None = Field(None, ge=1, le=1_000_000,
                                   description="token limit sent for every request of this model (thinking included), "
                                               "instead of the decoding config's; not part of the row identity, so "
                                               "raising it retries rows whose reasoning was truncated")

    batch: bool = Field(False, description="engine openai: send a stage's requests through the OpenAI Batch API "
                                           "(/v1/files + /v1/batches, 24 h window, batch prices)")
    batch_poll_s: float = Field(30.0, gt=0, le=3600, allow_inf_nan=False,
                                description="seconds between polls of a submitted batch")
    batch_max_lines: int = Field(50_000, ge=1, le=50_000, description="requests per submitted batch, at most")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            parsed = urlparse(value)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ValueError(f"must be an http:// or https:// URL (got {value!r})")
        return value


class ModelSpec(Strict):
    """One LLM. With each decoding config it makes one respondent."""

    name: str = Field(pattern=NAME_PATTERN)
    source: str = Field(
        min_length=1,
        description="hub id, local path, s3://bucket/prefix, or gguf-wheel:PACKAGE for a packaged GGUF",
    )
    engine: Literal["vllm", "openai"] = "vllm"
    size_b: float | None = Field(None, gt=0, le=1e6, allow_inf_nan=False,
                                 description="parameters in billions; null when unknown")
    training: TrainingName
    family: str = Field(min_length=1)
    prompting: Literal["chat", "completion"]
    options: EngineOptions = Field(default_factory=EngineOptions)

    _not_blank = field_validator("source", "family")(not_blank)

    @model_validator(mode="after")
    def _openai_needs_url(self) -> ModelSpec:
        if self.engine == "openai" and not self.options.base_url:
            raise ValueError("options.base_url is required for engine 'openai'")
        if self.options.batch and self.engine != "openai":
            raise ValueError("options.batch: the Batch API is for engine 'openai' only")
        return self


class DecodingConfig(Strict):
    """One point of the decoding grid Θ."""

    name: str = Field(pattern=NAME_PATTERN)
    temperature: float = Field(ge=0, le=2)
    top_p: float = Field(gt=0, le=1)
    max_tokens: int = Field(128, ge=1, le=32768)


def _model_reference_kind(value: Any) -> str:
    # the tags are listed in `valuelex.errors.UNION_TAGS`, so error paths leave them out
    return "by-name" if isinstance(value, str) else "inline"


ModelReference = Annotated[
    Annotated[str, Tag("by-name")] | Annotated[ModelSpec, Tag("inline")], Discriminator(_model_reference_kind)
]
"""A model of the study by name, or a whole model mapping validated as a `ModelSpec` (errors name its field)."""
