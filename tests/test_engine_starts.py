"""One engine start per model for both generation grids (issue 20.1), counted on a real local Ray.

The study's vLLM models run on `valuelex.engines.echo.EchoEngine` (a Ray Data pipeline that counts its
starts as vLLM's does), so the test measures the run's plumbing, not a model: elicitation carries
the completion rows through the same engine pass, each row lands in its own stage's table once,
and `stages/<stage>.json` records the starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import study_dict
from valuelex import grid
from valuelex.api import run_study
from valuelex.engines import base
from valuelex.spec import Study
from valuelex.store import OutputRoot


@pytest.fixture
def echo_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(base._REGISTRY, "vllm", "valuelex.engines.echo:EchoEngine")


def _run(study: Study, out: Path) -> dict:
    return run_study(study, str(out), ["elicitation", "evaluation"], systems=["valuelex"]).summary()


def _assert_every_row_once(study: Study, out: Path) -> None:
    root = OutputRoot(str(out))
    for stage, table in (("elicitation", "elicitation"), ("completion", "completions")):
        ids = root.table(table).read().column("row_id").to_pylist()
        assert len(ids) == len(set(ids)) == grid.count(study, stage), stage
        assert set(ids) == {r["row_id"] for m in study.models for r in grid.requests(study, stage, m)}, stage


def test_elicitation_and_completion_share_each_models_engine(echo_engines: None, tmp_path: Path) -> None:
    study = Study.model_validate(study_dict())
    out = tmp_path / "run"
    summary = _run(study, out)
    models = [m.name for m in study.models]
    assert summary["elicitation"]["engine_starts"] == len(models)  # 2, where each grid starting its own made 4
    assert summary["elicitation"]["engine_starts_per_model"] == dict.fromkeys(models, 1)
    _assert_every_row_once(study, out)
    root = OutputRoot(str(out))
    completion = root.read_json("stages/completion.json")
    assert completion["generated_with"] == "elicitation"
    assert completion["rows_generated"] == grid.count(study, "completion") and completion["engine_starts"] == 0
    assert summary["evaluation"]["judge_engine_starts"] == 0  # the embedding judge starts no engine
    assert summary["evaluation"]["systems"]["valuelex"]["judged"] == grid.count(study, "completion")

    again = _run(study, out)  # everything stored: no engine starts; each record counts its own run
    assert again["elicitation"]["engine_starts"] == 0 and again["elicitation"]["rows_generated"] == 0
    resumed = root.read_json("stages/completion.json")
    assert resumed["rows_generated"] == 0 and resumed["generated_with"] == "elicitation"
    _assert_every_row_once(study, out)


def test_a_budget_cap_keeps_one_engine_pass_per_grid(echo_engines: None, tmp_path: Path) -> None:
    """Under a cap each stage's ledger reserves for its own requests, so the grids do not share."""
    study = Study.model_validate(study_dict(budget={"max_tokens": 10**9}))
    out = tmp_path / "capped"
    summary = _run(study, out)
    assert summary["elicitation"]["engine_starts"] == len(study.models)
    completion = OutputRoot(str(out)).read_json("stages/completion.json")
    assert "generated_with" not in completion and completion["engine_starts"] == len(study.models)
    _assert_every_row_once(study, out)
