"""Reduce a finished run of the local study to the regression baseline in this folder (see README.md).

    python tests/data/regression/reduce_run.py RUN SUMMARY.json

RUN is the output of `valuelex run configs/local.yaml --out RUN`; SUMMARY.json is what that command
printed (its ``report`` part names the figures, section statuses and notices).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

from valuelex.store import OutputRoot

HERE = Path(__file__).resolve().parent


def reduce_run(run: Path, summary: dict) -> None:
    root = OutputRoot(str(run))
    for table in ("elicitation", "completions"):
        rows = root.table(table).read()
        pq.write_table(rows.sort_by("row_id"), HERE / f"{table}.parquet")
    taxonomy = json.loads((run / "taxonomy.json").read_text())
    taxonomy.pop("created", None)
    (HERE / "taxonomy.json").write_text(json.dumps(taxonomy, indent=1, sort_keys=True) + "\n")
    scores = pq.read_table(run / "scores.parquet")
    pq.write_table(scores.drop_columns([c for c in ("judge_key",) if c in scores.column_names]),
                   HERE / "scores.parquet")
    report = summary["report"]
    reduced = {"figures": sorted(report["figures"]), "notices": sorted(n["id"] for n in report["notices"]),
               "sections": report["sections"]}
    (HERE / "report.json").write_text(json.dumps(reduced, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    reduce_run(Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text()))
