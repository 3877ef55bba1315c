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
import yaml

from tests.fake_batch_server import FakeBatchServer
from tests.fault_server import FaultServer
from tests.helpers import elicit, study_dict
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
