"""The result store: a run's output root, local or s3://.

- `shards`: the mechanics -- Parquet shard tables published whole, resume by row_id, whole files;
- `layout`: every path of a run, spelled once;
- `run`: `RunStore`, a run's documents, tables, judgments and scores, and the one rule for which
  stored judgments count.
"""

from valuelex.store.run import RunStore, TaxonomyFile
from valuelex.store.shards import OutputRoot, ShardTable, filesystem, join, latest_per_row

__all__ = ["OutputRoot", "RunStore", "ShardTable", "TaxonomyFile", "filesystem", "join", "latest_per_row"]
