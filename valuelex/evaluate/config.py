"""Settings of the evaluation stage, as they appear under `evaluation:` in a study file.

Example::

    evaluation:
      judge: llm                      # or "embedding" (the default: fast, offline, no LLM)
      judge_model: qwen-judge         # a model of this study by name, or a full model mapping
      systems: [valuelex, mft, runs/x/construction/taxonomy.json]
      bootstrap_resamples: 1000
      ci_level: 0.95
      max_judge_retries: 2
      embedding_calibration: stance   # the default: stance features + ordinal model (packaged systems; better
                                      # than the fixed rule on the test half, docs/benchmarks.md section 6);
                                      # none: the fixed rule; packaged: per-dimension isotonic map (not better)
      position_check: true            # LLM judge: disagreement between two few-shot orders -> RUN/quality/
      adaptive: {enabled: true, epsilon: 0.03, start_samples: 2, step: 2, max_samples: 20}  # rule: ci
      # adaptive: {enabled: true, rule: g, g_target: 0.8, max_samples: 20}  # stop when every G >= 0.8

An inline judge model is a `ModelSpec` (from `valuelex.respondents`, below the study spec), so a
typo inside it fails `valuelex validate` with `file: evaluation.judge_model.field: message`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from valuelex.errors import StudyError
from valuelex.respondents import ModelReference, ModelSpec, Strict

if TYPE_CHECKING:
    from valuelex.spec import Study


class AdaptiveSpec(Strict):
    """Adaptive M: sample in rounds until every CI is narrow enough, or every dimension's G reaches
    `g_target` (``rule: g``), or M reaches max_samples."""

    enabled: bool = False
    rule: Literal["ci", "g"] = Field("ci", description="ci: every CI half-width <= epsilon; g: every G >= g_target")
    g_target: float = Field(0.8, gt=0, lt=1, description="rule g: the relative G coefficient every dimension needs")
    epsilon: float = Field(0.05, gt=0, lt=0.5, description="target CI half-width, in normalised [0,1] units")
    start_samples: int = Field(2, ge=1, description="M of the first round")
    step: int = Field(2, ge=1, description="samples added per round")
    max_samples: int = Field(20, ge=1, description="M_max: never sample more than this")

    @model_validator(mode="after")
    def _ordered(self) -> AdaptiveSpec:
        if self.start_samples > self.max_samples:
            raise ValueError("adaptive.start_samples must not exceed adaptive.max_samples")
        return self


class EvaluationSpec(Strict):
    """How completions are judged and scored (paper section 3.3, Eq. 4)."""

    judge: Literal["embedding", "llm"] = Field(
        "embedding", description="embedding: cosine similarity to each dimension (offline); llm: a judge LLM"
    )
    judge_model: ModelReference | None = Field(
        None, description="for judge 'llm': a model of the study by name, or a model mapping (like `models:`)"
    )
    systems: list[str] = Field(
        default_factory=lambda: ["valuelex"], min_length=1,
        description="value systems to score: valuelex, schwartz, mft, or a YAML / taxonomy.json path",
    )
    embedding_model: str | None = Field(
        None, description="sentence-transformers model path; default: the packaged all-MiniLM-L6-v2"
    )
    embedding_calibration: Literal["none", "packaged", "stance"] = Field(
        "stance", description="embedding judge: the stance model (stance, the default) or the per-dimension "
                              "isotonic calibration (packaged), both fitted on the development set's calibration "
                              "half and applied to the packaged systems only (others keep the fixed rule), or the "
                              "fixed rule everywhere (none); valuelex.evaluate.stance, valuelex.evaluate.calibration",
    )
    position_check: bool = Field(
        False, description="LLM judge: judge a sample of completions again with the few-shot examples in another "
                           "order and store the disagreement rate under RUN/quality/",
    )
    position_check_rows: int = Field(200, ge=1, le=100_000, description="completions per system the check judges")
    bootstrap_resamples: int = Field(1000, ge=50, le=100_000)
    ci_level: float = Field(0.95, gt=0.5, lt=1)
    seed: int = Field(0, ge=0, description="seed of the bootstrap")
    max_judge_retries: int = Field(2, ge=0, le=10, description="new-seed retries of an unparseable judge answer")
    judge_temperature: float = Field(0.0, ge=0, le=2, description="temperature of the first judge attempt")
    retry_temperature: float = Field(0.7, gt=0, le=2, description="temperature of retries (a new seed needs it)")
    judge_max_tokens: int = Field(320, ge=16, le=8192)
    judge_input: Literal["answer", "answer+reasoning"] = Field(
        "answer", description="what the judge scores of a reasoning respondent: its answer, or its reasoning too")
    adaptive: AdaptiveSpec = Field(default_factory=AdaptiveSpec)

    @field_validator("systems")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("lists a value system twice")
        return value

    @model_validator(mode="after")
    def _llm_needs_model(self) -> EvaluationSpec:
        if self.judge == "llm" and self.judge_model is None:
            raise ValueError("judge_model is required when judge is 'llm'")
        return self

    def judge_model_spec(self, study: Study | None = None) -> ModelSpec:
        """The judge LLM as a `ModelSpec`: a study model by name, or the inline model."""
        if self.judge_model is None:
            raise StudyError("evaluation.judge_model: missing (needed for judge 'llm')")
        if isinstance(self.judge_model, ModelSpec):
            return self.judge_model
        if study is None:
            raise StudyError(f"evaluation.judge_model: {self.judge_model!r} names a model, but no study was given")
        return study.model(self.judge_model)
