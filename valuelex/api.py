"""The public Python API: run a study, or open a run and read what it holds.

    import valuelex

    result = valuelex.run_study("configs/local.yaml", out="runs/local")   # every stage, in order
    run = valuelex.open_run("runs/local")                                 # or s3://bucket/prefix
    run.scores()                                                          # pandas: model x dimension
    run.judgments("valuelex")                                             # the judgments that count
    valuelex.compare("runs/local", "gemma3-270m", "smollm2-135m-instruct")

The CLI (`valuelex.cli`) and the Ray job entrypoints (`jobs/`) are thin over these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from valuelex import console
from valuelex.errors import StudyError
from valuelex.runner import RunContext, Stage, StageResult, prepare, run_stages
from valuelex.spec import Study, load_study
from valuelex.store import RunStore
from valuelex.store.lock import hold

if TYPE_CHECKING:
    from valuelex.evaluate.systems import ValueSystem

STAGES = ("elicitation", "construction", "evaluation", "reliability", "report")
"""The study's stages in the order data flows through them (``completion`` alone is also a stage)."""


@dataclass
class RunResult:
    """What `run_study` did: each stage's result, and the run's store to read its outputs."""

    run: RunStore
    stages: dict[str, StageResult]

    def summary(self) -> dict[str, dict[str, Any]]:
        """Stage name -> its summary (what ``stages/<name>.json`` records, without the envelope)."""
        return {name: result.summary for name, result in self.stages.items()}


def stage(name: str, *, systems: Sequence[str | ValueSystem] | None = None, include_taxonomy: bool = False,
          report_dir: str | None = None) -> Stage:
    """A stage by name: elicitation, completion, construction, evaluation, reliability or report."""
    from valuelex.construct.stage import ConstructionStage
    from valuelex.evaluate.stage import EvaluationStage
    from valuelex.generate import GenerationStage
    from valuelex.quality.stage import ReliabilityStage
    from valuelex.report.stage import ReportStage

    if name in ("elicitation", "completion"):
        return GenerationStage(name)
    if name == "construction":
        return ConstructionStage()
    if name == "evaluation":
        return EvaluationStage(tuple(systems) if systems else None, include_taxonomy=include_taxonomy)
    if name == "reliability":
        return ReliabilityStage()
    if name == "report":
        return ReportStage(out=report_dir)
    raise StudyError(f"stages: unknown stage {name!r} (stages: {', '.join(STAGES)}, completion)")


def share_generation(study: Study, stages: list[Stage]) -> list[Stage]:
    """Elicitation generates the sentence completions too when a later evaluation stage would: each
    model's engine then starts once for both grids (they do not depend on each other; only judging
    waits for the taxonomy), unless `valuelex.plan.shares_engines` says no (adaptive M, a cap)."""
    from dataclasses import replace

    from valuelex.evaluate.stage import EvaluationStage
    from valuelex.generate import GenerationStage
    from valuelex.plan import shares_engines

    first = next((i for i, s in enumerate(stages) if isinstance(s, GenerationStage) and s.stage == "elicitation"
                  and not s.also and s.samples is None), None)
    if first is None or not shares_engines(study):
        return stages
    later = stages[first + 1:]
    if not any(isinstance(s, EvaluationStage) and s.generate for s in later):
        return stages
    shared = [replace(s, completions_generated_with="elicitation") if isinstance(s, EvaluationStage) and s.generate
              else s for s in later]
    return [*stages[:first], replace(stages[first], also=("completion",)), *shared]


def run_study(
    study: Study | str | Path, out: str | None = None, stages: Sequence[str | Stage] = STAGES, *,
    systems: Sequence[str | ValueSystem] | None = None, require_gpu: bool = False, report_dir: str | None = None,
    allow_changes: bool = False, wait: float = 0.0, command: str | None = None,
) -> RunResult:
    """Run a study's stages in order into `out` (default: the study's ``output``); each resumes.

    `stages`: names or `Stage` objects. When construction runs before evaluation, the taxonomy
    it builds is evaluated too. `systems` overrides ``evaluation.systems``. Everything that can
    be checked before writing is checked first: the value systems, the API key variables and model
    packages, the placement of every engine (respondents, judge, namer), with GPUs demanded by
    `require_gpu` (or ``VALUELEX_REQUIRE_GPU=1``). An output written with another version of the
    study is refused unless `allow_changes` (`valuelex.store.changes` says what counts as one).

    One writer at a time: the output's lock (`valuelex.store.lock`) is taken before anything is
    written and released at the end, on an error too. Another live writer makes it wait up to `wait`
    seconds, then raise `LockHeld` naming that writer (`command`, e.g. ``valuelex elicit``).
    """
    spec = study if isinstance(study, Study) else load_study(study)
    names = [s if isinstance(s, str) else s.name for s in stages]
    with_taxonomy = "construction" in names and "evaluation" in names
    chosen = [stage(s, systems=systems, include_taxonomy=with_taxonomy, report_dir=report_dir)
              if isinstance(s, str) else s for s in stages]
    chosen = share_generation(spec, chosen)
    store = RunStore(out or spec.output_uri)
    with hold(store.uri, command or f"run_study({', '.join(names)})", wait):
        with console.capture(store, "setup", only_on_success=True):  # Ray's start-up output
            ctx = prepare(spec, store, chosen, require_gpu=require_gpu, allow_changes=allow_changes)
        return RunResult(store, run_stages(ctx, chosen))


def open_run(uri: str) -> RunStore:
    """A run's output root to read: ``scores()``, ``judgments(system)``, ``taxonomy_system()``,
    ``comparisons()``, ``study()``, ``table(name)`` (see `valuelex.store.RunStore`)."""
    store = RunStore(uri)
    if not store.exists():
        raise StudyError(f"{uri}: no such run (the output root does not exist)")
    store.check_format()
    return store


def report(run_uri: str, out: str | None = None, *, embed: str = "svg", cases: int = 2,
           wait: float = 0.0) -> dict[str, Any]:
    """Build a run's report (the report stage on a run read back) and record it in the run.

    A run root that does not exist is refused before anything is written (a typo in RUN must not
    leave an empty report behind); one that exists but holds little still gets a report with notices.
    It records itself in the run, so it holds the run's lock as `run_study` does (`wait`: the same).
    """
    from valuelex.report.stage import ReportStage, check_embed

    check_embed(embed)
    store = RunStore(run_uri)
    if not store.exists():
        raise StudyError(f"{run_uri}: no such run")
    store.check_format()
    with hold(store.uri, "valuelex report", wait):
        ctx = RunContext(study=store.study(), store=store)
        return run_stages(ctx, [ReportStage(out=out, embed=embed, cases=cases)])["report"].summary


def reliability(run_uri: str, systems: Sequence[str] | None = None, *, wait: float = 0.0,
                build_judges: bool = True) -> dict[str, Any]:
    """The reliability stage on a run read back (``RUN/quality/*.parquet``); returns its summary.

    `systems`: the value systems to assess (default: every judged one). It writes into the run, so it
    holds the run's lock as `report` does. The re-judge and the controls run the study's judge
    (`build_judges=False`: only the figures from the stored judgments).
    """
    from valuelex.quality.stage import ReliabilityStage

    store = RunStore(run_uri)
    if not store.exists():
        raise StudyError(f"{run_uri}: no such run")
    store.check_format()
    with hold(store.uri, "valuelex reliability", wait):
        stage_ = ReliabilityStage(system_names=tuple(systems) if systems else None, build_judges=build_judges)
        study = store.study()
        ctx = RunContext(study=study, store=store)
        if study is not None and stage_.uses_engines(study):
            ctx = prepare(study, store, [stage_])
        return run_stages(ctx, [stage_])["reliability"].summary
