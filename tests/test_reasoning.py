"""Reasoning models: the answer is what counts, thinking is stored apart, cut thinking is a failed row.

The respondent is a scripted reasoning model on the fake OpenAI server (tests/fault_server.py,
`think`): one token a word, cut at max_tokens the way an engine cuts it. Its thinking names values
the answer does not (honesty, loyalty), so a word from the thinking in the taxonomy's input, or in a
judge prompt, shows at once.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from tests.fault_server import FaultServer
from tests.helpers import elicit, evaluate, study_dict
from valuelex.construct.extraction import extract_table
from valuelex.engines.reasoning import TRUNCATED, answer_columns, split_reasoning
from valuelex.engines.replies import parse_reply
from valuelex.evaluate.judge_prompt import build_prompt
from valuelex.evaluate.systems import load_value_system
from valuelex.spec import Study, fingerprint_of
from valuelex.store import OutputRoot, RunStore

THINKING = "I weigh honesty against loyalty before I answer"  # 8 tokens
LONG_THINKING = " ".join(["honesty", "loyalty"] * 30)  # 60 tokens
ANSWER = "Kindness, fairness and courage."


@pytest.mark.parametrize(
    ("text", "reasoning", "answer", "unclosed"),
    [
        ("<think>weigh honesty</think>Kindness.", "weigh honesty", "Kindness.", False),
        ("<thinking>a</thinking>\n\nB", "a", "B", False),
        ("<seed:think>a</seed:think>B", "a", "B", False),
        ("<|begin_of_thought|>a<|end_of_thought|>B", "a", "B", False),
        ("weigh honesty</think>Kindness.", "weigh honesty", "Kindness.", False),  # R1's template opened it
        ("<think>a</think>B<think>c</think>D", "a\nc", "B D", False),
        ("<think>honesty and loyalty and", "honesty and loyalty and", "", True),
        (
            "<|channel|>analysis<|message|>weigh honesty<|end|><|start|>assistant<|channel|>final<|message|>Kindness."
            "<|return|>",
            "weigh honesty",
            "Kindness.",
            False,
        ),
        ("<|channel|>analysis<|message|>weigh honesty and", "weigh honesty and", "", True),
        ("Kindness, no tags.", None, "Kindness, no tags.", False),
    ],
)
def test_split_reasoning_by_the_common_tags(text, reasoning, answer, unclosed) -> None:
    assert tuple(split_reasoning(text)) == (reasoning, answer, unclosed)


def test_answer_columns_per_mode() -> None:
    text = "<think>honesty</think>Kindness."
    assert answer_columns(text, mode="none", finish_reason="stop", max_tokens=9)["response"] == text
    cut = answer_columns(text, mode="auto", finish_reason="stop", max_tokens=9)
    assert (cut["response"], cut["reasoning"], cut["error"]) == ("Kindness.", "honesty", None)
    lost = answer_columns("<think>honesty and", mode="auto", finish_reason="length", max_tokens=3, reasoning_tokens=3)
    assert lost["response"] is None and lost["reasoning"] == "honesty and"
    assert lost["error"].startswith(f"{TRUNCATED}: the thinking used all max_tokens=3 (3 reasoning tokens)")
    assert "larger max_tokens" in lost["error"]
    # a server that splits the reasoning off: its field is used, and an empty answer cut by length is lost
    field = answer_columns("", mode="auto", finish_reason="length", max_tokens=3, reasoning="honesty")
    assert field["error"].startswith(TRUNCATED)
    # a model that thought and then chose to say nothing is not truncated
    assert answer_columns("<think>a</think>", mode="auto", finish_reason="stop", max_tokens=9)["error"] is None


def test_reply_reasoning_field_and_tokens() -> None:
    payload = {
        "choices": [{"finish_reason": "length", "message": {"content": None, "reasoning_content": "hm"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 7, "completion_tokens_details": {"reasoning_tokens": 7}},
    }
    reply = parse_reply(payload, "chat")
    assert (reply.text, reply.reasoning, reply.n_reasoning_tokens, reply.reason) == ("", "hm", 7, None)
    bad = {**payload, "usage": {"completion_tokens_details": {"reasoning_tokens": -1}}}
    assert parse_reply(bad, "chat").reason.startswith("reply reasoning token count")
    # no reasoning and no content is still an empty reply (retried), as before
    assert (
        parse_reply({"choices": [{"message": {"content": None}}]}, "chat").reason == "reply has no text (empty content)"
    )


def test_judge_prompt_has_the_reasoning_only_when_asked() -> None:
    assert "honesty" not in build_prompt("P", "I value", ANSWER)
    assert build_prompt("P", "I value", ANSWER, "honesty") == (
        f"P\nStem: I value\nReasoning: honesty\nCompletion: {ANSWER}\nAnswer:"
    )


def test_new_fields_at_their_defaults_keep_old_fingerprints() -> None:
    study = Study.model_validate(study_dict())
    dump = study.model_dump(mode="json")
    old = {
        **dump,
        "evaluation": {k: v for k, v in dump["evaluation"].items() if k != "judge_input"},
        "models": [
            {
                **m,
                "options": {
                    k: v for k, v in m["options"].items() if k not in ("reasoning", "reasoning_budget", "max_tokens")
                },
            }
            for m in dump["models"]
        ],
    }
    assert study.fingerprint() == fingerprint_of(old)
    thinking = study.model_copy(
        update={
            "models": [
                study.models[0].model_copy(
                    update={"options": study.models[0].options.model_copy(update={"reasoning": "auto"})}
                )
            ]
        }
    )
    assert thinking.fingerprint() != study.fingerprint()


def _think(prompt: str, max_tokens: int | None) -> tuple[str, str] | None:
    if "Completion:" in prompt:  # a judge prompt: answered by `_judge`
        return None
    return (LONG_THINKING if prompt.startswith("Give me") else THINKING), ANSWER


def _model(server: FaultServer, **options) -> dict:
    return {
        "name": "thinker",
        "source": "fake-r1",
        "engine": "openai",
        "training": "aligned",
        "family": "r1",
        "prompting": "chat",
        "options": {"base_url": server.base_url, "max_retries": 0, "reasoning": "auto", "batch_size": 4, **options},
    }


@pytest.fixture
def thinking_server():
    keys = load_value_system("mft").leaf_keys()
    judged = '{"rationale": "kind", "scores": {' + ", ".join(f'"{k}": 1' for k in keys) + "}}"
    with FaultServer(think=_think, respond=lambda prompt: judged) as server:
        yield server


def test_elicitation_words_come_from_the_answer_and_cut_thinking_waits_for_more_tokens(
    tmp_path: Path, ray_local: None, thinking_server: FaultServer
) -> None:
    server = thinking_server
    out = str(tmp_path / "out")
    base = study_dict(
        decoding=[{"name": "t0", "temperature": 0.0, "top_p": 1.0, "max_tokens": 64}],
        prompts={"elicitation": ["q01", "q02"], "stems": ["s01"]},
        samples=2,
    )
    study = Study.model_validate({**base, "models": [_model(server, max_tokens=40)]})
    summary = elicit(study, out)
    table = OutputRoot(out).table("elicitation").read()
    rows = {r["item_id"]: r for r in table.to_pylist()}
    assert rows["q02"]["prompt"].startswith("Give me")  # q02's thinking (60 tokens) exceeds the limit
    assert summary["rows_generated"] == 4 and summary["rows_failed"] == 2
    ok = table.filter(pa.compute.is_null(table["error"]))
    assert ok.num_rows == 2
    assert set(ok["response"].to_pylist()) == {ANSWER} and set(ok["reasoning"].to_pylist()) == {THINKING}
    assert set(ok["n_reasoning_tokens"].to_pylist()) == {8}
    words = extract_table(table)["word"].to_pylist()
    assert sorted(set(words)) == ["courage", "fairness", "kindness"] and len(words) == 6
    lost = table.filter(pa.compute.is_valid(table["error"])).to_pylist()
    assert all(
        r["error"].startswith(f"{TRUNCATED}: the thinking used all max_tokens=40 (40 reasoning tokens)")
        and r["response"] is None
        and r["reasoning"].startswith("honesty loyalty")
        for r in lost
    )

    sent = len(server.prompts)
    again = elicit(study, out)  # the same limit: thinking would run out again, so nothing is sent
    assert len(server.prompts) == sent and again["rows_generated"] == 0

    more = Study.model_validate({**base, "models": [_model(server, max_tokens=100)]})
    filled = elicit(more, out)
    assert filled["rows_generated"] == 2 and filled["rows_failed"] == 0 and len(server.prompts) == sent + 2
    final = OutputRoot(out).table("elicitation").read()
    assert final.num_rows == 4 and final["error"].null_count == 4
    assert set(final["response"].to_pylist()) == {ANSWER}
    assert sorted(set(extract_table(final)["word"].to_pylist())) == ["courage", "fairness", "kindness"]


@pytest.mark.parametrize("judge_input", ["answer", "answer+reasoning"])
def test_the_judge_sees_the_answer_only_unless_asked(
    tmp_path: Path, ray_local: None, thinking_server: FaultServer, judge_input: str
) -> None:
    server = thinking_server
    out = str(tmp_path / "out")
    study = Study.model_validate(
        study_dict(
            models=[_model(server, max_tokens=40)],
            samples=1,
            decoding=[{"name": "t0", "temperature": 0.0, "top_p": 1.0, "max_tokens": 64}],
            prompts={"elicitation": ["q01"], "stems": ["s01", "s02"]},
            evaluation={
                "judge": "llm",
                "judge_model": "thinker",
                "systems": ["mft"],
                "bootstrap_resamples": 50,
                "max_judge_retries": 0,
                "judge_input": judge_input,
            },
        )
    )
    summary = evaluate(study, out)
    judged = [p for p in server.prompts if "Completion:" in p]
    assert len(judged) == 2 and summary["systems"]["mft"]["judged"] == 2
    assert all(p.endswith(f"Completion: {ANSWER}\nAnswer:") for p in judged)
    if judge_input == "answer":
        assert not any(THINKING in p or "Reasoning:" in p for p in judged)
    else:
        assert all(f"Reasoning: {THINKING}\nCompletion:" in p for p in judged)
    completions = RunStore(out).completions(study)
    assert set(completions["reasoning"]) == {THINKING} and set(completions["response"]) == {ANSWER}


def test_old_stores_read_the_new_columns_as_null() -> None:
    root = Path(__file__).parent / "data" / "store-format-1"
    table = OutputRoot(str(root)).table("completions").read(["row_id", "response", "reasoning"])
    assert table.num_rows > 0 and table["reasoning"].null_count == table.num_rows


def test_plan_counts_reasoning_tokens() -> None:
    from valuelex.plan import format_plan, plan

    def study(**options) -> Study:
        model = {
            "name": "r1",
            "source": "x",
            "engine": "openai",
            "training": "aligned",
            "family": "r1",
            "prompting": "chat",
            "options": {"base_url": "http://127.0.0.1:1/v1", **options},
        }
        return Study.model_validate(
            study_dict(
                models=[model],
                samples=3,
                decoding=[{"name": "t", "temperature": 0.0, "top_p": 1.0, "max_tokens": 100}],
                prompts={"elicitation": ["q01", "q02"], "stems": ["s01"]},
            )
        )

    plain, thinking = (
        plan(study())["stages"]["elicitation"],
        plan(study(reasoning="auto", reasoning_budget=500, max_tokens=1000))["stages"]["elicitation"],
    )
    assert plain["reasoning_tokens"] == 0 and thinking["reasoning_tokens"] == 500 * 6
    assert thinking["api"]["completion_tokens"] == pytest.approx(plain["api"]["completion_tokens"] + 500 * 6)
    # without a larger limit the thinking cannot exceed max_tokens: the plan caps it there
    capped = plan(study(reasoning="auto", reasoning_budget=500))["stages"]["elicitation"]
    assert capped["api"]["completion_tokens"] == 100 * 6 and capped["reasoning_tokens"] == 100 * 6
    assert "of the completion tokens are thinking" in format_plan(plan(study(reasoning="auto", reasoning_budget=50)))


def test_vllm_results_are_cut_into_reasoning_and_answer() -> None:
    """The vLLM engine's postprocessing (a pure function of ray.data.llm's output; no engine starts)."""
    import pandas as pd

    from valuelex.engines.vllm import VLLMEngine, _to_results
    from valuelex.respondents import ModelSpec

    batch = pd.DataFrame(
        {
            "request_prompt": ["p1", "p2"],
            "max_tokens": [40, 5],
            "row_id": ["a", "b"],
            "generated_text": ["<think>honesty</think>Kindness.", "<think>honesty loyalty honesty"],
            "num_generated_tokens": [12, 5],
            "num_input_tokens": [3, 3],
            "__inference_error__": ["", ""],
        }
    )
    out = _to_results(batch, reasoning="auto").set_index("row_id")
    assert (out.at["a", "response"], out.at["a", "reasoning"]) == ("Kindness.", "honesty")
    assert pd.isna(out.at["a", "error"])
    assert pd.isna(out.at["b", "response"])
    assert out.at["b", "error"].startswith(f"{TRUNCATED}: the thinking used all max_tokens=5")
    plain = _to_results(batch, reasoning="none").set_index("row_id")
    assert plain.at["a", "response"] == "<think>honesty</think>Kindness." and plain["error"].isna().all()
    spec = ModelSpec.model_validate(
        {
            "name": "r",
            "source": "x",
            "training": "aligned",
            "family": "f",
            "prompting": "chat",
            "options": {"reasoning": "deepseek_r1"},
        }
    )
    config = VLLMEngine(spec, use_gpu=False).processor_config("/m", False)
    assert config.engine_kwargs["reasoning_parser"] == "deepseek_r1"
