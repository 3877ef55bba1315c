"""The result store: a run's output root, local or s3://.

- `shards`: the mechanics -- Parquet shard tables published whole, resume by row_id, whole files;
- `layout`: every path of a run, spelled once;
- `lock`: one writer per run (`OutputLock`; `LockHeld` when another writer holds it);
- `run`: `RunStore`, a run's documents, tables, judgments and scores, and the one rule for which
  stored judgments count (the workers' shard writer, `valuelex.engines.sink`, publishes through it).
"""

from valuelex.store.lock import LockHeld, OutputLock
from valuelex.store.run import RunStore, TaxonomyFile
from valuelex.store.shards import OutputRoot, ShardTable, filesystem, join, latest_per_row

__all__ = ["LockHeld", "OutputLock", "OutputRoot", "RunStore", "ShardTable", "TaxonomyFile", "filesystem", "join",
           "latest_per_row"]
