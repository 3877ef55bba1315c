"""`valuelex status RUN` (issue 19, item 3): a finished run, one killed with SIGKILL mid-stage, an s3:// run.

The runs are real: the openai engine (through local Ray) against the loopback fault server, one
model answering and one whose endpoint always fails with HTTP 500, so the failed rows and their
reason are known; the judge is a test judge that marks one decoding config's completions invalid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.fault_server import FaultServer
from tests.helpers import RuleJudge, evaluate_stored, write_study
from valuelex.cli import app
from valuelex.spec import load_study
from valuelex.status import run_status
from valuelex.store import OutputLock, OutputRoot

REPO = Path(__file__).resolve().parent.parent
PROMPTS = {"elicitation": ["q01", "q09"], "stems": ["s01", "s13"]}
GRID = 4  # per model: 2 configs x 2 prompts (or stems) x M=1


def served(name: str, base_url: str) -> dict[str, Any]:
    return {
        "name": name,
        "source": name,
        "engine": "openai",
        "training": "aligned",
        "family": "test",
        "prompting": "chat",
        "options": {"base_url": base_url, "max_retries": 0, "request_timeout_s": 30.0, "max_concurrency": 2},
    }


# valid scores (all 3) for config t0.7, invalid ("not JSON", 7 prompt tokens each) for t1.0
HalfInvalidJudge = partial(
    RuleJudge, "test:half",
    lambda row, system: None if row["config"] == "t1.0" else dict.fromkeys(system.leaf_keys(), 3),
    lambda row: "not JSON" if row["config"] == "t1.0" else None, n_prompt_tokens=7)


def make_run(tmp: Path, out: str) -> None:
    """Elicitation and completions of a good and a failing model, then judgments of the stored ones."""
    from valuelex.api import run_study

    with FaultServer() as good, FaultServer(always="500") as bad:
        study = load_study(
            write_study(
                tmp,
                models=[served("good", good.base_url), served("bad", bad.base_url)],
                samples=1,
                prompts=PROMPTS,
                evaluation={"systems": ["valuelex"], "bootstrap_resamples": 50},
            )
        )
        run_study(study, out, ["elicitation", "completion"])
    evaluate_stored(study, out, HalfInvalidJudge())


def check_finished(status: dict[str, Any]) -> None:
    for stage in ("elicitation", "completion"):
        s = status["stages"][stage]
        assert (s["rows_in_grid"], s["stored"], s["done"], s["failed"], s["to_generate"]) == (2 * GRID, 8, 4, 4, 4)
        assert s["per_model"] == {"good": {"stored": 4, "failed": 0}, "bad": {"stored": 4, "failed": 4}}
        [(reason, n)] = s["failed_by_reason"].items()
        assert n == 4 and "500" in reason, reason
        assert s["tokens"] == {"n_prompt_tokens": 5 * 4, "n_completion_tokens": 4 * 4}  # the server's usage
    j = status["judgments"]["valuelex"]
    assert (j["judge"], j["judged"], j["valid"], j["invalid"], j["to_judge"]) == ("test:half", 4, 2, 2, 4)
    assert j["invalid_by_reason"] == {"not JSON": 2} and j["tokens"]["n_prompt_tokens"] == 28
    assert status["rerun"] == {
        "rows_to_generate": {"elicitation": 4, "completion": 4},
        "judgments_to_make": {"valuelex": 4},
    }
    assert {"elicitation", "completion", "evaluation"} <= set(status["records"])


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> str:
    tmp = tmp_path_factory.mktemp("status")
    make_run(tmp, str(tmp / "run"))
    return str(tmp / "run")


def test_status_of_a_finished_run_counts_rows_failures_invalid_judgments_and_the_rerun(finished: str) -> None:
    check_finished(run_status(finished))
    assert run_status(finished)["writer"] is None and run_status(finished)["report"] is None
    result = CliRunner().invoke(app, ["status", finished])
    assert result.exit_code == 0, result.output
    assert "elicitation" in result.output and "failed 4x:" in result.output and "invalid 2x: not JSON" in result.output
    assert (
        "a rerun would generate 4 elicitation rows; generate 4 completion rows; judge 4 completions (valuelex)"
        in result.output
    )
    as_json = CliRunner().invoke(app, ["status", finished, "--json"])
    assert json.loads(as_json.output)["stages"]["completion"]["done"] == 4


def test_status_of_no_run_is_a_user_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["status", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "no such run" in result.output and "Traceback" not in result.output


def test_status_of_an_s3_run_while_another_process_holds_its_lock(
    s3_endpoint: str, tmp_path: Path, ray_local: None
) -> None:
    out = f"s3://valuelex/status/{uuid.uuid4().hex}"
    make_run(tmp_path, out)
    check_finished(run_status(out))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from valuelex.store import OutputLock; "
            "OutputLock(sys.argv[1], 'valuelex evaluate').acquire(); print('held', flush=True); time.sleep(300)",
            out,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = OutputRoot(out).read_bytes(".valuelex.lock")
        status = run_status(out)
        assert status["writer"]["command"] == "valuelex evaluate" and status["writer"]["pid"] == holder.pid
        check_finished(status)
        assert OutputRoot(out).read_bytes(".valuelex.lock") == before  # read, never taken or refreshed by status
        with pytest.raises(Exception, match="being written by valuelex evaluate"):
            OutputLock(out, "valuelex run").acquire()  # the writer still holds it
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)


def test_status_while_a_run_writes_and_after_it_was_killed(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with FaultServer(delay=1.0) as server:
        model = served("slow", server.base_url)
        model["options"].update(max_concurrency=1, batch_size=1)  # one row per engine batch, one per shard
        study = write_study(tmp_path, models=[model], samples=3, prompts=PROMPTS, shard_rows=1)  # 12 rows, ~12 s
        proc = subprocess.Popen(
            [sys.executable, "-m", "valuelex.cli", "elicit", str(study), "--out", str(out)],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 120
            while len(list((out / "elicitation").glob("*.parquet"))) < 2:
                assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it was observed"
                time.sleep(0.2)
            during = run_status(str(out))
            assert proc.poll() is None, "the run ended too soon: raise the server's delay"
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    e = during["stages"]["elicitation"]
    assert during["writer"]["command"] == "valuelex elicit" and during["writer"]["pid"] == proc.pid
    assert e["rows_in_grid"] == 12 and 2 <= e["stored"] < 12 and e["to_generate"] == 12 - e["stored"]
    after = run_status(str(out))["stages"]["elicitation"]
    stored = OutputRoot(str(out)).table("elicitation").read_raw().num_rows
    assert after["stored"] == after["done"] == stored and after["failed"] == 0
    assert e["stored"] <= stored < 12 and after["to_generate"] == 12 - stored
    assert "elicitation" not in run_status(str(out))["records"]  # killed: never recorded
