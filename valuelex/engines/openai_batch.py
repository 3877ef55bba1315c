"""The OpenAI Batch API behind the engine interface (``engine: openai`` with ``options.batch: true``).

A stage's missing requests of one model go out as JSONL files (`/v1/files`, purpose ``batch``) and
batch jobs (`/v1/batches`, 24 h window, at the price table's ``batch_discount``), at most
``batch_max_lines`` requests per job. Every job is journaled in the run store
(``batches/<table>/<model>.json``: its input file, batch id and request ids) *before* it is
created and again once it exists, so a driver killed at any point resumes polling the jobs it
submitted instead of submitting them again (a job created but not yet journaled is found by its
input file in the batch list). A job's results are the synchronous path's rows (the same reply
check, `reply_columns`); a line that failed, and a request a failed, expired or cancelled job left
without an answer, is a failed row with its reason, so the next run sends it again, in a new job.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from valuelex.engines.base import RESULT_COLUMNS, chunks
from valuelex.engines.openai_compat import ReplyError, reply_columns, request_body
from valuelex.errors import EngineError
from valuelex.redact import Redactor

if TYPE_CHECKING:
    from valuelex.spec import ModelSpec
    from valuelex.store.run import BatchJournal

TERMINAL = ("completed", "failed", "expired", "cancelled")


class BatchEngine:
    """Requests of one model through the Batch API, journaled in the run store (see the module docstring)."""

    name = "openai-batch"

    def __init__(self, model: ModelSpec, *, journal: BatchJournal | None, use_gpu: bool | None = None):
        if journal is None:
            raise EngineError(f"model {model.name}: options.batch needs a run store to journal its batches in")
        opts = model.options
        if opts.api_key_env and opts.api_key_env not in os.environ:
            raise EngineError(f"model {model.name}: environment variable {opts.api_key_env} (the API key) is not set")
        self.model, self.journal = model, journal
        self.redact = Redactor.from_spec(model)

    def _client(self) -> Any:
        import openai

        opts = self.model.options
        key = os.environ.get(opts.api_key_env, "") if opts.api_key_env else "EMPTY"
        return openai.OpenAI(
            base_url=opts.base_url, api_key=key, max_retries=opts.max_retries, timeout=opts.request_timeout_s
        )

    def generate(self, requests: Iterable[dict[str, Any]], *, batch_rows: int) -> Iterator[pa.Table]:
        """Result tables of `batch_rows` rows: journaled jobs polled first, then the uncovered rows submitted.

        The model's missing rows are held in memory (one Batch API file holds them anyway)."""
        rows = {str(r["row_id"]): r for r in requests}
        if not rows:
            return
        client = self._client()
        document = self.journal.read()
        open_jobs = [job for job in document["batches"] if not job.get("collected")]
        covered = {rid for job in open_jobs for rid in job["request_ids"]}
        for part in chunks((rid for rid in rows if rid not in covered), self.model.options.batch_max_lines):
            open_jobs.append(self._submit(client, document, [rows[rid] for rid in part]))
        for job in open_jobs:
            if not job.get("batch_id"):
                self._create(client, document, job)
        while open_jobs:
            for job in list(open_jobs):
                batch = client.batches.retrieve(job["batch_id"])
                job["status"] = batch.status
                if batch.status not in TERMINAL:
                    continue
                results = [
                    self._row(rows[rid], outcome) for rid, outcome in self._outcomes(client, batch, job) if rid in rows
                ]
                for start in range(0, len(results), batch_rows):
                    yield pa.Table.from_pylist(results[start : start + batch_rows])
                job["collected"] = True  # only now: a kill before this polls the job again, never resubmits
                self.journal.write(document)
                open_jobs.remove(job)
            if open_jobs:
                time.sleep(self.model.options.batch_poll_s)

    def _submit(self, client: Any, document: dict[str, Any], part: list[dict[str, Any]]) -> dict[str, Any]:
        """Upload one JSONL file and journal it (the batch is created by `_create`)."""
        lines = []
        for row in part:
            url, body = request_body(self.model, row)
            lines.append(json.dumps({"custom_id": str(row["row_id"]), "method": "POST", "url": url, "body": body}))
        data = ("\n".join(lines) + "\n").encode()
        uploaded = client.files.create(file=("requests.jsonl", data, "application/jsonl"), purpose="batch")
        job = {
            "input_file_id": uploaded.id,
            "batch_id": None,
            "endpoint": json.loads(lines[0])["url"],
            "request_ids": [str(r["row_id"]) for r in part],
            "status": "uploaded",
            "collected": False,
        }
        document["batches"].append(job)
        self.journal.write(document)
        return job

    def _create(self, client: Any, document: dict[str, Any], job: dict[str, Any]) -> None:
        """Create the job of an uploaded file, unless a killed driver created it already (found by its file)."""
        for batch in client.batches.list(limit=100):
            if batch.input_file_id == job["input_file_id"]:
                job["batch_id"] = batch.id
                break
        else:
            batch = client.batches.create(
                input_file_id=job["input_file_id"], endpoint=job["endpoint"], completion_window="24h"
            )
            job["batch_id"] = batch.id
        self.journal.write(document)

    def _outcomes(self, client: Any, batch: Any, job: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        """(request id, output line or an error text) for every request of a finished job."""
        found: dict[str, Any] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                for line in client.files.content(file_id).text.splitlines():
                    if line.strip():
                        entry = json.loads(line)
                        found.setdefault(str(entry.get("custom_id")), entry)
        why = f"batch {batch.id} {batch.status}: no result for this request (the next run sends it again)"
        if batch.status == "failed" and batch.errors and batch.errors.data:
            why += ": " + "; ".join(f"{e.code}: {e.message}" for e in batch.errors.data)[:300]
        for rid in job["request_ids"]:
            yield rid, found.get(rid, why)

    def _row(self, row: dict[str, Any], outcome: Any) -> dict[str, Any]:
        failed = {
            "response": None,
            "n_prompt_tokens": 0,
            "n_completion_tokens": 0,
            "finish_reason": None,
            "engine": self.name,
            "reasoning": None,
            "n_reasoning_tokens": None,
        }
        if isinstance(outcome, str):
            return {**row, **failed, "error": outcome}
        response = outcome.get("response") or {}
        error = outcome.get("error")
        if error or response.get("status_code") != 200:
            detail = error or (response.get("body") or {}).get("error") or response
            text = f"batch line failed (status {response.get('status_code')}): {json.dumps(detail)}"
            return {**row, **failed, "error": (self.redact(text) or "")[:500]}
        try:
            result = reply_columns(self.model, row, response.get("body"), self.name)
        except (ReplyError, ValueError, TypeError) as exc:
            return {**row, **failed, "error": (self.redact(f"{type(exc).__name__}: {exc}") or "")[:500]}
        return {**row, **{c: None for c in RESULT_COLUMNS}, **result}
