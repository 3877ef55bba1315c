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
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from valuelex import budget, grid
from valuelex.budget import BudgetReached, Ledger
from valuelex.engines.base import RESULT_FIELDS, RayDataEngine, build_engine
from valuelex.instruments import Stage
from valuelex.plan import generation_estimate
from valuelex.progress import Progress
from valuelex.redact import Redactor
from valuelex.runner import RunContext, StageFailed, StageResult
from valuelex.spec import ModelSpec, Study
from valuelex.store import RunStore
from valuelex.store.counts import StageCounts

log = logging.getLogger(__name__)

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

    def add(self, per_model: dict[str, dict[str, float]]) -> None:
        """Count one wave's models (or another report's per-model counts)."""
        for name, counts in per_model.items():
            self.total_rows += int(counts["rows"])
            self.skipped_rows += int(counts["skipped"])
            self.generated_rows += int(counts["generated"])
            self.failed_rows += int(counts["failed"])
            self.completion_tokens += int(counts["tokens"])
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
) -> dict[str, float]:
    """Generate one model's missing rows; returns its counts (rows, skipped, generated, failed, tokens).

    The grid is walked lazily and handed to the engine as a stream: a study of any M never holds
    its request rows in memory, and the rows, their ids and seeds are those of `grid.requests`.
    Each shard's error text goes through `redact` before it is written; the first line of each
    failed row's error is counted in `reasons`. A row in `truncated` (its thinking ran out of
    tokens at that limit) is skipped unless the request now allows more tokens. With a `ledger`
    (the study's budget), each block of `shard_rows` requests is sent only once its estimated cost
    fits every cap (`valuelex.budget`); the rows after a block that does not fit are not sent.

    Where the shards are written: an engine that is a Ray Data pipeline (`RayDataEngine`) stores
    them from its workers (`valuelex.store.sink.ShardSink`; only counts come to the driver), unless
    a budget cap binds: a cap settles each shard's actual tokens before the next block is let
    through, so then, like an engine that is no Ray Data pipeline (Batch API), the engine's result
    batches come to the driver, which publishes them shard by shard.
    """
    truncated = truncated or {}
    redact = redact or Redactor.from_spec(study)
    total = grid.count(study, stage, model, samples=samples)
    counts = {"rows": total, "skipped": 0, "generated": 0, "failed": 0, "tokens": 0, "seconds": 0.0}

    def missing() -> Iterator[dict[str, Any]]:
        for row in grid.requests(study, stage, model, samples=samples):
            if row["row_id"] in done or truncated.get(row["row_id"], -1) >= row["max_tokens"]:
                counts["skipped"] += 1
            else:
                yield row

    rows: Iterator[dict[str, Any]] = missing()
    gated = ledger is not None and ledger.binding
    if gated:
        rows = ledger.gate(rows, model, generation_estimate(study, stage, model), study.shard_rows)
    first = next(rows, None)
    if first is None:
        log.info("%s/%s: all %d rows already stored", stage, model.name, total)
        return counts
    progress = Progress(f"{stage} {model.name}", total, counts["skipped"])

    def stored(shards: StageCounts) -> None:
        counts["generated"] += shards.rows
        counts["tokens"] += shards.completion_tokens
        counts["failed"] += shards.failed
        if reasons is not None:
            reasons.update(shards.reasons)
        progress.advance(counts["skipped"] + counts["generated"] - progress.done, shards.completion_tokens)

    started = time.monotonic()
    try:
        if model.options.batch:  # Batch API jobs are journaled under the run (`engines.openai_batch`)
            table_name = store.generation(stage).name
            engine = build_engine(model, use_gpu=use_gpu, journal=store.batch_journal(table_name, model.name))
        else:
            engine = build_engine(model, use_gpu=use_gpu)
        requests = itertools.chain([first], rows)
        if isinstance(engine, RayDataEngine) and not gated:
            from valuelex.store.sink import ShardSink

            sink = ShardSink(store.uri, shard_rows=study.shard_rows, conform=conform, redact=redact)
            for stats in engine.write(requests, sink, batch_rows=study.shard_rows):
                shards = stats.total()
                if ledger is not None:
                    ledger.settle_totals(model.name, shards.prompt_tokens, shards.completion_tokens)
                stored(shards)
        else:
            table = store.generation(stage)
            for batch in engine.generate(requests, batch_rows=study.shard_rows):
                shard = redact.table(conform(batch))
                table.write(shard)
                if ledger is not None:
                    ledger.settle_table(model.name, shard)
                stored(StageCounts.of(shard))
    finally:
        progress.close()
    counts["seconds"] = round(time.monotonic() - started, 2)
    return counts


def generate_missing(ctx: RunContext, stage: Stage, samples: int | None = None) -> StageReport:
    """Generate every missing row of a stage for every model of the study, wave after wave.

    The models of a wave (the context's placement decision) run side by side. `samples`
    overrides M (adaptive M asks for more rounds).
    """
    study = ctx.require_study()
    done = ctx.store.generation(stage).done_row_ids()
    truncated = ctx.store.generation(stage).truncated_limits()
    report = StageReport(stage=stage)
    ledger = budget.for_stage(study, stage, ctx.store)
    report.ledger = ledger
    for wave in ctx.model_waves():
        started = time.monotonic()
        reasons = {m.name: Counter[str]() for m in wave}
        with ThreadPoolExecutor(max_workers=len(wave)) as pool:
            futures = {
                m.name: pool.submit(run_model, study, stage, m, ctx.store, done, samples=samples, use_gpu=ctx.use_gpu,
                                    redact=ctx.redactor, reasons=reasons[m.name], truncated=truncated,
                                    ledger=ledger)
                for m in wave
            }
            per_model = {name: future.result() for name, future in futures.items()}
        if any(c["generated"] for c in per_model.values()):
            report.seconds += time.monotonic() - started
        report.add(per_model)
        for counter in reasons.values():
            report.reasons.update(counter)
    return report


@dataclass(frozen=True)
class GenerationStage:
    """Elicitation (15 prompts) or sentence completion (50 stems) as a stage of the study."""

    stage: Stage
    samples: int | None = None

    @property
    def name(self) -> str:
        return self.stage

    def uses_engines(self, study: Study) -> bool:
        return True

    def run(self, ctx: RunContext) -> StageResult:
        report = generate_missing(ctx, self.stage, self.samples)
        result = StageResult({"output": ctx.store.uri, **report.summary()})
        if report.ledger is not None and report.ledger.stopped:
            raise BudgetReached(report.ledger.message(), result)
        if failure := report.failure():
            raise StageFailed(failure, result)
        return result
