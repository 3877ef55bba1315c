"""Model comparisons (valuelex.compare): error rates and power on simulated studies, and the comparison end to
end on a synthetic run written by the real stages (the completions and keyword judge of tests/test_report.py).

Simulated studies draw φ per completion from a model with known variance components: a stem effect shared by
both models, a per-model stem effect (the stem × model interaction, σ_S² = 2·SD_INTER²), a per-model
(stem, config) effect (σ_C² = 2·SD_CELL²) and completion noise (τ² = 2·SD_E²); leaves are independent, parents
are the means of their leaves as in `dimension_values`. They go through `compare_values`, the function
`compare` runs on a run's judgments.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from tests.test_report import KeywordJudge, _rows, evaluate
from valuelex import compare as cmp
from valuelex.cli import app
from valuelex.errors import StudyError
from valuelex.evaluate import judgments as jt
from valuelex.evaluate.scores import normalise
from valuelex.evaluate.systems import load_value_system
from valuelex.spec import Study
from valuelex.stats import sign_flip_test
from valuelex.store import RunStore

SYSTEM = load_value_system("valuelex")
DIMS = [cmp.Dim(d.key, d.name, d.level, SYSTEM.dimension(d.parent).name if d.parent else None)
        for d in SYSTEM.all_dimensions()]
LEAVES = list(SYSTEM.leaf_keys())
SD_STEM, SD_INTER, SD_CELL, SD_E = 0.08, 0.03, 0.02, 0.15
TRUE = {"between_stem": 2 * SD_INTER**2, "stem_config": 2 * SD_CELL**2, "within": 2 * SD_E**2}


def simulate(rng: np.random.Generator, stems: int, configs: int, samples: int, delta: float = 0.0,
             sd_inter: float = SD_INTER) -> pd.DataFrame:
    """φ per completion of models a and b; b = a + delta on every leaf, plus the random effects."""
    n_leaves = len(LEAVES)
    shared = rng.normal(0, SD_STEM, (stems, 1, 1, n_leaves))
    s, c, m = np.meshgrid(np.arange(stems), np.arange(configs), np.arange(samples), indexing="ij")
    frames = []
    for model in ("a", "b"):
        phi = (0.5 + shared + rng.normal(0, sd_inter, (stems, 1, 1, n_leaves))
               + rng.normal(0, SD_CELL, (stems, configs, 1, n_leaves))
               + rng.normal(0, SD_E, (stems, configs, samples, n_leaves)) + (delta if model == "b" else 0.0))
        frame = pd.DataFrame(phi.reshape(-1, n_leaves), columns=LEAVES)
        frame["model"], frame["item_id"] = model, np.char.add("s", s.ravel().astype(str))
        frame["config"], frame["sample"] = np.char.add("c", c.ravel().astype(str)), m.ravel()
        frames.append(frame)
    values = pd.concat(frames, ignore_index=True)
    for parent in SYSTEM.parents():
        values[parent.key] = values[[d.key for d in parent.subdimensions]].mean(axis=1)
    return values


def quick(values: pd.DataFrame, **kwargs: Any) -> pd.DataFrame:
    """Test and components only: no bootstrap CI, no power search."""
    return cmp.compare_values(values, DIMS, ["a"], ["b"], permutations=2000, resamples=0, delta=None, **kwargs)


# --- pieces -------------------------------------------------------------------------------------------


def test_adjust_follows_holm_and_benjamini_hochberg() -> None:
    rng = np.random.default_rng(0)
    for m in (1, 2, 5, 9, 30):
        p = rng.uniform(0, 0.2, m) ** 2
        holm = np.empty(m)  # the definition: max over j <= rank of (m - j + 1) p_(j), capped at 1
        order = np.argsort(p)
        for rank, index in enumerate(order):
            holm[index] = min(1.0, max((m - j) * p[order[j]] for j in range(rank + 1)))
        np.testing.assert_allclose(cmp.adjust(p, "holm"), holm)
        np.testing.assert_allclose(cmp.adjust(p, "bh"), stats.false_discovery_control(p, method="bh"))
        np.testing.assert_allclose(cmp.adjust(p, "none"), p)
    with_nan = cmp.adjust([0.01, np.nan, 0.04], "holm")  # NaN is not in the family: m = 2
    np.testing.assert_allclose(with_nan[[0, 2]], [0.02, 0.04])
    assert np.isnan(with_nan[1])
    with pytest.raises(StudyError, match="'bonferroni' is not one of holm, bh, none"):
        cmp.adjust([0.1], "bonferroni")


def test_cell_stats_match_pandas() -> None:
    values = simulate(np.random.default_rng(1), 4, 3, 4)
    values = values.drop(index=[0, 1, 2, 50]).reset_index(drop=True)  # a cell with one completion, one smaller
    cells = cmp.cell_stats(values, ["a", "b"], LEAVES)
    grouped = values.groupby(["model", "item_id", "config"])[LEAVES]
    for (model, stem, config), mean in grouped.mean().iterrows():
        index = (cells.models.index(model), cells.stems.index(stem), cells.configs.index(config))
        np.testing.assert_allclose(cells.mean[index], mean.to_numpy())
        np.testing.assert_allclose(cells.var[index], grouped.var().loc[(model, stem, config)].to_numpy())
        assert cells.count[index] == grouped.size().loc[(model, stem, config)]


def test_sign_flip_test_enumerates_and_samples() -> None:
    rng = np.random.default_rng(2)
    units = rng.normal(0.3, 1, (11, 3))
    brute = np.array([np.abs(np.array(signs) @ units) >= np.abs(units.sum(axis=0)) - 1e-12
                      for signs in itertools.product((-1, 1), repeat=11)]).mean(axis=0)
    statistic, p, exact = sign_flip_test(units, 22, 4096, rng)
    assert exact and np.allclose(p, brute) and np.allclose(statistic, units.sum(axis=0) / 22)
    _, sampled, exact = sign_flip_test(units, 22, 3000, rng)  # 2^11 = 2048 <= 3000: every pattern
    assert exact and np.allclose(sampled, brute)
    _, sampled, exact = sign_flip_test(units, 22, 2000, rng)  # 2048 > 2000: Monte Carlo
    assert not exact
    assert np.all(np.abs(sampled - brute) <= 4 * np.sqrt(brute * (1 - brute) / 2000) + 1 / 2000)


def test_power_is_minimal_and_matches_the_normal_formula() -> None:
    comp = cmp.VarianceComponents(between_stem=0.0005, stem_config=0.0005, within=0.05, n_stems=400, n_configs=2,
                                  samples=3)
    delta = 0.01
    result = cmp.power(comp, delta, target=0.8)
    m = result.samples_needed
    assert m is not None and m > 3
    assert cmp.power_at(comp, delta, samples=m) >= 0.8 > cmp.power_at(comp, delta, samples=m - 1)
    s = result.stems_needed
    assert s is not None and s > 400
    assert cmp.power_at(comp, delta, n_stems=s) >= 0.8 > cmp.power_at(comp, delta, n_stems=s - 1)
    assert result.power_now == pytest.approx(cmp.power_at(comp, delta)) and result.power_now < 0.8
    # with 400 stems the t test is the z test: M from Var(T) = (δ / (z_.975 + z_.8))² solved for M
    se2 = (delta / (stats.norm.ppf(0.975) + stats.norm.ppf(0.8))) ** 2
    closed = comp.within / (comp.n_configs * (comp.n_stems * se2 - comp.between_stem - comp.stem_config / 2))
    assert math.ceil(closed) <= m <= math.ceil(closed) + 1
    # the between-stem part alone exceeds the budget: no M is enough, more stems are
    few = cmp.VarianceComponents(0.01, 0.0, 0.05, n_stems=10, n_configs=2, samples=3)
    hopeless = cmp.power(few, 0.02)
    assert hopeless.samples_needed is None and hopeless.stems_needed is not None and hopeless.stems_needed > 10


# --- simulated studies ------------------------------------------------------------------------------------


def test_no_true_difference_keeps_the_familywise_error_rate() -> None:
    """600 studies without a difference (but with a stem x model interaction): Holm (and BH, whose FDR is the FWER
    under the global null) reject anything in at most 5% of them. The bound is the 99th percentile of
    Binomial(600, 0.05), 7.2%: a procedure at exactly 5% passes with probability 0.99, one at 10% fails with
    probability 0.99. The same check fails for uncorrected p-values (nine tests per study)."""
    rng = np.random.default_rng(11)
    studies = 600
    any_rejected = {"holm": 0, "bh": 0, "none": 0}
    started = time.monotonic()
    for _ in range(studies):
        p = quick(simulate(rng, stems=16, configs=2, samples=3, sd_inter=0.05))["p"].to_numpy()
        for method in any_rejected:
            any_rejected[method] += bool((cmp.adjust(p, method) < 0.05).any())
    bound = stats.binom.ppf(0.99, studies, 0.05)
    assert any_rejected["holm"] <= bound, any_rejected
    assert any_rejected["bh"] <= bound, any_rejected
    assert any_rejected["none"] > bound, any_rejected  # nine tests uncorrected: the check has teeth
    print(f"FWER over {studies} studies: {any_rejected} (bound {bound:.0f}); {time.monotonic() - started:.1f} s")


def test_planted_difference_is_found_with_the_predicted_power() -> None:
    """Variance components are estimated from a pilot study (300 stems, M=3, no difference); `power` says which
    M reaches power 0.8 for delta at 30 stems. Simulated studies at the current M and at that M find the planted
    delta (raw p < 0.05 per leaf; the six leaves are independent tests) as often as `power_at` predicts:
    within 3 binomial SEs of the prediction from the true components, and within 3 SEs of the prediction from
    the estimated ones, where that SE adds the spread of the six leaves' estimates to the binomial one."""
    rng = np.random.default_rng(7)
    delta, stems, configs = 0.045, 30, 2
    pilot = quick(simulate(rng, stems=300, configs=configs, samples=3))
    leaves = pilot[pilot["key"].isin(LEAVES)]
    estimated = [cmp.VarianceComponents(r.var_between_stem, r.var_stem_config, r.var_within, stems, configs, 3)
                 for r in leaves.itertuples()]
    assert np.mean([c.within for c in estimated]) == pytest.approx(TRUE["within"], rel=0.05)
    pooled = cmp.VarianceComponents(*(float(np.mean([getattr(c, f) for c in estimated]))
                                      for f in ("between_stem", "stem_config", "within")), stems, configs, 3)
    truth = cmp.VarianceComponents(TRUE["between_stem"], TRUE["stem_config"], TRUE["within"], stems, configs, 3)
    needed = cmp.power(pooled, delta).samples_needed
    assert needed is not None and needed > 3  # the question is real: M=3 is not enough
    studies = 300
    for samples in (3, needed):
        predicted = cmp.power_at(pooled, delta, samples=samples)
        predicted_true = cmp.power_at(truth, delta, samples=samples)
        spread = np.std([cmp.power_at(c, delta, samples=samples) for c in estimated], ddof=1) / np.sqrt(len(estimated))
        found = np.concatenate([
            (quick(simulate(rng, stems, configs, samples, delta=delta)).set_index("key").loc[LEAVES, "p"] < 0.05)
            for _ in range(studies)])
        observed = float(found.mean())
        binomial = math.sqrt(predicted_true * (1 - predicted_true) / found.size)
        print(f"M={samples}: found {observed:.3f}; predicted {predicted:.3f} (estimated components, ±{spread:.3f}),"
              f" {predicted_true:.3f} (true); binomial SE {binomial:.3f}")
        assert abs(observed - predicted_true) <= 3 * binomial
        assert abs(observed - predicted) <= 3 * math.sqrt(binomial**2 + spread**2)
    assert cmp.power_at(pooled, delta, samples=needed) >= 0.8 > cmp.power_at(pooled, delta, samples=3)


# --- a synthetic run ------------------------------------------------------------------------------------

MODELS = [  # name, size_b, training, family, prompting
    ("llama2-7b", 7, "pretrained", "llama2", "completion"),
    ("llama2-13b", 13, "pretrained", "llama2", "completion"),
    ("llama2-7b-chat", 7, "aligned", "llama2", "chat"),
    ("llama2-13b-chat", 13, "aligned", "llama2", "chat"),
    ("mistral-7b", 7, "pretrained", "mistral", "completion"),
    ("mistral-7b-instruct", 7, "instruction-tuned", "mistral", "chat"),
    ("tulu2-7b", 7, "instruction-tuned", "tulu2", "chat"),
]
STEMS = ["s01", "s02", "s05", "s08", "s13", "s21", "s27", "s34", "s38", "s44"]


def study_dict(models: list[tuple] = MODELS, stems: list[str] = STEMS, systems: tuple = ("valuelex", "mft")) -> dict:
    return {
        "name": "compare", "models": [{"name": n, "source": f"org/{n}", "size_b": s, "training": t, "family": f,
                                       "prompting": p} for n, s, t, f, p in models],
        "decoding": [{"name": "t0.7", "temperature": 0.7, "top_p": 0.9, "max_tokens": 64},
                     {"name": "t1.0", "temperature": 1.0, "top_p": 1.0, "max_tokens": 64}],
        "samples": 2, "seed": 1, "prompts": {"stems": stems},
        "evaluation": {"systems": list(systems), "bootstrap_resamples": 200},
    }


ANSWERS = ["to help people find accurate answers.", "being kind and patient with everyone.",
           "nothing at all, really.", "to be fair and honest with every user.",
           "the weather in Paris is nice in spring.", "knowledge and precision matter most to me."]


def write_run(out: str, study: Study, keep: Any = lambda index, row: True) -> None:
    """study.json and the study's completions (rows `keep` rejects are left out), judged by the keyword judge."""
    store = RunStore(out)
    store.write_study(study)

    def answer(index: int, row: dict) -> tuple[str | None, str | None]:
        k = (index + row["sample"] + 3 * (row["config"] == "t1.0") + int(row["item_id"][1:])) % (len(ANSWERS) + 1)
        return (ANSWERS[k] if k < len(ANSWERS) else ""), None  # "" and "weather" are invalid judgments

    table = _rows(study, "completion", answer)
    index = {m.name: i for i, m in enumerate(study.models)}
    store.generation("completion").write(table.filter([keep(index[r["model"]], r) for r in table.to_pylist()]))
    evaluate(out, study)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = str(tmp_path_factory.mktemp("compare") / "run")
    write_run(out, Study.model_validate(study_dict()))
    return out


def _cell_differences(out: str, a: str, b: str) -> pd.DataFrame:
    """Independently of valuelex.compare: per (stem, config, leaf), mean φ of b − mean φ of a."""
    frame = RunStore(out).judgments(SYSTEM)
    frame = frame[frame["valid"]]
    long = frame.melt(id_vars=["model", "item_id", "config"], value_vars=[jt.score_column(k) for k in LEAVES])
    long["value"] = normalise(long["value"].astype(float))
    means = long.groupby(["model", "item_id", "config", "variable"])["value"].mean().unstack("model")
    return (means[b] - means[a]).dropna().unstack("variable")


def test_compare_end_to_end(run: str, tmp_path: Path) -> None:
    a, b = "llama2-7b", "llama2-7b-chat"
    started = time.monotonic()
    frame = cmp.compare(run, a, b)
    seconds = time.monotonic() - started
    path = Path(run) / "comparisons" / f"{a}__vs__{b}__valuelex.parquet"
    stored = pd.read_parquet(path)
    pd.testing.assert_frame_equal(stored, frame, check_dtype=False)
    assert list(frame["key"]) == [d.key for d in SYSTEM.all_dimensions()]

    # the scores are the evaluation stage's Eq. 4 scores
    scores = pd.read_parquet(Path(run) / "scores.parquet")
    scores = scores[scores["system"] == "valuelex"].set_index(["model", "key"])["w"]
    np.testing.assert_allclose(frame["w_a"], scores.loc[a].loc[frame["key"]].to_numpy())
    np.testing.assert_allclose(frame["w_b"], scores.loc[b].loc[frame["key"]].to_numpy())
    np.testing.assert_allclose(frame["diff"], frame["w_b"] - frame["w_a"])

    # the test statistic and the exact p-value, recomputed from the judgments table
    cells = _cell_differences(run, a, b)
    leaves = frame.set_index("key").loc[LEAVES]
    np.testing.assert_allclose(leaves["statistic"], cells[[jt.score_column(k) for k in LEAVES]].mean().to_numpy())
    stem_sums = cells.groupby(level="item_id").sum()[[jt.score_column(k) for k in LEAVES]].to_numpy()
    assert len(stem_sums) == len(STEMS) and bool(frame["exact"].all())  # 2^10 sign patterns <= 10,000
    flips = np.array(list(itertools.product((-1, 1), repeat=len(STEMS)))) @ stem_sums
    brute = (np.abs(flips) >= np.abs(stem_sums.sum(axis=0)) - 1e-12).mean(axis=0)
    np.testing.assert_allclose(leaves["p"], brute)
    np.testing.assert_allclose(frame["p_adj"], cmp.adjust(frame["p"], "holm"))

    # the keyword judge puts aligned models 2 points (1/3 of the scale) above pretrained ones
    assert (frame["diff"] > 0.15).all() and (frame["ci_low"] > 0).all()
    assert ((frame["ci_low"] <= frame["diff"]) & (frame["diff"] <= frame["ci_high"])).all()
    parents = frame[frame["level"] == "dimension"]
    assert parents["significant"].all(), parents[["dimension", "p", "p_adj"]]
    assert (frame["n_stems"] == len(STEMS)).all() and (frame["n_configs"] == 2).all()
    # M is the study's (two judged completions per cell and model); f is the share of them that is valid
    judged = RunStore(run).judgments(SYSTEM)
    judged = judged[judged["model"].isin([a, b])]
    assert (frame["samples"] == 2).all() and len(judged) == 2 * 2 * len(STEMS) * 2
    valid_counts = judged[judged["valid"]].groupby(["model", "item_id", "config"]).size()
    assert len(valid_counts) == 2 * len(STEMS) * 2  # every cell has a valid completion on both sides
    assert frame["valid_fraction"].iloc[0] == pytest.approx(stats.hmean(valid_counts) / 2)
    for row in frame.itertuples():
        components = cmp.VarianceComponents.from_row(row)
        assert row.power_now == pytest.approx(cmp.power_at(components, 0.05))
        needed = cmp.power(components, 0.05).samples_needed
        assert (pd.isna(row.samples_needed) and needed is None) or row.samples_needed == needed
    print(f"compare: {seconds:.2f} s")

    # holding the same seed gives the same result; BH is an option
    again = cmp.compare(run, a, b, write=False)
    pd.testing.assert_frame_equal(again, frame)
    bh = cmp.compare(run, a, b, correction="bh", write=False)
    np.testing.assert_allclose(bh["p_adj"], stats.false_discovery_control(frame["p"], method="bh"))


def test_groups_and_trend(run: str) -> None:
    pairs = cmp.compare_groups(run, "family-training")
    assert sorted(set(zip(pairs["a"], pairs["b"], strict=True))) == [
        ("llama2-13b", "llama2-13b-chat"), ("llama2-7b", "llama2-7b-chat"), ("mistral-7b", "mistral-7b-instruct")]
    assert any("tulu2-7b" in s for s in pairs.attrs["skipped"])
    for a, b in (("llama2-13b", "llama2-13b-chat"), ("mistral-7b", "mistral-7b-instruct")):
        assert (Path(run) / "comparisons" / f"{a}__vs__{b}__valuelex.parquet").exists()

    groups = cmp.compare_groups(run, "training:pretrained/aligned")
    assert set(groups["kind"]) == {"groups-by-models"} and set(groups["unit"]) == {"models"}
    w = pd.read_parquet(Path(run) / "scores.parquet").query("system == 'valuelex'").pivot(
        index="model", columns="key", values="w")
    pretrained, aligned = ["llama2-13b", "llama2-7b", "mistral-7b"], ["llama2-13b-chat", "llama2-7b-chat"]
    expected = w.loc[aligned].mean() - w.loc[pretrained].mean()
    np.testing.assert_allclose(groups["diff"], expected.loc[groups["key"]].to_numpy())
    assert bool(groups["exact"].all())  # C(5, 2) = 10 splits: p >= 1/10 whatever the data
    assert (groups["p"] >= 0.1 - 1e-12).all() and groups["models_needed"].notna().any()
    assert (Path(run) / "comparisons" / "training_pretrained__vs__training_aligned__valuelex.parquet").exists()
    by_stem = cmp.compare_groups(run, "training:pretrained/aligned", unit="stem", write=False)
    np.testing.assert_allclose(by_stem["diff"], groups["diff"])
    assert (by_stem["p"] < groups["p"]).all()  # models held fixed: the stems are the units, 2^10 patterns

    trend = cmp.size_trend(run)
    pre = trend[(trend["training"] == "pretrained") & (trend["key"] == "competence")].iloc[0]
    x = np.log10([13, 7, 7])
    y = w.loc[["llama2-13b", "llama2-7b", "mistral-7b"], "competence"].to_numpy()
    fit = stats.linregress(x, y)
    assert pre["slope"] == pytest.approx(fit.slope) and pre["n_models"] == 3
    half = stats.t.ppf(0.975, 1) * fit.stderr
    assert (pre["slope_low"], pre["slope_high"]) == pytest.approx((fit.slope - half, fit.slope + half))
    assert trend.loc[trend["training"] == "aligned", "slope_low"].isna().all()  # two models: no interval
    assert (Path(run) / "comparisons" / "size-trend__valuelex.parquet").exists()


def test_cli_and_report_show_the_comparison(run: str, tmp_path: Path) -> None:
    from tests.test_report import Elements
    from valuelex.report.stage import build_report

    runner = CliRunner()
    result = runner.invoke(app, ["compare", run, "--a", "mistral-7b", "--b", "mistral-7b-instruct", "--delta", "0.1"])
    assert result.exit_code == 0, result.output
    assert "mistral-7b-instruct − mistral-7b in valuelex" in result.output
    assert "M needed" in result.output and "written: " in result.output
    result = runner.invoke(app, ["compare", run, "--a", "llama2-7b", "--b", "llama2-7b-chat", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["files"] == [f"{run}/comparisons/llama2-7b__vs__llama2-7b-chat__valuelex.parquet"]
    assert len(document["rows"]) == len(SYSTEM.all_dimensions())
    result = runner.invoke(app, ["compare", run, "--groups", "size-trend"])
    assert result.exit_code == 0 and "size trend in valuelex" in result.output, result.output

    started = time.monotonic()
    summary = build_report(run, str(tmp_path / "report"))
    seconds = time.monotonic() - started
    html = Path(summary["index"]).read_text(encoding="utf-8")
    page = Elements(html)
    assert summary["sections"]["comparison"] == "ok", summary["notices"]
    assert list(summary["sections"]) == ["reliability", "validity", "construction", "evaluation", "comparison", "cases",
                                        "facts"]
    figure = "fig-compare-llama2-7b-vs-llama2-7b-chat-valuelex"
    assert figure in page.ids("img") and "fig-compare-mistral-7b-vs-mistral-7b-instruct-valuelex" in page.ids("img")
    assert "table-compare-llama2-7b-vs-llama2-7b-chat-valuelex" in page.ids("table")
    assert "table-size-trend-valuelex" in page.ids("table")
    assert "llama2-7b-chat − llama2-7b (valuelex)" in html and "M needed" in html
    assert (tmp_path / "report" / "figures" / f"{figure}.svg").exists()
    print(f"report with comparisons: {seconds:.1f} s")


# --- bad requests -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mismatched(tmp_path_factory: pytest.TempPathFactory) -> str:
    """m1 lacks stem s13, m2 lacks config t1.0; mft is judged for m0 only."""
    models = [(f"m{i}", 7, "pretrained" if i % 2 == 0 else "aligned", "fam", "chat") for i in range(4)]
    study = Study.model_validate(study_dict(models, ["s01", "s13", "s38"], ("valuelex",)))
    out = str(tmp_path_factory.mktemp("mismatch") / "run")
    write_run(out, study, keep=lambda i, r: not ((i == 1 and r["item_id"] == "s13")
                                                 or (i == 2 and r["config"] == "t1.0")))
    import valuelex.evaluate.stage as stage

    only_m0 = Study.model_validate(study_dict(models[:1], ["s01", "s13", "s38"], ("mft",)))
    stage.judge_pending(RunStore(out), only_m0, [load_value_system("mft")], KeywordJudge())
    return out


def test_bad_requests_name_the_problem(run: str, mismatched: str) -> None:
    with pytest.raises(StudyError, match=r"model 'gpt-5' is not in the run: no judgments of system 'valuelex'"):
        cmp.compare(run, "gpt-5", "llama2-7b")
    with pytest.raises(StudyError, match=r"system 'schwartz' was not scored in this run.*scored systems: mft, "
                                         r"valuelex"):
        cmp.compare(run, "llama2-7b", "llama2-7b-chat", system="schwartz")
    with pytest.raises(StudyError, match=r"system 'moral-compass' was not scored"):
        cmp.compare(run, "llama2-7b", "llama2-7b-chat", system="moral-compass")
    with pytest.raises(StudyError, match="same model 'llama2-7b'"):
        cmp.compare(run, "llama2-7b", "llama2-7b")
    with pytest.raises(StudyError, match="at least 2000"):
        cmp.compare(run, "llama2-7b", "llama2-7b-chat", permutations=500)
    with pytest.raises(StudyError, match=r"no model of the run has training in \['base'\]"):
        cmp.compare_groups(run, "training:base/aligned")
    with pytest.raises(StudyError, match="expected family-training, size-trend or FIELD:A/B"):
        cmp.compare_groups(run, "everything")
    with pytest.raises(StudyError, match="no such run"):
        cmp.compare(str(Path(run).parent / "missing"), "a", "b")

    with pytest.raises(StudyError, match=r"'m0' and 'm1' were not given the same stems.*only m0: s13; only m1: none"):
        cmp.compare(mismatched, "m0", "m1")
    with pytest.raises(StudyError, match=r"'m0' and 'm2' were not given the same decoding configs.*only m0: t1.0"):
        cmp.compare(mismatched, "m0", "m2")
    with pytest.raises(StudyError, match=r"model 'm3' is not in the run: no judgments of system 'mft'.*models: m0"):
        cmp.compare(mismatched, "m0", "m3", system="mft")
    frame = cmp.compare(mismatched, "m0", "m3", write=False)  # the same design: fine
    assert (frame["n_stems"] == 3).all() and frame["exact"].all()

    runner = CliRunner()
    result = runner.invoke(app, ["compare", mismatched, "--a", "m0", "--b", "m1"])
    assert result.exit_code == 2 and "error:" in result.output and "not given the same stems" in result.output
    result = runner.invoke(app, ["compare", run, "--a", "llama2-7b"])
    assert result.exit_code == 2 and "--a and --b, or groups with --groups" in result.output
    result = runner.invoke(app, ["compare", run, "--a", "llama2-7b", "--b", "nope"])
    assert result.exit_code == 2 and "'nope' is not in the run" in result.output
