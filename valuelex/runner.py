"""One interface for every stage of a study, and the runner that records them.

A stage is an object with a ``name`` and ``run(ctx) -> StageResult`` (elicitation, construction,
evaluation, report: see `valuelex.api.STAGES`). The `RunContext` it gets holds what every stage
shares: the study, the run store, and where engines run, decided once for respondents, the LLM
judge and the namer alike (`prepare`): a model that no node can hold, or a GPU demanded on a CPU
cluster, is refused before anything is written. The runner, not the stage, writes
``stages/<name>.json``: wall time, cluster shape, software versions and the stage's summary, with
every secret the run knows of redacted (`valuelex.redact`). A stage that ran but made nothing
usable raises `StageFailed`: the runner records it as it would any stage, then lets the error go on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from valuelex import console
from valuelex.errors import StudyError, ValueLexError
from valuelex.records import stage_record
from valuelex.redact import Redactor

if TYPE_CHECKING:
    from valuelex.respondents import ModelSpec
    from valuelex.spec import Study
    from valuelex.store import RunStore


@dataclass(frozen=True)
class RunContext:
    """What a stage runs with: the study (None for a run read back without a valid study.json), the
    store, and the placement: ``use_gpu`` for every engine and the ``waves`` of models that run
    side by side (None until `prepare` decided them, i.e. when no stage needs an engine)."""

    study: Study | None
    store: RunStore
    require_gpu: bool = False
    use_gpu: bool | None = None
    waves: tuple[tuple[ModelSpec, ...], ...] | None = None
    served: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def require_study(self) -> Study:
        if self.study is None:
            raise StudyError(f"{self.store.uri}: no valid study.json: run this stage with a study file")
        return self.study

    def model_waves(self) -> tuple[tuple[ModelSpec, ...], ...]:
        """Waves of the study's models; one model per wave when placement was not decided."""
        if self.waves is not None:
            return self.waves
        return tuple((m,) for m in self.require_study().models)

    def served_engine(self, model: ModelSpec) -> Any | None:
        """The run's kept-up engine for `model` (the LLM judge's: one start for every value system,
        retry round and judging stage of the run), or None where it cannot be served
        (`valuelex.engines.vllm_server.serves_across_passes`: then each pass starts its own)."""
        from valuelex.engines.vllm_server import ServedVLLMEngine, serves_across_passes

        if not serves_across_passes(model):
            return None
        if model.name not in self.served:
            self.served[model.name] = ServedVLLMEngine(model, use_gpu=self.use_gpu)
        return self.served[model.name]

    def release_engines(self) -> None:
        """End the kept-up engines: before respondents generate (they may need the same GPUs, e.g. the
        rounds of adaptive M; the next pass starts the engine again, counted) and when the run ends."""
        for engine in self.served.values():
            engine.close()

    @cached_property
    def redactor(self) -> Redactor:
        """The secrets of this study's models and of the environment, for everything the run writes."""
        return Redactor.from_spec(self.study)


@dataclass
class StageResult:
    """What a stage did: its summary (recorded as ``stages/<name>.json``), and records of the
    stages it ran inside itself (the completion generation inside evaluation), each with its
    ``started`` time (``time.time()``)."""

    summary: dict[str, Any]
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)


class StageFailed(ValueLexError):
    """A stage ran to its end and stored what it made, none of it usable (every generated row
    failed): its `result` is still recorded, and the error makes the run end non-zero."""

    def __init__(self, message: str, result: StageResult):
        super().__init__(message)
        self.result = result


class Stage(Protocol):
    """A step of a study: reads what earlier stages stored, stores what it makes."""

    name: str

    def uses_engines(self, study: Study) -> bool:
        """Whether it may start an engine (then the placement is decided before any stage runs)."""
        ...

    def run(self, ctx: RunContext) -> StageResult: ...


def prepare(study: Study, store: RunStore, stages: Sequence[Stage], *, require_gpu: bool = False,
            allow_changes: bool = False) -> RunContext:
    """Check everything that can be checked before writing, decide the placement, write study.json.

    An output written by an earlier store format, or with another version of the study (see
    `valuelex.store.changes`), is refused unless `allow_changes`: then the new study.json is
    written and the rows of the changed parts are generated anew beside the old ones, which no
    longer count.
    """
    from valuelex.placement import require_gpu_from_env

    require_gpu = require_gpu or require_gpu_from_env()
    check_output(study, store, allow_changes=allow_changes)
    check_stage_systems(stages)
    from valuelex.spec import check_budget

    check_budget(study, study.name)
    use_gpu = waves = None
    if any(stage.uses_engines(study) for stage in stages):
        from valuelex.placement import check_placement, cluster_nodes, models_to_place, schedule
        from valuelex.runtime import ensure_ray

        check_engine_inputs(study, models_to_place(study))
        ensure_ray()
        nodes = cluster_nodes()
        use_gpu = check_placement(study, nodes, require_gpu=require_gpu).use_gpu
        waves = tuple(tuple(wave) for wave in schedule(study, nodes, require_gpu=require_gpu))
    store.write_study(study)
    return RunContext(study=study, store=store, require_gpu=require_gpu, use_gpu=use_gpu, waves=waves)


def check_output(study: Study, store: RunStore, *, allow_changes: bool = False) -> None:
    """Refuse an output of another store format, or one written with a changed study."""
    from valuelex.store.changes import study_changes

    store.check_format()
    stored = store.study_document()
    if stored is None or allow_changes:
        return
    changes = study_changes(stored, study.model_dump(mode="json"))
    if changes:
        raise StudyError(
            f"{store.uri}: the study differs from the one this output was written with (study.json):\n  "
            + "\n  ".join(changes)
            + "\nrows of the changed parts would be generated anew and the stored ones would no longer count; "
              "rerun with --allow-changes to accept that, or write to a new --out")


def check_stage_systems(stages: Sequence[Stage]) -> None:
    """Load the value systems a stage was given by name or path (``--system``), so a typo fails now,
    not after completions are generated (the study's own systems are loaded by `load_study`)."""
    from valuelex.evaluate.systems import load_value_system

    for stage in stages:
        for system in getattr(stage, "systems", None) or ():
            if isinstance(system, str):
                load_value_system(system)


def check_engine_inputs(study: Study, models: Sequence[ModelSpec]) -> None:
    """What an engine would find missing only once started: an unset API key variable, a model package
    that is not installed. One `EngineError` lists every such model, before anything is written."""
    import importlib.util
    import os

    from valuelex.errors import EngineError
    from valuelex.sources import GGUF_PREFIX

    problems = []
    for model in models:
        key_env = model.options.api_key_env
        if model.engine == "openai" and key_env and key_env not in os.environ:
            problems.append(f"model {model.name}: environment variable {key_env} (options.api_key_env) is not set")
        if model.engine == "vllm" and model.source.startswith(GGUF_PREFIX):
            package = model.source.removeprefix(GGUF_PREFIX)
            try:
                found = importlib.util.find_spec(package) is not None  # locate only: no import
            except (ImportError, ValueError):
                found = False
            if not found:
                problems.append(f"model {model.name}: source {model.source}: package {package!r} is not installed")
    if problems:
        raise EngineError(f"study {study.name}: cannot start {len(problems)} model(s):\n" + "\n".join(problems))


def run_stages(ctx: RunContext, stages: Sequence[Stage]) -> dict[str, StageResult]:
    """Run stages in order, recording each (and each part it reports) as ``stages/<name>.json``.

    Summaries are redacted before they are recorded or returned. A `StageFailed` stage is recorded
    (its message as ``failed``), then the error is raised and later stages do not run.
    A record's counts are its own run's: `valuelex.api` holds the output's lock
    (`valuelex.store.lock`) around `prepare` and these stages, so two writers of one output never
    interleave (a second one waits or is refused) and neither generates the other's rows again.
    """
    results: dict[str, StageResult] = {}
    try:
        for stage in stages:
            results[stage.name] = _run_stage(ctx, stage)
    finally:
        ctx.release_engines()
    return results


def _run_stage(ctx: RunContext, stage: Stage) -> StageResult:
    """One stage, recorded with its parts; a `StageFailed` is recorded, then raised (redacted)."""
    redact = ctx.redactor
    started = time.time()
    failure = None
    try:
        with console.capture(ctx.store, stage.name):  # quiet CLI: library output to logs/<stage>.log
            result = stage.run(ctx)
    except StageFailed as exc:
        failure, result = exc, exc.result
    result = StageResult(redact.document(result.summary), {k: redact.document(v) for k, v in result.parts.items()})
    for name, part in result.parts.items():
        part = dict(part)
        ctx.store.write_stage_record(name, stage_record(name, part.pop("started", started), part))
    summary = result.summary if failure is None else {**result.summary, "failed": redact(str(failure))}
    ctx.store.write_stage_record(stage.name, stage_record(stage.name, started, summary))
    if failure is not None:
        raise type(failure)(str(redact(str(failure))), result) from None  # BudgetReached stays itself
    return result
