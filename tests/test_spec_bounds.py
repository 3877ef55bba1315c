"""Every number of a study is bounded and finite: a huge M validates and plans at once, in little
memory, and a number above its bound fails validation with `file: field: message` (exit 2)."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import SMOLLM_MODEL, write_study
from valuelex.cli import app

ALL_PROMPTS = {"elicitation": "all", "stems": "all"}


def _model(**options: object) -> dict:
    return {**SMOLLM_MODEL, "options": {**SMOLLM_MODEL["options"], **options}}


def test_the_largest_samples_validates_and_plans_fast_in_bounded_memory(tmp_path: Path) -> None:
    path = write_study(tmp_path, samples=100_000, prompts=ALL_PROMPTS)
    for command in (["validate", str(path)], ["plan", str(path)]):
        tracemalloc.start()
        started = time.monotonic()
        result = CliRunner().invoke(app, command)
        seconds = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert result.exit_code == 0, result.output
        assert seconds < 5, (command, seconds)
        assert peak < 100 * 2**20, (command, peak)  # 15 x 2 x 1e5 x 2 = 6M rows: never built
    assert '"elicitation_rows": 6000000' in CliRunner().invoke(app, ["validate", str(path)]).output


TOO_BIG = {
    "samples": (dict(samples=100_001), "samples: Input should be less than or equal to 100000"),
    "samples 10**12": (dict(samples=10**12), "samples:"),
    "shard_rows": (dict(shard_rows=10**7), "shard_rows:"),
    "batch_size": (dict(models=[_model(batch_size=10**9)]), "models[0].options.batch_size:"),
    "concurrency": (dict(models=[_model(concurrency=10**6)]), "models[0].options.concurrency:"),
    "max_concurrency": (dict(models=[_model(max_concurrency=10**6)]), "models[0].options.max_concurrency:"),
    "max_retries": (dict(models=[_model(max_retries=1000)]), "models[0].options.max_retries:"),
    "infinite timeout": (dict(models=[_model(request_timeout_s=float("inf"))]),
                         "models[0].options.request_timeout_s: Input should be a finite number"),
    "nan timeout": (dict(models=[_model(request_timeout_s=float("nan"))]), "models[0].options.request_timeout_s:"),
    "huge timeout": (dict(models=[_model(request_timeout_s=1e9)]), "models[0].options.request_timeout_s:"),
    "infinite qps": (dict(models=[_model(max_qps=float("inf"))]), "models[0].options.max_qps:"),
    "infinite size": (dict(models=[{**SMOLLM_MODEL, "size_b": float("inf")}]), "models[0].size_b:"),
    "huge size": (dict(models=[{**SMOLLM_MODEL, "size_b": 1e300}]), "models[0].size_b:"),
}


@pytest.mark.parametrize("case", sorted(TOO_BIG))
def test_a_number_above_its_bound_fails_validation(case: str, tmp_path: Path) -> None:
    overrides, expected = TOO_BIG[case]
    path = write_study(tmp_path, **overrides)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}: " in result.output and expected in result.output, result.output
