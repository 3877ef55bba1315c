"""The generation stage shared by elicitation and sentence completion: grid -> engine -> store.

For each model: build its request rows, drop the ones the store already holds, stream the rest
through the model's engine and publish whole shards as results arrive. A rerun therefore only
generates what is missing; raising M only adds the new samples.
"""

from __future__ import annotations

import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from valuelex import grid
from valuelex.engines.base import RESULT_FIELDS, build_engine, request_dataset, result_batches
from valuelex.instruments import Stage
from valuelex.records import record_stage
from valuelex.spec import ModelSpec, Study
from valuelex.store import OutputRoot

log = logging.getLogger(__name__)

REQUEST_FIELDS = (
    pa.field("row_id", pa.string()), pa.field("study", pa.string()), pa.field("stage", pa.string()),
    pa.field("model", pa.string()), pa.field("training", pa.string()), pa.field("size_b", pa.float64()),
    pa.field("family", pa.string()), pa.field("prompting", pa.string()), pa.field("config", pa.string()),
    pa.field("temperature", pa.float64()), pa.field("top_p", pa.float64()),
    pa.field("max_tokens", pa.int64()), pa.field("item_id", pa.string()), pa.field("sample", pa.int64()),
    pa.field("seed", pa.int64()), pa.field("prompt", pa.string()),
)
RESULT_SCHEMA = pa.schema(REQUEST_FIELDS + RESULT_FIELDS)
TABLES: dict[Stage, str] = {"elicitation": "elicitation", "completion": "completions"}


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

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds else 0.0

    def summary(self) -> dict:
        return {
            "stage": self.stage, "rows_in_grid": self.total_rows, "rows_already_stored": self.skipped_rows,
            "rows_generated": self.generated_rows, "rows_failed": self.failed_rows,
            "completion_tokens": self.completion_tokens, "generation_seconds": round(self.seconds, 2),
            "tokens_per_second": round(self.tokens_per_second, 2), "per_model": self.per_model,
        }


class Progress:
    """rows done / total on stderr, one line rewritten in place (a plain line per update when piped)."""

    def __init__(self, label: str, total: int, done: int = 0):
        self.label, self.total, self.done, self.start = label, total, done, time.monotonic()
        self.tty = sys.stderr.isatty()
        self.show()

    def advance(self, rows: int) -> None:
        self.done += rows
        self.show()

    def show(self) -> None:
        elapsed = time.monotonic() - self.start
        line = f"[{self.label}] {self.done}/{self.total} rows ({elapsed:.0f}s)"
        sys.stderr.write(("\r" + line) if self.tty else (line + "\n"))
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


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


def run_model(
    study: Study, stage: Stage, model: ModelSpec, root: OutputRoot, done: set[str], *,
    samples: int | None = None, use_gpu: bool | None = None,
) -> dict[str, float]:
    """Generate one model's missing rows; returns its counts (rows, skipped, generated, failed, tokens)."""
    rows = [r for r in grid.requests(study, stage, model, samples=samples) if r["row_id"] not in done]
    total = grid.count(study, stage, model, samples=samples)
    counts = {"rows": total, "skipped": total - len(rows), "generated": len(rows), "failed": 0, "tokens": 0,
              "seconds": 0.0}
    if not rows:
        log.info("%s/%s: all %d rows already stored", stage, model.name, total)
        return counts
    table = root.table(TABLES[stage])
    progress = Progress(f"{stage} {model.name}", total, total - len(rows))
    started = time.monotonic()
    results = build_engine(model, use_gpu=use_gpu).generate(request_dataset(rows, model.options.batch_size))
    for batch in result_batches(results, study.shard_rows, "pyarrow"):
        shard = conform(batch)
        table.write(shard)
        counts["tokens"] += int(pc.sum(shard["n_completion_tokens"]).as_py() or 0)
        counts["failed"] += shard.num_rows - int(pc.sum(pc.is_null(shard["error"])).as_py())
        progress.advance(shard.num_rows)
    progress.close()
    counts["seconds"] = round(time.monotonic() - started, 2)
    return counts


def run_stage(
    study: Study, stage: Stage, out_uri: str | None = None, samples: int | None = None, *, require_gpu: bool = False,
) -> StageReport:
    """Generate every missing row of a stage for every model of the study.

    The placement is checked before anything is written (a model no node can hold is refused);
    models then run in waves: the models of a wave side by side, waves one after another.
    """
    from valuelex.placement import check_placement, cluster_nodes, require_gpu_from_env, schedule
    from valuelex.runtime import ensure_ray

    started_at = time.time()
    ensure_ray()
    nodes = cluster_nodes()
    require_gpu = require_gpu or require_gpu_from_env()
    use_gpu = check_placement(study, nodes, require_gpu=require_gpu).use_gpu
    waves = schedule(study, nodes, require_gpu=require_gpu)
    root = OutputRoot(out_uri or study.output_uri)
    root.write_json("study.json", study.model_dump(mode="json"))
    done = root.table(TABLES[stage]).done_row_ids()
    report = StageReport(stage=stage)
    for wave in waves:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(wave)) as pool:
            futures = {
                m.name: pool.submit(run_model, study, stage, m, root, done, samples=samples, use_gpu=use_gpu)
                for m in wave
            }
            per_model = {name: future.result() for name, future in futures.items()}
        if any(c["generated"] for c in per_model.values()):
            report.seconds += time.monotonic() - started
        for name, counts in per_model.items():
            report.total_rows += counts["rows"]
            report.skipped_rows += counts["skipped"]
            report.generated_rows += counts["generated"]
            report.failed_rows += counts["failed"]
            report.completion_tokens += counts["tokens"]
            if counts["generated"]:
                report.per_model[name] = counts
    record_stage(root, stage, started_at, report.summary())
    return report
