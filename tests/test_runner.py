"""One stage interface: the runner records every stage, and the placement is decided once, before
anything is written, for respondents, the LLM judge and the namer alike."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import SMOLLM_MODEL, write_study
from valuelex.api import run_study
from valuelex.errors import EngineError
from valuelex.runner import RunContext, StageResult, prepare, run_stages
from valuelex.spec import load_study
from valuelex.store import RunStore

REPO = Path(__file__).resolve().parent.parent
API_MODEL = {"name": "api", "source": "api", "engine": "openai", "training": "aligned", "family": "f",
             "prompting": "chat", "options": {"base_url": "http://127.0.0.1:9/v1"}}


@dataclass(frozen=True)
class CountingStage:
    name: str = "counting"

    def uses_engines(self, study: object) -> bool:
        return False

    def run(self, ctx: RunContext) -> StageResult:
        return StageResult({"rows": 3}, parts={"inner": {"started": 0.0, "rows": 1}})


def test_the_runner_records_every_stage_and_its_parts(tmp_path: Path) -> None:
    study = load_study(write_study(tmp_path))
    store = RunStore(str(tmp_path / "run"))
    ctx = prepare(study, store, [CountingStage()])
    assert ctx.use_gpu is None and ctx.waves is None  # no engine: no Ray, no placement
    assert store.study() == study
    results = run_stages(ctx, [CountingStage()])
    assert results["counting"].summary == {"rows": 3}
    record, inner = store.stage_record("counting"), store.stage_record("inner")
    assert record["rows"] == 3 and record["seconds"] >= 0 and record["versions"]["valuelex"]
    assert inner["rows"] == 1 and inner["started"] == "1970-01-01T00:00:00Z"


@pytest.mark.parametrize("case", ["judge", "namer"])
def test_require_gpu_refuses_judge_and_namer_on_a_cpu_cluster(tmp_path: Path, ray_local: None, case: str) -> None:
    """Respondents through an API need no GPU; the vLLM judge (or namer) does, and is refused before writing."""
    if case == "judge":
        study = load_study(write_study(tmp_path, models=[API_MODEL], evaluation={"judge": "llm",
                                       "judge_model": {**SMOLLM_MODEL, "name": "judge"}}))
        stages = ["evaluation"]
    else:
        study = load_study(write_study(tmp_path, models=[API_MODEL, {**SMOLLM_MODEL, "name": "namer"}],
                                       construction={"naming": "namer"}))
        stages = ["construction"]
    out = tmp_path / "run"
    with pytest.raises(EngineError, match=r"(judge|namer) needs .*GPUs are required"):
        run_study(study, str(out), stages, require_gpu=True)
    assert not out.exists()
    ctx = prepare(study, RunStore(str(out)), [])  # without the demand: decided once, CPU for every engine
    assert ctx.use_gpu is None
    from valuelex.api import stage

    ctx = prepare(study, RunStore(str(out)), [stage(stages[0])])
    assert ctx.use_gpu is False and [m.name for wave in ctx.waves for m in wave] == [m.name for m in study.models]


def test_evaluate_require_gpu_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    path = write_study(tmp_path)
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "valuelex.cli", "evaluate", str(path), "--require-gpu",
                             "--out", str(out)], capture_output=True, text=True, cwd=REPO, check=False,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "GPUs are required" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()
