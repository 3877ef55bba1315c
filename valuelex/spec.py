"""The study spec: one YAML file, validated by pydantic, that names every respondent and setting.

A study is the psychometric design of the paper: respondents (model x decoding config), the
elicitation prompts and completion stems they answer, M samples each, and where results go.
Every error names the file and the field, so a typo never costs a GPU-hour.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from valuelex.construct.config import ConstructionSpec
from valuelex.errors import StudyError, invalid_fields
from valuelex.evaluate.config import EvaluationSpec

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


class Strict(BaseModel):
    """Base for spec models: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Training(StrEnum):
    pretrained = "pretrained"
    instruction_tuned = "instruction-tuned"
    aligned = "aligned"


class EngineOptions(Strict):
    """How a model's engine is placed and configured; passed through to vLLM where it applies."""

    tensor_parallel_size: int = Field(1, ge=1)
    pipeline_parallel_size: int = Field(1, ge=1)
    max_model_len: int | None = Field(None, ge=16)
    dtype: str = "auto"
    enforce_eager: bool = False
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    accelerator_type: str | None = None
    batch_size: int = Field(32, ge=1, description="rows per engine batch")
    concurrency: int = Field(1, ge=1, description="engine replicas (actors) for this model")
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="extra vLLM engine args")
    # OpenAI-compatible engines
    base_url: str | None = None
    # a variable's name only: a pasted key fails here instead of landing in study.json and messages
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
                                    description="name of the env var holding the API key")
    max_concurrency: int = Field(8, ge=1, description="requests in flight at once")
    max_qps: float | None = Field(None, gt=0, description="requests started per second, at most")
    max_retries: int = Field(4, ge=0)
    request_timeout_s: float = Field(120.0, gt=0)


class ModelSpec(Strict):
    """One LLM. With each decoding config it makes one respondent."""

    name: str = Field(pattern=NAME_PATTERN)
    source: str = Field(
        min_length=1,
        description="hub id, local path, s3://bucket/prefix, or gguf-wheel:PACKAGE for a packaged GGUF",
    )
    engine: Literal["vllm", "openai"] = "vllm"
    size_b: float | None = Field(None, gt=0, description="parameters in billions; null when unknown")
    training: Training
    family: str = Field(min_length=1)
    prompting: Literal["chat", "completion"]
    options: EngineOptions = Field(default_factory=EngineOptions)

    @model_validator(mode="after")
    def _openai_needs_url(self) -> ModelSpec:
        if self.engine == "openai" and not self.options.base_url:
            raise ValueError("options.base_url is required for engine 'openai'")
        return self


class DecodingConfig(Strict):
    """One point of the decoding grid Θ."""

    name: str = Field(pattern=NAME_PATTERN)
    temperature: float = Field(ge=0, le=2)
    top_p: float = Field(gt=0, le=1)
    max_tokens: int = Field(128, ge=1, le=32768)


class PromptSelection(Strict):
    """Which packaged elicitation prompts and completion stems a study uses ('all' or a list of ids)."""

    elicitation: Literal["all"] | list[str] = "all"
    stems: Literal["all"] | list[str] = "all"

    @field_validator("elicitation", "stems")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("must name at least one id, or be 'all'")
        return value


class Study(Strict):
    """A whole study: respondents, instruments, sampling, output."""

    version: Literal[1] = 1
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    models: list[ModelSpec] = Field(min_length=1)
    decoding: list[DecodingConfig] = Field(min_length=1)
    samples: int = Field(ge=1, description="M: samples per prompt and decoding config")
    seed: int = Field(0, ge=0)
    prompts: PromptSelection = Field(default_factory=PromptSelection)
    output: str = Field("runs/{name}", description="output root: a local path or s3:// URI")
    shard_rows: int = Field(256, ge=1, description="rows per Parquet shard (the unit of resume)")
    construction: ConstructionSpec = Field(default_factory=ConstructionSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)

    @model_validator(mode="after")
    def _consistent_names(self) -> Study:
        for field, items in (("models", self.models), ("decoding", self.decoding)):
            seen: set[str] = set()
            for index, item in enumerate(items):
                if item.name in seen:
                    raise ValueError(f"{field}[{index}].name: duplicate name {item.name!r}")
                seen.add(item.name)
        names = {m.name for m in self.models}
        references = (("construction.naming", self.construction.naming),
                      ("evaluation.judge_model", self.evaluation.judge_model))
        for field, value in references:
            if isinstance(value, str) and value not in names:
                raise ValueError(f"{field}: no model named {value!r} in models ({sorted(names)})")
        return self

    @property
    def output_uri(self) -> str:
        return self.output.format(name=self.name)

    def model(self, name: str) -> ModelSpec:
        for model in self.models:
            if model.name == name:
                return model
        raise StudyError(f"study {self.name!r} has no model {name!r}")

    def fingerprint(self) -> str:
        """A short hash of the spec, to tell runs of different specs apart."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def load_study(path: str | Path) -> Study:
    """Read and validate a study file; every problem is reported as `file: field: message`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StudyError(f"{path}: cannot read study file: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StudyError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: (top level): expected a mapping of study fields")
    try:
        return Study.model_validate(raw)
    except ValidationError as exc:
        raise invalid_fields(str(path), exc) from None
