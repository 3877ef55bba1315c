"""The evaluation stage (Algorithm 2): generate completions, judge them, score them by Eq. 4.

Output, under the run's output root (paths in `valuelex.store.layout`):

- ``completions/``: the sentence completions (written by `valuelex.generate.generate_missing`);
- ``judgments/<system>/``: per-completion judgments, shards (see `valuelex.evaluate.judgments`);
- ``scores.parquet``: model x dimension scores (see `valuelex.evaluate.scores`) of every (system,
  judge) pair evaluated in this output root; a run replaces the rows of its own pairs;
- ``evaluation.json``: the summary of the last evaluation (its judge and M are what readers default to).

Resumable: a completion already judged by the same judge on the same version of a system
(same ``judge_key``) is not judged again, whether its judgment was valid or not.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from valuelex.errors import StudyError
from valuelex.evaluate import judgments as jt
from valuelex.evaluate.adaptive import run_adaptive
from valuelex.evaluate.bias import add_centred, bias_table
from valuelex.evaluate.scores import score_table
from valuelex.evaluate.systems import ValueSystem, load_value_system
from valuelex.redact import Redactor
from valuelex.runner import RunContext, StageFailed, StageResult
from valuelex.store import RunStore, ShardTable, layout

if TYPE_CHECKING:
    from collections.abc import Callable

    from valuelex.spec import Study

log = logging.getLogger(__name__)


def build_judge(study: Study, use_gpu: bool | None = None, ctx: RunContext | None = None) -> Any:
    """The judge a study asks for: `EmbeddingJudge` or `LLMJudge` (its engine placed by `use_gpu`).

    The LLM judge stores its judgments in shards of ``study.shard_rows`` as the engine finishes them
    (the unit of resume, as for generation): a killed run loses only what was still in flight.
    Within a run (`ctx`), a vLLM judge uses the run's kept-up engine (`RunContext.served_engine`):
    one engine start for every stage that judges.
    """
    spec = study.evaluation
    if spec.judge == "llm":
        from valuelex.evaluate.llm_judge import LLMJudge

        model = spec.judge_model_spec(study)
        engine = ctx.served_engine(model) if ctx is not None else None
        return LLMJudge(model, spec, engine, batch_rows=study.shard_rows, use_gpu=use_gpu)
    from valuelex.evaluate.embedding import EmbeddingJudge

    return EmbeddingJudge(spec.embedding_model, calibration=spec.embedding_calibration)


def judge_pending(
    store: RunStore, study: Study, systems: list[ValueSystem], judge: Any, *, max_samples: int | None = None,
) -> dict[str, dict[str, int]]:
    """Judge every completion of the study's grid not yet judged for each system by this judge.

    All systems go to the judge at once (`judge_many` when it has one: the LLM judge then starts
    its engine once per attempt, not once per system). Returns counts per system name.
    """
    completions = store.completions(study, max_samples=max_samples)
    tasks: list[jt.JudgeTask] = []
    counts: dict[str, dict[str, int]] = {}
    redact = Redactor.from_spec(study)
    for system in systems:
        done = set(store.judgments(system, judge_key=judge.key(system), study=study, max_samples=max_samples)["row_id"])
        pending = completions[~completions["row_id"].isin(done)]
        counts[system.name] = {"completions": len(completions), "already_judged": int(len(completions) - len(pending)),
                               "judged": 0, "invalid": 0}
        if not pending.empty:
            sink = _storing(store.judgments_table(system), system, counts[system.name], redact)
            tasks.append(jt.JudgeTask(system, pending.to_dict("records"), sink))
    if not tasks:
        return counts
    if getattr(judge, "kind", "") == "llm":
        from valuelex.runtime import ensure_ray

        ensure_ray()
    if hasattr(judge, "judge_many"):
        judge.judge_many(tasks)
    else:
        for task in tasks:
            judge.judge(task.completions, task.system, task.sink)
    return counts


def _storing(table: ShardTable, system: ValueSystem, counts: dict[str, int],
             redact: Redactor) -> Callable[[list[dict[str, Any]]], None]:
    """A sink that stores a batch of judgments as one shard (its error text redacted) and counts it."""

    def sink(rows: list[dict[str, Any]]) -> None:
        table.write(redact.table(jt.to_table(rows, system)))
        counts["judged"] += len(rows)
        counts["invalid"] += sum(not r["valid"] for r in rows)

    return sink


def score_systems(store: RunStore, study: Study, systems: list[ValueSystem], judge: Any, samples: int) -> pd.DataFrame:
    """Eq. 4 scores with bootstrap CIs of every system, from this judge's stored judgments with sample < samples."""
    spec = study.evaluation
    tables = []
    for system in systems:
        key = judge.key(system)
        judged = jt.conform(store.judgments(system, judge_key=key, study=study, max_samples=samples), system)
        tables.append(score_table(judged, system, resamples=spec.bootstrap_resamples, ci_level=spec.ci_level,
                                  seed=spec.seed, judge=judge.name, judge_key=key))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


@dataclass(frozen=True)
class EvaluationStage:
    """The evaluation stage: completions, judgments, scores.

    `systems` overrides ``study.evaluation.systems`` (names, paths or `ValueSystem`s);
    `include_taxonomy` adds the run's constructed taxonomy (what ``valuelex run`` does); `judge`
    replaces the study's judge (any object with ``name``, ``key(system)`` and ``judge``);
    ``generate=False`` judges the stored completions only (no completion engine starts);
    `completions_generated_with` names the stage that generated them earlier in this run (the
    elicitation pass, `valuelex.generate.GenerationStage.also`): a round that then finds nothing
    missing leaves that stage's completion record as it is.
    """

    systems: tuple[str | ValueSystem, ...] | None = None
    include_taxonomy: bool = False
    judge: Any = None
    generate: bool = True
    completions_generated_with: str | None = None
    name: str = "evaluation"

    def uses_engines(self, study: Study) -> bool:
        return self.generate or (self.judge is None and study.evaluation.judge == "llm")

    def value_systems(self, ctx: RunContext) -> list[ValueSystem]:
        study = ctx.require_study()
        wanted = list(self.systems or study.evaluation.systems)
        loaded = [s if isinstance(s, ValueSystem) else load_value_system(s) for s in wanted]
        if self.include_taxonomy:
            constructed = ctx.store.taxonomy_system(study.construction.label)
            if constructed is not None and constructed.name not in {s.name for s in loaded}:
                loaded.append(constructed)
        names = [s.name for s in loaded]
        if len(set(names)) != len(names):
            raise StudyError(f"evaluation.systems: two value systems share a name: {names}")
        return loaded

    def run(self, ctx: RunContext) -> StageResult:
        judge = self.judge or build_judge(ctx.require_study(), ctx.use_gpu, ctx)
        return evaluate(ctx, self.value_systems(ctx), judge, generate=self.generate,
                        completions_generated_with=self.completions_generated_with)


def evaluate(ctx: RunContext, systems: list[ValueSystem], judge: Any, *, generate: bool = True,
             completions_generated_with: str | None = None) -> StageResult:
    """Generate the sentence completions, judge every unjudged one, write judgments and scores.

    With ``evaluation.adaptive`` enabled, M grows in rounds until the CIs are narrow (see
    `valuelex.evaluate.adaptive`) instead of using ``study.samples``. The summary is also
    stored as ``evaluation.json``; the completion generation is recorded as its own stage.
    """
    from valuelex.generate import StageReport, generate_missing

    study, store = ctx.require_study(), ctx.store
    spec = study.evaluation
    started = time.monotonic()
    per_system: dict[str, dict[str, int]] = {s.name: {} for s in systems}
    completion = StageReport(stage="completion")
    completion_started = time.time()

    def generate_round(samples: int | None) -> None:
        if not generate:
            return
        report = generate_missing(ctx, "completion", samples)
        completion.merge(report)
        log.info("completion stage: %s rows generated, %s failed", report.generated_rows, report.failed_rows)
        if report.ledger is not None and report.ledger.stopped:  # a budget cap: recorded, exit 2
            from valuelex.budget import BudgetReached

            part = {"started": completion_started, **completion.summary()}
            raise BudgetReached(report.ledger.message(),
                                StageResult({"study": study.name, "out": store.uri}, {"completion": part}))
        if failure := completion.failure():  # no completion of any round succeeded: recorded, and exit non-zero
            part = {"started": completion_started, **completion.summary()}
            raise StageFailed(failure, StageResult({"study": study.name, "out": store.uri}, {"completion": part}))

    ledger = None

    def judge_all(samples: int) -> pd.DataFrame:
        nonlocal ledger
        if hasattr(judge, "ledger"):  # an LLM judge: the budget's caps, over what the store has spent by now
            from valuelex.budget import for_stage
            from valuelex.plan import judge_estimate

            judge.ledger = ledger = for_stage(study, "judging", store)
            ledger.estimates[judge.model.name] = judge_estimate(spec, judge.model)
        if hasattr(judge, "journal") and hasattr(judge, "model"):  # a Batch API judge journals under the run
            judge.journal = store.batch_journal(layout.JUDGMENTS, judge.model.name)
        for name, counts in judge_pending(store, study, systems, judge, max_samples=samples).items():
            for k, v in counts.items():
                per_system[name][k] = per_system[name].get(k, 0) + v if k in ("judged", "invalid") else v
        stopped()
        return score_systems(store, study, systems, judge, samples)

    def g_table(samples: int) -> pd.DataFrame:
        from valuelex.evaluate.scores import dimension_values
        from valuelex.quality.assess import g_coefficients

        return pd.concat([g_coefficients(dimension_values(jt.conform(store.judgments(
            s, judge_key=judge.key(s), study=study, max_samples=samples), s), s), s) for s in systems],
            ignore_index=True)

    def stopped() -> None:
        """A budget cap stopped the judge: the judgments so far are stored, scores are not; exit 2."""
        if ledger is not None and ledger.stopped:
            from valuelex.budget import BudgetReached

            summary = {"study": study.name, "out": store.uri, "judge": judge.name, "systems": per_system,
                       **ledger.record()}
            parts = {"completion": {"started": completion_started, **completion.summary()}} if generate else {}
            raise BudgetReached(ledger.message(), StageResult(summary, parts=parts))

    adaptive = None
    if spec.adaptive.enabled:
        report = run_adaptive(generate_round, judge_all, spec.adaptive, fixed_samples=study.samples,
                              g_table=g_table)
        scores, samples, adaptive = report.scores, report.samples_used, report.summary()
    else:
        generate_round(None)
        samples = study.samples
        scores = judge_all(samples)
    merged = store.write_scores(add_centred(scores))
    store.write_quality("response_bias", bias_table(merged))
    position = None
    if spec.position_check and getattr(judge, "kind", "") == "llm":
        from valuelex.evaluate.position import run_position_check

        position = run_position_check(store, study, systems, judge, samples=samples, rows=spec.position_check_rows)
        stopped()
    summary = {
        "study": study.name, "out": store.uri, "judge": judge.name, "samples": samples, "adaptive": adaptive,
        "systems": per_system, "scores_file": f"{store.uri}/{layout.SCORES}",
        "invalid": {s.name: int(scores.loc[scores["system"] == s.name, "n_invalid"].groupby(
            scores["model"]).first().sum()) for s in systems},
        "seconds": round(time.monotonic() - started, 2),
    }
    if ledger is not None:
        summary.update(ledger.record())
    if position is not None:
        summary["position_check"] = {name: part.get("disagreement_rate") for name, part in position["systems"].items()}
    summary["judge_engine_starts"] = getattr(judge, "engine_starts", 0)  # the embedding judge has no engine
    store.write_evaluation_summary(summary)
    idle = completions_generated_with is not None and not completion.generated_rows
    parts = {"completion": {"started": completion_started, **completion.summary()}} if generate and not idle else {}
    return StageResult(summary, parts=parts)
