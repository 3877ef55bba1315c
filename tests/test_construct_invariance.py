"""Measurement invariance across groups (issue 17.2): planted equal / unequal loadings and intercepts recovered."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import approx_fprime

from valuelex.construct import invariance as iv
from valuelex.construct.synthetic import grouped_factor_data as simulate

WORDS = [f"w{i}" for i in range(8)]


def run(**kwargs: object) -> dict:
    x, labels, factor_of = simulate(**kwargs)  # type: ignore[arg-type]
    return iv.invariance(x, labels, factor_of, words=WORDS, grouping="training")


@pytest.mark.parametrize("binary", [False, True])
def test_equal_loadings_and_intercepts_support_scalar(binary: bool) -> None:
    result = run(binary=binary)
    assert result["level"] == "scalar", result["fits"]
    assert "means can be compared" in result["sentence"] and result["groups"] == ["g0", "g1", "g2"]
    metric, scalar = result["fits"][1], result["fits"][2]
    assert metric["delta_cfi"] <= iv.CFI_DROP and scalar["delta_cfi"] <= iv.CFI_DROP
    assert all(f["converged"] for f in result["fits"])


def test_planted_latent_means_are_recovered() -> None:
    x, labels, factor_of = simulate(n=3000)
    groups = iv.group_moments(x, np.array(labels), ["g0", "g1", "g2"])
    markers = iv.choose_markers(groups, factor_of)
    fits = {}
    previous = None
    for level in iv.LEVELS[1:]:
        fits[level] = previous = iv.fit_level(groups, factor_of, markers, level, previous)
    # alpha_g in the marker's units: planted 0.3 g times the marker's loading
    x_markers = fits["scalar"].loadings[0][markers]
    assert np.allclose(np.diag(x_markers), 1.0)
    lam = np.random.default_rng(0).uniform(0.6, 0.9, 8)  # the same draw as simulate's
    planted = np.array([[0.3 * g * lam[m] for m in markers] for g in range(3)])
    np.testing.assert_allclose(fits["scalar"].latent_means, planted, atol=0.06)


@pytest.mark.parametrize("binary", [False, True])
def test_one_group_with_other_loadings_rejects_metric(binary: bool) -> None:
    result = run(loading_shift=-0.5, binary=binary)
    assert result["level"] == "configural", result["fits"]
    assert result["fits"][1]["delta_cfi"] > iv.CFI_DROP and not result["fits"][1]["holds"]
    assert "only the structure is shared" in result["sentence"]


@pytest.mark.parametrize("binary", [False, True])
def test_shifted_intercepts_keep_metric_and_reject_scalar(binary: bool) -> None:
    result = run(intercept_shift=0.8 if binary else 0.5, binary=binary)
    assert result["level"] == "metric", result["fits"]
    assert result["fits"][1]["holds"] and result["fits"][2]["delta_cfi"] > iv.CFI_DROP
    assert "their means cannot" in result["sentence"]


def test_configural_chi2_is_the_sum_of_semopy_single_group_fits() -> None:
    import semopy

    x, labels, factor_of = simulate(n=600, groups=2)
    result = iv.invariance(x, labels, factor_of, words=WORDS, grouping="g")
    total, df = 0.0, 0
    for g in ("g0", "g1"):
        frame = pd.DataFrame(x[np.array(labels) == g], columns=WORDS)
        model = semopy.Model("F0 =~ w0 + w1 + w2 + w3\nF1 =~ w4 + w5 + w6 + w7\nF0 ~~ F1")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(frame, obj="MLW")
        stats = semopy.calc_stats(model).iloc[0]
        total, df = total + float(stats["chi2"]), df + int(stats["DoF"])
    configural = result["fits"][0]
    assert configural["df"] == df and configural["chi2"] == pytest.approx(total, rel=1e-3)


def test_degrees_of_freedom_and_gradient() -> None:
    x, labels, _ = simulate(n=200)
    groups = iv.group_moments(x[:, :6], np.array(labels), ["g0", "g1", "g2"])
    pattern = np.array([0, 0, 0, 1, 1, 1])
    expected = {"configural": 3 * 8, "metric": 3 * 8 + 2 * 4, "scalar": 3 * 8 + 2 * 4 + 2 * (6 - 2)}
    rng = np.random.default_rng(1)
    for level, df in expected.items():
        model = iv._Model(groups, pattern, np.array([0, 3]), level)
        assert model.df() == df
        theta = model.start(None) + rng.normal(0, 0.1, model.size)
        numeric = approx_fprime(theta, lambda t, m=model: m.objective(t)[0], 1e-6)
        np.testing.assert_allclose(model.objective(theta)[1], numeric, atol=1e-5)


def test_decision_rules() -> None:
    def fit(level: str, cfi: float, rmsea: float) -> iv.Fit:
        return iv.Fit(level, 0.0, 10, cfi, rmsea, True, np.zeros((1, 1, 1)), np.zeros((1, 1)), np.zeros(1))

    assert iv.decide({"configural": fit("configural", 0.89, 0.05), "metric": fit("metric", 0.89, 0.05),
                      "scalar": fit("scalar", 0.89, 0.05)})[0] == "none"
    assert iv.decide({"configural": fit("configural", 0.96, 0.04), "metric": fit("metric", 0.955, 0.05),
                      "scalar": fit("scalar", 0.95, 0.07)})[0] == "metric"  # RMSEA rises 0.02 > 0.015
    assert iv.decide({"configural": fit("configural", 0.96, 0.04), "metric": fit("metric", 0.94, 0.04),
                      "scalar": fit("scalar", 0.94, 0.04)})[0] == "configural"  # a passing step after a failed one


def test_small_groups_are_skipped_with_a_notice() -> None:
    x, labels, factor_of = simulate(n=1000)
    labels = labels[:2030]  # g2 keeps 30 units: below 5 x 8 words
    result = iv.invariance(x[:2030], labels, factor_of, words=WORDS, grouping="training")
    assert result["computable"] and result["groups"] == ["g0", "g1"] and result["skipped"] == ["g2 (30 units)"]
    assert "skipped: g2 (30 units)" in result["notice"]
    tiny = iv.invariance(x[:4], labels[:4], factor_of, words=WORDS, grouping="training")
    assert not tiny["computable"] and tiny["level"] is None and "0 qualify" in tiny["notice"]


def test_select_words_takes_the_strongest_per_factor() -> None:
    loadings = np.array([[0.9, 0.1], [0.5, 0.0], [0.2, 0.1], [0.1, 0.7], [0.0, 0.6], [0.4, 0.35]])
    assert iv.select_words(loadings, 0.3, per_factor=2).tolist() == [0, 0, -1, 1, 1, -1]


@pytest.mark.parametrize("seed", range(40, 46))
def test_the_fit_does_not_depend_on_the_groups_order(seed: int) -> None:
    """Small binary groups (2 x 60 units, the local study's size): the same data with the groups named
    so that they sort the other way fit to the same minima, and nested models never fit better."""
    x, labels, factor_of = simulate(n=60, groups=2, per=3, loading_shift=-0.4, binary=True, seed=seed)
    words = [f"w{i}" for i in range(len(factor_of))]
    renamed = ["z0" if label == "g0" else label for label in labels]  # g1 now sorts first
    a = iv.invariance(x, labels, factor_of, words=words, grouping="a")
    b = iv.invariance(x, renamed, factor_of, words=words, grouping="b")
    assert a["groups"] == ["g0", "g1"] and b["groups"] == ["g1", "z0"]
    chi2_a, chi2_b = ([f["chi2"] for f in r["fits"]] for r in (a, b))
    np.testing.assert_allclose(chi2_a, chi2_b, rtol=0, atol=1e-3)
    assert chi2_a[0] <= chi2_a[1] + 1e-6 <= chi2_a[2] + 2e-6  # configural <= metric <= scalar
    assert a["level"] == b["level"]
