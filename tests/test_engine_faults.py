"""The OpenAI-compatible engine against a server that answers 429, 500, timeouts and broken JSON."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from tests.fault_server import FaultServer
from tests.helpers import elicit, write_study
from valuelex.engines.base import Engine, build_engine
from valuelex.instruments import elicitation_prompts
from valuelex.spec import ModelSpec, load_study
from valuelex.store import OutputRoot


def served(base_url: str, **options: object) -> dict:
    return {"name": "faulty", "source": "fault-model", "engine": "openai", "size_b": None, "training": "aligned",
            "family": "test", "prompting": "chat",
            "options": {"base_url": base_url, "max_retries": 3, "request_timeout_s": 1.0, "max_concurrency": 4,
                        **options}}


def request(prompt: str, i: int) -> dict:
    return {"row_id": f"r{i}", "model": "faulty", "prompt": prompt, "prompting": "chat", "temperature": 0.7,
            "top_p": 0.9, "max_tokens": 16, "seed": i}


def generate_all(engine: Engine, rows: list[dict]) -> list[dict]:
    return pa.concat_tables(engine.generate(rows, batch_rows=len(rows)), promote_options="default").to_pylist()


def test_bounded_retries_recover_transient_faults_and_keep_permanent_ones(ray_local: None) -> None:
    prompts = ["fail:429:2", "fail:500:3", "fail:timeout:1", "fail:badjson:1", "fail:empty:2", "fail:500:always",
               "fail:429:always", "a healthy prompt"]
    with FaultServer(timeout_sleep=2.5) as server:
        engine = build_engine(ModelSpec.model_validate(served(server.base_url)), use_gpu=None)
        rows = generate_all(engine, [request(p, i) for i, p in enumerate(prompts)])
        by_prompt = {r["prompt"]: r for r in rows}
        assert len(rows) == len(prompts)  # nothing dropped
        for prompt in prompts[:5] + prompts[-1:]:
            assert by_prompt[prompt]["error"] is None, (prompt, by_prompt[prompt]["error"])
            assert by_prompt[prompt]["response"].startswith(f"values for {prompt}")
        assert "500" in by_prompt["fail:500:always"]["error"] and by_prompt["fail:500:always"]["response"] is None
        assert "429" in by_prompt["fail:429:always"]["error"]
        assert server.attempts["fail:500:always"] == 4 == server.attempts["fail:429:always"]  # 1 + max_retries
        assert server.attempts["fail:429:2"] == 3 and server.attempts["a healthy prompt"] == 1


def test_failed_rows_are_stored_and_retried_by_the_next_run(ray_local: None, tmp_path: Path) -> None:
    q01 = elicitation_prompts()[0].chat_text
    with FaultServer(rules={q01: "500:always"}) as server:
        model = served(server.base_url, max_retries=1)
        study = load_study(write_study(tmp_path, models=[model]))
        out = str(tmp_path / "out")
        first = elicit(study, out)
        assert first["rows_generated"] == 8 and first["rows_failed"] == 4  # q01's 4 rows failed, q09's succeeded
        table = OutputRoot(out).table("elicitation")
        stored = table.read().to_pylist()
        assert len(stored) == 8 and sum(r["error"] is not None for r in stored) == 4
        assert all("500" in r["error"] for r in stored if r["error"])

        server.healthy = True
        second = elicit(study, out)
        assert second["rows_generated"] == 4 and second["rows_failed"] == 0 and second["rows_already_stored"] == 4
        final = table.read().to_pylist()
        assert len(final) == 8 and all(r["error"] is None for r in final)
        assert table.read_raw().num_rows == 12  # the failed attempts stay on record
        assert elicit(study, out)["rows_generated"] == 0
        assert server.attempts[q01] == 4 * 2 + 4  # two attempts per row in run 1, one in run 2


@pytest.mark.parametrize("prompting", ["completion"])
def test_completion_endpoint(ray_local: None, prompting: str) -> None:
    with FaultServer() as server:
        spec = ModelSpec.model_validate({**served(server.base_url), "prompting": prompting})
        (row,) = generate_all(build_engine(spec, use_gpu=None), [{**request("I like", 0), "prompting": prompting}])
        assert row["error"] is None and row["response"].startswith("values for I like")
        assert row["n_prompt_tokens"] == 5 and row["n_completion_tokens"] == 4
