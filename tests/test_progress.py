"""Progress while an engine works, and quiet terminals (issue 19, items 1-2).

`valuelex elicit` runs in a subprocess, piped and under a pty, against the slow loopback fault server:
8 rows in two engine batches of 4, one request at a time, 0.6 s each, so the stage lasts ~5 s and the
second batch is still in flight for seconds after the first has landed. Library noise is made on
purpose inside the stage (the engine's `generate` is wrapped by a driver script): a Ray and a vLLM
logger warning, a Python warning, a tqdm bar and a child process writing to its stderr, i.e. every
route by which Ray's, vLLM's and transformers' output reaches a terminal. Without -v none of it may
reach the terminal and all of it must be in ``OUT/logs/elicitation.log``; a ValueLex warning must
reach the terminal; with -v the noise is shown.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from tests.fault_server import FaultServer
from tests.helpers import write_study

REPO = Path(__file__).resolve().parent.parent
NOISE = (
    "Calling ray.init() again",
    "No cloud storage mirror configured",
    "SIGTERM handler is not set",
    "token authentication",
    "GGUF conversion bar",
    "child process stderr",
)
DRIVER = """
import logging, subprocess, sys, warnings
from tqdm import tqdm
from valuelex.engines import openai_compat

original = openai_compat.OpenAIEngine.generate

def noisy(self, requests, *, batch_rows):
    logging.getLogger("ray").warning("Calling ray.init() again after it has already been called.")
    logging.getLogger("vllm").warning("No cloud storage mirror configured")
    warnings.warn("SIGTERM handler is not set because current thread is not the main thread")
    print("token authentication is disabled", file=sys.stderr, flush=True)
    for _ in tqdm(range(3), desc="GGUF conversion bar"):
        pass
    subprocess.run([sys.executable, "-c", "import sys; print('child process stderr', file=sys.stderr)"])
    logging.getLogger("valuelex.engines").warning("endpoint slow: check the server")
    yield from original(self, requests, batch_rows=batch_rows)

openai_compat.OpenAIEngine.generate = noisy
from valuelex.cli import main
sys.argv = ["valuelex", *sys.argv[1:]]
main()
"""
LINE = re.compile(r"(?P<done>\d+)/8 rows?.*?(?P<rate>\d+\.\d\d) rows/s.*?tok/s.*?ETA (?P<eta>\?|\d+:\d\d)")


@pytest.fixture(scope="module")
def server() -> FaultServer:
    with FaultServer(delay=0.6) as fault:
        yield fault


def run_elicit(tmp_path: Path, server: FaultServer, *, tty: bool, verbose: bool = False) -> tuple[str, Path]:
    model = {
        "name": "slow",
        "source": "slow-model",
        "engine": "openai",
        "training": "aligned",
        "family": "test",
        "prompting": "chat",
        "options": {"base_url": server.base_url, "max_retries": 0, "batch_size": 4, "max_concurrency": 1},
    }
    study = write_study(
        tmp_path, models=[model], samples=2, prompts={"elicitation": ["q01", "q09"], "stems": ["s01"]}, shard_rows=4
    )
    out = tmp_path / "out"
    args = [sys.executable, "-c", DRIVER, *(["-v"] if verbose else []), "elicit", str(study), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "VALUELEX_PROGRESS_S": "0.5", "COLUMNS": "160"}
    if not tty:
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stderr, out
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a 160-column terminal
    proc = subprocess.Popen(args, env=env, stdin=secondary, stdout=secondary, stderr=secondary, close_fds=True)
    os.close(secondary)
    chunks = []
    while True:
        ready, _, _ = select.select([primary], [], [], 180)
        assert ready, "no output from the run for 180 s"
        try:
            data = os.read(primary, 65536)
        except OSError:  # EIO: the child closed the pty
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(60) == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    os.close(primary)
    return b"".join(chunks).decode(errors="replace"), out


def updates(text: str) -> list[re.Match[str]]:
    return [m for part in re.split(r"[\r\n]", text) if (m := LINE.search(part))]


def check_progress(seen: list[re.Match[str]]) -> None:
    halfway = [m for m in seen if m["done"] == "4" and m["eta"] != "?" and float(m["rate"]) > 0]
    assert len(halfway) >= 3, [m.group(0) for m in seen]  # several updates while the second batch works
    assert seen[-1]["done"] == "8"


def check_quiet(terminal: str, out: Path) -> None:
    log = (out / "logs" / "elicitation.log").read_text()
    for noise in NOISE:
        assert noise not in terminal, noise
        assert noise in log, noise
    assert "endpoint slow: check the server" in terminal  # ValueLex's own warning is shown
    assert "WARNING valuelex.engines: endpoint slow: check the server" in log  # and kept in the log


def test_piped_run_prints_a_plain_progress_line_every_interval_and_keeps_library_output_in_the_log(
    tmp_path: Path, server: FaultServer
) -> None:
    terminal, out = run_elicit(tmp_path, server, tty=False)
    seen = updates(terminal)
    check_progress(seen)
    assert all("\r" not in line for line in terminal.splitlines())
    check_quiet(terminal, out)


def test_tty_run_shows_a_live_line_that_moves_while_the_engine_works(tmp_path: Path, server: FaultServer) -> None:
    terminal, out = run_elicit(tmp_path, server, tty=True)
    assert "\r" in terminal  # one line rewritten in place
    check_progress(updates(terminal))
    check_quiet(terminal, out)


def test_verbose_shows_the_libraries_output(tmp_path: Path, server: FaultServer) -> None:
    terminal, out = run_elicit(tmp_path, server, tty=False, verbose=True)
    assert all(noise in terminal for noise in NOISE)
    assert not (out / "logs" / "elicitation.log").exists()
