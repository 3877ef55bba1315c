"""Issue 8, reliability and security, on real parts: evaluation and judging killed with -9 and
resumed, an S3 endpoint that goes away mid-run or never answers, secrets that must come only from
the environment, and Unicode / very long / empty answers through extraction and both judges.

The vLLM tests run SmolLM2 on the CPU engine; the S3 tests run moto's real S3 API on loopback.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import free_port
from tests.fault_server import FaultServer
from tests.helpers import SMOLLM_MODEL, elicit, evaluate, write_study
from valuelex import grid
from valuelex.construct.extraction import extract_table
from valuelex.construct.lexicon import extract_words
from valuelex.errors import StoreError, StudyError
from valuelex.evaluate import judgments as jt
from valuelex.evaluate.config import EvaluationSpec
from valuelex.evaluate.llm_judge import judge_with_retries
from valuelex.evaluate.systems import load_value_system
from valuelex.generate import conform
from valuelex.spec import load_study
from valuelex.store import OutputRoot, RunStore

REPO = Path(__file__).resolve().parent.parent
MFT = load_value_system("mft")
UNICODE_ANSWER = "être honnête 😊 — 誠実さ, honesty and kindness 🤝 (עזרה לזולת)."


# --- helpers -------------------------------------------------------------------------------------


def start_cli(*args: str, env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen:
    """`valuelex ARGS` in its own process group, so that kill -9 takes its Ray workers along."""
    sink = log.open("wb") if log else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-m", "valuelex.cli", *args], cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1",
                                                                     **(env or {})},
        stdout=sink, stderr=subprocess.STDOUT if log else subprocess.DEVNULL, start_new_session=True,
    )


def wait_until(done: Callable[[], bool], proc: subprocess.Popen, what: str, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} within {seconds:.0f} s"
        time.sleep(0.2)


def kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def responses(table: pa.Table, column: str = "response") -> dict[str, Any]:
    return dict(zip(table["row_id"].to_pylist(), table[column].to_pylist(), strict=True))


def write_completions(study, out: str, texts: list[str]) -> int:
    """The study's completion grid stored as if generated, response i = texts[i % len(texts)]."""
    rows = [{**r, "response": texts[i % len(texts)], "n_prompt_tokens": 5, "n_completion_tokens": 8,
             "finish_reason": "stop", "error": None, "engine": "test"}
            for i, r in enumerate(r for m in study.models for r in grid.requests(study, "completion", m))]
    OutputRoot(out).table("completions").write(conform(pa.Table.from_pylist(rows)))
    return len(rows)


def served_model(base_url: str, **options: Any) -> dict[str, Any]:
    return {"name": "served", "source": "fault-model", "engine": "openai", "training": "aligned", "family": "test",
            "prompting": "chat", "options": {"base_url": base_url, "max_retries": 1, "request_timeout_s": 5.0,
                                             **options}}


# --- judging streams its results ------------------------------------------------------------------


def test_judge_stores_each_batch_before_the_engine_finishes() -> None:
    """A judge run that dies mid-attempt (the engine's stream breaks after one batch) has already
    handed that batch's judgments, valid and finally-invalid, to the store."""
    keys = MFT.leaf_keys()
    good = '{"rationale": "kind", "scores": {' + ", ".join(f'"{k}": 5' for k in keys) + "}}"
    rows = [{"row_id": f"r{i}", "model": "m", "training": "aligned", "size_b": 0.1, "family": "f", "config": "c",
             "item_id": "s01", "sample": i, "stem": "I like", "response": f"answer {i}"} for i in range(6)]
    stored: list[list[dict]] = []

    def generate(requests: list[dict]) -> Iterator[list[dict]]:
        yield [{"row_id": r["row_id"], "response": good if r["row_id"] != "r1" else "not json", "error": None,
                "finish_reason": "stop", "n_prompt_tokens": 10, "n_completion_tokens": 5} for r in requests[:2]]
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        judge_with_retries(rows, MFT, generate, stored.append, judge="llm:t", judge_key="k", prompting="chat",
                           spec=EvaluationSpec(max_judge_retries=0))
    assert [[(r["row_id"], r["valid"]) for r in batch] for batch in stored] == [[("r0", True), ("r1", False)]]
    assert stored[0][1]["invalid_reason"] == "after 1 attempt: not JSON"


# --- kill -9 and resume ---------------------------------------------------------------------------


def test_killed_evaluation_resumes_completions_exactly(ray_local: None, tmp_path: Path) -> None:
    """`valuelex evaluate` killed -9 while generating completions; the rerun stores exactly the grid,
    none twice, keeps the rows stored before the kill unchanged and generates only the rest.

    The respondent is the OpenAI engine against the loopback fake server (its answers name the
    attempt, so a regenerated row would show); the kill and resume are the generation stage's,
    whatever the engine (`tests/test_elicit.py` kills a vLLM run)."""
    with FaultServer(delay=0.25) as server:
        served = {"name": "served", "source": "fake-model", "engine": "openai", "training": "aligned",
                  "family": "fake", "prompting": "chat",
                  "options": {"base_url": server.base_url, "max_retries": 0, "request_timeout_s": 10.0,
                              "batch_size": 2, "max_concurrency": 2}}
        path = write_study(tmp_path, models=[served], samples=12, shard_rows=2,
                           evaluation={"systems": ["mft"], "bootstrap_resamples": 50})
        out = str(tmp_path / "out")
        shards = OutputRoot(out).table("completions")
        proc = start_cli("evaluate", str(path), "--out", out, log=tmp_path / "evaluate.log")
        wait_until(lambda: bool(shards.shard_paths()), proc, "completions shard")
        kill_group(proc)
        kept = shards.read()
        total = grid.count(load_study(path), "completion")
        assert total == 48
        assert 0 < kept.num_rows < total, f"the kill came too late: {kept.num_rows} of {total} rows were stored"

        summary = evaluate(load_study(path), out)
    final, raw = shards.read(), shards.read_raw()
    assert final.num_rows == raw.num_rows == len(set(final["row_id"].to_pylist())) == total
    assert responses(kept).items() <= responses(final).items()  # stored rows were not regenerated
    record = OutputRoot(out).read_json("stages/completion.json")
    assert record["rows_generated"] == total - kept.num_rows and record["rows_already_stored"] == kept.num_rows
    assert summary["systems"]["mft"]["judged"] == total


@pytest.mark.vllm
def test_killed_llm_judging_resumes_without_judging_twice(ray_local: None, tmp_path: Path) -> None:
    """`valuelex evaluate` with an LLM judge killed -9 mid-judging: the judgments stored before the kill
    are kept and not judged again; the rerun judges the rest, each completion once for this judge.

    The completions include Unicode, an empty answer and one too long for the judge's context: all
    three end up stored (the long one invalid with the engine's reason) and the run goes on."""
    judge = {**SMOLLM_MODEL, "options": {"max_model_len": 2048, "batch_size": 1}}
    path = write_study(tmp_path, models=[judge], samples=8, shard_rows=2, evaluation={
        "judge": "llm", "judge_model": "smollm2", "systems": ["mft"], "max_judge_retries": 0,
        "bootstrap_resamples": 50})
    study = load_study(path)
    out = str(tmp_path / "out")
    too_long = "honesty " * 3000  # ~3000 tokens: more than the judge's 2048-token context
    texts = ["helping people learn and find accurate answers.", "being rude to a person who needs help.",
             UNICODE_ANSWER, "to be fair and honest with every user.", "", "misleading someone who trusts me.",
             too_long, "being kind and patient with everyone."]
    total = write_completions(study, out, texts)
    assert total == 32
    table = RunStore(out).judgments_table(MFT)

    def engine_judged() -> int:  # rows that went through the engine (the empty one is stored at once)
        raw = table.read_raw(["attempts"])
        return 0 if raw is None else sum(a > 0 for a in raw["attempts"].to_pylist())

    proc = start_cli("evaluate", str(path), "--out", out, log=tmp_path / "evaluate.log")
    wait_until(lambda: engine_judged() > 0, proc, "judgments shard from the engine")
    kill_group(proc)
    kept = table.read()
    sent = total - 4  # the 4 empty completions never reach the engine
    assert 0 < engine_judged() < sent, f"the kill came too late: {engine_judged()} of {sent} were judged"

    summary = evaluate(study, out)
    counts = summary["systems"]["mft"]
    assert counts["already_judged"] == kept.num_rows and counts["judged"] == total - kept.num_rows, counts
    raw, final = table.read_raw(), table.read()
    assert raw.num_rows == final.num_rows == total == len(set(final["row_id"].to_pylist()))
    assert set(final["judge_key"].to_pylist()) == {kept["judge_key"][0].as_py()}
    for column in ("judge_response", "valid", "invalid_reason"):
        assert responses(kept, column).items() <= responses(final, column).items(), column
    rows = final.to_pylist()
    by_text: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_text.setdefault(row["response"], []).append(row)
    assert all(r["invalid_reason"] == "empty response" for r in by_text[""])
    assert all("engine error" in r["invalid_reason"] and "context" in r["invalid_reason"] for r in by_text[too_long])
    assert len(by_text[UNICODE_ANSWER]) == 4  # stored, the text intact
    assert sum(r["valid"] for r in rows) >= total // 2, [r["invalid_reason"] for r in rows]
    assert Path(out, "scores.parquet").exists()


# --- storage faults -------------------------------------------------------------------------------


class MotoServer:
    """A moto S3 server on a fixed loopback port that a test may stop and start again.

    moto keeps its buckets in this process, not in the server thread, so a restarted server on
    the same port serves the same objects: the endpoint went away and came back.
    """

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._make = lambda: ThreadedMotoServer(ip_address="127.0.0.1", port=self.port)
        self.server: Any = None

    def start(self) -> None:
        self.server = self._make()
        self.server.start()

    def stop(self) -> None:
        self.server.stop()
        self.server = None

    def client(self) -> Any:
        return s3_client(self.endpoint)

    def objects(self, bucket: str, prefix: str) -> dict[str, bytes]:
        return s3_objects(self.endpoint, bucket, prefix)


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="any",
                        aws_secret_access_key="any")


def s3_objects(endpoint: str, bucket: str, prefix: str) -> dict[str, bytes]:
    """Every object under a prefix, read whole."""
    client = s3_client(endpoint)
    listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing}


def s3_env(endpoint: str, key_id: str = "test-access-key-id", secret: str = "test-secret-access-key") -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}


@pytest.fixture
def moto() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    yield server
    if server.server is not None:
        server.stop()


def test_s3_endpoint_lost_mid_run_fails_cleanly_and_resumes(
    moto: MotoServer, ray_local: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The S3 endpoint stops after the first shard is published: `valuelex elicit` exits 2 within
    seconds with an error naming the store, every object left is a whole shard, and once the
    endpoint is back a rerun completes the grid, none twice."""
    bucket = f"reliability-{uuid.uuid4().hex[:12]}"
    moto.client().create_bucket(Bucket=bucket)
    uri = f"s3://{bucket}/run"
    with FaultServer(delay=0.3) as llm:  # 16 rows one at a time, 0.3 s each: ~5 s of generation
        model = served_model(llm.base_url, max_concurrency=1, batch_size=1)
        path = write_study(tmp_path, models=[model], samples=4, shard_rows=1)
        env = {**s3_env(moto.endpoint), "VALUELEX_S3_ENDPOINT": ""}
        log = tmp_path / "elicit.log"
        proc = start_cli("elicit", str(path), "--out", uri, env=env, log=log)
        wait_until(lambda: any(k.endswith(".parquet") for k in moto.objects(bucket, "run/elicitation/")),
                   proc, "shard on S3", seconds=180)
        moto.stop()
        stopped = time.monotonic()
        try:
            code = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            pytest.fail(f"the run hung for 120 s after the S3 endpoint went away:\n{log.read_text()[-2000:]}")
        output = log.read_text()
        assert code == 2, output[-3000:]
        assert f"error: {uri}/" in output and "NETWORK_CONNECTION" in output, output[-3000:]
        assert "Traceback" not in output
        assert time.monotonic() - stopped < 60

        moto.start()
        left = moto.objects(bucket, "run/")
        shards = {k: v for k, v in left.items() if k.endswith(".parquet")}
        # nothing half-written or temporary; the lock stays (it could not be removed from a lost endpoint)
        # and the rerun below takes it over: its holder's pid is gone
        logs = {k for k in left if k.startswith("run/logs/") and k.endswith(".log")}  # whole files, put once
        assert set(left) - set(shards) - logs == {"run/store.json", "run/study.json", "run/.valuelex.lock"}
        kept_rows = sum(pq.read_table(io.BytesIO(v)).num_rows for v in shards.values())  # each a whole shard
        total = grid.count(load_study(path), "elicitation")
        assert 0 < kept_rows < total, f"the endpoint went away too late: {kept_rows} of {total} rows stored"

        for key, value in {**s3_env(moto.endpoint), "VALUELEX_S3_ENDPOINT": ""}.items():
            monkeypatch.setenv(key, value)
        table = OutputRoot(uri).table("elicitation")
        kept = table.read()
        llm.delay = 0.0
        report = elicit(load_study(path), uri)
    final, raw = table.read(), table.read_raw()
    assert report["rows_generated"] == total - kept.num_rows and report["rows_failed"] == 0
    assert final.num_rows == raw.num_rows == len(set(final["row_id"].to_pylist())) == total
    assert responses(kept).items() <= responses(final).items()


def test_silent_s3_endpoint_fails_in_bounded_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """An endpoint that accepts connections and never answers (a hung proxy): each store call gives
    up with a StoreError after the SDK's bounded retries, instead of hanging the run."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.extend(iter(lambda: listener.accept()[0], None)), daemon=True).start()
    for key, value in {**s3_env(f"http://127.0.0.1:{listener.getsockname()[1]}"), "VALUELEX_S3_ENDPOINT": ""}.items():
        monkeypatch.setenv(key, value)
    started = time.monotonic()
    try:
        with pytest.raises(StoreError, match=r"s3://silent/run/elicitation/part-.*: cannot write: .*Timeout"):
            OutputRoot("s3://silent/run").table("elicitation").write(pa.table({"row_id": ["a"]}))
    finally:
        listener.close()
        for conn in held:
            conn.close()
    assert held and time.monotonic() - started < 60


# --- secrets --------------------------------------------------------------------------------------


def test_secrets_come_only_from_the_environment(s3_endpoint: str, tmp_path: Path) -> None:
    """An API key and S3 credentials given in the environment are used, and appear in no output:
    not in any object of the run (study.json, stages/*.json, shards, scores), the report, the
    commands' output or the Ray session logs."""
    api_key = f"sk-vlx-{secrets.token_hex(16)}"
    key_id, secret = f"AKIAVLX{secrets.token_hex(6).upper()}", f"vlx/{secrets.token_urlsafe(24)}"
    prefix = f"secrets-{uuid.uuid4().hex[:8]}"
    uri = f"s3://valuelex/{prefix}"
    ray_dir = tempfile.mkdtemp(prefix="vlxray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    try:
        with FaultServer() as llm:
            model = served_model(llm.base_url, api_key_env="VLX_TEST_API_KEY", max_concurrency=4)
            path = write_study(tmp_path, models=[model], samples=1,
                               evaluation={"systems": ["mft"], "bootstrap_resamples": 50})
            env = {**os.environ, **s3_env(s3_endpoint, key_id, secret), "VLX_TEST_API_KEY": api_key,
                   "RAY_TMPDIR": ray_dir, "VALUELEX_S3_ENDPOINT": "", "VALUELEX_RAY_LOGS": "1"}
            outputs = []
            for args in (["elicit", str(path), "--out", uri], ["evaluate", str(path), "--out", uri],
                         ["report", uri, "--out", str(tmp_path / "report")]):
                done = subprocess.run([sys.executable, "-m", "valuelex.cli", *args], cwd=tmp_path, env=env,
                                      capture_output=True, timeout=300, check=False)
                assert done.returncode == 0, done.stderr[-3000:].decode(errors="replace")
                outputs.append(done.stdout + done.stderr)
            assert llm.authorizations == {f"Bearer {api_key}": 8}  # 4 answers and 4 completions, with the key
        objects = s3_objects(s3_endpoint, "valuelex", prefix)
        names = {k.removeprefix(f"{prefix}/") for k in objects}
        assert {"study.json", "stages/elicitation.json", "stages/completion.json", "stages/evaluation.json",
                "scores.parquet", "evaluation.json"} <= names, names
        files = {f"s3://valuelex/{k}": v for k, v in objects.items()}
        files |= {str(p): p.read_bytes() for p in (tmp_path / "report").rglob("*") if p.is_file()}
        logs = [p for p in Path(ray_dir).rglob("*") if p.is_file() and not p.is_symlink()]
        assert any("/logs/" in str(p) for p in logs), "no Ray session logs were written where expected"
        files |= {str(p): p.read_bytes() for p in logs}
        files |= {f"output of command {i}": out for i, out in enumerate(outputs)}
        assert "index.html" in " ".join(files)
        for value in (api_key, key_id, secret):
            leaks = [name for name, data in files.items() if value.encode() in data]
            assert not leaks, f"a secret was written to {leaks}"
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)


@pytest.mark.parametrize("where", ["options", "model"])
def test_study_file_cannot_carry_a_key_inline(tmp_path: Path, where: str) -> None:
    key = f"sk-{secrets.token_hex(8)}"
    model = served_model("http://127.0.0.1:9/v1")
    if where == "options":
        model["options"]["api_key"] = key
    else:
        model["api_key"] = key
    with pytest.raises(StudyError, match=r"models\[0\]\.(options\.)?api_key: unknown field") as error:
        load_study(write_study(tmp_path, models=[model]))
    assert key not in str(error.value)  # the message names the field, never echoes the value


def test_a_key_pasted_as_the_variable_name_is_refused(tmp_path: Path) -> None:
    """api_key_env takes a variable's name: a pasted key fails before it can reach study.json."""
    key = f"sk-{secrets.token_hex(8)}"
    model = served_model("http://127.0.0.1:9/v1")
    model["options"]["api_key_env"] = key
    out = tmp_path / "out"
    with pytest.raises(StudyError, match=r"models\[0\]\.options\.api_key_env") as error:
        load_study(write_study(tmp_path, models=[model], output=str(out)))
    assert key not in str(error.value)
    assert not out.exists()


# --- Unicode, very long and empty answers ----------------------------------------------------------


LONG_ANSWER = "Honesty, kindness and respect. " * 20_000  # ~620,000 characters


@pytest.mark.parametrize(("answer", "expected"), [
    ("Honesty 😊, kindness 🤝 and respect 🙏", ["honesty", "kindness", "respect"]),
    ("1. Fairness\u200b\n2. Curiosity\u00a0\n3. 正直", ["fairness", "curiosity"]),  # zero-width, nbsp, CJK
    ("誠実さ、思いやり、尊重", []),
    ("الصدق والاحترام", []),
    ("\u200b\u00a0\u3000", []),
    ("```" + " honesty" * 5000, ["honesty"]),  # an unclosed code fence does not swallow or stall
    ("a" * 200_000, []),  # one enormous token is not a word
    (LONG_ANSWER, ["honesty", "kindness", "respect"]),
])
def test_extraction_takes_unicode_long_and_empty_answers(answer: str, expected: list[str]) -> None:
    started = time.monotonic()
    assert extract_words(answer) == expected
    assert time.monotonic() - started < 10


def test_extraction_keeps_accented_words_whole() -> None:
    assert extract_words("Naïveté, Höflichkeit") == []  # whole non-English tokens, not ASCII fragments
    assert extract_words("Honesty, naïveté and kindness") == ["honesty", "kindness"]


def test_extracted_unicode_surface_forms_round_trip_the_store(tmp_path: Path) -> None:
    rows = pa.Table.from_pylist([
        {"row_id": "u", "model": "m", "config": "c", "response": "Honesty 😊, Kindness 🤝", "error": None},
        {"row_id": "e", "model": "m", "config": "c", "response": "", "error": None},
        {"row_id": "l", "model": "m", "config": "c", "response": LONG_ANSWER, "error": None},
    ])
    table = OutputRoot(str(tmp_path)).table("occurrences")
    table.write(extract_table(rows))
    stored = table.read_raw().to_pylist()
    assert [(r["row_id"], r["word"], r["surface"]) for r in stored] == [
        ("u", "honesty", "Honesty"), ("u", "kindness", "Kindness"),
        ("l", "honesty", "Honesty"), ("l", "kindness", "kindness"), ("l", "respect", "respect")]


@pytest.fixture(scope="module")
def edge_completions() -> list[dict[str, Any]]:
    texts = {"unicode": UNICODE_ANSWER, "emoji": "😊🤝🙏", "long": LONG_ANSWER, "empty": "", "blank": " \n\t ",
             "invisible": "\u200b\u200d\ufeff", "plain": "being honest with everyone."}
    return [{"row_id": name, "model": "m", "training": "aligned", "size_b": 0.1, "family": "f", "config": "c",
             "item_id": "s01", "sample": 0, "stem": "I like", "response": text} for name, text in texts.items()]


def check_stored(judged: list[dict[str, Any]], completions: list[dict[str, Any]], tmp_path: Path) -> dict:
    """Every completion judged once; stored and read back with its text intact; empty ones invalid."""
    table = RunStore(str(tmp_path)).judgments_table(MFT)
    table.write(jt.to_table(judged, MFT))
    stored = {r["row_id"]: r for r in table.read_raw().to_pylist()}
    assert sorted(stored) == sorted(c["row_id"] for c in completions)
    assert {c["row_id"]: c["response"] for c in completions} == {k: r["response"] for k, r in stored.items()}
    for name in ("empty", "blank", "invisible"):  # zero-width characters only: nothing to judge
        assert not stored[name]["valid"] and stored[name]["invalid_reason"] == "empty response"
    return stored


def test_embedding_judge_takes_unicode_long_and_empty_completions(
    edge_completions: list[dict[str, Any]], tmp_path: Path
) -> None:
    from valuelex.evaluate.embedding import EmbeddingJudge

    judged: list[dict[str, Any]] = []
    EmbeddingJudge().judge(edge_completions, MFT, judged.extend)
    stored = check_stored(judged, edge_completions, tmp_path)
    for name in ("unicode", "emoji", "long", "plain"):
        assert stored[name]["valid"] and all(0 <= stored[name][f"score_{k}"] <= 6 for k in MFT.leaf_keys())


def test_llm_judge_loop_takes_unicode_long_and_empty_completions(
    edge_completions: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The prompt carries the completion's text as written; a Unicode answer is parsed and kept."""
    keys = MFT.leaf_keys()
    answer = '{"rationale": "honnête 😊 誠実", "scores": {' + ", ".join(f'"{k}": 4' for k in keys) + "}}"
    prompts: dict[str, str] = {}

    def generate(requests: list[dict]) -> Iterator[list[dict]]:
        prompts.update({r["row_id"]: r["prompt"] for r in requests})
        yield [{"row_id": r["row_id"], "response": answer, "error": None, "finish_reason": "stop",
                "n_prompt_tokens": 1, "n_completion_tokens": 1} for r in requests]

    judged: list[dict[str, Any]] = []
    judge_with_retries(edge_completions, MFT, generate, judged.extend, judge="llm:t", judge_key="k",
                       prompting="chat", spec=EvaluationSpec(max_judge_retries=1))
    stored = check_stored(judged, edge_completions, tmp_path)
    assert sorted(prompts) == ["emoji", "long", "plain", "unicode"]  # empty ones are never sent
    assert prompts["unicode"].endswith(f"Completion: {UNICODE_ANSWER}\nAnswer:")
    for name in prompts:
        assert stored[name]["valid"] and stored[name]["rationale"] == "honnête 😊 誠実"
