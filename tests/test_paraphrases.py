"""Prompt sensitivity (issue 17 item 5): the packaged paraphrase sets, a study that asks them (row
identity, fingerprint, resume on the fake OpenAI server) and the spread of scores across them."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.fault_server import FaultServer
from tests.helpers import study_dict, write_study
from valuelex import grid, instruments
from valuelex.api import run_study
from valuelex.errors import StudyError
from valuelex.spec import Study, load_study
from valuelex.store import RunStore

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO / "tests" / "data" / "regression"


def served(base_url: str) -> dict:
    return {"name": "served", "source": "fake-served", "engine": "openai", "training": "aligned", "family": "fake",
            "size_b": 1.0, "prompting": "chat",
            "options": {"base_url": base_url, "max_retries": 0, "request_timeout_s": 5.0}}


BASE_MODEL = {**served("http://127.0.0.1:1"), "name": "base", "source": "fake-base", "prompting": "completion"}


# --- the packaged sets ------------------------------------------------------------------------------


def test_every_prompt_and_stem_has_at_least_three_paraphrases() -> None:
    assert instruments.paraphrase_count() >= 3
    for stage, originals in (("elicitation", instruments.elicitation_prompts()),
                             ("completion", instruments.completion_stems())):
        sets = instruments.paraphrases(stage)
        assert sorted(sets) == sorted(i.id for i in originals) and len(sets) == (15 if stage == "elicitation" else 50)
        for item in originals:
            wordings = sets[item.id]
            assert len(wordings) == instruments.paraphrase_count()
            texts = [item.completion_text, *(w.completion_text for w in wordings)]
            assert len(set(texts)) == len(texts), item.id  # no paraphrase repeats another or the original
            if stage == "completion":  # a stem still ends where the respondent continues it
                assert all(not t.rstrip().endswith((".", "?", "!")) for t in texts), item.id
                assert all(w.chat_text == f"Complete the sentence: {w.completion_text}" for w in wordings)
            else:  # the completion framing ends where the list of words begins
                assert all(w.completion_text.endswith(":") for w in wordings), item.id
                assert all(w.chat_text.strip() and w.chat_text != item.chat_text for w in wordings)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["stems"].pop("s07"), r"stems: unknown ids \[\], ids without paraphrases \['s07'\]"),
    (lambda d: d["stems"].__setitem__("s99", ["x", "y", "z"]), r"stems: unknown ids \['s99'\]"),
    (lambda d: d["stems"].__setitem__("s01", ["I enjoy", "What I like is"]), r"stems\.s01: 2 paraphrases, at least 3"),
    (lambda d: d["stems"].__setitem__("s01", ["I enjoy", "I like", "x"]), r"stems\.s01\[1\]: 'I like' repeats"),
    (lambda d: d["elicitation"]["q02"][1].__setitem__("completion", ""), r"elicitation\.q02\[1\]\.completion"),
])
def test_a_broken_paraphrase_file_names_the_field(edit, message: str) -> None:
    raw = copy.deepcopy(yaml.safe_load((REPO / "valuelex/data/paraphrases.yaml").read_text()))
    edit(raw)
    with pytest.raises(StudyError, match=r"^bad\.yaml: " + message):
        instruments.check_paraphrases(raw, "bad.yaml")


# --- the study's grid -------------------------------------------------------------------------------


def _study(paraphrases: int | None, **overrides: object) -> Study:
    prompts = {"elicitation": ["q01", "q09"], "stems": ["s01", "s13"]}
    if paraphrases is not None:
        prompts["paraphrases"] = paraphrases
    fields = {"models": [served("http://127.0.0.1:1"), BASE_MODEL], "prompts": prompts, **overrides}
    return Study.model_validate(study_dict(**fields))


@pytest.mark.parametrize("stage", ["elicitation", "completion"])
def test_paraphrase_rows_have_their_own_ids_and_the_originals_keep_theirs(stage: str) -> None:
    plain, asked = _study(None), _study(3)
    rows = [r for m in asked.models for r in grid.requests(asked, stage, m)]
    before = [r for m in plain.models for r in grid.requests(plain, stage, m)]
    assert len(rows) == grid.count(asked, stage) == 4 * grid.count(plain, stage) == 4 * 2 * 2 * 2 * 2
    assert len({r["row_id"] for r in rows}) == len(rows) and len({r["seed"] for r in rows}) == len(rows)
    originals = [r for r in rows if r["paraphrase"] == 0]
    assert [(r["row_id"], r["seed"], r["prompt"]) for r in originals] == \
        [(r["row_id"], r["seed"], r["prompt"]) for r in before]
    assert grid.row_ids(asked, stage) == {r["row_id"] for r in rows}
    assert grid.row_ids(plain, stage) == {r["row_id"] for r in originals}
    wording = {(r["model"], r["item_id"], r["paraphrase"]): r["prompt"] for r in rows}
    base_s01 = instruments.paraphrases("completion")["s01"][1].completion_text
    if stage == "completion":
        assert wording[("base", "s01", 2)] == base_s01 == "What I like is"
        assert wording[("served", "s01", 2)] == "Complete the sentence: What I like is"
    assert len(set(wording.values())) == len(wording)  # every (model, item, paraphrase) asked in its own words


def test_the_regression_baseline_keeps_its_ids_and_the_fingerprint_its_value() -> None:
    local = load_study(REPO / "configs" / "local.yaml")
    for stage, table in (("elicitation", "elicitation"), ("completion", "completions")):
        stored = pd.read_parquet(BASELINE / f"{table}.parquet", columns=["row_id", "seed"])
        assert grid.row_ids(local, stage) == set(stored["row_id"])
        seeds = {r["row_id"]: r["seed"] for m in local.models for r in grid.requests(local, stage, m)}
        assert stored.set_index("row_id")["seed"].to_dict() == seeds
    explicit = Study.model_validate({**local.model_dump(mode="json"),
                                     "prompts": {**local.prompts.model_dump(mode="json"), "paraphrases": 0}})
    assert explicit.fingerprint() == local.fingerprint()  # paraphrases: 0 is the study as it was
    assert _study(2).fingerprint() != _study(None).fingerprint() == _study(0).fingerprint()


@pytest.mark.parametrize(("value", "message"), [(4, "at most 3"), (-1, "greater than or equal to 0"),
                                                (True, "valid integer")])
def test_too_many_paraphrases_is_a_field_error(tmp_path: Path, value: object, message: str) -> None:
    path = write_study(tmp_path, prompts={"stems": ["s01"], "paraphrases": value})
    with pytest.raises(StudyError, match=rf"study\.yaml: prompts\.paraphrases: .*{message}"):
        load_study(path)


# --- generation and resume on the fake OpenAI server -----------------------------------------------


def test_a_study_with_paraphrases_grows_from_the_plain_one_and_resumes(ray_local: None, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    with FaultServer() as server:
        model = served(server.base_url)
        plain = load_study(write_study(tmp_path, "plain.yaml", models=[model], prompts={"stems": ["s01", "s13"]}))
        first = run_study(plain, out, ["completion"]).summary()["completion"]
        assert first["rows_generated"] == 8 and first["rows_failed"] == 0
        asked = load_study(write_study(tmp_path, "para.yaml", models=[model],
                                       prompts={"stems": ["s01", "s13"], "paraphrases": 2}))
        grown = run_study(asked, out, ["completion"]).summary()["completion"]  # a grown study, not a change
        assert (grown["rows_in_grid"], grown["rows_already_stored"], grown["rows_generated"]) == (24, 8, 16)
        again = run_study(asked, out, ["completion"]).summary()["completion"]
        assert (again["rows_already_stored"], again["rows_generated"]) == (24, 0)  # nothing generated twice
        asked_prompts = sum(server.attempts.values())
    assert asked_prompts == 24
    store = RunStore(out)
    current = store.current_rows("completion", asked).to_pandas()
    assert len(current) == 24 and sorted(current["paraphrase"].value_counts().to_dict().items()) == \
        [(0, 8), (1, 8), (2, 8)]
    assert set(store.current_rows("completion", plain).column("row_id").to_pylist()) == \
        set(current.loc[current["paraphrase"] == 0, "row_id"])
    completions = store.completions(asked)
    stems = set(zip(completions["item_id"], completions["paraphrase"], completions["stem"], strict=True))
    assert ("s01", 2, "What I like is") in stems and ("s13", 0, "My greatest fear") in stems and len(stems) == 6


# --- the spread of the scores across wordings ------------------------------------------------------

PLANTED = np.array([0.0, 0.08, -0.06, 0.12])  # model-0, first dimension: φ shifted per wording


def test_spread_recovers_a_planted_wording_effect() -> None:
    """φ = the linear model of quality/synthetic (residual SD 0.1) + PLANTED[k] for one model x dimension."""
    from valuelex.evaluate.systems import load_value_system
    from valuelex.quality.paraphrase import spread
    from valuelex.quality.synthetic import synthetic_values

    system = load_value_system("mft")
    variances = {"model": 0.01, "stem": 0.01, "config": 0.002, "model×stem": 0.004, "residual": 0.01}
    values = synthetic_values(system, (3, 10, 2, 4 * 6), variances, np.random.default_rng(17), clip=False)
    values["paraphrase"] = values["sample"] % 4
    key = system.all_dimensions()[0].key
    hit = values["model"] == "model-0"
    values.loc[hit, key] += PLANTED[values.loc[hit, "paraphrase"]]
    table = spread(values, system).set_index(["model", "key"])
    assert len(table) == 3 * len(system.all_dimensions()) and (table["paraphrases"] == 4).all()
    planted = table.loc[("model-0", key)]
    w = np.array([planted[f"w_{k}"] for k in range(4)])
    noise = float(planted["noise_sd"])
    assert abs(noise - 0.1 / np.sqrt(10 * 2 * 6)) < 0.002  # the residual SD over each wording's 120 completions
    assert np.abs((w - w[0]) - PLANTED).max() < 4 * noise * np.sqrt(2)
    assert abs(planted["sd"] - PLANTED.std(ddof=1)) < 0.015 and abs(planted["range"] - np.ptp(PLANTED)) < 0.03
    assert abs(planted["excess_sd"] - PLANTED.std(ddof=1)) < 0.015
    others = table.drop(index=("model-0", key))
    assert others["excess_sd"].max() < 0.02 and others["range"].max() < 0.05  # no wording effect planted there
    assert planted["stem_sd"] > others["stem_sd"].max()


class PlantedJudge:
    """Scores 3 + a per-wording shift for model `a` (none for `b`) + hash noise in -1..1, on every leaf."""

    kind = "test"
    name = "test:planted"
    SHIFT = (0, 1, -1, 2)

    def key(self, system: object) -> str:
        return f"{self.name}@{system.fingerprint()}"  # type: ignore[attr-defined]

    def judge(self, completions: list[dict], system: object, sink: object) -> None:
        import hashlib

        from valuelex.evaluate import judgments as jt

        rows = []
        for row in completions:
            shift = self.SHIFT[int(row["paraphrase"])] if row["model"] == "a" else 0
            scores = {k: 3 + shift + int(hashlib.md5(f"{k}|{row['row_id']}".encode()).hexdigest()[:4], 16) % 3 - 1
                      for k in system.leaf_keys()}  # type: ignore[attr-defined]
            rows.append(jt.judgment(row, system, judge=self.name, judge_key=self.key(system), scores=scores))
        sink(rows)  # type: ignore[operator]


def _judged_run(out: str, paraphrases: int) -> Study:
    from tests.helpers import evaluate_stored
    from tests.test_report import _rows

    model = {"source": "org/x", "training": "aligned", "family": "f", "prompting": "chat"}
    study = Study.model_validate({
        "name": "para", "models": [{"name": "a", **model}, {"name": "b", **model, "source": "org/y"}],
        "decoding": [{"name": "t0.7", "temperature": 0.7, "top_p": 0.9, "max_tokens": 16},
                     {"name": "t1.0", "temperature": 1.0, "top_p": 1.0, "max_tokens": 16}],
        "samples": 3, "prompts": {"stems": ["s01", "s05", "s13", "s27", "s38", "s44"], "paraphrases": paraphrases},
        "evaluation": {"systems": ["mft"], "bootstrap_resamples": 50}, "reliability": {"devset": False},
    })
    store = RunStore(out)
    store.write_study(study)
    store.generation("completion").write(_rows(study, "completion", lambda i, r: ("to be kind to all.", None)))
    evaluate_stored(study, out, PlantedJudge())
    return study


@pytest.fixture(scope="module")
def spread_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, str]:
    from valuelex.quality.stage import ReliabilityStage
    from valuelex.runner import RunContext, run_stages

    runs = {}
    for paraphrases in (3, 0):
        out = str(tmp_path_factory.mktemp(f"para{paraphrases}") / "run")
        study = _judged_run(out, paraphrases)
        run_stages(RunContext(study, RunStore(out)), [ReliabilityStage(build_judges=False)])
        runs[paraphrases] = out
    return runs


def test_the_reliability_stage_writes_the_spread_and_the_report_shows_it(spread_runs: dict[int, str],
                                                                         tmp_path: Path) -> None:
    from valuelex.report.stage import build_report

    table = RunStore(spread_runs[3]).quality("paraphrase")
    assert table is not None and set(table["model"]) == {"a", "b"} and (table["paraphrases"] == 4).all()
    a, b = table[table["model"] == "a"], table[table["model"] == "b"]
    shift = np.array(PlantedJudge.SHIFT) / 6  # the planted shift in φ
    for row in a.to_dict("records"):
        w = np.array([row[f"w_{k}"] for k in range(4)])
        assert np.abs((w - w[0]) - shift).max() < 0.08, row["dimension"]  # 36 completions per wording
        assert abs(row["sd"] - shift.std(ddof=1)) < 0.04 and row["excess_sd"] > 0.15
    assert b["excess_sd"].max() < 0.06 and b["range"].max() < 0.12
    assert RunStore(spread_runs[0]).quality("paraphrase") is None  # nothing to spread over: no table
    components = RunStore(spread_runs[3]).quality("paraphrase_components")
    assert set(components["facet"]) >= {"paraphrase:stem", "model×paraphrase:stem", "residual"}
    assert RunStore(spread_runs[0]).quality("paraphrase_components") is None

    asked = build_report(spread_runs[3], str(tmp_path / "asked"))
    html = Path(asked["index"]).read_text()
    assert "table-paraphrase-mft" in html and "notice-paraphrase-mft" not in html
    assert "table-paraphrase-components-mft" in html
    plain = build_report(spread_runs[0], str(tmp_path / "plain"))
    html = Path(plain["index"]).read_text()
    assert "table-paraphrase-mft" not in html and "prompts: {paraphrases: 3}" in html
    assert "notice-paraphrase-mft" not in {n["id"] for n in plain["notices"]}  # info, not a missing part


NESTED_TRUE = {"paraphrase:stem": 0.006, "model×paraphrase:stem": 0.003, "residual": 0.01}


def _nested_draw(rng: np.random.Generator, shape: tuple[int, int, int, int, int]) -> np.ndarray:
    """φ of the nested design (m : p x c x (w : s)): model, stem, model x stem, wording-in-stem, model x
    wording-in-stem and residual effects with planted variances (NESTED_TRUE for the wording's)."""
    p, s, c, w, m = shape
    return (0.5 + rng.normal(0, 0.1, (p, 1, 1, 1, 1)) + rng.normal(0, 0.1, (1, s, 1, 1, 1))
            + rng.normal(0, 0.004**0.5, (p, s, 1, 1, 1)) + rng.normal(0, 0.006**0.5, (1, s, 1, w, 1))
            + rng.normal(0, 0.003**0.5, (p, s, 1, w, 1)) + rng.normal(0, 0.1, (p, s, c, w, m)))


def _as_values(y: np.ndarray, key: str, keys: list[str]) -> pd.DataFrame:
    index = pd.MultiIndex.from_product([[f"m{i}" for i in range(y.shape[0])], [f"s{i:02d}" for i in range(y.shape[1])],
                                        [f"c{i}" for i in range(y.shape[2])], range(y.shape[3]), range(y.shape[4])],
                                       names=["model", "item_id", "config", "paraphrase", "sample"])
    frame = pd.DataFrame({k: y.reshape(-1) for k in keys}, index=index).reset_index()
    return frame.sample(frac=1.0, random_state=0)  # stored order means nothing


def test_the_paraphrase_variance_component_is_recovered() -> None:
    """Mean over 20 seeded runs (6 models, 8 stems, 2 configs, 4 wordings, M = 4) within 3.5 SE of the truth;
    the spread of single runs was looked at on other seeds (0..19), the assertion is on seeds 100..119."""
    from valuelex.evaluate.systems import load_value_system
    from valuelex.quality.paraphrase import paraphrase_components

    system = load_value_system("mft")
    keys = [d.key for d in system.all_dimensions()]
    found = []
    for seed in range(100, 120):
        y = _nested_draw(np.random.default_rng(seed), (6, 8, 2, 4, 4))
        table = paraphrase_components(_as_values(y, keys[0], keys), system)
        mine = table[table["key"] == keys[0]].set_index("facet")
        assert (mine[["n_stems", "n_wordings", "samples"]] == [8, 4, 4]).all().all()
        found.append(mine["variance"])
    mean = pd.DataFrame(found).mean()
    assert abs(mean["paraphrase:stem"] - 0.006) < 0.0015
    assert abs(mean["model×paraphrase:stem"] - 0.003) < 0.0004
    assert abs(mean["residual"] - 0.01) < 0.0003
    assert mean[["config×paraphrase:stem", "model×config×paraphrase:stem"]].max() < 0.0004  # none planted


def test_the_plan_counts_every_wording() -> None:
    from valuelex.plan import plan

    local = load_study(REPO / "configs" / "local.yaml")
    document = local.model_dump(mode="json")
    document["prompts"]["paraphrases"] = 3
    before, after = plan(local)["stages"]["completion"], plan(Study.model_validate(document))["stages"]["completion"]
    assert after["grid_rows"] == 4 * before["grid_rows"]
    assert 3.5 * before["prompt_tokens"] < after["prompt_tokens"] < 5 * before["prompt_tokens"]  # longer wordings


# --- the taxonomy on disjoint prompt subsets ---------------------------------------------------------


def _answered(strength: float, seed: int):
    import pyarrow.compute as pc

    from valuelex.construct.synthetic import synthetic_elicitation

    table = synthetic_elicitation(200, strength=strength, p_mention=0.3, seed=seed)
    table = table.filter(pc.is_valid(table.column("response")))
    return table.filter(pc.is_null(table.column("error")))


def test_taxonomy_agreement_between_disjoint_prompt_halves() -> None:
    """A planted 3-factor structure (every prompt elicits it) is found alike from either half of the
    prompts (ARI 1, the same K); words drawn independently give no taxonomy to agree on (NaN, a notice)."""
    from valuelex.construct.clustering import load_embedder
    from valuelex.construct.config import ConstructionSpec
    from valuelex.construct.prompt_subsets import prompt_subset_agreement

    embedder = load_embedder(None)
    planted = prompt_subset_agreement(_answered(1.8, 6), ConstructionSpec(seed=6), embedder, splits=3, seed=1)
    assert len(planted) == 3 and (planted["ari"] > 0.95).all() and (planted["k_a"] == planted["k_b"]).all()
    assert (planted["n_words"] >= 20).all()
    pairs = [(set(a.split(",")), set(b.split(","))) for a, b in zip(planted["items_a"], planted["items_b"],
                                                                     strict=True)]
    assert all(a | b == {f"q{i:02d}" for i in range(1, 16)} and not a & b for a, b in pairs)
    noise = prompt_subset_agreement(_answered(0.0, 7), ConstructionSpec(seed=6, k_rule="kaiser"), embedder, splits=2)
    assert noise["ari"].isna().all() and noise["notice"].notna().all()
