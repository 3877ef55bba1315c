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

from pydantic import Field, ValidationError, field_validator, model_validator

from valuelex.construct.config import ConstructionSpec
from valuelex.errors import StudyError, invalid_fields
from valuelex.evaluate.config import EvaluationSpec
from valuelex.inputs import parse_yaml, read_text
from valuelex.quality.config import ReliabilitySpec
from valuelex.respondents import NAME_PATTERN, DecodingConfig, ModelSpec, Strict

SEED_LIMIT = 2**63  # row seeds mix 8 bytes of the study seed (`grid.row_identity`)


class PromptSelection(Strict):
    """Which packaged elicitation prompts and completion stems a study uses ('all' or a list of ids),
    and in how many wordings: `paraphrases` N asks each in its original wording and its first N
    hand-written paraphrases (`valuelex.instruments.paraphrases`; 0, the default, the original only)."""

    elicitation: Literal["all"] | list[str] = "all"
    stems: Literal["all"] | list[str] = "all"
    paraphrases: int = Field(0, ge=0, description="paraphrases per prompt and stem besides the original wording")

    @field_validator("paraphrases", mode="before")
    @classmethod
    def _paraphrases_known(cls, value: Any) -> Any:
        from valuelex.instruments import paraphrase_count

        if isinstance(value, bool):
            raise ValueError("Input should be a valid integer")
        if isinstance(value, int) and value > paraphrase_count():
            raise ValueError(f"at most {paraphrase_count()}: every prompt and stem has {paraphrase_count()} "
                             "paraphrases (valuelex/data/paraphrases.yaml)")
        return value

    @field_validator("elicitation", "stems")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("must name at least one id, or be 'all'")
        if isinstance(value, list):
            twice = sorted({i for i in value if value.count(i) > 1})
            if twice:  # one id twice would be one row_id for two grid rows: a respondent's answers vanish
                raise ValueError(f"ids listed more than once: {twice}")
        return value


class Price(Strict):
    """USD per 1M tokens of one API model (overrides `valuelex/data/prices.yaml`)."""

    input: float = Field(ge=0, le=1e6, allow_inf_nan=False)
    output: float = Field(ge=0, le=1e6, allow_inf_nan=False)
    cached: float | None = Field(None, ge=0, le=1e6, allow_inf_nan=False)


class Cap(Strict):
    """A spending cap: USD (API list prices, `valuelex.cost`) and/or tokens (prompt + completion)."""

    max_usd: float | None = Field(None, gt=0, le=1e9, allow_inf_nan=False)
    max_tokens: int | None = Field(None, ge=1, le=10**15)


BUDGET_STAGES = ("elicitation", "completion", "judging")


class Budget(Cap):
    """Caps on what a run may spend: for the whole output (every stage, every run) and per stage.

    Checked before each block of requests is sent (`valuelex.budget`); a run stops (exit code 2)
    before a block whose estimated cost would cross a cap, keeping every finished row."""

    stages: dict[Literal["elicitation", "completion", "judging"], Cap] = Field(default_factory=dict)


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
    reliability: ReliabilitySpec = Field(default_factory=ReliabilitySpec)
    prices: dict[str, Price] = Field(default_factory=dict,
                                     description="API model id -> USD per 1M tokens, over the packaged table")
    budget: Budget = Field(default_factory=Budget)

    @field_validator("version", mode="before")
    @classmethod
    def _version_not_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):  # True == 1 would pass Literal[1]
            raise ValueError("Input should be 1")
        return value

    @field_validator("seed")
    @classmethod
    def _seed_fits(cls, value: int) -> int:
        if value >= SEED_LIMIT:
            raise ValueError("must be below 2**63 (row seeds are derived from its 8 bytes)")
        return value

    @field_validator("output")
    @classmethod
    def _output_given(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty (a local path or s3:// URI; '.' for the current folder)")
        return value

    @model_validator(mode="after")
    def _output_template(self) -> Study:
        """The template is filled at load, so a bad `{...}` fails validate, not a started run."""
        try:
            filled = self.output.format(name=self.name)
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
            raise ValueError(f"output: bad template {self.output!r} ({exc or type(exc).__name__}): "
                             "the only placeholder is {name}; write {{ and }} for braces") from None
        if not filled.strip():
            raise ValueError(f"output: {self.output!r} names no folder")
        return self

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
                      ("construction.word_judge", self.construction.word_judge),
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


ADDED_LATER: dict[tuple[str, ...], Any] = {
    ("reliability", "devset"): True,
    ("evaluation", "adaptive", "rule"): "ci",
    ("evaluation", "adaptive", "g_target"): 0.8,
    ("evaluation", "judge_input"): "answer",
    ("models", "*", "options", "reasoning"): "none",
    ("models", "*", "options", "reasoning_budget"): None,
    ("models", "*", "options", "max_tokens"): None,
    ("models", "*", "options", "batch"): False,
    ("models", "*", "options", "batch_poll_s"): 30.0,
    ("models", "*", "options", "batch_max_lines"): 50_000,
    ("prices",): {},
    ("prompts", "paraphrases"): 0,
    ("budget",): {"max_usd": None, "max_tokens": None, "stages": {}},
}
"""Study fields added after runs were stored, with their defaults (``*``: every item of a list):
left out of the fingerprint while they hold them, so a study that leaves them alone keeps the
fingerprint its outputs record."""


def _drop_default(node: Any, path: tuple[str, ...], default: Any) -> None:
    if isinstance(node, list) and path[0] == "*":
        for item in node:
            _drop_default(item, path[1:], default)
    elif isinstance(node, dict) and len(path) == 1:
        if path[0] in node and node[path[0]] == default:
            del node[path[0]]
    elif isinstance(node, dict) and path[0] in node:
        _drop_default(node[path[0]], path[1:], default)


def _without_later_defaults(document: dict[str, Any]) -> dict[str, Any]:
    document = json.loads(json.dumps(document))  # a deep copy that is JSON already
    for path, default in ADDED_LATER.items():
        _drop_default(document, path, default)
    first = {k: v for k, v in ReliabilitySpec().model_dump(mode="json").items()
             if ("reliability", k) not in ADDED_LATER}
    if document.get("reliability") == first:  # the whole block was added later too
        del document["reliability"]
    return document


def fingerprint_of(document: dict[str, Any]) -> str:
    """The fingerprint of a study's JSON dump (study.json): `Study.fingerprint` without validating it.

    Fields added later (`ADDED_LATER`, and ``reliability`` as a whole) count only when they differ
    from their defaults, so a study that leaves them alone keeps the fingerprint it had before.
    """
    return hashlib.sha256(json.dumps(_without_later_defaults(document), sort_keys=True).encode()).hexdigest()[:12]


def load_study(path: str | Path) -> Study:
    """Read and validate a study file; every problem is reported as `file: field: message`.

    Checks that need no cluster are all made here, so `valuelex validate` catches them: the value
    systems of ``evaluation.systems`` are loaded (a typo like ``valuelx`` fails now, not after
    elicitation). Engine checks (API keys, model packages, placement) are `runner.prepare`'s.
    """
    path = Path(path)
    raw = parse_yaml(read_text(path, "study file"), path)
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: (top level): expected a mapping of study fields")
    try:
        study = Study.model_validate(raw)
    except ValidationError as exc:
        raise invalid_fields(str(path), exc) from None
    except RecursionError:
        raise StudyError(f"{path}: (top level): nested too deeply") from None
    check_systems(study, str(path))
    check_budget(study, str(path))
    return study


def check_systems(study: Study, source: str) -> None:
    """Load every value system the study names; a missing or broken one as `source: evaluation.systems[i]: ...`."""
    from valuelex.evaluate.systems import load_value_system

    for index, system in enumerate(study.evaluation.systems):
        try:
            load_value_system(system)
        except StudyError as exc:
            raise StudyError(f"{source}: evaluation.systems[{index}]: {exc}") from None


def check_budget(study: Study, source: str = "study") -> None:
    """A USD cap (``budget``) needs a price for every API model it covers: an unpriced one is refused
    before anything runs (`source` names the study file in the error)."""
    from valuelex.cost import load_prices

    budget = study.budget
    if budget.max_usd is None and all(c.max_usd is None for c in budget.stages.values()):
        return
    prices = load_prices({k: v.model_dump() for k, v in study.prices.items()})
    spec = study.evaluation
    judge = [spec.judge_model_spec(study)] if spec.judge == "llm" and spec.judge_model is not None else []
    for model in [*study.models, *judge]:
        if model.engine != "vllm" and model.source not in prices["models"]:
            raise StudyError(
                f"{source}: budget.max_usd: model {model.name} (source {model.source!r}) has no price: "
                "add it under prices: (input/output USD per 1M tokens) or cap max_tokens instead"
            )
