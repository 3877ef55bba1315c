"""The README's main command end to end: `valuelex run configs/local.yaml`, offline, on the packaged
small models — elicitation, construction, evaluation with the embedding judge, and the report,
which must open in headless Chromium with every figure and no error. The slowest test (minutes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.test_report import CHROMIUM, CONSTRUCTION_FIGURES, EVALUATION_FIGURES, Elements, _chromium
from valuelex import grid
from valuelex.evaluate.systems import load_value_system
from valuelex.spec import load_study
from valuelex.store import OutputRoot

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent
STUDY = REPO / "configs" / "local.yaml"
BASELINE = REPO / "tests" / "data" / "regression"


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("local") / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "valuelex.cli", "run", str(STUDY), "--out", str(out), "--json"],
        env=env, capture_output=True, text=True, timeout=3000, check=False, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return out, json.loads(result.stdout)


def test_every_stage_wrote_its_output(local_run: tuple[Path, dict]) -> None:
    out, summary = local_run
    study = load_study(STUDY)
    root = OutputRoot(str(out))
    assert root.table("elicitation").read().num_rows == grid.count(study, "elicitation") == 180
    assert root.table("completions").read().num_rows == grid.count(study, "completion") == 600
    assert summary["elicitation"]["rows_failed"] == 0
    for stage in ("elicitation", "completion", "construction", "evaluation"):
        record = root.read_json(f"stages/{stage}.json")
        assert record is not None and record["seconds"] > 0 and record["versions"]["ray"] == "2.60.0", stage
    # one vLLM engine start per model for both grids (issue 20.1): 2 where each grid starting its own made 4
    assert summary["elicitation"]["engine_starts_per_model"] == {m.name: 1 for m in study.models}
    completion = root.read_json("stages/completion.json")
    assert completion["generated_with"] == "elicitation" and completion["engine_starts"] == 0


def test_construction_made_a_value_system_the_evaluation_used(local_run: tuple[Path, dict]) -> None:
    out, summary = local_run
    taxonomy = load_value_system(out / "taxonomy.json")
    assert len(taxonomy.dimensions) == summary["construction"]["k"] >= 2
    assert all(len(d.subdimensions) == 2 for d in taxonomy.dimensions)
    scores = pd.read_parquet(out / "scores.parquet")
    assert {"valuelex", "schwartz", "mft", taxonomy.name} <= set(scores["system"])


def test_scores_follow_eq4_with_intervals(local_run: tuple[Path, dict]) -> None:
    out, _ = local_run
    scores = pd.read_parquet(out / "scores.parquet")
    assert set(scores["model"]) == {"smollm2-135m-instruct", "gemma3-270m"}
    valid = scores.dropna(subset=["w"])
    assert ((valid["w"] >= 0) & (valid["w"] <= 1)).all()
    assert ((valid["ci_low"] <= valid["w"] + 1e-9) & (valid["w"] <= valid["ci_high"] + 1e-9)).all()
    valuelex = scores[scores["system"] == "valuelex"]
    assert {"Competence", "Character", "Integrity"} <= set(valuelex["dimension"])
    assert (valuelex["n"] > 0).all()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed (apt-get install -y chromium)")
def test_report_opens_in_chromium_with_every_figure(local_run: tuple[Path, dict], tmp_path: Path) -> None:
    out, summary = local_run
    index = out / "report" / "index.html"
    assert summary["report"]["index"] == str(index) and index.exists()
    dom = _chromium(tmp_path / "profile", "--enable-logging=stderr", "--v=0", "--dump-dom", index.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert not [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    page = Elements(dom.stdout)
    # two models give no size trend with a CI: the report says so instead of drawing a line
    expected = set(CONSTRUCTION_FIGURES + EVALUATION_FIGURES) - {"fig-size-trend"}
    assert expected <= set(page.ids("img")) and "fig-size-trend" not in page.ids("img")
    assert "notice-size-trend-missing" in page.ids("div")
    assert page.count("script") == 0
    shot = tmp_path / "local-report.png"
    result = _chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,3000", index.as_uri())
    assert result.returncode == 0 and shot.stat().st_size > 50_000


def test_compare_the_two_local_models(local_run: tuple[Path, dict], tmp_path: Path) -> None:
    """Issue 9 on real output: aligned chat model minus base model, per dimension, with the CLI too."""
    import numpy as np

    from valuelex.compare import compare
    from valuelex.report.stage import build_report

    out, _ = local_run
    frame = compare(str(out), "gemma3-270m", "smollm2-135m-instruct", system="valuelex")
    assert (out / "comparisons" / "gemma3-270m__vs__smollm2-135m-instruct__valuelex.parquet").exists()
    w = pd.read_parquet(out / "scores.parquet").query("system == 'valuelex'").set_index(["model", "key"])["w"]
    np.testing.assert_allclose(frame["w_a"], w.loc["gemma3-270m"].loc[frame["key"]])
    np.testing.assert_allclose(frame["w_b"], w.loc["smollm2-135m-instruct"].loc[frame["key"]])
    assert (frame["n_stems"] == 50).all() and (frame["p_adj"] >= frame["p"]).all()
    assert ((frame["ci_low"] <= frame["diff"]) & (frame["diff"] <= frame["ci_high"])).all()
    cli = subprocess.run([sys.executable, "-m", "valuelex.cli", "compare", str(out), "--a", "gemma3-270m",
                          "--b", "smollm2-135m-instruct", "--system", "mft"], capture_output=True, text=True,
                         cwd=REPO, check=False)
    assert cli.returncode == 0 and "M needed" in cli.stdout, cli.stderr
    assert build_report(str(out), str(tmp_path / "report"))["sections"]["comparison"] == "ok"


# --- regression: the refactored pipeline reproduces the pre-refactor outputs exactly ------------

def test_generation_reproduces_the_baseline(local_run: tuple[Path, dict]) -> None:
    """Same row_ids and answers as the baseline run (tests/data/regression, see its README)."""
    out, _ = local_run
    for table in ("elicitation", "completions"):
        now = OutputRoot(str(out)).table(table).read().to_pandas().set_index("row_id").sort_index()
        then = pd.read_parquet(BASELINE / f"{table}.parquet").set_index("row_id").sort_index()
        assert list(now.index) == list(then.index), table
        for column in ("seed", "prompt", "response", "n_completion_tokens", "finish_reason"):
            assert now[column].tolist() == then[column].tolist(), f"{table}.{column}"


def test_construction_evaluation_and_report_reproduce_the_baseline(local_run: tuple[Path, dict]) -> None:
    out, summary = local_run
    assert_matches_baseline(out, summary["report"])


INVARIANCE_FIT_STATISTICS = ("chi2", "cfi", "rmsea", "delta_cfi", "delta_rmsea")


def assert_matches_baseline(out: Path, report: dict) -> None:
    """taxonomy.json identical (but its creation time), scores equal to 1e-12, the same report figures."""
    taxonomy = json.loads((out / "taxonomy.json").read_text())
    taxonomy.pop("created", None)
    expected_taxonomy = json.loads((BASELINE / "taxonomy.json").read_text())
    for doc in (taxonomy, expected_taxonomy):  # the packaged model's path depends on where the clone lives
        doc["embedding_model"] = (doc.get("embedding_model") or "").rpartition("site-packages/")[2]
    now_positions, then_positions = _pop_positions(taxonomy), _pop_positions(expected_taxonomy)
    # the invariance CFA's fit statistics come from a local optimiser (several starts, tight tolerances;
    # stored to 6 decimals): equal to 1e-4, everything else about the fits (df, holds, level) exactly
    now_fits, then_fits = _pop_fit_statistics(taxonomy), _pop_fit_statistics(expected_taxonomy)
    assert taxonomy == expected_taxonomy
    np.testing.assert_allclose(now_fits, then_fits, rtol=0, atol=1e-4)
    # word positions (a 2-D projection of MiniLM embeddings, stored to 6 decimals) move by one unit in the
    # last decimal with the machine's thread count and load: equal to 2e-6
    np.testing.assert_allclose(now_positions, then_positions, rtol=0, atol=2e-6)
    key = ["system", "model", "key"]
    now = pd.read_parquet(out / "scores.parquet").sort_values(key).reset_index(drop=True)
    then = pd.read_parquet(BASELINE / "scores.parquet").sort_values(key).reset_index(drop=True)
    assert now.drop(columns="judge_key").columns.tolist() == then.columns.tolist()
    numeric = ["w", "ci_low", "ci_high", "n", "n_invalid"]
    pd.testing.assert_frame_equal(now[then.columns.drop(numeric)], then.drop(columns=numeric))
    np.testing.assert_allclose(now[numeric].to_numpy(float), then[numeric].to_numpy(float), rtol=0, atol=1e-12)
    expected = json.loads((BASELINE / "report.json").read_text())
    assert sorted(report["figures"]) == expected["figures"] and report["sections"] == expected["sections"]
    assert sorted(n["id"] for n in report["notices"]) == expected["notices"]


def _pop_fit_statistics(taxonomy: dict) -> list[float]:
    """Remove the invariance fits' chi2/CFI/RMSEA (and deltas) from a taxonomy document; return them (None: nan)."""
    found: list[float] = []
    for result in taxonomy["validity"]["invariance"]:
        for fit in result["fits"]:
            found += [np.nan if (v := fit.pop(name, None)) is None else float(v) for name in INVARIANCE_FIT_STATISTICS]
    return found


def _pop_positions(node: object) -> list[float]:
    """Remove every word's ``position`` from a taxonomy document; return them in document order."""
    found: list[float] = []
    if isinstance(node, dict):
        if "position" in node and isinstance(node["position"], list):
            found += [float(x) for x in node.pop("position")]
        for value in node.values():
            found += _pop_positions(value)
    elif isinstance(node, list):
        for value in node:
            found += _pop_positions(value)
    return found


def test_stages_on_the_baseline_answers_reproduce_its_outputs(tmp_path: Path) -> None:
    """Construction, evaluation and report by today's code on the baseline's stored answers (no engine)."""
    from tests.data.regression.reduce_run import stages_on_stored_answers

    out = tmp_path / "run"
    result = stages_on_stored_answers(out)
    assert_matches_baseline(out, result.summary()["report"])


def _readme_python() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Python API", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_python_example_runs_as_a_plain_script(local_run: tuple[Path, dict], tmp_path: Path) -> None:
    """README's Python API example, as written, on the finished local run: run_study resumes (nothing
    is generated again), open_run reads scores and judgments, compare_models compares."""
    out, _ = local_run
    before = {p.name: p.stat().st_mtime_ns for p in (out / "elicitation").glob("*.parquet")}
    script = tmp_path / "example.py"
    script.write_text(_readme_python().replace('"configs/local.yaml"', repr(str(STUDY)))
                      .replace('"runs/local"', repr(str(out))))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=900, check=False,
                            cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    assert "embedding:all-MiniLM-L6-v2" in result.stdout and "Competence" in result.stdout
    assert "p_adj" in result.stdout
    assert {p.name: p.stat().st_mtime_ns for p in (out / "elicitation").glob("*.parquet")} == before
    record = json.loads((out / "stages" / "elicitation.json").read_text())
    assert record["rows_generated"] == 0 and record["rows_already_stored"] == 180
