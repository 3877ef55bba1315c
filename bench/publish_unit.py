"""What a smaller publish unit (`shard_rows`) costs: the store's publish per shard against the time
the engine takes to make the shard's rows, and what many small shards cost a resume.

    .venv/bin/python bench/publish_unit.py [--rows 4096] [--json bench/results/publish_unit.json]

The rows are the local study's real elicitation rows (tests/data/regression), repeated with new
row ids. For each shard size the rows are published shard by shard through `ShardTable.write`
(serialise, write to _incoming/, rename: what the stage does per shard), then `done_row_ids()`
(what every resume reads) is timed over the resulting shards. The engine side is the measured
stage throughput of bench/results/generation_overhead.json (rows/s of the quiet run): the publish
share of a stage is publish seconds per row x engine rows/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from valuelex.store import OutputRoot  # noqa: E402

SIZES = (1, 16, 64, 256)


def rows_of(n: int) -> pa.Table:
    base = pq.read_table(REPO / "tests" / "data" / "regression" / "elicitation.parquet")
    reps = -(-n // base.num_rows)
    table = pa.concat_tables([base] * reps).slice(0, n)
    ids = pa.array([f"bench-{i:08d}" for i in range(n)])
    return table.set_column(table.schema.get_field_index("row_id"), "row_id", ids)


def measure(table: pa.Table, shard_rows: int, where: str) -> dict:
    root = OutputRoot(where)
    shards = root.table("elicitation")
    started = time.perf_counter()
    for offset in range(0, table.num_rows, shard_rows):
        shards.write(table.slice(offset, shard_rows))
    publish = time.perf_counter() - started
    started = time.perf_counter()
    done = shards.done_row_ids()
    resume = time.perf_counter() - started
    assert len(done) == table.num_rows
    n = -(-table.num_rows // shard_rows)
    return {"shard_rows": shard_rows, "shards": n, "publish_s": round(publish, 3),
            "ms_per_shard": round(1000 * publish / n, 2), "us_per_row": round(1e6 * publish / table.num_rows, 1),
            "resume_read_s": round(resume, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    table = rows_of(args.rows)
    overhead = json.loads((REPO / "bench" / "results" / "generation_overhead.json").read_text())
    stage = [p["valuelex_stage"] for p in overhead["pairs"]]
    engine_rows_per_s = statistics.median(p["rows"] / p["generate_s"] for p in stage)
    results = []
    for size in SIZES:
        with tempfile.TemporaryDirectory() as tmp:
            result = measure(table, size, tmp)
        result["publish_share_of_stage"] = round(result["us_per_row"] / 1e6 * engine_rows_per_s, 5)
        results.append(result)
        print(json.dumps(result))
    out = {"rows": args.rows, "load_average_start": round(load, 2), "engine_rows_per_s": round(engine_rows_per_s, 2),
           "engine_rows_per_s_source": "bench/results/generation_overhead.json (median of the stage's pairs)",
           "sizes": results}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "sizes"}))


if __name__ == "__main__":
    main()
