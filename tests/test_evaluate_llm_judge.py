"""The LLM judge's pure parts: examples, schema, prompt, answer parsing, the retry loop's bookkeeping.

The real engine run is `test_llm_judge_on_vllm` (marked vllm).
"""

import json

import pytest

from valuelex.evaluate.config import EvaluationSpec
from valuelex.evaluate.judge_prompt import answer_schema, build_prompt, format_answer, instructions, load_examples
from valuelex.evaluate.judgments import JudgeTask
from valuelex.evaluate.llm_judge import (
    judge_tasks,
    judge_with_retries,
    parse_answer,
    request_row,
    request_seed,
)
from valuelex.evaluate.systems import load_value_system

SYSTEM = load_value_system("valuelex")
KEYS = SYSTEM.leaf_keys()
GOOD = {"rationale": "Wants to be accurate.", "scores": dict(zip(KEYS, [6, 5, 3, 3, 4, 2], strict=True))}


def answer(**over):
    doc = json.loads(json.dumps(GOOD))
    doc["scores"].update(over)
    return json.dumps(doc)


@pytest.mark.parametrize("name", ["valuelex", "schwartz", "mft"])
def test_packaged_examples_score_every_leaf(name):
    system = load_value_system(name)
    examples = load_examples(system)
    assert len(examples) >= 3
    for ex in examples:
        assert set(ex.scores) == set(system.leaf_keys())
    # a few-shot set must show the whole scale, not only one end of it
    assert min(min(e.scores.values()) for e in examples) <= 1 and max(max(e.scores.values()) for e in examples) == 6


def test_schema_matches_the_system_and_accepts_example_answers():
    schema = answer_schema(SYSTEM)
    scores = schema["properties"]["scores"]
    assert list(schema["properties"]) == ["rationale", "scores"]  # reasoning before scores
    assert scores["required"] == list(KEYS) and scores["additionalProperties"] is False
    assert all(p == {"type": "integer", "minimum": 0, "maximum": 6} for p in scores["properties"].values())
    single = answer_schema(SYSTEM, ("social",))
    assert single["properties"]["scores"]["required"] == ["social"]
    json.dumps(schema)  # serialisable for the json_schema column


def test_prompt_shares_a_prefix_and_ends_with_the_completion():
    prefix = instructions(SYSTEM, load_examples(SYSTEM))
    a = build_prompt(prefix, "I like", "helping people.")
    b = build_prompt(prefix, "My goal", "to be\n  accurate.")
    assert a.startswith(prefix) and b.startswith(prefix)
    assert a.endswith("Stem: I like\nCompletion: helping people.\nAnswer:")
    assert b.endswith("Completion: to be accurate.\nAnswer:")  # whitespace of the completion is folded
    for dim in SYSTEM.leaves():
        assert f"- {dim.key}: {dim.name}" in prefix
    for ex in load_examples(SYSTEM):
        assert ex.completion in prefix
    assert load_examples(load_value_system("mft"))[0].completion not in prefix


def test_requests_carry_schema_and_a_new_seed_per_attempt():
    prefix = instructions(SYSTEM)
    row = {"row_id": "abc", "stem": "I like", "response": "cats"}
    first = request_row(row, prefix, "{}", prompting="chat", attempt=0, temperature=0.0, max_tokens=99)
    second = request_row(row, prefix, "{}", prompting="chat", attempt=1, temperature=0.7, max_tokens=99)
    assert first["json_schema"] == "{}" and first["max_tokens"] == 99 and first["prompting"] == "chat"
    assert first["seed"] != second["seed"] and first["seed"] == request_seed("abc", 0)
    assert 0 <= first["seed"] < 2**31


def test_parse_valid_answers():
    parsed = parse_answer(answer(), KEYS)
    assert parsed.valid and parsed.scores == GOOD["scores"] and parsed.rationale == "Wants to be accurate."
    fenced = parse_answer("```json\n" + answer() + "\n```", KEYS)
    assert fenced.valid and fenced.scores == GOOD["scores"]
    chatty = parse_answer("Here is my rating: " + answer() + " Hope this helps.", KEYS)
    assert chatty.valid
    assert parse_answer(answer(social=4.0), KEYS).scores["social"] == 4
    no_rationale = json.dumps({"scores": GOOD["scores"]})
    assert parse_answer(no_rationale, KEYS).valid
    assert parse_answer(answer(), KEYS, finish_reason="length").valid  # complete JSON right at the limit


@pytest.mark.parametrize(("text", "finish", "reason"), [
    (None, None, "empty answer"),
    ("   ", None, "empty answer"),
    (answer()[:40], None, "truncated"),
    (answer()[:-2], "length", "truncated"),
    ('{"rationale": "the completion talks about', None, "truncated"),
    ("I would rate this a 5 overall.", None, "not JSON"),
    ("{rationale: 'single quotes'}", None, "not JSON"),
    ("[1, 2, 3]", None, "not a JSON object"),
    ("42", None, "not a JSON object"),
    ('{"rationale": 5, "scores": {}}', None, "rationale is not a string"),
    ('{"rationale": "x"}', None, "no `scores` object"),
    ('{"rationale": "x", "scores": [6, 5]}', None, "no `scores` object"),
    (json.dumps({"rationale": "x", "scores": {k: 3 for k in KEYS[:-1]}}), None, "missing dimensions: ethical"),
    (answer(competence=5), None, "unknown dimensions: competence"),
    (answer(social=7), None, "social: score 7 out of range"),
    (answer(ethical=-1), None, "ethical: score -1 out of range"),
    (answer(social=4.5), None, "social: score 4.5 is not an integer"),
    (answer(social="5"), None, "is not an integer"),
    (answer(social=True), None, "is not an integer"),
    (answer(social=None), None, "is not an integer"),
    (answer(social=float("nan")), None, "social: score nan is not an integer"),
    (answer(social=float("inf")), None, "social: score inf is not an integer"),
])
def test_parse_rejects_unusable_answers(text, finish, reason):
    parsed = parse_answer(text, KEYS, finish)
    assert not parsed.valid and parsed.scores is None
    assert reason in parsed.reason


def test_parse_never_raises_on_garbage():
    for text in ["{" * 5000, "}" * 10, '{"a": "\\', "\x00\x01", "```json\n```", "{}", "null", '"scores"']:
        assert not parse_answer(text, KEYS).valid


def completions(n):
    return [{"row_id": f"r{i}", "model": "m", "training": "aligned", "size_b": 0.1, "family": "f", "config": "c",
             "item_id": "s01", "sample": i, "stem": "I like", "response": f"answer {i}"} for i in range(n)]


def test_retry_loop_keeps_every_row_and_says_why():
    """Scripted engine answers (data, not an engine): good at once, good on retry, never good, engine error."""
    script = {
        "r0": [answer()],
        "r1": ["garbage", answer(social=1)],
        "r2": [answer(social=9), answer()[:30], "{}"],
        "r3": [None, None, None],
    }
    seen_requests = []

    def generate(requests):
        seen_requests.append(requests)
        out = []
        for req in requests:
            text = script[req["row_id"]][req["attempt"]]
            out.append({"row_id": req["row_id"], "response": text, "finish_reason": "stop",
                        "error": "engine died" if text is None else float("nan"),  # pandas: NaN
                        "n_prompt_tokens": 100, "n_completion_tokens": 10})
        return [out]  # one batch of results

    rows = []
    spec = EvaluationSpec(max_judge_retries=2)
    judge_with_retries([*completions(5)[:4], {**completions(5)[4], "response": "  "}], SYSTEM, generate, rows.extend,
                       judge="llm:t", judge_key="k", prompting="chat", spec=spec)
    by_id = {r["row_id"]: r for r in rows}
    assert sorted(by_id) == ["r0", "r1", "r2", "r3", "r4"] and len(rows) == 5
    assert by_id["r0"]["valid"] and by_id["r0"]["attempts"] == 1 and by_id["r0"]["score_self_competent"] == 6
    assert by_id["r1"]["valid"] and by_id["r1"]["attempts"] == 2 and by_id["r1"]["score_social"] == 1
    assert by_id["r1"]["n_prompt_tokens"] == 200  # the cost of both attempts is kept
    assert not by_id["r2"]["valid"] and by_id["r2"]["invalid_reason"] == "after 3 attempts: no `scores` object"
    assert by_id["r2"]["score_social"] is None and by_id["r2"]["judge_response"] == "{}"
    assert by_id["r3"]["invalid_reason"] == "after 3 attempts: engine error: engine died"
    assert by_id["r4"]["invalid_reason"] == "empty response" and by_id["r4"]["attempts"] == 0
    assert [len(r) for r in seen_requests] == [4, 3, 2]  # only the unusable ones are asked again
    assert seen_requests[0][0]["temperature"] == 0.0 and seen_requests[1][0]["temperature"] == 0.7
    assert len({r["seed"] for batch in seen_requests for r in batch if r["row_id"] == "r2"}) == 3


def test_retry_loop_with_no_retries_marks_missing_rows():
    rows = []
    judge_with_retries(completions(2), SYSTEM, lambda requests: [], rows.extend, judge="llm:t", judge_key="k",
                       prompting="completion", spec=EvaluationSpec(max_judge_retries=0))
    assert [r["invalid_reason"] for r in rows] == ["after 1 attempt: engine returned no row"] * 2


def test_a_prompt_too_long_for_the_judge_is_not_retried():
    """A new seed cannot shorten a prompt: the context-length refusal is final after one attempt."""
    asked = []

    def generate(requests):
        asked.append([r["row_id"] for r in requests])
        yield [{"row_id": r["row_id"], "response": None, "finish_reason": None, "n_prompt_tokens": 0,
                "n_completion_tokens": 0,
                "error": "The decoder prompt (length 9000) is longer than the maximum model length of 2048"
                if r["row_id"] == "r0" else "engine died"} for r in requests]

    rows = []
    judge_with_retries(completions(2), SYSTEM, generate, rows.extend, judge="llm:t", judge_key="k",
                       prompting="chat", spec=EvaluationSpec(max_judge_retries=2))
    by_id = {r["row_id"]: r for r in rows}
    assert asked == [["r0", "r1"], ["r1"], ["r1"]]
    assert by_id["r0"]["attempts"] == 1 and by_id["r0"]["invalid_reason"].startswith("after 1 attempt: engine error")
    assert by_id["r1"]["attempts"] == 3
    assert by_id["r1"]["invalid_reason"] == "after 3 attempts: engine error: engine died"


def test_several_systems_share_one_engine_run_per_attempt():
    """judge_tasks sends every system's requests in one generate call per attempt; each system's
    judgments reach its own sink with its own judge key; a completion keeps its seed across systems."""
    mft = load_value_system("mft")
    calls = []

    def generate(requests):
        calls.append(requests)
        out = []
        for req in requests:
            keys = json.loads(req["json_schema"])["properties"]["scores"]["required"]
            bad = req["row_id"].endswith("r1") and req["attempt"] == 0 and "care" in keys  # mft's r1 retried once
            answer = "no" if bad else format_answer("ok", dict.fromkeys(keys, 5))
            out.append({"row_id": req["row_id"], "response": answer,
                        "finish_reason": "stop", "error": None, "n_prompt_tokens": 10, "n_completion_tokens": 2})
        yield out

    stored = {"valuelex": [], "mft": []}
    tasks = [JudgeTask(SYSTEM, completions(2), stored["valuelex"].extend),
             JudgeTask(mft, completions(2), stored["mft"].extend)]
    judge_tasks(tasks, generate, judge="llm:t", key=lambda s: f"key-{s.name}", prompting="chat",
                spec=EvaluationSpec(max_judge_retries=1))
    assert [len(c) for c in calls] == [4, 1]  # both systems in the first run, only mft's r1 retried
    assert len({r["row_id"] for r in calls[0]}) == 4
    seeds = {}
    for request in calls[0]:
        seeds.setdefault(request["row_id"].split(":")[1], set()).add(request["seed"])
    assert all(len(s) == 1 for s in seeds.values())
    for name, system in (("valuelex", SYSTEM), ("mft", mft)):
        rows = stored[name]
        assert sorted(r["row_id"] for r in rows) == ["r0", "r1"] and all(r["valid"] for r in rows)
        assert {r["judge_key"] for r in rows} == {f"key-{name}"}
        assert all(r[f"score_{k}"] == 5 for r in rows for k in system.leaf_keys())
    assert {r["row_id"]: r["attempts"] for r in stored["mft"]} == {"r0": 1, "r1": 2}
