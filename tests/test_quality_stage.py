"""The reliability stage on a synthetic run written by the real stages (tests/test_compare.py's run:
7 models, 10 stems, 2 configs, 2 samples, the keyword judge), and on degenerate runs.

The judge's second pass and the control completions are injected (no engine starts): a second pass
that moves some scores by one, and a judge that always answers 3.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.test_compare import study_dict, write_run
from valuelex.cli import app
from valuelex.evaluate import judgments as jt
from valuelex.evaluate.systems import ValueSystem
from valuelex.quality.stage import ReliabilityStage, llm_second_pass, rejudge_subset
from valuelex.runner import RunContext, run_stages
from valuelex.spec import Study
from valuelex.store import RunStore, layout


def shaky_second_pass(rows: list[dict[str, Any]], system: ValueSystem) -> list[dict[str, Any]]:
    out = []
    for i, row in enumerate(rows):
        again = dict(row)
        for key in system.leaf_keys():
            col = jt.score_column(key)
            again[col] = int(min(6, row[col] + 1)) if i % 4 == 0 else row[col]
        out.append(again)
    return out


def always_three(texts: list[str], system: ValueSystem) -> np.ndarray:
    return np.full((len(texts), len(system.leaf_keys())), 3)


class LabelJudge:
    """A judge whose development-set scores the test knows: the label itself (6 / 3 / 0), or 3 everywhere."""

    def __init__(self, follow_labels: bool) -> None:
        from valuelex.evaluate.devset import load_devset

        self.follow = follow_labels
        self.name = "labels" if follow_labels else "always-3"
        labels = load_devset()
        self.labels = {(r.id, r.dimension): 3 * r.y for r in labels.itertuples()}

    def key(self, system: ValueSystem) -> str:
        return f"{self.name}@{system.fingerprint()}"

    def judge(self, rows: list[dict[str, Any]], system: ValueSystem, sink: Any) -> None:
        sink([{"row_id": r["row_id"], "valid": True, **{
            jt.score_column(k): self.labels.get((r["row_id"], k), 3) if self.follow else 3
            for k in system.leaf_keys()}} for r in rows])


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = str(tmp_path_factory.mktemp("quality") / "run")
    study = Study.model_validate(study_dict() | {"reliability": {"rejudge": 50, "resamples": 200}})
    write_run(out, study)
    return out


def test_stage_writes_every_table(run: str) -> None:
    store = RunStore(run)
    stage = ReliabilityStage(rejudge=shaky_second_pass, score_controls=always_three, devset_judge=LabelJudge(True))
    summary = run_stages(RunContext(store.study(), store), [stage])["reliability"].summary
    # this study asks no paraphrases: no spread across wordings
    asked = sorted(set(layout.RELIABILITY_TABLES) - {"paraphrase", "paraphrase_components"})
    assert summary["tables"] == asked
    assert summary["systems"] == ["mft", "valuelex"]
    for table in layout.RELIABILITY_TABLES:
        assert (Path(run) / layout.quality_file(table)).exists() == (table in asked)
    coef = store.quality("coefficients")
    assert set(coef["system"]) == {"mft", "valuelex"}
    assert (coef[["n_models", "n_configs"]] == [7, 2]).all().all()
    assert coef["n_stems"].between(1, 10).all() and coef["n_samples"].between(1, 2).all()
    assert coef["notice"].str.contains("balanced design").all()  # a seventh of the answers are invalid
    comps = store.quality("components")
    assert {"model", "stem", "config", "model×stem"} <= set(comps["facet"])
    assert (comps["variance"] >= 0).all()
    verdicts = store.quality("verdicts")
    scores = store.current_scores()
    assert len(verdicts) == len(scores) and set(verdicts["verdict"]) <= {"reliable", "doubtful", "unreliable"}
    assert verdicts["reason"].str.len().gt(0).all()
    judge = store.quality("judge")
    rejudged = judge[judge["check"] == "rejudge"]
    assert (rejudged["n"] > 0).all() and rejudged["krippendorff_alpha"].between(0, 1, inclusive="neither").all()
    controls = judge[judge["check"] == "controls"].set_index("system")
    assert (controls["error_off_topic"] == 0).all() and (controls["error_aligned"] == 3).all()
    devset = store.quality("devset")
    pooled = devset[devset["scope"] == "overall"].set_index("system")
    assert set(pooled.index) == {"mft", "valuelex"} and (pooled["n"] > 50).all()
    assert np.allclose(pooled[["qwk", "alpha", "auc", "balanced_accuracy"]].to_numpy(), 1.0)
    assert set(devset.loc[devset["scope"] == "dimension", "dimension"]) >= {"Care", "Fairness"}
    consistency = store.quality("consistency")
    assert consistency["persons"].eq("model×config").all()  # 14 respondents: enough to be persons
    assert consistency["alpha"].notna().any()
    from valuelex import api

    assert api.STAGES.index("reliability") == api.STAGES.index("evaluation") + 1
    assert isinstance(api.stage("reliability"), ReliabilityStage)


def test_devset_rows_of_a_judge_that_always_says_three() -> None:
    from valuelex.evaluate.systems import load_value_system
    from valuelex.quality.stage import devset_rows

    rows = pd.DataFrame(devset_rows(LabelJudge(False), load_value_system("valuelex")))
    pooled = rows[rows["scope"] == "overall"].iloc[0]
    assert pooled["share_high"] == 0 and pooled["balanced_accuracy"] == pytest.approx(1 / 3)
    assert pooled["auc"] == pytest.approx(0.5) and pooled["qwk"] == pytest.approx(0.0)
    assert pooled["share_labelled_high"] > 0.2 and pooled["judge"] == "always-3"
    constructed = load_value_system("valuelex").model_copy(update={"source": "runs/x/taxonomy.json"})
    note = devset_rows(LabelJudge(True), constructed)[0]
    assert note["n"] == 0 and "no development labels" in note["notice"]


def test_rejudge_subset_is_seeded_and_bounded(run: str) -> None:
    judged = RunStore(run).judgments("valuelex")
    a, b = rejudge_subset(judged, 20, 0, "valuelex"), rejudge_subset(judged, 20, 0, "valuelex")
    assert list(a["row_id"]) == list(b["row_id"]) and len(a) == 20 and a["valid"].all()
    assert list(rejudge_subset(judged, 20, 1, "valuelex")["row_id"]) != list(a["row_id"])
    assert len(rejudge_subset(judged, 10**6, 0, "valuelex")) == int(judged["valid"].sum())


def test_llm_second_pass_uses_another_seed_and_maps_back() -> None:
    """The second pass through the real judge loop with a fake engine: other seeds, retry temperature."""
    from valuelex.evaluate.config import EvaluationSpec
    from valuelex.evaluate.judge_prompt import format_answer
    from valuelex.evaluate.llm_judge import request_seed
    from valuelex.evaluate.systems import load_value_system

    system = load_value_system("mft")
    seen: list[dict[str, Any]] = []

    class Judge:
        name = "llm:fake"
        spec = EvaluationSpec(judge_temperature=0.0, retry_temperature=0.7)
        model = type("M", (), {"prompting": "chat"})()

        def _generate(self, requests: list[dict[str, Any]]):
            seen.extend(requests)
            answer = format_answer("x", dict.fromkeys(system.leaf_keys(), 4))
            yield [{"row_id": r["row_id"], "response": answer,
                    "finish_reason": "stop", "error": None, "n_prompt_tokens": 1, "n_completion_tokens": 1}
                   for r in requests]

    rows = [{"row_id": f"r{i}", "model": "m", "item_id": "s01", "config": "c", "sample": 0, "stem": "I value",
             "response": "honesty."} for i in range(3)]
    out = llm_second_pass(Judge())(rows, system)
    assert [r["row_id"] for r in out] == ["r0", "r1", "r2"] and all(r["valid"] for r in out)
    assert all(r[jt.score_column("care")] == 4 for r in out)
    assert {r["temperature"] for r in seen} == {0.7}
    assert all(r["seed"] != request_seed(f"r{i}", 0) for i, r in enumerate(seen))


def test_cli_and_degenerate_runs(tmp_path: Path) -> None:
    """One model, one config, one sample: notices everywhere, no traceback."""
    out = str(tmp_path / "flat")
    base = study_dict(models=[("solo", 7, "aligned", "fam", "chat")], stems=["s01", "s13", "s38"],
                      systems=("mft",))
    study = Study.model_validate(base | {"decoding": base["decoding"][:1], "samples": 1})
    write_run(out, study)
    result = CliRunner().invoke(app, ["reliability", out, "--no-judge"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["systems"] == ["mft"]
    coef = RunStore(out).quality("coefficients")
    assert coef["G"].isna().all()
    assert coef["notice"].str.contains("one model").all() and coef["notice"].str.contains("one config").all()
    consistency = RunStore(out).quality("consistency")
    assert consistency["notice"].str.contains("split-half needs 2 or more samples").all()
    assert consistency["notice"].str.contains("rank stability across configs needs 2 or more configs").all()
    verdicts = RunStore(out).quality("verdicts")
    assert (verdicts["verdict"] == "doubtful").all() and verdicts["reason"].str.contains("G not computable").all()
    wrong = CliRunner().invoke(app, ["reliability", out, "--no-judge", "--system", "schwartz"])
    assert wrong.exit_code == 2 and "'schwartz' not judged" in wrong.output and "judged: mft" in wrong.output
    missing = CliRunner().invoke(app, ["reliability", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such run" in missing.output


def test_all_equal_judgments_and_one_stem() -> None:
    from valuelex.evaluate.systems import load_value_system
    from valuelex.quality.assess import assess

    system = load_value_system("mft")
    keys = [d.key for d in system.all_dimensions()]
    grid = pd.MultiIndex.from_product([["a", "b", "c"], ["s01", "s02", "s03"], ["t0", "t1"], [0, 1, 2]],
                                      names=["model", "item_id", "config", "sample"]).to_frame(index=False)
    flat = grid.assign(**dict.fromkeys(keys, 0.5))
    tables = assess(flat, system, resamples=50, omega_resamples=5)
    assert tables["coefficients"]["notice"].str.contains("every judgment of this dimension is equal").all()
    assert tables["consistency"]["alpha"].isna().all() and tables["consistency"]["notice"].notna().all()
    one_stem = grid[grid["item_id"] == "s01"].assign(**{k: np.random.default_rng(0).random(18) for k in keys})
    tables = assess(one_stem, system, resamples=50, omega_resamples=5)
    assert tables["consistency"]["notice"].str.contains("2 or more stems").all()
    assert tables["coefficients"]["notice"].str.contains("one stem").all()


def test_report_puts_the_reliability_section_first(run: str, tmp_path: Path) -> None:
    from valuelex.report.stage import build_report

    store = RunStore(run)
    if store.quality("verdicts") is None:
        run_stages(RunContext(store.study(), store), [ReliabilityStage(
            rejudge=shaky_second_pass, score_controls=always_three, devset_judge=LabelJudge(True))])
    summary = build_report(run, str(tmp_path / "report"))
    assert next(iter(summary["sections"])) == "reliability" and summary["sections"]["reliability"] == "ok"
    for fig in ("fig-variance-valuelex", "fig-dstudy-mft"):
        assert fig in summary["figures"]
    page = Path(summary["index"]).read_text(encoding="utf-8")
    assert page.index("Can these scores be trusted?") < page.index("Value evaluation")
    for table in ("table-verdicts-valuelex", "table-verdict-reasons-mft", "table-gstudy-valuelex",
                  "table-consistency-mft", "table-judge-valuelex", "table-devset-mft"):
        assert f'id="{table}"' in page
    assert ">nan<" not in page.lower()


def test_report_without_the_stage_says_how_to_get_it(tmp_path: Path) -> None:
    from valuelex.report.stage import build_report

    out = str(tmp_path / "bare")
    write_run(out, Study.model_validate(study_dict(models=[("solo", 7, "aligned", "fam", "chat")],
                                                   stems=["s01", "s13"], systems=("mft",))))
    summary = build_report(out, str(tmp_path / "report"))
    assert summary["sections"]["reliability"] == "missing"
    assert any(n["id"] == "notice-reliability-missing" and "valuelex reliability RUN" in n["text"]
               for n in summary["notices"])


def test_reliability_settings_validate_and_keep_old_fingerprints() -> None:
    from valuelex.errors import StudyError
    from valuelex.spec import fingerprint_of

    study = Study.model_validate(study_dict())
    dump = study.model_dump(mode="json")
    assert study.reliability.rejudge == 200
    assert study.fingerprint() == fingerprint_of({k: v for k, v in dump.items() if k != "reliability"})
    older = {**dump, "reliability": {k: v for k, v in dump["reliability"].items() if k != "devset"}}
    older["evaluation"] = {**dump["evaluation"], "adaptive": {
        k: v for k, v in dump["evaluation"]["adaptive"].items() if k not in ("rule", "g_target")}}
    assert fingerprint_of(older) == study.fingerprint()  # fields added later, at their defaults, do not count
    assert Study.model_validate(study_dict() | {"reliability": {"devset": False}}).fingerprint() != study.fingerprint()
    changed = Study.model_validate(study_dict() | {"reliability": {"rejudge": 10}})
    assert changed.fingerprint() != study.fingerprint()
    with pytest.raises((StudyError, ValueError)):
        Study.model_validate(study_dict() | {"reliability": {"rejudge": -1}})
    with pytest.raises((StudyError, ValueError)):
        Study.model_validate(study_dict() | {"reliability": {"rejudg": 10}})


def test_two_judges_agreement_and_planted_self_preference(tmp_path: Path) -> None:
    """A second judge, an LLM of the llama2 family, scores llama2 respondents one point higher than the
    keyword judge and every other respondent the same: self-preference 1 point, agreement below 1."""
    from tests.test_report import KeywordJudge
    from valuelex.evaluate.stage import judge_pending
    from valuelex.evaluate.systems import load_value_system

    out = str(tmp_path / "two")
    study = Study.model_validate(study_dict(systems=("mft",)) | {"samples": 4})
    write_run(out, study)
    families = {m.name: m.family for m in study.models}

    class FamilyJudge(KeywordJudge):
        name = "llm:llama2-7b-chat"

        def judge(self, completions: list[dict], system: Any, sink: Any) -> None:
            def lift(rows: list[dict]) -> None:
                for row in rows:
                    if row["valid"] and families[row["model"]] == "llama2":
                        for key in system.leaf_keys():
                            row[jt.score_column(key)] += 1
                sink(rows)
            super().judge(completions, system, lift)

    store = RunStore(out)
    judge_pending(store, study, [load_value_system("mft")], FamilyJudge())
    assert set(store.judge_keys("mft")["judge"]) == {"test:keyword", "llm:llama2-7b-chat"}
    run_stages(RunContext(study, store), [ReliabilityStage(build_judges=False)])
    judge = store.quality("judge").set_index("check")
    other, pref = judge.loc["other judge"], judge.loc["self-preference"]
    assert other["judge"] == "test:keyword" and other["other_judge"] == "llm:llama2-7b-chat"
    llama_share = np.mean([families[m] == "llama2" for m in store.judgments("mft").query("valid")["model"]])
    assert other["difference"] == pytest.approx(-llama_share)  # keyword minus the lifted judge
    assert 0 < other["krippendorff_alpha"] < 1 and other["exact"] == pytest.approx(1 - llama_share)
    assert pref["difference"] == pytest.approx(1.0) and "'llama2'" in pref["notice"]
    facet = store.quality("judge").query("check == 'judge facet'")
    assert len(facet) == len(load_value_system("mft").all_dimensions())
    assert facet["judge_share"].between(0, 1, inclusive="neither").all(), facet["notice"].tolist()
    assert (facet["G_both"] >= facet["G"] - 1e-12).all()
    # MTMM across the two judges: the keyword judge and its lifted copy agree on every trait up to the lift
    summary = store.quality("mtmm_summary").set_index("across")
    judges = summary.loc["judges"]
    assert judges["system"] == "mft" and judges["systems"] == "llm:llama2-7b-chat, test:keyword"
    assert judges["convergent"] > judges["discriminant"] and judges["gap"] == pytest.approx(
        judges["convergent"] - judges["discriminant"])
    pairs = store.quality("mtmm").query("across == 'judges'")
    assert (pairs["kind"] == "convergent").sum() == len(load_value_system("mft").leaves())
    from valuelex.report.bias import mtmm_part
    from valuelex.report.figures import Section, TableItem
    from valuelex.report.load import load_run

    section = Section(id="validity", title="")
    assert mtmm_part(section, load_run(out))
    assert "table-mtmm-judges-mft" in [i.id for i in section.items if isinstance(i, TableItem)]
