"""Elicitation end to end on real parts: vLLM CPU engines through ray.data.llm, a vLLM
OpenAI-compatible server on loopback, a moto S3 endpoint, and a killed-and-resumed run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from tests.helpers import SMOLLM_MODEL, elicit, write_study
from valuelex import grid
from valuelex.generate import RESULT_SCHEMA
from valuelex.spec import Study, load_study
from valuelex.store import OutputRoot

pytestmark = pytest.mark.vllm


def stored(out: str, table: str = "elicitation") -> pa.Table:
    result = OutputRoot(out).table(table).read()
    assert result is not None, f"nothing stored under {out}/{table}"
    return result


def responses(table: pa.Table) -> dict[str, str]:
    return dict(zip(table["row_id"].to_pylist(), table["response"].to_pylist(), strict=True))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, ray_local: None, smollm_path: str, gemma_path: str):
    """The tiny study (a chat and a base model, 2 prompts x 2 configs x M=2) run once on vLLM."""
    folder = tmp_path_factory.mktemp("tiny")
    study = load_study(write_study(folder))
    out = str(folder / "out")
    report = elicit(study, out)
    return study, out, report


def test_vllm_writes_every_grid_row_once(tiny_run: tuple[Study, str, object]) -> None:
    study, out, report = tiny_run
    table = stored(out)
    expected = {r["row_id"] for m in study.models for r in grid.requests(study, "elicitation", m)}
    assert table.num_rows == len(expected) == 16
    assert set(table["row_id"].to_pylist()) == expected
    assert table.schema.names[: len(RESULT_SCHEMA)] == RESULT_SCHEMA.names
    rows = table.to_pylist()
    assert all(r["error"] is None for r in rows), [r["error"] for r in rows if r["error"]][:2]
    assert all(r["engine"] == "vllm" and r["n_completion_tokens"] > 0 for r in rows)
    assert all(r["finish_reason"] in {"stop", "length"} for r in rows)
    assert sum(bool(r["response"].strip()) for r in rows) >= 14
    assert {r["model"] for r in rows} == {"smollm2", "gemma3-270m"}
    assert report["rows_generated"] == 16 and report["completion_tokens"] > 0
    base = [r for r in rows if r["prompting"] == "completion"]
    assert all(r["prompt"].endswith(":") for r in base)  # base models continue a framing, no chat turn
    assert OutputRoot(out).read_json("study.json")["name"] == "tiny"


def test_rerun_generates_nothing(tiny_run: tuple[Study, str, object]) -> None:
    study, out, _ = tiny_run
    before = OutputRoot(out).table("elicitation").shard_paths()
    started = time.monotonic()
    report = elicit(study, out)
    assert report["rows_generated"] == 0 and report["rows_already_stored"] == 16
    assert OutputRoot(out).table("elicitation").shard_paths() == before
    assert time.monotonic() - started < 10  # no engine was started


def test_killed_run_resumes_to_exact_grid_with_same_answers(
    tiny_run: tuple[Study, str, object], tmp_path: Path
) -> None:
    """kill -9 mid-run, rerun: exactly the grid's rows, none twice, finished rows kept, and the same
    seeds give the same answers as the first run (samples 0-1) while raising M only adds rows."""
    _, first_out, _ = tiny_run
    smollm = {**SMOLLM_MODEL, "options": {**SMOLLM_MODEL["options"], "batch_size": 2}}
    # 48 rows in batches of 2: ray.data.llm keeps 8 batches in flight, so the first shard lands
    # while two more waves are still queued and the kill always interrupts real work
    path = write_study(tmp_path, models=[smollm], samples=12, shard_rows=2)
    out = str(tmp_path / "out")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "valuelex.cli", "elicit", str(path), "--out", out],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    shards = OutputRoot(out).table("elicitation")
    deadline = time.monotonic() + 240
    while not shards.shard_paths():
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, "no shard within 240 s"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = stored(out)
    total = 2 * 2 * 12
    assert 0 < kept.num_rows < total, "the kill came too late to interrupt anything"

    study = load_study(path)
    report = elicit(study, out)
    final = stored(out)
    raw = OutputRoot(out).table("elicitation").read_raw()
    assert final.num_rows == raw.num_rows == total
    assert len(set(final["row_id"].to_pylist())) == total
    assert report["rows_generated"] == total - kept.num_rows
    assert responses(kept).items() <= responses(final).items()

    first = responses(stored(first_out))
    overlap = set(first) & set(responses(final))
    assert len(overlap) == 8  # samples 0 and 1 of the first run, same row ids
    assert all(first[i] == responses(final)[i] for i in overlap)


def test_openai_engine_writes_the_same_schema(tiny_run: tuple[Study, str, object], openai_server: str,
                                              tmp_path: Path) -> None:
    _, vllm_out, _ = tiny_run
    served = {
        "name": "smollm2-served", "source": "smollm2", "engine": "openai", "size_b": 0.135,
        "training": "aligned", "family": "smollm2", "prompting": "chat",
        "options": {"base_url": openai_server, "max_concurrency": 4},
    }
    base = {**served, "name": "smollm2-served-base", "prompting": "completion"}
    study = load_study(write_study(tmp_path, models=[served, base]))
    out = str(tmp_path / "out")
    report = elicit(study, out)
    table = stored(out)
    assert report["rows_generated"] == table.num_rows == 16
    assert table.schema == stored(vllm_out).schema
    rows = table.to_pylist()
    assert all(r["error"] is None and r["engine"] == "openai" for r in rows)
    assert all(r["n_prompt_tokens"] > 0 and r["finish_reason"] in {"stop", "length"} for r in rows)


def test_output_to_s3_reads_back(openai_server: str, s3_endpoint: str, tmp_path: Path) -> None:
    served = {
        "name": "smollm2-served", "source": "smollm2", "engine": "openai", "size_b": 0.135,
        "training": "aligned", "family": "smollm2", "prompting": "chat", "options": {"base_url": openai_server},
    }
    study = load_study(write_study(tmp_path, models=[served], samples=1))
    elicit(study, "s3://valuelex/runs/tiny")
    table = stored("s3://valuelex/runs/tiny")
    assert table.num_rows == 4 and all(r is None for r in table["error"].to_pylist())
    import boto3

    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(
        Bucket="valuelex", Prefix="runs/tiny/")["Contents"]]
    assert "runs/tiny/study.json" in keys and any(k.endswith(".parquet") for k in keys)
    assert elicit(study, "s3://valuelex/runs/tiny")["rows_generated"] == 0
