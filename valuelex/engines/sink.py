"""Engine results stored by the Ray Data workers that hold them, not by the driver: a Datasink.

    sink = ShardSink(store.uri, shard_rows=256, conform=generate.conform, redact=redactor)
    results.write_datasink(sink)      # each write task publishes whole shards of its rows
    sink.completed                    # ShardStats of that write: rows, failures, tokens, reasons, per stage

The guarantees are the driver path's (`valuelex.store.shards`), kept in the worker:

- whole shards only: a write task cuts its rows, per stage, into shards of `shard_rows` rows (its
  last shard of a stage may be smaller) and publishes each one with `ShardTable.write`, in one step
  (rename locally, one upload on S3): a killed worker or driver leaves only whole shards;
- each row goes to the generation table its ``stage`` column names (`RunStore.generation`), so
  one engine pass may carry rows of several stages;
- failures are data: every row is conformed to the stored schema (`conform`, injected by the
  caller that owns the schema) and its error text redacted (`redact`) before it is published;
- resume by row_id: the caller sends only rows not yet stored, and a stored row is never
  written again by this write. A write task that Ray retries (its worker died) publishes the same
  rows under the same shard names, key = sha256(write id, row ids)[:32] with a write id drawn once per
  sink, so the retry replaces its shards instead of storing rows twice, while a later run (another
  write id) never overwrites an earlier attempt, which the budget counts as paid for.

Only each task's `ShardStats` (a few numbers and error reasons) comes back to the driver.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
from ray.data import Datasink
from ray.data.block import BlockAccessor

from valuelex.errors import StoreError
from valuelex.store import layout
from valuelex.store.counts import ShardStats, StageCounts
from valuelex.store.run import RunStore

if TYPE_CHECKING:
    from ray.data.datasource.datasink import WriteResult

    from valuelex.redact import Redactor


class ShardSink(Datasink[ShardStats]):
    """Publishes engine result rows as whole shards of the run at `uri` (a local path or s3://).

    `conform` casts a result table to the stored schema (extra columns kept); `redact` replaces
    secrets in its error text. Both travel to the workers, so both must pickle (a module-level
    function, a `Redactor`). Write tasks get at least `shard_rows` rows each (`min_rows_per_write`).
    """

    def __init__(self, uri: str, *, shard_rows: int, conform: Callable[[pa.Table], pa.Table], redact: Redactor):
        if shard_rows < 1:
            raise ValueError(f"shard_rows must be at least 1, not {shard_rows}")
        self.uri = uri
        self.shard_rows = shard_rows
        self.conform = conform
        self.redact = redact
        self.write_id = uuid.uuid4().hex
        self.completed = ShardStats()  # the last write's stats (on the driver, after write_datasink)

    @property
    def min_rows_per_write(self) -> int:
        return self.shard_rows

    def get_name(self) -> str:
        return "StoreShards"

    def write(self, blocks: Iterable[Any], ctx: Any) -> ShardStats:
        """Publish this task's rows, per stage, as whole shards; return what was stored."""
        store = RunStore(self.uri)
        stats = ShardStats()
        pending: dict[str, list[pa.Table]] = {}
        for block in blocks:
            table = BlockAccessor.for_block(block).to_arrow()
            if table.num_rows == 0:
                continue
            if "stage" not in table.column_names:
                raise StoreError(f"{self.uri}: stage: result rows carry no stage column (which table is theirs?)")
            for stage in pc.unique(table["stage"]).to_pylist():
                self._table_name(stage)  # refuses a row of no known stage before anything is stored
                parts = pending.setdefault(stage, [])
                parts.append(self.conform(table.filter(pc.equal(table["stage"], stage))))
                if sum(p.num_rows for p in parts) >= self.shard_rows:
                    pending[stage] = self._publish(store, stage, parts, stats, final=False)
        for stage, parts in pending.items():
            if parts:
                self._publish(store, stage, parts, stats, final=True)
        return stats

    def on_write_complete(self, write_result: WriteResult[ShardStats]) -> None:
        self.completed = ShardStats.sum(write_result.write_returns)

    def _table_name(self, stage: str | None) -> str:
        try:
            return layout.generation_table(stage)  # type: ignore[arg-type]
        except KeyError:
            raise StoreError(f"{self.uri}: stage: {stage!r} is not a generation stage "
                             f"(one of {sorted(layout.GENERATION_TABLES)})") from None

    def _publish(self, store: RunStore, stage: str, parts: list[pa.Table], stats: ShardStats, *,
                 final: bool) -> list[pa.Table]:
        """Publish whole shards of `parts`; returns the rows left over (none when `final`)."""
        rows = pa.concat_tables(parts, promote_options="permissive")
        table = store.generation(stage)
        start = 0
        while rows.num_rows - start >= self.shard_rows or (final and start < rows.num_rows):
            shard = self.redact.table(rows.slice(start, self.shard_rows))
            table.write(shard, key=self._key(shard))
            stats.add(ShardStats({stage: StageCounts.of(shard)}))
            start += self.shard_rows
        return [rows.slice(start)] if start < rows.num_rows else []

    def _key(self, shard: pa.Table) -> str:
        """The shard's name: the same for the same rows in the same write (a retried task), else new."""
        digest = hashlib.sha256(self.write_id.encode())
        for row_id in shard["row_id"].to_pylist():
            digest.update(b"\0" + str(row_id).encode())
        return digest.hexdigest()[:32]
