"""The study spec: one YAML file, validated by pydantic, that names every respondent and setting.

A study is the psychometric design of the paper: respondents (model x decoding config), the
elicitation prompts and completion stems they answer, M samples each, and where results go.
Every error names the file and the field, so a typo never costs a GPU-hour.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from valuelex.construct.config import ConstructionSpec
from valuelex.errors import StudyError, invalid_fields
from valuelex.evaluate.config import EvaluationSpec
from valuelex.respondents import NAME_PATTERN, DecodingConfig, ModelSpec, Strict


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
    samples: int = Field(ge=1, le=100_000, description="M: samples per prompt and decoding config")
    seed: int = Field(0, ge=0)
    prompts: PromptSelection = Field(default_factory=PromptSelection)
    output: str = Field("runs/{name}", description="output root: a local path or s3:// URI")
    shard_rows: int = Field(256, ge=1, le=100_000, description="rows per Parquet shard (the unit of resume)")
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
        return fingerprint_of(self.model_dump(mode="json"))


def fingerprint_of(document: dict[str, Any]) -> str:
    """The fingerprint of a study's JSON dump (study.json): `Study.fingerprint` without validating it."""
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:12]


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
