"""The OpenAI-compatible engine against hostile servers (issue 14): a server that trickles or never
ends its body costs a bounded time and gives failed rows; odd replies are failed rows (or joined
text parts), never a crash; the grid reaches the engine lazily, chunk by chunk, rows unchanged."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.fault_server import FaultServer
from tests.helpers import elicit, write_study
from valuelex import generate, grid
from valuelex.engines import base
from valuelex.engines.base import build_engine, chunks
from valuelex.engines.replies import Reply, parse_reply
from valuelex.instruments import elicitation_prompts
from valuelex.spec import ModelSpec, load_study
from valuelex.store import OutputRoot, RunStore

PROMPTS = {p.id: p.chat_text for p in elicitation_prompts()}


def served(base_url: str, **options: object) -> dict:
    return {"name": "hostile", "source": "fault-model", "engine": "openai", "size_b": None, "training": "aligned",
            "family": "test", "prompting": "chat",
            "options": {"base_url": base_url, "max_retries": 1, "request_timeout_s": 2.0, "max_concurrency": 4,
                        "batch_size": 4, **options}}


def chat(content: Any = "fine", finish: Any = "stop", usage: Any = None) -> dict:
    choice = {"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": content}}
    return {"id": "x", "object": "chat.completion", "choices": [choice],
            "usage": usage if usage is not None else {"prompt_tokens": 3, "completion_tokens": 2}}


def one_per_prompt(tmp_path: Path, model: dict, ids: list[str]) -> Any:
    return load_study(write_study(tmp_path, models=[model], prompts={"elicitation": ids},
                                  decoding=[{"name": "t0.7", "temperature": 0.7, "top_p": 0.9, "max_tokens": 8}],
                                  samples=1))


# --- parse_reply: the pure check -----------------------------------------------------------------

PARTS = [{"type": "text", "text": "I value "}, {"type": "text", "text": "honesty"}]
ODD = {
    "mixed parts": (chat([{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}}]), "not text"),
    "no parts": (chat([]), "not text"),
    "a number": (chat(12345), "reply content is not text"),
    "an object": (chat({"text": "hi"}), "reply content is not text"),
    "null content": (chat(None), "empty"),
    "finish object": (chat(finish={"x": 1}), "finish_reason is not text"),
    "tokens 1e30": (chat(usage={"prompt_tokens": 3, "completion_tokens": 1e30}), "token counts"),
    "tokens 2**53": (chat(usage={"prompt_tokens": 2**53, "completion_tokens": 1}), "token counts"),
    "negative tokens": (chat(usage={"prompt_tokens": -1, "completion_tokens": 1}), "token counts"),
    "float tokens": (chat(usage={"prompt_tokens": 3.0, "completion_tokens": 1}), "token counts"),
    "bool tokens": (chat(usage={"prompt_tokens": True, "completion_tokens": 1}), "token counts"),
    "usage a list": (chat(usage=[1, 2]), "usage is not an object"),
    "no choices": ({"choices": []}, "no choices"),
    "choice a string": ({"choices": ["hi"]}, "no choices"),
    "no message": ({"choices": [{"text": "hi"}]}, "no message"),
    "not an object": ([1, 2], "not a JSON object"),
}


def test_parse_reply_takes_text_and_joins_text_parts() -> None:
    assert parse_reply(chat("I value honesty"), "chat") == Reply("I value honesty", None, 3, 2, "stop")
    assert parse_reply(chat(PARTS), "chat") == Reply("I value honesty", None, 3, 2, "stop")
    assert parse_reply(chat("", finish=None, usage={}), "chat") == Reply("", None, 0, 0, None)
    completion = {"choices": [{"text": "kindness", "finish_reason": "length"}], "usage": None}
    assert parse_reply(completion, "completion") == Reply("kindness", None, 0, 0, "length")
    assert parse_reply({"choices": [{"text": 7}]}, "completion").reason == "reply content is not text"


@pytest.mark.parametrize("case", sorted(ODD))
def test_parse_reply_gives_the_reason_of_an_odd_reply(case: str) -> None:
    payload, reason = ODD[case]
    reply = parse_reply(payload, "chat")
    assert reply.text is None and reason in reply.reason, reply


# --- lazy grid -----------------------------------------------------------------------------------


def test_chunks_read_rows_only_when_asked() -> None:
    taken: list[int] = []

    def rows() -> Iterator[dict]:
        for i in range(10):
            taken.append(i)
            yield {"i": i}

    stream = chunks(rows(), 4)
    assert taken == []
    assert [r["i"] for r in next(stream)] == [0, 1, 2, 3] and len(taken) == 4
    assert [len(c) for c in stream] == [4, 2] and list(chunks([], 4)) == []


def test_the_engine_reads_requests_a_chunk_at_a_time(ray_local: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "CHUNK_ROWS", 4)
    taken: list[int] = []

    def rows() -> Iterator[dict]:
        for i in range(10):
            taken.append(i)
            yield base.request_row(f"r{i}", f"prompt {i}", prompting="chat", temperature=0.7, top_p=0.9,
                                   max_tokens=8, seed=i)

    seen_when: list[int] = []
    out: list[dict] = []
    with FaultServer() as server:
        for batch in build_engine(ModelSpec.model_validate(served(server.base_url)), use_gpu=None).generate(
                rows(), batch_rows=2):
            seen_when.append(len(taken))
            out += batch.to_pylist()
    assert seen_when[0] == 4  # the first batch came back with only the first chunk read
    assert sorted(r["row_id"] for r in out) == sorted(f"r{i}" for i in range(10))
    assert all(r["error"] is None for r in out)


class FirstBatchEngine:
    """Answers the first `batch_rows` requests it is handed and stops: what a run would see first."""

    name = "first-batch"

    def generate(self, requests: Iterator[dict], *, batch_rows: int) -> Iterator[pa.Table]:
        rows = [next(requests) for _ in range(batch_rows)]
        yield pa.Table.from_pylist([{**r, "response": "x", "n_prompt_tokens": 1, "n_completion_tokens": 1,
                                     "finish_reason": "stop", "error": None, "engine": self.name} for r in rows])


def test_a_stage_of_the_largest_m_starts_at_once_without_building_its_grid(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """6M request rows per model: the first shard is stored in seconds (a list of them would take minutes)."""
    study = load_study(write_study(tmp_path, samples=100_000, prompts={"elicitation": "all", "stems": "all"}))
    monkeypatch.setattr(generate, "build_engine", lambda model, use_gpu: FirstBatchEngine())
    first = next(grid.requests(study, "elicitation", study.models[0]))
    started = time.monotonic()
    counts = generate.run_model(study, "elicitation", study.models[0], RunStore(str(tmp_path / "out")),
                                done={first["row_id"]})
    assert time.monotonic() - started < 5
    assert counts["rows"] == 15 * 2 * 100_000 and counts["generated"] == study.shard_rows == 4
    assert counts["skipped"] == 1  # the done row was skipped, and the grid read no further than needed
    stored = OutputRoot(str(tmp_path / "out")).table("elicitation").read().to_pylist()
    assert [r["sample"] for r in stored] == [1, 2, 3, 4]


def test_a_chunked_stage_stores_exactly_the_grid(ray_local: None, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "CHUNK_ROWS", 4)  # 8 rows of the study in 2 chunks
    with FaultServer() as server:
        study = load_study(write_study(tmp_path, models=[served(server.base_url)]))
        out = str(tmp_path / "out")
        assert elicit(study, out)["rows_generated"] == 8
        stored = {r["row_id"]: r["seed"] for r in OutputRoot(out).table("elicitation").read().to_pylist()}
        expected = {r["row_id"]: r["seed"] for r in grid.requests(study, "elicitation", study.models[0])}
        assert stored == expected and len(expected) == 8
        again = elicit(study, out)
        assert again["rows_generated"] == 0 and again["rows_already_stored"] == 8


# --- hangs: a total deadline per attempt ----------------------------------------------------------


def test_trickling_and_endless_servers_end_in_bounded_time(ray_local: None) -> None:
    prompts = ["fail:trickle:always", "fail:endless:always", "a healthy prompt"]
    rows = [base.request_row(f"r{i}", p, prompting="chat", temperature=0.7, top_p=0.9, max_tokens=8, seed=i)
            for i, p in enumerate(prompts)]
    with FaultServer() as server:
        engine = build_engine(ModelSpec.model_validate(served(server.base_url)), use_gpu=None)
        started = time.monotonic()
        out = pa.concat_tables(engine.generate(rows, batch_rows=3)).to_pylist()
        seconds = time.monotonic() - started
        by_prompt = {r["prompt"]: r for r in out}
        assert seconds < 30, seconds
        for prompt in prompts[:2]:
            assert by_prompt[prompt]["response"] is None and "deadline" in by_prompt[prompt]["error"]
            assert server.attempts[prompt] == 2  # 1 + max_retries, each cut at its deadline
        assert by_prompt["a healthy prompt"]["error"] is None


def test_a_stage_against_stalling_servers_ends_with_failed_rows(ray_local: None, tmp_path: Path) -> None:
    rules = {PROMPTS["q01"]: "trickle:always", PROMPTS["q02"]: "endless:always"}
    with FaultServer(rules=rules) as server:
        study = one_per_prompt(tmp_path, served(server.base_url), ["q01", "q02", "q03"])
        out = str(tmp_path / "out")
        started = time.monotonic()
        summary = elicit(study, out)
        assert time.monotonic() - started < 30
        assert summary["rows_generated"] == 3 and summary["rows_failed"] == 2
        stored = {r["item_id"]: r for r in OutputRoot(out).table("elicitation").read().to_pylist()}
        assert "deadline" in stored["q01"]["error"] and "deadline" in stored["q02"]["error"]
        assert stored["q03"]["error"] is None


# --- odd replies: failed rows, never a crash -------------------------------------------------------


def test_odd_replies_are_failed_rows_and_a_rerun_retries_only_those(ray_local: None, tmp_path: Path) -> None:
    odd = {
        "q01": (chat(PARTS), None),
        "q02": (ODD["mixed parts"][0], "not text"),
        "q03": (chat(12345), "reply content is not text"),
        "q04": (ODD["finish object"][0], "finish_reason is not text"),
        "q05": (ODD["tokens 1e30"][0], "token counts"),
        "q06": (chat(None), "empty"),
    }
    replies = {PROMPTS[item]: payload for item, (payload, _) in odd.items()}
    with FaultServer(replies=replies) as server:
        study = one_per_prompt(tmp_path, served(server.base_url), [*odd, "q07"])
        out = str(tmp_path / "out")
        first = elicit(study, out)
        assert first["rows_generated"] == 7 and first["rows_failed"] == 5
        table = OutputRoot(out).table("elicitation")
        stored = {r["item_id"]: r for r in table.read().to_pylist()}
        assert len(stored) == 7  # none lost
        assert stored["q01"]["response"] == "I value honesty" and stored["q01"]["error"] is None
        assert stored["q07"]["error"] is None
        for item, (_, reason) in odd.items():
            if reason:
                assert stored[item]["response"] is None and reason in stored[item]["error"], stored[item]
                assert server.attempts[PROMPTS[item]] == 2  # retried like an unparseable reply

        server.healthy = True
        second = elicit(study, out)
        assert second["rows_generated"] == 5 and second["rows_failed"] == 0 and second["rows_already_stored"] == 2
        assert server.attempts[PROMPTS["q01"]] == 1 and server.attempts[PROMPTS["q07"]] == 1
        assert all(r["error"] is None for r in table.read().to_pylist())
