"""Reduce a finished run of the local study to the regression baseline in this folder (see README.md).

    python tests/data/regression/reduce_run.py RUN SUMMARY.json   # after a real run (new answers)
    python tests/data/regression/reduce_run.py --stored RUN         # a change after generation

RUN is the output of `valuelex run configs/local.yaml --out RUN`; SUMMARY.json is what that command
printed (its ``report`` part names the figures, section statuses and notices). With ``--stored``,
the stages after generation run on the baseline's stored answers into RUN (no engine), and only
taxonomy.json, scores.parquet and report.json are remade.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

from valuelex.store import OutputRoot

HERE = Path(__file__).resolve().parent
STUDY = HERE.parent.parent.parent / "configs" / "local.yaml"


def stages_on_stored_answers(out: Path):
    """Every stage after generation, by today's code, on the baseline's stored answers (no engine)."""
    from valuelex.api import run_study
    from valuelex.construct.stage import ConstructionStage
    from valuelex.evaluate.stage import EvaluationStage
    from valuelex.quality.stage import ReliabilityStage
    from valuelex.report.stage import ReportStage
    from valuelex.spec import load_study

    store = OutputRoot(str(out))
    for table in ("elicitation", "completions"):
        store.table(table).write(pq.read_table(HERE / f"{table}.parquet"))
    stages = [ConstructionStage(), EvaluationStage(include_taxonomy=True, generate=False), ReliabilityStage(),
              ReportStage()]
    return run_study(load_study(STUDY), str(out), stages)


def reduce_run(run: Path, summary: dict, *, answers: bool = True) -> None:
    root = OutputRoot(str(run))
    for table in ("elicitation", "completions") if answers else ():
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
    if sys.argv[1] == "--stored":
        result = stages_on_stored_answers(Path(sys.argv[2]))
        reduce_run(Path(sys.argv[2]), result.summary(), answers=False)
    else:
        reduce_run(Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text()))
