"""The generation stage shared by elicitation and sentence completion: grid -> engine -> store.

For each model: walk its request rows lazily, drop the ones the store already holds, stream the
rest through the model's engine and publish whole shards as results arrive. A rerun therefore only
generates what is missing; raising M only adds the new samples. Error text is redacted before a
shard is written (an endpoint may echo the API key in its error). Failed rows are stored (the
next run retries them), but a stage whose generated rows all failed ends in `StageFailed`.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from valuelex import budget, grid
from valuelex.budget import BudgetReached, Ledger
from valuelex.engines.base import RESULT_FIELDS, RayDataEngine, build_engine, chunk_rows
from valuelex.errors import StudyError
from valuelex.instruments import Stage
from valuelex.plan import generation_estimate
from valuelex.progress import Progress
from valuelex.redact import Redactor
from valuelex.runner import RunContext, StageFailed, StageResult
from valuelex.spec import ModelSpec, Study
from valuelex.store import RunStore
from valuelex.store.counts import StageCounts

log = logging.getLogger(__name__)
WRITERS = ("auto", "driver", "workers")  # who publishes a model's result shards (`shard_writer`)

REQUEST_FIELDS = (
    pa.field("row_id", pa.string()), pa.field("study", pa.string()), pa.field("stage", pa.string()),
    pa.field("model", pa.string()), pa.field("training", pa.string()), pa.field("size_b", pa.float64()),
    pa.field("family", pa.string()), pa.field("prompting", pa.string()), pa.field("config", pa.string()),
    pa.field("temperature", pa.float64()), pa.field("top_p", pa.float64()),
    pa.field("max_tokens", pa.int64()), pa.field("item_id", pa.string()), pa.field("sample", pa.int64()),
    pa.field("seed", pa.int64()), pa.field("prompt", pa.string()), pa.field("paraphrase", pa.int64()),
)
RESULT_SCHEMA = pa.schema(REQUEST_FIELDS + RESULT_FIELDS)


@dataclass
class StageReport:
    """What one run of a generation stage did, for logs, notes and the report."""

    stage: str
    total_rows: int = 0
    skipped_rows: int = 0
    generated_rows: int = 0
    failed_rows: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    per_model: dict[str, dict[str, float]] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)  # first line of each failed row's (redacted) error
    ledger: Ledger | None = None  # what the stage spent, and whether a budget cap stopped it
    engine_starts: dict[str, int] = field(default_factory=dict)  # model -> local engine starts (vLLM)

    def add(self, per_model: dict[str, dict[str, float]]) -> None:
        """Count one wave's models (or another report's per-model counts)."""
        for name, counts in per_model.items():
            self.total_rows += int(counts["rows"])
            self.skipped_rows += int(counts["skipped"])
            self.generated_rows += int(counts["generated"])
            self.failed_rows += int(counts["failed"])
            self.completion_tokens += int(counts["tokens"])
            if counts.get("engine_starts"):
                self.engine_starts[name] = self.engine_starts.get(name, 0) + int(counts["engine_starts"])
            if counts["generated"]:
                self.per_model[name] = counts

    def merge(self, later: StageReport) -> None:
        """Add a later round of the same stage (adaptive M): the grid is the later one's."""
        self.seconds += later.seconds
        self.generated_rows += later.generated_rows
        self.failed_rows += later.failed_rows
        self.completion_tokens += later.completion_tokens
        self.per_model.update(later.per_model)
        self.reasons.update(later.reasons)
        for name, starts in later.engine_starts.items():
            self.engine_starts[name] = self.engine_starts.get(name, 0) + starts
        if later.ledger is not None:
            self.ledger = later.ledger  # its spending was read from the store after this round's rows
        self.total_rows = later.total_rows
        self.skipped_rows = later.total_rows - self.generated_rows  # stored before the first round

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds else 0.0

    def failure(self) -> str | None:
        """One line when rows were generated and every one failed: how many, and the commonest reasons."""
        if not self.generated_rows or self.failed_rows < self.generated_rows:
            return None
        why = ", ".join(f'{n}x "{_clip(reason, 160)}"' for reason, n in self.reasons.most_common(3))
        more = len(self.reasons) - 3
        why += f", and {more} other reason{'s' * (more > 1)}" if more > 0 else ""
        return f"{self.stage}: all {self.failed_rows} rows failed ({why})"

    def summary(self) -> dict:
        return {
            "stage": self.stage, "rows_in_grid": self.total_rows, "rows_already_stored": self.skipped_rows,
            "rows_generated": self.generated_rows, "rows_failed": self.failed_rows,
            "completion_tokens": self.completion_tokens, "generation_seconds": round(self.seconds, 2),
            "tokens_per_second": round(self.tokens_per_second, 2), "per_model": self.per_model,
            "engine_starts": sum(self.engine_starts.values()), "engine_starts_per_model": self.engine_starts,
            **(self.ledger.record() if self.ledger is not None else {}),
        }


def conform(table: pa.Table) -> pa.Table:
    """Select and cast an engine's output to the stored schema; extra columns are kept at the end."""
    names = set(RESULT_SCHEMA.names)
    columns = [
        table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in RESULT_SCHEMA
    ]
    extra = [n for n in table.column_names if n not in names]
    schema = pa.schema(list(RESULT_SCHEMA) + [table.schema.field(n) for n in extra])
    return pa.Table.from_arrays(columns + [table[n] for n in extra], schema=schema)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def run_model(
    study: Study, stage: Stage, model: ModelSpec, store: RunStore, done: set[str], *,
    samples: int | None = None, use_gpu: bool | None = None, redact: Redactor | None = None,
    reasons: Counter[str] | None = None, truncated: dict[str, int] | None = None, ledger: Ledger | None = None,
    writer: str | None = None,
) -> dict[str, float]:
    """Generate one model's missing rows of one stage; returns its counts (see `run_model_stages`)."""
    counts = run_model_stages(
        study, (stage,), model, store, {stage: done}, samples=samples, use_gpu=use_gpu, redact=redact, writer=writer,
        reasons={stage: reasons if reasons is not None else Counter()}, truncated={stage: truncated or {}},
        ledgers={stage: ledger},
    )
    return counts[stage]


def run_model_stages(
    study: Study, stages: tuple[Stage, ...], model: ModelSpec, store: RunStore, done: dict[Stage, set[str]], *,
    samples: int | None = None, use_gpu: bool | None = None, redact: Redactor | None = None,
    reasons: dict[Stage, Counter[str]] | None = None, truncated: dict[Stage, dict[str, int]] | None = None,
    ledgers: dict[Stage, Ledger | None] | None = None, writer: str | None = None,
) -> dict[Stage, dict[str, float]]:
    """Generate one model's missing rows of every stage in `stages` through one engine; counts per stage.

    Counts: rows, skipped, generated, failed, tokens, seconds and ``engine_starts`` (the engine
    starts of this pass, on the first stage's counts; 0 on the others, which shared them). The rows
    of all stages go to the engine as one stream, so a local engine (vLLM) starts once per model,
    not once per stage; each result row is stored in its own stage's table (its ``stage`` column).
    The grids are walked lazily: a study of any M never holds its request rows in memory, and the
    rows, their ids and seeds are those of `grid.requests`. Each shard's error text goes through
    `redact` before it is written; the first line of each failed row's error is counted in its
    stage's `reasons`. A row in `truncated` (its thinking ran out of tokens at that limit) is skipped
    unless the request now allows more tokens. With a stage's ledger (the study's budget), each
    block of `shard_rows` requests is sent only once its estimated cost fits every cap
    (`valuelex.budget`); the rows after a block that does not fit are not sent.

    Who writes the shards (`writer`, default ``VALUELEX_SHARD_WRITER`` or ``auto``; `shard_writer`):
    ``driver`` publishes the engine's result batches here, shard by shard, as they arrive;
    ``workers`` has a Ray Data engine's workers publish them (`valuelex.engines.sink.ShardSink`:
    only counts come back, progress moves once per chunk of `CHUNK_ROWS`); ``auto`` takes the
    workers when the pass's grid is larger than one chunk, else the driver.
    """
    writer = writer or os.environ.get("VALUELEX_SHARD_WRITER", "auto")
    if writer not in WRITERS:
        raise StudyError(f"VALUELEX_SHARD_WRITER: {writer!r} is not one of {', '.join(WRITERS)}")
    redact = redact or Redactor.from_spec(study)
    reasons = reasons or {}
    truncated = truncated or {}
    ledgers = ledgers or {}
    counts: dict[Stage, dict[str, float]] = {
        s: {"rows": grid.count(study, s, model, samples=samples), "skipped": 0, "generated": 0, "failed": 0,
            "tokens": 0, "seconds": 0.0, "engine_starts": 0}
        for s in stages
    }

    def missing(stage: Stage) -> Iterator[dict[str, Any]]:
        limits = truncated.get(stage, {})
        for row in grid.requests(study, stage, model, samples=samples):
            if row["row_id"] in done[stage] or limits.get(row["row_id"], -1) >= row["max_tokens"]:
                counts[stage]["skipped"] += 1
            else:
                yield row

    def gated(stage: Stage) -> Iterator[dict[str, Any]]:
        ledger = ledgers.get(stage)
        if ledger is None or not ledger.binding:  # no cap: nothing to hold back, rows settle as stored
            return missing(stage)
        return ledger.gate(missing(stage), model, generation_estimate(study, stage, model), study.shard_rows)

    rows: Iterator[dict[str, Any]] = itertools.chain.from_iterable(gated(s) for s in stages)
    first = next(rows, None)
    if first is None:
        log.info("%s/%s: all %d rows already stored", "+".join(stages), model.name,
                 sum(int(c["rows"]) for c in counts.values()))
        return counts
    tables = {s: store.generation(s) for s in stages}
    total = sum(int(c["rows"]) for c in counts.values())
    skipped = lambda: sum(int(c["skipped"]) for c in counts.values())  # noqa: E731  (grows as the grid is read)
    progress = Progress(f"{'+'.join(stages)} {model.name}", total, skipped())
    started = time.monotonic()
    engine = None
    try:
        if model.options.batch:  # Batch API jobs are journaled under the run (`engines.openai_batch`)
            engine = build_engine(model, use_gpu=use_gpu,
                                  journal=store.batch_journal(tables[stages[0]].name, model.name))
        else:
            engine = build_engine(model, use_gpu=use_gpu)
        requests = itertools.chain([first], rows)
        generated = 0
        binding = any(ledger is not None and ledger.binding for ledger in ledgers.values())
        writer = shard_writer(writer, rows=total, chunk=chunk_rows(study.shard_rows),
                              ray_data=isinstance(engine, RayDataEngine), binding_budget=binding)
        log.info("%s/%s: result shards written by the %s", "+".join(stages), model.name, writer)
        if writer == "workers":
            from valuelex.engines.sink import ShardSink  # needs Ray: imported when used

            sink = ShardSink(store.uri, shard_rows=study.shard_rows, conform=conform, redact=redact)
            for stats in engine.write(requests, sink, batch_rows=study.shard_rows):
                tokens = 0
                for stage, stored in stats.stages.items():
                    if (ledger := ledgers.get(stage)) is not None:
                        ledger.settle_totals(model.name, stored.prompt_tokens, stored.completion_tokens)
                    tokens += _add_counts(stored, counts[stage], reasons.get(stage))
                    generated += stored.rows
                progress.advance(skipped() + generated - progress.done, tokens)
        else:
            for batch in engine.generate(requests, batch_rows=study.shard_rows):
                tokens = 0
                for stage, shard in _by_stage(redact.table(conform(batch)), stages):
                    tables[stage].write(shard)
                    if (ledger := ledgers.get(stage)) is not None:
                        ledger.settle_table(model.name, shard)
                    tokens += _add_counts(StageCounts.of(shard), counts[stage], reasons.get(stage))
                    generated += shard.num_rows
                progress.advance(skipped() + generated - progress.done, tokens)
    finally:
        progress.close()
        counts[stages[0]]["engine_starts"] = getattr(engine, "starts", 0)
    seconds = round(time.monotonic() - started, 2)
    for c in counts.values():
        c["seconds"] = seconds if c["generated"] else 0.0
    return counts


def shard_writer(requested: str, *, rows: int, chunk: int, ray_data: bool, binding_budget: bool) -> str:
    """Who publishes a pass's result shards: ``driver`` or ``workers`` (the rule in `run_model_stages`).

    Only a Ray Data engine has workers to write, and a binding budget cap settles each shard in the
    driver before the next block is sent, so both force the driver. ``auto`` picks the workers when
    the grid (`rows`) spans more than one engine chunk (`chunk` rows): then the driver would hold
    and write every row, while the workers' progress, which moves once per chunk, still moves. A
    smaller grid keeps the driver's shard-by-shard progress; on one machine both paths run at the
    same speed (docs/benchmarks.md section 11).
    """
    if not ray_data or binding_budget:
        return "driver"
    if requested == "auto":
        return "workers" if rows > chunk else "driver"
    return requested


def _by_stage(shard: pa.Table, stages: tuple[Stage, ...]) -> Iterator[tuple[Stage, pa.Table]]:
    """The rows of a result shard per stage (its ``stage`` column), in `stages` order."""
    if len(stages) == 1:
        yield stages[0], shard
        return
    column = shard["stage"]
    for stage in stages:
        part = shard.filter(pc.equal(column, stage))
        if part.num_rows:
            yield stage, part


def _add_counts(stored: StageCounts, counts: dict[str, float], reasons: Counter[str] | None) -> int:
    """Add what was stored of a stage to its counts (and its failed rows' first error lines); its tokens."""
    counts["generated"] += stored.rows
    counts["tokens"] += stored.completion_tokens
    counts["failed"] += stored.failed
    if reasons is not None:
        reasons.update(stored.reasons)
    return stored.completion_tokens


def generate_missing(ctx: RunContext, stage: Stage, samples: int | None = None) -> StageReport:
    """Generate every missing row of a stage for every model of the study (see `generate_stages`)."""
    return generate_stages(ctx, (stage,), samples)[stage]


def generate_stages(ctx: RunContext, stages: tuple[Stage, ...], samples: int | None = None) -> dict[Stage, StageReport]:
    """Generate every missing row of these stages for every model of the study, wave after wave.

    Each model's rows of every stage go through one engine pass (`run_model_stages`). The models of
    a wave (the context's placement decision) run side by side. `samples` overrides M (adaptive M
    asks for more rounds).
    """
    study = ctx.require_study()
    ctx.release_engines()  # a judge kept up between judging rounds (adaptive M) frees its GPUs first
    done = {s: ctx.store.generation(s).done_row_ids() for s in stages}
    truncated = {s: ctx.store.generation(s).truncated_limits() for s in stages}
    reports = {s: StageReport(stage=s, ledger=budget.for_stage(study, s, ctx.store)) for s in stages}
    ledgers = {s: r.ledger for s, r in reports.items()}
    for wave in ctx.model_waves():
        started = time.monotonic()
        reasons = {m.name: {s: Counter[str]() for s in stages} for m in wave}
        with ThreadPoolExecutor(max_workers=len(wave)) as pool:
            futures = {
                m.name: pool.submit(run_model_stages, study, stages, m, ctx.store, done, samples=samples,
                                    use_gpu=ctx.use_gpu, redact=ctx.redactor, reasons=reasons[m.name],
                                    truncated=truncated, ledgers=ledgers)
                for m in wave
            }
            per_model = {name: future.result() for name, future in futures.items()}
        seconds = time.monotonic() - started
        for stage, report in reports.items():
            mine = {name: counts[stage] for name, counts in per_model.items()}
            if any(c["generated"] for c in mine.values()):
                report.seconds += seconds
            report.add(mine)
            for counter in reasons.values():
                report.reasons.update(counter[stage])
    return reports


@dataclass(frozen=True)
class GenerationStage:
    """Elicitation (15 prompts) or sentence completion (50 stems) as a stage of the study.

    `also`: later generation stages whose rows go through the same engine pass (one engine start
    per model for both grids: completion does not depend on elicitation, only judging waits for the
    taxonomy). Their counts are recorded as parts (``stages/<also>.json``, ``generated_with`` this
    stage); their failures are left to the stage that needs them (evaluation retries failed rows).
    """

    stage: Stage
    samples: int | None = None
    also: tuple[Stage, ...] = ()

    @property
    def name(self) -> str:
        return self.stage

    def uses_engines(self, study: Study) -> bool:
        return True

    def run(self, ctx: RunContext) -> StageResult:
        started = time.time()
        reports = generate_stages(ctx, (self.stage, *self.also), self.samples)
        report = reports[self.stage]
        parts = {s: {"started": started, "output": ctx.store.uri, "generated_with": self.stage, **reports[s].summary()}
                 for s in self.also}
        result = StageResult({"output": ctx.store.uri, **report.summary()}, parts)
        if report.ledger is not None and report.ledger.stopped:
            raise BudgetReached(report.ledger.message(), result)
        if failure := report.failure():
            raise StageFailed(failure, result)
        return result
