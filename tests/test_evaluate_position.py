"""The LLM judge's few-shot order (rotated per completion) and the position-bias check (issue 15.3).

The prompt machinery runs end to end against the fake OpenAI server (tests/fault_server.py): a
judge that copies the last example is caught by the check, one that reads the completion is not.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import pandas as pd
import pytest

from tests.fault_server import FaultServer
from valuelex.evaluate.config import EvaluationSpec
from valuelex.evaluate.judge_prompt import load_examples, rotated_prefixes
from valuelex.evaluate.judgments import JudgeTask, is_blank, judgment
from valuelex.evaluate.llm_judge import LLMJudge, judge_tasks
from valuelex.evaluate.position import disagreement, order_offset, rotate, run_position_check, sample_ids
from valuelex.evaluate.systems import load_value_system
from valuelex.spec import ModelSpec

SYSTEM = load_value_system("valuelex")
KEYS = SYSTEM.leaf_keys()


def test_each_example_stands_last_about_equally_often_and_the_variant_moves_it():
    n = len(load_examples(SYSTEM))
    ids = [f"row-{i}" for i in range(1200)]
    last = Counter(rotate(range(n), order_offset(r, n))[-1] for r in ids)
    assert set(last) == set(range(n))
    assert max(last.values()) / min(last.values()) < 1.4  # ~1/n each
    for r in ids[:100]:
        assert order_offset(r, n) == order_offset(r, n)  # reproducible
        assert rotate(range(n), order_offset(r, n, 1))[-1] != rotate(range(n), order_offset(r, n))[-1]
    assert order_offset("x", 1) == 0 and rotate((), 0) == ()


@pytest.mark.parametrize("name", ["valuelex", "schwartz", "mft"])
def test_examples_are_balanced_and_the_all_neutral_answer_must_be_justified(name):
    system = load_value_system(name)
    examples = load_examples(system)
    neutral = [e for e in examples if set(e.scores.values()) == {3}]
    high = [e for e in examples if max(e.scores.values()) >= 5]
    low = [e for e in examples if min(e.scores.values()) <= 1]
    assert len(neutral) == 1 and len(high) >= 2 and len(low) >= 1
    prefixes = rotated_prefixes(system, examples)
    assert len(set(prefixes)) == len(examples)
    assert all("Giving 3 on every dimension claims" in p for p in prefixes)
    last_shown = {re.findall(r"Completion: (.*)\n", p)[-1] for p in prefixes}
    assert len(last_shown) == len(examples)  # each example stands last in one rotation


def test_judge_loop_sends_each_completion_its_own_rotation():
    seen: dict[str, str] = {}

    def generate(requests):
        for r in requests:
            seen[r["row_id"]] = r["prompt"]
        yield [{"row_id": r["row_id"], "response": json.dumps({"rationale": "r", "scores": dict.fromkeys(KEYS, 4)}),
                "finish_reason": "stop", "error": None} for r in requests]

    rows = [{"row_id": f"c{i}", "stem": "I like", "response": f"answer {i}"} for i in range(40)]
    out: list[dict] = []
    spec = EvaluationSpec()
    judge_tasks([JudgeTask(SYSTEM, rows, out.extend)], generate, judge="llm:j", key=lambda s: "k", prompting="chat",
                spec=spec)
    assert len(out) == 40 and all(r["valid"] for r in out)
    prefixes = {p.split("\nStem: I like\nCompletion: answer")[0] for p in seen.values()}
    assert len(prefixes) == len(load_examples(SYSTEM))  # every rotation used, the shared part still shared


def test_disagreement_counts_completions_and_dimensions():
    a = {"x": dict.fromkeys(KEYS, 3), "y": dict.fromkeys(KEYS, 5), "z": dict.fromkeys(KEYS, 2)}
    b = {"x": dict.fromkeys(KEYS, 3), "y": {**dict.fromkeys(KEYS, 5), "social": 1}}
    result = disagreement(a, b, KEYS)
    assert result["completions"] == 2 and result["disagreement_rate"] == 0.5
    assert result["per_dimension"]["social"] == {"disagreement_rate": 0.5, "mean_abs_diff": 2.0}
    assert result["all_neutral_first"] == 0.5
    assert disagreement({}, b, KEYS)["disagreement_rate"] is None
    assert sample_ids(["a", "b", "c"], 2) == sample_ids(["c", "b", "a"], 2)


def copy_last_example(prompt: str) -> str:
    """A position-biased judge: it answers with the last example's answer, whatever it is asked."""
    return re.findall(r"\nAnswer: (\{.*\})", prompt)[-1]


def read_completion(prompt: str) -> str:
    """A judge that looks only at the completion to rate."""
    completion = prompt.rsplit("Completion: ", 1)[1]
    score = 5 if "help" in completion else 3
    return json.dumps({"rationale": "read it", "scores": dict.fromkeys(KEYS, score)})


class MemoryStore:
    """The two RunStore calls the position check makes."""

    def __init__(self, judged: pd.DataFrame):
        self.judged, self.written = judged, {}

    def judgments(self, system, *, judge_key, study, max_samples):
        return self.judged[self.judged["judge_key"] == judge_key]

    def write_quality_check(self, check, document):
        self.written[check] = document


def served_judge(base_url: str) -> LLMJudge:
    model = ModelSpec.model_validate({
        "name": "fake-judge", "source": "fake", "engine": "openai", "training": "aligned", "family": "test",
        "prompting": "chat", "options": {"base_url": base_url, "max_retries": 1, "request_timeout_s": 5.0}})
    return LLMJudge(model, EvaluationSpec(judge="llm", judge_model=model, max_judge_retries=0), batch_rows=64)


@pytest.mark.parametrize(("respond", "biased"), [(copy_last_example, True), (read_completion, False)])
def test_position_check_catches_a_judge_that_copies_the_last_example(ray_local, respond, biased):
    rows = [{"row_id": f"c{i}", "item_id": "s31", "stem": "To help", "response": f"people, case {i}.",
             "model": "m", "config": "t", "sample": 0} for i in range(12)]
    with FaultServer(respond=respond) as server:
        judge = served_judge(server.base_url)
        first: list[dict] = []
        judge.judge(rows, SYSTEM, first.extend)
        assert len(first) == 12 and all(r["valid"] for r in first)
        store = MemoryStore(pd.DataFrame(first))
        report = run_position_check(store, None, [SYSTEM], judge, samples=1, rows=8)
    part = report["systems"]["valuelex"]
    assert part["completions"] == 8 and store.written["position_check"] == report
    assert part["disagreement_rate"] == (1.0 if biased else 0.0)
    if biased:  # the copied answers follow the rotation: every example's scores appear
        assert len({tuple(r[f"score_{k}"] for k in KEYS) for r in first}) > 1


class OrderJudge:
    """A fake LLM judge whose answer depends only on the example order it is shown."""

    kind, name = "llm", "llm:order"

    def key(self, system):
        return f"llm:order@{system.fingerprint()}"

    def judge_many(self, tasks, order_variant=0):
        for task in tasks:
            scores = dict.fromkeys(task.system.leaf_keys(), 3 + order_variant)
            task.sink([judgment(c, task.system, judge=self.name, judge_key=self.key(task.system),
                                scores=None if is_blank(c.get("response")) else scores) for c in task.completions])


def test_evaluation_stage_runs_the_check_when_asked_and_stores_it_under_quality(tmp_path, ray_local):
    from tests.helpers import evaluate_stored, write_study
    from tests.test_evaluate_stage import fill_completions
    from valuelex.spec import load_study
    from valuelex.store import RunStore

    study = load_study(write_study(tmp_path, evaluation={"systems": ["mft"], "bootstrap_resamples": 200,
                                                          "position_check": True, "position_check_rows": 5}))
    out = str(tmp_path / "run")
    fill_completions(study, out, study.samples)
    summary = evaluate_stored(study, out, OrderJudge())
    stored = RunStore(out).quality_check("position_check")
    assert stored is not None and stored["systems"]["mft"]["completions"] == 5
    assert summary["position_check"] == {"mft": 1.0}
    off = load_study(write_study(tmp_path, "off.yaml", evaluation={"systems": ["mft"], "bootstrap_resamples": 200}))
    fill_completions(off, str(tmp_path / "off-run"), off.samples)
    assert "position_check" not in evaluate_stored(off, str(tmp_path / "off-run"), OrderJudge())  # off by default
