"""The evaluation stage end to end with the embedding judge, on a store whose completions exist.

The completions are the real grid rows (so the completion generation finds them done and starts no engine) with
written responses; judging, resume, scores.parquet and adaptive M then run for real.
"""

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from tests.helpers import SMOLLM_MODEL, evaluate, write_study
from valuelex import grid
from valuelex.evaluate import judgments as jt
from valuelex.evaluate.systems import load_value_system
from valuelex.generate import conform
from valuelex.spec import load_study
from valuelex.store import RunStore, layout

RESPONSES = {
    "s01": ["helping people learn and find accurate answers.", "being kind and patient with everyone.",
            "nothing at all.", "", "to be fair and honest with every user."],
    "s13": ["that I give someone a wrong answer.", "being rude to a person who needs help.",
            "spiders.", "misleading someone who trusts me.", "losing my knowledge."],
}


def fill_completions(study, out: str, samples: int) -> int:
    rows = []
    for model in study.models:
        for row in grid.requests(study, "completion", model, samples=samples):
            index = (row["sample"] + 2 * study.decoding.index(next(c for c in study.decoding
                                                                    if c.name == row["config"]))) % 5
            response = RESPONSES[row["item_id"]][index]
            rows.append({**row, "response": response, "n_prompt_tokens": 5, "n_completion_tokens": 8,
                         "finish_reason": "stop", "error": None, "engine": "test"})
    RunStore(out).table("completions").write(conform(pa.Table.from_pylist(rows)))
    return len(rows)


@pytest.fixture
def study_and_out(tmp_path: Path, ray_local):
    study = load_study(write_study(tmp_path, evaluation={"systems": ["valuelex", "mft"], "bootstrap_resamples": 200}))
    out = str(tmp_path / "run")
    fill_completions(study, out, study.samples)
    return study, out


def test_run_evaluation_judges_scores_and_resumes(study_and_out):
    study, out = study_and_out
    total = grid.count(study, "completion", samples=study.samples)  # 2 models x 2 stems x 2 configs x M=2
    summary = evaluate(study, out)
    assert summary["judge"] == "embedding:all-MiniLM-L6-v2" and summary["samples"] == 2
    for name in ("valuelex", "mft"):
        counts = summary["systems"][name]
        assert counts == {"completions": total, "already_judged": 0, "judged": total,
                          "invalid": counts["invalid"]}
        assert counts["invalid"] >= 1  # the empty responses are kept, marked invalid, counted
    scores = pd.read_parquet(Path(out) / "scores.parquet")
    assert {"model", "system", "dimension", "level", "w", "ci_low", "ci_high", "n", "n_invalid"} <= set(scores.columns)
    assert len(scores) == 2 * (9 + 5)  # 2 models x (valuelex 3+6, mft 5)
    assert scores["w"].between(0, 1).all()
    assert (scores["ci_low"] <= scores["w"] + 1e-12).all() and (scores["w"] <= scores["ci_high"] + 1e-12).all()
    judged = RunStore(out).judgments("valuelex")
    assert len(judged) == total and judged["response"].notna().all()
    assert set(judged.loc[~judged["valid"], "invalid_reason"]) == {"empty response"}
    per_model = judged.groupby("model").apply(lambda g: (~g["valid"]).sum(), include_groups=False)
    valuelex_scores = scores[scores["system"] == "valuelex"].groupby("model")["n_invalid"].first()
    assert per_model.to_dict() == valuelex_scores.to_dict()
    assert json.loads((Path(out) / "evaluation.json").read_text())["judge"] == summary["judge"]

    again = evaluate(study, out, systems=["valuelex"])
    assert again["systems"]["valuelex"]["judged"] == 0
    assert again["systems"]["valuelex"]["already_judged"] == total
    rescored = pd.read_parquet(Path(out) / "scores.parquet")  # valuelex rescored, mft's rows kept
    key = ["system", "model", "key"]
    pd.testing.assert_frame_equal(rescored.sort_values(key).reset_index(drop=True),
                                  scores.sort_values(key).reset_index(drop=True))


@pytest.mark.parametrize("rule", [{"epsilon": 0.001}, {"rule": "g", "g_target": 0.999}])
def test_adaptive_rounds_reuse_stored_samples(tmp_path: Path, ray_local, rule):
    study = load_study(write_study(tmp_path, samples=4, evaluation={
        "systems": ["mft"], "bootstrap_resamples": 100,
        "adaptive": {"enabled": True, "start_samples": 1, "step": 2, "max_samples": 3, **rule}}))
    out = str(tmp_path / "run")
    fill_completions(study, out, 3)  # rounds M=1, M=3 are already generated: no engine starts
    summary = evaluate(study, out)
    adaptive = summary["adaptive"]
    assert adaptive["stopped"] == "max_samples" and adaptive["samples_used"] == 3 and adaptive["fixed_samples"] == 4
    assert [r["samples"] for r in adaptive["rounds"]] == [1, 3]
    if rule.get("rule") == "g":  # G of 2 models x 2 stems x 2 configs from the stored judgments, each round
        assert all(0 <= r["min_g"] < 0.999 for r in adaptive["rounds"])
        assert adaptive["rounds"][-1]["weakest"]["system"] == "mft"
    judged = RunStore(out).judgments("mft")
    assert judged["sample"].max() == 2


def test_only_successful_completions_of_the_grid_are_judged(tmp_path: Path):
    store = RunStore(str(tmp_path))
    study = load_study(write_study(tmp_path, models=[{**SMOLLM_MODEL, "name": "m"}],
                                   decoding=[{"name": "c", "temperature": 0.7, "top_p": 0.9}]))
    ids = {(r["item_id"], r["sample"]): r["row_id"] for r in grid.requests(study, "completion", study.models[0], 6)}
    base = {"training": "aligned", "size_b": 0.1, "family": "f", "prompt": "I like", "response": "cats"}
    rows = [
        {**base, "row_id": ids["s01", 0], "model": "m", "config": "c", "item_id": "s01", "sample": 0, "error": None},
        {**base, "row_id": ids["s01", 1], "model": "m", "config": "c", "item_id": "s01", "sample": 1,
         "error": "boom", "response": None},
        {**base, "row_id": "other-model", "model": "x", "config": "c", "item_id": "s01", "sample": 0, "error": None},
        {**base, "row_id": ids["s01", 5], "model": "m", "config": "c", "item_id": "s01", "sample": 5, "error": None},
        {**base, "row_id": "another-seed", "model": "m", "config": "c", "item_id": "s13", "sample": 0, "error": None},
    ]
    store.table("completions").write(pa.Table.from_pylist(rows))
    todo = store.completions(study, max_samples=2)
    assert todo["row_id"].tolist() == [ids["s01", 0]] and todo["stem"].tolist() == ["I like"]
    assert todo["family"].tolist() == ["smollm2"]  # the current study's label, not the stored one
    assert len(store.completions()) == 4  # without a study: every successful completion stored
    assert RunStore(str(tmp_path / "empty")).completions(study).empty


def test_judgments_that_count_prefer_valid_and_follow_the_judge_key(tmp_path: Path):
    system = load_value_system("mft")
    store = RunStore(str(tmp_path))
    completion = {"row_id": "r1", "model": "m", "training": "aligned", "size_b": 0.1, "family": "f", "config": "c",
                  "item_id": "s01", "sample": 0, "stem": "I like", "response": "cats"}
    scores = dict.fromkeys(system.leaf_keys(), 4)
    table = store.judgments_table(system)
    table.write(jt.to_table([jt.judgment(completion, system, judge="j", judge_key="k1", scores=scores)], system))
    table.write(jt.to_table([jt.judgment(completion, system, judge="j", judge_key="k1", scores=None,
                                         reason="not JSON")], system))
    table.write(jt.to_table([jt.judgment({**completion, "row_id": "r2"}, system, judge="j", judge_key="k2",
                                         scores=None, reason="not JSON")], system))
    mine = store.judgments(system, judge_key="k1")
    assert mine["row_id"].tolist() == ["r1"] and mine["valid"].tolist() == [True]
    assert mine["score_care"].tolist() == [4]
    assert store.judgments(system, judge_key="k2")["invalid_reason"].tolist() == ["not JSON"]
    assert store.judgments(system, judge_key="k3").empty
    # unnamed and never scored: judge j's key with the most stored rows (k1: 2 rows, k2: 1)
    assert store.current_key(system) == ("j", "k1") and store.judgments(system)["row_id"].tolist() == ["r1"]
    assert store.stale_judgments(system, store.judgments(system)) == 2
    with pytest.raises(ValueError, match="scores must cover exactly"):
        jt.judgment(completion, system, judge="j", judge_key="k", scores={"care": 3})
    assert table.name == layout.judgments_table(system.name) == "judgments/mft"


def test_completed_sentence_joins_stem_and_response():
    assert jt.completed_sentence("I like", "cats.") == "I like cats."
    assert jt.completed_sentence("I like", "I like cats a lot.") == "I like cats a lot."  # chat answers repeat it
    assert jt.completed_sentence("Humans", ", in general, are kind.") == "Humans, in general, are kind."
    assert jt.completed_sentence("", " cats ") == "cats"
    assert jt.stem_text("s01") == "I like" and jt.stem_text("zz", "fallback prompt") == "fallback prompt"
