"""Eq. 4 with normalisation on hand-computed cases, and the two-level bootstrap's coverage."""

import numpy as np
import pandas as pd
import pytest

from valuelex.evaluate.judgments import score_column
from valuelex.evaluate.scores import cluster_bootstrap, eq4, normalise, percentile_ci, score_table
from valuelex.evaluate.systems import load_value_system

VALUELEX = load_value_system("valuelex")
MFT = load_value_system("mft")


def judgments(system, rows):
    """rows: (model, item_id, config, sample, {key: score} or None for an invalid judgment)."""
    out = []
    for i, (model, item, config, sample, scores) in enumerate(rows):
        row = {"row_id": f"r{i}", "model": model, "item_id": item, "config": config, "sample": sample,
               "valid": scores is not None, "judge": "test"}
        for key in system.leaf_keys():
            row[score_column(key)] = None if scores is None else scores[key]
        out.append(row)
    return pd.DataFrame(out)


def test_normalise_and_eq4_by_hand():
    assert normalise(6) == 1 and normalise(3) == 0.5 and normalise(0) == 0
    np.testing.assert_allclose(normalise(np.array([1, 2, 4])), [1 / 6, 2 / 6, 4 / 6])
    # 2 stems x 2 configs x M=2: Eq. 4 is the plain mean of the 8 normalised scores
    scores = [6, 3, 0, 3, 6, 6, 3, 3]
    assert eq4(normalise(np.array(scores))) == pytest.approx(30 / 48)
    assert np.isnan(eq4([]))


def test_score_table_hand_computed():
    flat = {k: 3 for k in VALUELEX.leaf_keys()}
    rows = []
    # model a: self_competent scores 6, 0, 3, 3 over 2 stems x 2 samples; user_oriented always 6
    for (item, sample), sc in zip([("s01", 0), ("s01", 1), ("s02", 0), ("s02", 1)], [6, 0, 3, 3], strict=True):
        rows.append(("a", item, "c1", sample, {**flat, "self_competent": sc, "user_oriented": 6}))
    rows.append(("a", "s02", "c1", 2, None))  # invalid: counted, not scored
    rows.append(("b", "s01", "c1", 0, {**flat, "ethical": 0}))
    table = score_table(judgments(VALUELEX, rows), VALUELEX, resamples=200, seed=1)
    assert list(table.columns) == ["model", "system", "judge", "judge_key", "dimension", "key", "level", "parent", "w",
                                   "ci_low", "ci_high", "n", "n_invalid"]
    assert len(table) == 2 * 9  # 2 models x (3 dimensions + 6 subdimensions)
    a = table[table["model"] == "a"].set_index("key")
    assert a.loc["self_competent", "w"] == pytest.approx((6 + 0 + 3 + 3) / 4 / 6)
    assert a.loc["user_oriented", "w"] == pytest.approx(1.0)
    # a dimension's per-completion score is the mean of its subdimensions'
    assert a.loc["competence", "w"] == pytest.approx((12 / 24 + 1.0) / 2)
    assert a.loc["competence", "level"] == "dimension" and a.loc["self_competent", "level"] == "subdimension"
    assert a.loc["self_competent", "parent"] == "Competence"
    assert a.loc["self_competent", "dimension"] == "Self-Competent"
    assert (a["n"] == 4).all() and (a["n_invalid"] == 1).all() and (a["system"] == "valuelex").all()
    assert a.loc["user_oriented", "ci_low"] == a.loc["user_oriented", "ci_high"] == pytest.approx(1.0)
    assert a.loc["self_competent", "ci_low"] < a.loc["self_competent", "w"] < a.loc["self_competent", "ci_high"]
    b = table[table["model"] == "b"].set_index("key")
    assert b.loc["ethical", "w"] == 0 and b.loc["integrity", "w"] == pytest.approx(0.25) and (b["n_invalid"] == 0).all()


def test_model_with_only_invalid_judgments():
    table = score_table(judgments(MFT, [("m", "s01", "c", 0, None), ("m", "s02", "c", 0, None)]), MFT, resamples=100)
    assert table["w"].isna().all() and table["ci_low"].isna().all()
    assert (table["n"] == 0).all() and (table["n_invalid"] == 2).all()
    assert list(table["level"]) == ["dimension"] * 5 and table["parent"].isna().all()


def test_bootstrap_is_reproducible_and_resamples_both_levels():
    groups = [np.array([[0.0], [1.0]]), np.array([[0.5], [0.5]])]
    a = cluster_bootstrap(groups, 500, np.random.default_rng(3))
    b = cluster_bootstrap(groups, 500, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    # within-stem resampling: stem 1 alone ({0, 1}) varies; stems alone ({0.5, 0.5} only) would not
    only_within = cluster_bootstrap([np.array([[0.0], [1.0]])], 500, np.random.default_rng(0))
    assert only_within.std() > 0.2
    # between-stem resampling: constant within stems, different between them
    only_between = cluster_bootstrap([np.full((3, 1), 0.0), np.full((3, 1), 1.0)], 500, np.random.default_rng(0))
    assert set(np.round(only_between[:, 0], 6)) == {0.0, 0.5, 1.0}


def test_bootstrap_ci_coverage_simulation():
    """95% CIs of clustered scores (stem effects + sampling noise) cover the true mean >= 93% of the time."""
    rng = np.random.default_rng(20240601)
    alpha, beta = 2.0, 3.0  # per-stem tendency p_s ~ Beta(2, 3); true mean of φ = 0.4
    true_mean, n_stems, per_stem, trials, covered = alpha / (alpha + beta), 40, 6, 300, 0
    for _ in range(trials):
        p = rng.beta(alpha, beta, size=n_stems)
        scores = rng.binomial(6, p[:, None], size=(n_stems, per_stem)) / 6
        boot = cluster_bootstrap(list(scores[..., None]), 300, rng)
        low, high = percentile_ci(boot, 0.95)
        covered += bool(low[0] <= true_mean <= high[0])
    assert covered / trials >= 0.93


def test_resampling_only_samples_would_undercover():
    """The design check behind the cluster bootstrap: ignoring stems gives too-narrow intervals."""
    rng = np.random.default_rng(7)
    p = rng.beta(2, 3, size=40)
    scores = rng.binomial(6, p[:, None], size=(40, 6)) / 6
    clustered = cluster_bootstrap(list(scores[..., None]), 400, rng)
    naive = cluster_bootstrap([scores.reshape(-1, 1)], 400, rng)  # one cluster: rows resampled iid
    assert clustered.std() > 1.3 * naive.std()
