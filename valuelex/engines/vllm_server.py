"""A vLLM model served once for many engine passes: the LLM judge's engine across retry rounds.

The offline pipeline (`valuelex.engines.vllm`, ray.data.llm) starts its engine actors for every
`generate` call: right for a respondent model, whose rows all go in one pass, but the judge asks
again for the answers it could not use (``max_judge_retries`` rounds, then the position check),
and each round would pay an engine start (minutes for a large judge on GPUs). Here one
OpenAI-compatible vLLM server (`vllm.entrypoints.openai.api_server`) runs in a Ray actor placed
like the offline engine (its tensor-parallel GPUs, or one CPU on a CPU-only Ray) with the same
engine arguments (`VLLMEngine.engine_settings`); every pass streams its rows through
`valuelex.engines.openai_compat` (a Ray Data pipeline of concurrent HTTP requests with bounded
retries) to it, until `close()`. Locally the server listens on 127.0.0.1 only; on a cluster
(``RAY_ADDRESS``) on its node's address, for the pipeline's workers on other nodes.

One replica, no pipeline parallelism: a judge with ``concurrency`` > 1 or
``pipeline_parallel_size`` > 1 keeps the offline pipeline (`serves_across_passes`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

from valuelex.engines.vllm import VLLMEngine, cluster_has_gpus
from valuelex.errors import EngineError
from valuelex.sources import materialize
from valuelex.spec import ModelSpec

START_TIMEOUT_S = 1800.0  # weights of a 70B model from object storage, profiling, CUDA graphs
REQUEST_TIMEOUT_S = 900.0  # one judge answer on a busy server (a small CPU server answers in seconds)


def serves_across_passes(model: ModelSpec) -> bool:
    """Whether `ServedVLLMEngine` can serve this model: a vLLM model of one replica without
    pipeline parallelism (the server's tensor-parallel workers share one node)."""
    opts = model.options
    return model.engine == "vllm" and opts.concurrency == 1 and opts.pipeline_parallel_size == 1


def server_arguments(model_path: str, served_name: str, engine_kwargs: dict[str, Any]) -> list[str]:
    """The api_server's command line for these engine arguments (host and port are the actor's):
    ``name=value`` -> ``--name value``, True -> ``--name``, False -> ``--no-name`` (vLLM's boolean
    flags), dicts and lists as JSON."""
    import json

    args = ["--model", model_path, "--served-model-name", served_name]
    for key, value in engine_kwargs.items():
        if key == "task_type":  # a ray.data.llm setting, not an engine argument
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is False:
            args.append("--no-" + key.replace("_", "-"))
        elif value is not None:
            args += [flag, json.dumps(value) if isinstance(value, dict | list) else str(value)]
    return args


class VLLMServer:
    """Ray actor: one api_server subprocess, ended with the actor (SIGTERM on the actor's death)."""

    def __init__(self, args: list[str], local: bool):
        import ray

        self.host = "127.0.0.1" if local else ray.util.get_node_ip_address()
        with socket.socket() as sock:
            sock.bind((self.host, 0))
            self.port = sock.getsockname()[1]
        handle, self.log = tempfile.mkstemp(prefix="valuelex-vllm-server-", suffix=".log")
        command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", *args,
                   "--host", self.host, "--port", str(self.port)]
        with os.fdopen(handle, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            preexec_fn=_die_with_parent)

    def url(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """The server's /v1 URL once it answers; an error with the log's tail if it dies or never does."""
        base = f"http://{self.host}:{self.port}/v1"
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise EngineError(f"vLLM server exited ({self.process.returncode}) before it served:\n{self._tail()}")
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=5) as reply:
                    if reply.status == 200:
                        return base
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise EngineError(f"vLLM server not serving after {timeout_s:g} s:\n{self._tail()}")
            time.sleep(1.0)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def _tail(self) -> str:
        with open(self.log, errors="replace") as log:
            return log.read()[-3000:]


def _die_with_parent() -> None:
    """In the server's child process: SIGTERM when the actor's process dies (a killed run, `ray.kill`)."""
    import ctypes
    import signal

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ServedVLLMEngine:
    """The engine interface over one vLLM server kept up across `generate` calls (see the module).

    `starts` counts server starts (1 per run however many passes); `close()` ends the server.
    """

    name = "vllm"
    local_engine = True

    def __init__(self, model: ModelSpec, *, use_gpu: bool | None = None):
        if not serves_across_passes(model):
            raise EngineError(f"model {model.name}: a served engine needs concurrency 1 and no pipeline parallelism")
        self.model = model
        self.use_gpu = use_gpu
        self.starts = 0
        self._server: Any = None
        self._client: Any = None

    def generate(self, requests: Iterable[dict[str, Any]], *, batch_rows: int) -> Iterator[pa.Table]:
        """Result batches as `OpenAIEngine.generate` makes them; the server starts on the first row."""
        rows = iter(requests)
        first = next(rows, None)
        if first is None:
            return
        yield from self._ensure_client().generate(itertools.chain([first], rows), batch_rows=batch_rows)

    def _ensure_client(self) -> Any:
        if self._client is not None:
            return self._client
        import ray

        from valuelex.engines.openai_compat import OpenAIEngine
        from valuelex.runtime import ensure_ray

        ensure_ray()
        use_gpu = cluster_has_gpus() if self.use_gpu is None else self.use_gpu
        engine_kwargs, env = VLLMEngine(self.model, use_gpu=use_gpu).engine_settings(use_gpu)
        opts = self.model.options
        args = server_arguments(materialize(self.model.source), self.model.name, engine_kwargs)
        resources: dict[str, Any] = {"num_gpus": opts.tensor_parallel_size} if use_gpu else {"num_cpus": 1}
        if use_gpu and opts.accelerator_type:
            resources["accelerator_type"] = opts.accelerator_type
        actor = ray.remote(VLLMServer).options(runtime_env={"env_vars": env}, **resources)
        self._server = actor.remote(args, local=not os.environ.get("RAY_ADDRESS"))
        self.starts += 1
        try:
            url = ray.get(self._server.url.remote())
        except ray.exceptions.RayTaskError as exc:
            self.close()
            raise EngineError(f"model {self.model.name}: {exc.cause}") from None
        served = self.model.model_copy(update={
            "engine": "openai", "source": self.model.name,
            "options": opts.model_copy(update={
                "base_url": url, "api_key_env": None, "max_concurrency": max(8, opts.batch_size),
                "request_timeout_s": REQUEST_TIMEOUT_S, "max_retries": 2,
                "reasoning": "auto" if opts.reasoning != "none" else "none",
            }),
        })
        self._client = OpenAIEngine(served)
        return self._client

    def close(self) -> None:
        """End the server (idempotent); the next `generate` would start a new one."""
        if self._server is None:
            return
        import ray

        server, self._server, self._client = self._server, None, None
        with contextlib.suppress(Exception):  # the actor may be gone (a killed node): the kill is what counts
            ray.get(server.stop.remote(), timeout=90)
        ray.kill(server)
