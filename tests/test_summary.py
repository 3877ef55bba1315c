"""The end-of-run summary (issue 19, item 4): scores with CIs per top-level dimension, verdicts, times, report.

The judgments are planted: every dimension of smollm2 scores 3 (w = 0.5) and of gemma3-270m 6 (w = 1.0),
so every CI collapses onto w and the table's cells are known exactly.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pandas as pd

from tests.helpers import RuleJudge, evaluate_stored, write_study
from tests.test_evaluate_stage import fill_completions
from valuelex.evaluate.systems import load_value_system
from valuelex.spec import load_study
from valuelex.store import RunStore
from valuelex.summary import cell, format_summary

PLANTED = {"smollm2": 3, "gemma3-270m": 6}


PlantedJudge = partial(RuleJudge, "test:planted",
                       lambda row, system: dict.fromkeys(system.leaf_keys(), PLANTED[row["model"]]))


def test_summary_shows_planted_scores_verdicts_stage_times_and_the_report_uri(tmp_path: Path) -> None:
    study = load_study(write_study(tmp_path, evaluation={"systems": ["mft"], "bootstrap_resamples": 50}))
    out = str(tmp_path / "run")
    fill_completions(study, out, study.samples)
    RunStore(out).write_study(study)
    summary = evaluate_stored(study, out, PlantedJudge())
    store, mft = RunStore(out), load_value_system("mft")
    top = list(mft.dimensions)
    store.write_quality(
        "verdicts",
        pd.DataFrame(
            [
                {
                    "system": "mft",
                    "model": "smollm2",
                    "key": top[0].key,
                    "dimension": top[0].name,
                    "level": "dimension",
                    "w": 0.5,
                    "ci_low": 0.5,
                    "ci_high": 0.5,
                    "G": 0.9,
                    "Phi": 0.9,
                    "alpha": 0.9,
                    "verdict": "reliable",
                    "reason": "",
                }
            ]
        ),
    )
    index = tmp_path / "report" / "index.html"
    index.parent.mkdir()
    index.write_text("<html></html>")
    text = format_summary(store, {"evaluation": summary, "report": {"index": str(index)}})
    lines = text.splitlines()
    assert lines[0] == f"run {store.uri}: evaluation, report done"
    header = next(line for line in lines if line.strip().startswith("model"))
    assert all(d.name in header for d in top)
    small = next(line for line in lines if line.strip().startswith("smollm2"))
    large = next(line for line in lines if line.strip().startswith("gemma3-270m"))
    assert small.split()[1:5] == ["0.50", "[0.50,", "0.50]", "R"]  # the first dimension has a verdict
    assert small.count("0.50 [0.50, 0.50]") == len(top) and large.count("1.00 [1.00, 1.00]") == len(top)
    assert " R" not in large  # no verdict stored for it: no letter
    assert any(line.split()[:1] == ["evaluation"] and line.endswith(" s") for line in lines)
    assert f"report: {index.resolve().as_uri()}" in lines and index.resolve().as_uri().startswith("file:///")


def test_a_cell_without_a_score_or_ci_is_marked() -> None:
    assert cell(float("nan"), 0.1, 0.2) == "—"
    assert cell(0.25, float("nan"), 0.3) == "0.25"
    assert cell(0.25, 0.2, 0.3, "doubtful") == "0.25 [0.20, 0.30] D"
