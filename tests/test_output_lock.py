"""Two writers on one output (issue 14, item 5): a lock on the output root, and Ray started one at a time.

The lock's rules are tested on a local folder and on S3 (moto's server); the end-to-end test runs two
`valuelex elicit` on one --out against the slow loopback fault server, in subprocesses.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.fault_server import FaultServer
from tests.helpers import write_study
from valuelex.cli import app
from valuelex.errors import EngineError
from valuelex.runner import RunContext, StageResult
from valuelex.spec import load_study
from valuelex.store import LockHeld, OutputLock, OutputRoot
from valuelex.store.leases import LocalLease

REPO = Path(__file__).resolve().parent.parent
REFUSED = re.compile(r"^(?P<out>\S+): being written by (?P<command>valuelex \w+) "
                     r"\(host (?P<host>\S+), pid (?P<pid>\d+)\) since (?P<since>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ); "
                     r"wait for it \(--wait SECONDS\) or stop it$")


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "s3":
        request.getfixturevalue("s3_endpoint")
        return f"s3://valuelex/lock-tests/{uuid.uuid4().hex}"
    return str(tmp_path / "out")


def stored(root: str) -> dict | None:
    return OutputRoot(root).read_json(".valuelex.lock")


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(done.stdout)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


# --- the lock itself, local and S3 -----------------------------------------------------------------


def test_a_second_holder_is_refused_until_the_first_lets_go(root: str) -> None:
    first = OutputLock(root, "valuelex elicit").acquire()
    document = stored(root)
    assert {"host", "pid", "command", "started", "expires"} <= set(document)
    assert document["pid"] == os.getpid() and document["command"] == "valuelex elicit"
    with pytest.raises(LockHeld) as refused:
        OutputLock(root, "valuelex run").acquire()
    match = REFUSED.match(str(refused.value))
    assert match, str(refused.value)
    assert match["out"] == root and match["host"] == document["host"] and match["since"] == document["started"]
    first.release()
    assert stored(root) is None
    with OutputLock(root, "valuelex run").acquire() as second:
        assert stored(root)["token"] == second.token
    assert stored(root) is None


def test_a_waiting_writer_gets_the_lock_when_the_first_lets_go(root: str) -> None:
    first = OutputLock(root, "valuelex elicit").acquire()
    with pytest.raises(LockHeld, match=r"still being written by valuelex elicit .* after waiting 0.3 s"):
        OutputLock(root, "valuelex run").acquire(wait=0.3, poll_s=0.1)
    threading.Timer(1.0, first.release).start()
    began = time.monotonic()
    second = OutputLock(root, "valuelex run").acquire(wait=30, poll_s=0.1)
    assert 0.8 < time.monotonic() - began < 10 and stored(root)["token"] == second.token
    second.release()


def test_a_dead_pid_of_this_host_is_stale_at_once_and_release_is_only_of_ones_own(root: str) -> None:
    dead = OutputLock(root, "valuelex elicit", pid=dead_pid()).acquire()
    dead._stop.set()  # as a killed process: no more refreshes, never released
    taker = OutputLock(root, "valuelex run").acquire()  # no wait: stale at once
    assert stored(root)["token"] == taker.token
    dead.release()  # the old holder lets go late: the new holder's lock stays
    assert stored(root)["token"] == taker.token
    assert not dead.refresh() and dead.lost is False  # it no longer holds anything to refresh
    taker.release()


def test_another_hosts_lock_is_stale_only_when_its_lease_expired(root: str) -> None:
    other = OutputLock(root, "valuelex elicit", host="other-host", pid=dead_pid(), lease_s=1.0, refresh_s=3600)
    other.acquire()
    with pytest.raises(LockHeld, match=r"host other-host"):  # its pid means nothing here: the lease counts
        OutputLock(root, "valuelex run").acquire()
    time.sleep(1.3)
    taker = OutputLock(root, "valuelex run").acquire()
    assert stored(root)["token"] == taker.token
    assert other.refresh() is False and other.lost  # the late holder learns it lost the lock
    other.release()
    assert stored(root)["token"] == taker.token
    taker.release()


def test_refreshing_keeps_a_lease_alive(root: str) -> None:
    holder = OutputLock(root, "valuelex elicit", host="other-host", lease_s=1.5, refresh_s=0.3).acquire()
    first_expiry = stored(root)["expires"]
    time.sleep(2.5)  # longer than the lease: alive only because the thread refreshed it
    with pytest.raises(LockHeld):
        OutputLock(root, "valuelex run").acquire()
    assert stored(root)["expires"] > first_expiry and stored(root)["token"] == holder.token
    holder.release()
    assert stored(root) is None


@pytest.mark.parametrize("stale", [False, True])
def test_of_many_writers_at_once_exactly_one_holds_it(root: str, stale: bool) -> None:
    if stale:  # the race of several writers taking over one stale lock
        OutputLock(root, "valuelex elicit", pid=dead_pid()).acquire()._stop.set()
    locks = [OutputLock(root, f"valuelex w{i}") for i in range(6)]
    barrier = threading.Barrier(len(locks))
    results: list[bool] = []

    def attempt(lock: OutputLock) -> None:
        barrier.wait()
        try:
            lock.acquire()
            results.append(True)
        except LockHeld:
            results.append(False)

    threads = [threading.Thread(target=attempt, args=(lock,)) for lock in locks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == [False] * 5 + [True]
    (winner,) = [lock for lock in locks if lock.held]
    assert stored(root)["token"] == winner.token
    winner.release()


def test_an_unreadable_local_lock_is_judged_by_its_age(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / ".valuelex.lock").write_bytes(b"\x00not json")
    with pytest.raises(LockHeld, match=r"being written by an unknown command \(host \?, pid \?\)"):
        OutputLock(str(out), "valuelex run").acquire()
    os.utime(out / ".valuelex.lock", (time.time() - 120, time.time() - 120))
    OutputLock(str(out), "valuelex run").acquire().release()
    assert list(out.iterdir()) == []


def test_folders_made_for_a_lock_go_when_nothing_was_written(tmp_path: Path) -> None:
    out = tmp_path / "runs" / "deep" / "out"
    lock = OutputLock(str(out), "valuelex elicit").acquire()
    assert out.is_dir()
    lock.release()
    assert list(tmp_path.iterdir()) == []  # a refused or failed run leaves no folder behind
    lock = OutputLock(str(out), "valuelex elicit").acquire()
    (out / "study.json").write_text("{}")
    lock.release()
    assert [p.name for p in out.iterdir()] == ["study.json"]


# --- writers through the API and the CLI ------------------------------------------------------------


@dataclass(frozen=True)
class RecordingStage:
    """A stage with no engine that notes whether the lock was held while it ran."""

    name: str = "counting"
    fail: bool = False

    def uses_engines(self, study: object) -> bool:
        return False

    def run(self, ctx: RunContext) -> StageResult:
        holder = ctx.store.root.read_json(".valuelex.lock")
        if self.fail:
            raise KeyboardInterrupt
        return StageResult({"rows": 3, "lock_command": holder and holder["command"]})


def test_run_study_holds_the_lock_from_before_study_json_to_the_end(root: str, tmp_path: Path) -> None:
    from valuelex.api import run_study

    study, out = load_study(write_study(tmp_path)), root
    with OutputLock(out, "valuelex elicit").acquire():
        with pytest.raises(LockHeld, match=r"being written by valuelex elicit"):
            run_study(study, out, [RecordingStage()])
        assert [i.base_name for i in OutputRoot(out).list_dir()] == [".valuelex.lock"]  # no study.json
    result = run_study(study, out, [RecordingStage()], command="valuelex construct")
    assert result.summary()["counting"]["lock_command"] == "valuelex construct"
    assert stored(out) is None and OutputRoot(out).exists("study.json")
    with pytest.raises(KeyboardInterrupt):
        run_study(study, out, [RecordingStage(fail=True)])
    assert stored(out) is None  # released on Ctrl-C too


@pytest.mark.parametrize("command", [["elicit", "{study}"], ["construct", "{study}"], ["evaluate", "{study}"],
                                     ["run", "{study}"], ["report", "{out}"],
                                     ["compare", "{out}", "--a", "x", "--b", "y"]])
def test_every_writing_command_is_refused_with_one_line_and_exit_2(tmp_path: Path, command: list[str]) -> None:
    study, out = write_study(tmp_path), tmp_path / "out"
    out.mkdir()
    args = [arg.format(study=study, out=out) for arg in command] + ([] if command[0] in ("report", "compare")
                                                                    else ["--out", str(out)])
    with OutputLock(str(out), "valuelex run").acquire():
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        line = result.output.strip()
        assert line.startswith("error: ") and REFUSED.match(line.removeprefix("error: ")), line
        assert "valuelex run" in line and "Traceback" not in result.output
        assert sorted(p.name for p in out.iterdir()) == [".valuelex.lock"]
        waited = CliRunner().invoke(app, [*args, "--wait", "0.2"])
        assert waited.exit_code == 2 and "after waiting 0.2 s" in waited.output, waited.output


def test_a_writer_killed_with_sigkill_leaves_a_lock_the_next_run_takes_over(tmp_path: Path) -> None:
    from valuelex.api import run_study

    out = str(tmp_path / "out")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from valuelex.store import OutputLock; "
         "OutputLock(sys.argv[1], 'valuelex elicit').acquire(); print('held', flush=True); time.sleep(300)", out],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld, match=rf"pid {holder.pid}\)"):
            run_study(load_study(write_study(tmp_path)), out, [RecordingStage()])
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    assert stored(out)["pid"] == holder.pid  # left behind
    result = run_study(load_study(write_study(tmp_path)), out, [RecordingStage()])
    assert result.summary()["counting"]["rows"] == 3 and stored(out) is None


# --- Ray started one at a time ----------------------------------------------------------------------


def test_ray_start_is_serialised_retried_and_a_failure_is_an_engine_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    from valuelex import runtime

    calls: list[bool] = []
    path = Path(tempfile.gettempdir()) / "valuelex-ray-init.lock"

    def fake_init(**kwargs: object) -> None:
        with open(path, "a") as handle:  # another process may not start Ray now
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                calls.append(False)
            except BlockingIOError:
                calls.append(True)
        if len(calls) == 1:
            raise ConnectionError("GCS did not start: address in use")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", fake_init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(runtime, "quiet_ray_data", lambda: None)
    monkeypatch.setattr(runtime.time, "sleep", lambda s: None)
    runtime.ensure_ray()
    assert calls == [True, True]  # retried once, both under the lock

    def broken(**kwargs: object) -> None:
        raise RuntimeError("Failed to connect to GCS")

    monkeypatch.setattr(ray, "init", broken)
    with pytest.raises(EngineError, match=r"cannot start a local Ray \(3 attempts\): RuntimeError: Failed to "
                                          r"connect to GCS; check `ray status`, or set RAY_ADDRESS"):
        runtime.ensure_ray()


# --- end to end: two `valuelex elicit` on one --out ---------------------------------------------------


def served(base_url: str) -> dict:
    return {"name": "slow", "source": "slow-model", "engine": "openai", "training": "aligned", "family": "test",
            "prompting": "chat", "options": {"base_url": base_url, "max_retries": 0, "request_timeout_s": 30.0}}


def test_two_elicits_on_one_output_refuse_or_wait_and_generate_no_row_twice(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def elicit(*extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "valuelex.cli", "elicit", str(study), "--out", str(out), *extra],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)

    with FaultServer(delay=4.0) as server:
        study = write_study(tmp_path, models=[served(server.base_url)], samples=1)
        first, waiting = elicit(), None
        try:
            wait_until(lambda: (out / ".valuelex.lock").exists() or first.poll() is not None, 60, "the first's lock")
            refused = subprocess.run([sys.executable, "-m", "valuelex.cli", "elicit", str(study), "--out", str(out)],
                                     cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
            assert first.poll() is None, "the first run ended before the second started: raise the server's delay"
            waiting = elicit("--wait", "300")
            first_out, first_err = first.communicate(timeout=180)
            wait_out, wait_err = waiting.communicate(timeout=180)
        finally:
            for proc in (first, waiting):
                if proc is not None and proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
        attempts = sum(server.attempts.values())

    assert refused.returncode == 2, refused.stderr[-3000:]
    line = refused.stderr.strip().splitlines()[-1]
    match = REFUSED.match(line.removeprefix("error: "))
    assert match and match["out"] == str(out) and match["command"] == "valuelex elicit", refused.stderr[-3000:]
    assert int(match["pid"]) == first.pid and "Traceback" not in refused.stderr
    assert first.returncode == 0, first_err[-3000:]
    assert waiting.returncode == 0, wait_err[-3000:]
    assert "being written by valuelex elicit" in wait_err  # it said it was waiting

    grid = 4  # 1 model x 2 configs x 2 prompts x 1 sample
    assert json.loads(first_out)["rows_generated"] == grid
    assert json.loads(wait_out)["rows_generated"] == 0 and json.loads(wait_out)["rows_already_stored"] == grid
    assert attempts == grid  # no row was asked for twice
    rows = OutputRoot(str(out)).table("elicitation").read_raw()
    assert rows.num_rows == grid and len(set(rows["row_id"].to_pylist())) == grid
    record = json.loads((out / "stages" / "elicitation.json").read_text())
    assert record["rows_generated"] == 0 and record["rows_already_stored"] == grid  # the last run's own counts
    assert not (out / ".valuelex.lock").exists()
    assert LocalLease(str(out / ".valuelex.lock")).read() is None
