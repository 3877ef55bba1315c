"""The engine interface without a model: request rows in, result Tables out as the engine finishes
them, against the OpenAI-compatible engine and the fault server; and a static check that Ray Data
stays inside `valuelex.engines`."""

from __future__ import annotations

import ast
import itertools
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.fault_server import FaultServer
from valuelex.engines.base import RESULT_COLUMNS, build_engine, request_row
from valuelex.spec import ModelSpec

PACKAGE = Path(__file__).resolve().parents[1] / "valuelex"
# (file, module) imports of Ray Data outside the engines that are allowed, each with its reason
ALLOWED_RAY_DATA = {("runtime.py", "ray.data")}  # ensure_ray quiets Ray Data's progress logging once
HIDDEN_NAMES = {"request_dataset", "result_batches"}


def served(base_url: str) -> ModelSpec:
    return ModelSpec.model_validate({
        "name": "faulty", "source": "fault-model", "engine": "openai", "training": "aligned", "family": "test",
        "prompting": "chat", "options": {"base_url": base_url, "max_retries": 0, "request_timeout_s": 30.0,
                                         "max_concurrency": 4, "batch_size": 4},
    })


def test_request_row_is_the_engine_columns_then_the_carried_ones() -> None:
    row = request_row("r1", "I value", prompting="chat", temperature=1, top_p=1, max_tokens=8.0, seed=3, model="m")
    assert row == {"row_id": "r1", "prompt": "I value", "prompting": "chat", "temperature": 1.0, "top_p": 1.0,
                   "max_tokens": 8, "seed": 3, "model": "m"}
    assert type(row["temperature"]) is float and type(row["max_tokens"]) is int and "json_schema" not in row
    assert request_row("r", "p", prompting="completion", temperature=0, top_p=1, max_tokens=1, seed=0,
                       json_schema="{}")["json_schema"] == "{}"
    with pytest.raises(ValueError, match="prompting"):
        request_row("r", "p", prompting="instruct", temperature=0, top_p=1, max_tokens=1, seed=0)
    with pytest.raises(TypeError):  # a carried column cannot overwrite one the engine reads
        request_row("r", "p", prompting="chat", temperature=0, top_p=1, max_tokens=1, seed=0, **{"row_id": "x"})


def test_no_requests_start_no_engine() -> None:
    engine = build_engine(served("http://127.0.0.1:9/v1"), use_gpu=None)
    assert list(engine.generate([], batch_rows=4)) == []


class GatedServer(FaultServer):
    """Holds every request after the first `open_for` until `gate` is set: while it is shut, the
    engine's second batch cannot finish, so a first batch that reaches the caller was not held back."""

    def __init__(self, open_for: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.open_for, self.started, self.gate = open_for, 0, threading.Event()

    def answer(self, handler: Any, body: dict, prompt: str, attempt: int, authorization: str = "") -> None:
        with self.lock:
            self.started += 1
            held = self.started > self.open_for
        if held:
            self.gate.wait(60)
        super().answer(handler, body, prompt, attempt, authorization)


def test_every_request_comes_back_once_in_batches_as_they_finish(ray_local: None) -> None:
    """24 rows, 6 engine batches of 4: six Tables, the first handed over while the second engine
    batch is still waiting; the rows that fail are rows with `error` set, carried columns intact."""
    prompts = [f"prompt {i}" for i in range(24)]
    rows = [request_row(f"r{i}", p, prompting="chat", temperature=0.7, top_p=0.9, max_tokens=16, seed=i,
                        model="faulty", sample=i) for i, p in enumerate(prompts)]
    batches: list[pa.Table] = []
    with GatedServer(open_for=4, rules={p: "500:always" for p in prompts[::5]}) as server:
        for batch in build_engine(served(server.base_url), use_gpu=None).generate(rows, batch_rows=4):
            if not batches:
                assert not server.gate.is_set() and server.started <= 8  # one batch done, one held
                server.gate.set()
            batches.append(batch)
    assert len(batches) == 6 and all(isinstance(b, pa.Table) and b.num_rows == 4 for b in batches)
    out = pa.concat_tables(batches, promote_options="default").to_pylist()
    assert sorted(r["row_id"] for r in out) == sorted(r["row_id"] for r in rows)  # each once
    assert set(out[0]) >= set(rows[0]) | set(RESULT_COLUMNS)
    for result in out:
        i = int(result["row_id"][1:])
        assert result["sample"] == i and result["prompt"] == prompts[i] and result["model"] == "faulty"
        if i % 5 == 0:
            assert "500" in result["error"] and result["response"] is None
        else:  # a held request was answered, not timed out by a caller that waited for the next batch
            assert result["error"] is None and result["response"].startswith(f"values for prompt {i}"), result
    assert server.started == len(rows)  # max_retries 0: one request per row


def _offences(path: Path) -> list[str]:
    where = path.relative_to(PACKAGE).as_posix()
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found += [f"{where}:{node.lineno} imports {a.name}" for a in node.names if a.name in HIDDEN_NAMES]
        elif isinstance(node, ast.Attribute):
            if node.attr in HIDDEN_NAMES:
                found.append(f"{where}:{node.lineno} uses {node.attr}")
            if node.attr == "data" and isinstance(node.value, ast.Name) and node.value.id == "ray":
                found.append(f"{where}:{node.lineno} uses ray.data")
        elif isinstance(node, ast.Name) and node.id in HIDDEN_NAMES:
            found.append(f"{where}:{node.lineno} uses {node.id}")
        for module in modules:
            if (module == "ray.data" or module.startswith("ray.data.")) and (where, "ray.data") not in ALLOWED_RAY_DATA:
                found.append(f"{where}:{node.lineno} imports {module}")
    return found


def test_ray_data_stays_inside_the_engines() -> None:
    """Callers hand rows to `Engine.generate`; Ray Data and its workarounds are the engines' business."""
    files = [p for p in PACKAGE.rglob("*.py") if not p.relative_to(PACKAGE).as_posix().startswith("engines/")]
    assert len(files) > 10
    offences = [o for p in sorted(files) for o in _offences(p)]
    assert not offences, offences


def test_a_served_engine_gets_the_offline_engines_arguments_as_flags() -> None:
    """`valuelex.engines.vllm_server`: the api_server's command line says what the pipeline gives vLLM."""
    from valuelex.engines.vllm import VLLMEngine
    from valuelex.engines.vllm_server import server_arguments, serves_across_passes
    from valuelex.spec import ModelSpec

    model = ModelSpec(name="judge", source="org/judge", training="aligned", family="f", prompting="chat",
                      options={"max_model_len": 2048, "engine_kwargs": {"limit_mm_per_prompt": {"image": 0}}})
    kwargs, env = VLLMEngine(model).engine_settings(use_gpu=False)
    args = server_arguments("/models/judge", "judge", kwargs)
    assert args[:4] == ["--model", "/models/judge", "--served-model-name", "judge"]
    pairs = dict(itertools.pairwise(args))
    assert pairs["--max-model-len"] == "2048" and pairs["--dtype"] == "float32"
    assert "--enforce-eager" in args and "--no-enable-chunked-prefill" in args  # True / False flags
    assert pairs["--limit-mm-per-prompt"] == '{"image": 0}'
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "auto"
    assert serves_across_passes(model)
    assert not serves_across_passes(model.model_copy(update={"options": model.options.model_copy(
        update={"concurrency": 2})}))
