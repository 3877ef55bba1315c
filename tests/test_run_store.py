"""The run store owns which judgments count: scores.parquet, `compare` and the report agree exactly.

One run holds judgments of two judges and of two versions of one value system (same name, a
changed definition: another fingerprint). The evaluation stage scored judge A on v1, then A on
v2, then judge B on v2. Every reader must count, for a judge, exactly the judgments of the key
that scores.parquet records (the current version) in the study's grid -- and nothing else.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.helpers import evaluate_stored, write_study
from tests.test_evaluate_stage import fill_completions
from valuelex.compare import compare
from valuelex.errors import StudyError
from valuelex.evaluate import judgments as jt
from valuelex.evaluate.scores import score_table
from valuelex.evaluate.systems import load_value_system
from valuelex.report.load import load_run
from valuelex.report.stage import build_report
from valuelex.spec import load_study
from valuelex.store import RunStore


class HashJudge:
    """A deterministic judge whose scores depend on its name: two of them disagree."""

    kind = "test"

    def __init__(self, name: str):
        self.name = name

    def key(self, system: Any) -> str:
        return f"{self.name}#settings@{system.fingerprint()}"

    def judge(self, completions: list[dict], system: Any, sink: Any) -> None:
        rows = []
        for row in completions:
            scores = {k: int(hashlib.md5(f"{self.name}|{k}|{row['row_id']}".encode()).hexdigest()[:4], 16) % 7
                      for k in system.leaf_keys()}
            rows.append(jt.judgment(row, system, judge=self.name, judge_key=self.key(system), scores=scores))
        sink(rows)


def _system_file(path: Path, definition: str) -> Path:
    path.write_text(yaml.safe_dump({"version": 1, "name": "care", "title": "Care", "dimensions": [
        {"name": "Care", "definition": definition, "anchors": ["care", "kindness"], "conflicts": ["harm"]},
        {"name": "Honesty", "definition": "Telling the truth.", "anchors": ["honesty"], "conflicts": ["lies"]},
    ]}))
    return path


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("mixed")
    study = load_study(write_study(tmp, prompts={"elicitation": ["q01"], "stems": ["s01", "s13"]},
                                   evaluation={"bootstrap_resamples": 200}))
    out = str(tmp / "run")
    fill_completions(study, out, study.samples)
    RunStore(out).write_study(study)
    v1 = _system_file(tmp / "care-v1.yaml", "Protecting others from harm.")
    v2 = _system_file(tmp / "care-v2.yaml", "Kindness and protecting the vulnerable from harm.")
    a, b = HashJudge("test:a"), HashJudge("test:b")
    for judge, version in ((a, v1), (a, v2), (b, v2)):
        spec = study.model_copy(update={"evaluation": study.evaluation.model_copy(update={"systems": [str(version)]})})
        evaluate_stored(spec, out, judge)
    return {"out": out, "study": study, "v1": load_value_system(v1), "v2": load_value_system(v2),
            "v2_path": str(v2), "v1_path": str(v1), "a": a, "b": b}


def test_scores_record_the_key_of_the_judgments_they_count(mixed_run: dict[str, Any]) -> None:
    store, v2 = RunStore(mixed_run["out"]), mixed_run["v2"]
    scores = store.scores()
    assert set(zip(scores["judge"], scores["judge_key"], strict=True)) == {
        ("test:a", mixed_run["a"].key(v2)), ("test:b", mixed_run["b"].key(v2))}  # A on v1 was replaced
    stored = store.judge_keys("care").set_index("judge_key")["rows"]
    assert set(stored.index) == {mixed_run["a"].key(mixed_run["v1"]), mixed_run["a"].key(v2), mixed_run["b"].key(v2)}
    for name in ("test:a", "test:b"):
        counted = jt.conform(store.judgments("care", judge=name), v2)
        assert set(counted["judge_key"]) == {f"{name}#settings@{v2.fingerprint()}"} and len(counted) == 16
        again = score_table(counted, v2, resamples=200, judge=name)  # the stage's own Eq. 4 on what counts
        mine = scores[scores["judge"] == name].reset_index(drop=True)
        np.testing.assert_array_equal(again["w"].to_numpy(), mine["w"].to_numpy())
    # unnamed: the last evaluation's judge
    assert store.default_judge("care") == "test:b"
    assert store.stale_judgments("care", store.judgments("care")) == 32


def test_compare_counts_what_the_scores_count(mixed_run: dict[str, Any]) -> None:
    out, scores = mixed_run["out"], RunStore(mixed_run["out"]).scores()
    for judge in ("test:a", "test:b", None):
        frame = compare(out, "gemma3-270m", "smollm2", system=mixed_run["v2_path"], judge=judge,
                        permutations=2000, resamples=200)
        w = scores[scores["judge"] == (judge or "test:b")].set_index(["model", "key"])["w"]
        np.testing.assert_allclose(frame["w_a"], w.loc["gemma3-270m"].loc[frame["key"]], rtol=0, atol=1e-12)
        np.testing.assert_allclose(frame["w_b"], w.loc["smollm2"].loc[frame["key"]], rtol=0, atol=1e-12)
    with pytest.raises(StudyError, match="another version"):
        compare(out, "gemma3-270m", "smollm2", system=mixed_run["v1_path"], judge="test:a")


def test_report_counts_what_the_scores_count(mixed_run: dict[str, Any], tmp_path: Path) -> None:
    out = mixed_run["out"]
    store = RunStore(out)
    data = load_run(out)
    counted = store.judgments("care")
    assert sorted(data.judgments["care"]["row_id"]) == sorted(counted["row_id"])
    assert set(data.judgments["care"]["judge_key"]) == {mixed_run["b"].key(mixed_run["v2"])}
    assert data.stale_judgments["care"] == 32
    shown = data.scores[data.scores["system"] == "care"]
    expected = store.scores().query("system == 'care' and judge == 'test:b'")
    pd.testing.assert_frame_equal(shown.reset_index(drop=True), expected.reset_index(drop=True))
    summary = build_report(out, str(tmp_path / "report"))
    assert summary["sections"]["evaluation"] in ("ok", "partial")
