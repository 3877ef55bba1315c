"""No secret in any output (issue 14, item 1), and a generation stage whose rows all failed ends
non-zero with one line that says why (item 8).

The end-to-end tests run the OpenAI-compatible engine against the loopback fault server, in
subprocesses: each starts its own Ray, whose workers see the keys set in the environment.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import string
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.fault_server import FaultServer
from tests.helpers import write_study
from valuelex.redact import REDACTED, Redactor
from valuelex.runner import RunContext, StageFailed, StageResult, run_stages
from valuelex.spec import load_study
from valuelex.store import OutputRoot, RunStore

REPO = Path(__file__).resolve().parent.parent
KEY_SHAPED = re.compile(rb"sk-[A-Za-z0-9_-]{16,}")
KEY_ENV = "VLX_ENDPOINT_AUTH"  # a name that does not say "key": only api_key_env tells it holds one
ONE_LINE = re.compile(r'^error: elicitation: all 4 rows failed \(4x "(?P<reason>[^\n]+)"\)$', re.MULTILINE)


def served(base_url: str, **options: object) -> dict:
    return {"name": "faulty", "source": "fault-model", "engine": "openai", "training": "aligned", "family": "test",
            "prompting": "chat", "options": {"base_url": base_url, "max_retries": 0, "request_timeout_s": 5.0,
                                             "api_key_env": KEY_ENV, **options}}


def random_secrets() -> dict[str, str]:
    return {KEY_ENV: f"sk-{secrets.token_urlsafe(24)}", "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
            "AWS_ACCESS_KEY_ID": "AKIA" + "".join(secrets.choice(string.ascii_uppercase) for _ in range(16))}


# --- the redactor ---------------------------------------------------------------------------------


def test_redactor_replaces_known_secrets_and_key_shaped_text() -> None:
    env = {"MY_ENDPOINT": "s3cr3t-value-123", "AWS_SECRET_ACCESS_KEY": "aws/secret+value", "HF_TOKEN": "hf_abcdefgh12",
           "HOME": "/root/home-dir", "SHORT_API_KEY": "EMPTY"}
    study = {"models": [{"options": {"api_key_env": "MY_ENDPOINT"}}],
             "evaluation": {"judge_model": {"options": {"api_key_env": "MY_ENDPOINT"}}}}
    redact = Redactor.from_spec(study, env)
    text = ("401 Incorrect API key provided: Bearer s3cr3t-value-123 (aws/secret+value, hf_abcdefgh12) "
            "sk-abcdefghijklmnop1234 AKIAABCDEFGHIJKLMNOP https://x/?api_key=0123456789abcdefXYZ "
            '"token": "abcdefghij0123456789" home /root/home-dir EMPTY')
    out = redact(text)
    for secret in ("s3cr3t-value-123", "aws/secret+value", "hf_abcdefgh12", "sk-abcdefghijklmnop1234",
                   "AKIAABCDEFGHIJKLMNOP", "0123456789abcdefXYZ", "abcdefghij0123456789"):
        assert secret not in out, (secret, out)
    assert out.startswith(f"401 Incorrect API key provided: Bearer {REDACTED} ({REDACTED}, {REDACTED})")
    assert "api_key=[redacted]" in out and "/root/home-dir EMPTY" in out  # not secrets: kept
    assert redact(None) is None and Redactor()("Bearer abcdefghijkl") == f"Bearer {REDACTED}"


def test_redactor_on_documents_and_tables() -> None:
    redact = Redactor(["topsecret-1234"])
    assert redact.document({"a": ["x topsecret-1234", 3, {"b": "topsecret-1234"}]}) == \
        {"a": [f"x {REDACTED}", 3, {"b": REDACTED}]}
    table = pa.table({"response": ["topsecret-1234", None], "error": [None, "echo: topsecret-1234"]})
    out = redact.table(table)
    assert out["error"].to_pylist() == [None, f"echo: {REDACTED}"]
    assert out["response"].to_pylist() == ["topsecret-1234", None]  # model output is data, left as it is
    assert out.schema == table.schema


# --- the runner records and redacts -----------------------------------------------------------------


@dataclass(frozen=True)
class FailingStage:
    name: str = "elicitation"
    echo: str = ""

    def uses_engines(self, study: object) -> bool:
        return False

    def run(self, ctx: RunContext) -> StageResult:
        raise StageFailed(f"elicitation: all 2 rows failed (2x \"401 {self.echo}\")",
                          StageResult({"rows_failed": 2, "note": f"echo {self.echo}"}))


def test_a_failed_stage_is_recorded_redacted_and_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = f"sk-{secrets.token_urlsafe(20)}"
    monkeypatch.setenv(KEY_ENV, key)
    study = load_study(write_study(tmp_path, models=[served("http://127.0.0.1:9/v1")]))
    store = RunStore(str(tmp_path / "run"))
    with pytest.raises(StageFailed, match=r"all 2 rows failed") as failed:
        run_stages(RunContext(study, store), [FailingStage(echo=key), FailingStage(name="never")])
    assert key not in str(failed.value) and REDACTED in str(failed.value)
    record = store.stage_record("elicitation")
    assert record["rows_failed"] == 2 and record["note"] == f"echo {REDACTED}" and REDACTED in record["failed"]
    assert key not in json.dumps(record) and store.stage_record("never") is None  # later stages do not run


# --- end to end: an endpoint that echoes the key ----------------------------------------------------

API_SCRIPT = """
import sys
from valuelex.api import report, run_study
from valuelex.errors import ValueLexError

try:
    run_study(sys.argv[1], out=sys.argv[2], stages=["elicitation"])
except ValueLexError as exc:
    print("failed:", exc)
print(report(sys.argv[2], sys.argv[3]))
"""


def python(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, env={**env, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=300, check=False)


def cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return python(["-m", "valuelex.cli", *args], env, cwd)


def every_byte(root: Path) -> dict[str, bytes]:
    """Each file under root as bytes; a Parquet file also decoded (compressed pages hide strings)."""
    found = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.suffix == ".parquet":
            data += json.dumps(pq.read_table(path).to_pylist(), default=str).encode()
        found[str(path)] = data
    return found


def test_an_echoed_key_is_written_nowhere(tmp_path: Path) -> None:
    keys = random_secrets()
    env = {**os.environ, **keys}
    leak = f"aws={keys['AWS_SECRET_ACCESS_KEY']} id={keys['AWS_ACCESS_KEY_ID']}"
    with FaultServer(always="401", echo=leak) as server:
        study = write_study(tmp_path, models=[served(server.base_url)], samples=1)
        api = python(["-c", API_SCRIPT, str(study), str(tmp_path / "api"), str(tmp_path / "api-report")], env, tmp_path)
        assert api.returncode == 0, api.stderr[-3000:]
        elicit = cli(["elicit", str(study), "--out", str(tmp_path / "cli")], env, tmp_path)
        report = cli(["report", str(tmp_path / "cli"), "--out", str(tmp_path / "cli-report")], env, tmp_path)
        assert server.authorizations == {f"Bearer {keys[KEY_ENV]}": 8}  # the key was sent: 4 rows, two runs
    assert "failed: elicitation: all 4 rows failed" in api.stdout, api.stdout[-3000:]
    assert elicit.returncode == 2 and ONE_LINE.search(elicit.stderr), elicit.stderr[-3000:]
    assert report.returncode == 0, report.stderr[-3000:]

    files = every_byte(tmp_path)
    files |= {f"{name} {stream}": text.encode() for name, done in (("api", api), ("elicit", elicit), ("report", report))
              for stream, text in (("stdout", done.stdout), ("stderr", done.stderr))}
    assert {"api-report/index.html", "cli-report/index.html", "cli/stages/elicitation.json"} <= \
        {str(Path(f).relative_to(tmp_path)) for f in files if f.startswith(str(tmp_path))}
    for name, value in keys.items():
        leaks = [f for f, data in files.items() if value.encode() in data]
        assert not leaks, f"{name} was written to {leaks}"
    leaks = {f: KEY_SHAPED.findall(data)[:3] for f, data in files.items() if KEY_SHAPED.search(data)}
    assert not leaks, f"key-shaped text in {leaks}"

    for out in ("api", "cli"):
        rows = OutputRoot(str(tmp_path / out)).table("elicitation").read().to_pylist()
        assert len(rows) == 4 and all(r["response"] is None for r in rows)
        for row in rows:
            assert f"Incorrect API key provided: Bearer {REDACTED}. aws={REDACTED} id={REDACTED}" in row["error"]
    for page in ("api-report", "cli-report"):
        assert f"Bearer {REDACTED}" in (tmp_path / page / "index.html").read_text()


# --- item 8: every row failed ---------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("fault", ["401", "refused"])
def test_a_stage_whose_rows_all_failed_exits_non_zero(tmp_path: Path, fault: str) -> None:
    env = {**os.environ, KEY_ENV: f"sk-{secrets.token_urlsafe(24)}"}
    out = tmp_path / "out"
    if fault == "401":
        with FaultServer(always="401") as server:
            study = write_study(tmp_path, models=[served(server.base_url)], samples=1)
            done = cli(["elicit", str(study), "--out", str(out)], env, tmp_path)
    else:
        study = write_study(tmp_path, models=[served(f"http://127.0.0.1:{closed_port()}/v1")], samples=1)
        done = cli(["elicit", str(study), "--out", str(out)], env, tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and done.stderr.count("error:") == 1, done.stderr[-3000:]
    line = ONE_LINE.search(done.stderr)
    assert line, done.stderr[-3000:]
    assert ("401" in line["reason"] and REDACTED in line["reason"]) if fault == "401" else \
        "APIConnectionError" in line["reason"]
    rows = OutputRoot(str(out)).table("elicitation").read().to_pylist()
    assert len(rows) == 4 and all(r["error"] and r["response"] is None for r in rows)  # failures are data
    record = RunStore(str(out)).stage_record("elicitation")
    assert record["rows_generated"] == record["rows_failed"] == 4 and record["failed"] in line[0]
