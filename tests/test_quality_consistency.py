"""Alpha, omega, split-half and Kendall's W (valuelex.quality.consistency) against published values.

- Cronbach's alpha of R's ``mtcars[, c("cyl", "gear", "carb", "hp")]`` is 0.09463206: the worked
  example of easystats/performance's test suite (tests/testthat/test-cronbachs_alpha.R); mtcars is
  Henderson & Velleman (1981), as shipped with R.
- Omega total from standardised one-factor loadings: 0.831139 for (0.856, 0.729, 0.776) and
  0.869277 for (0.869, 0.754, 0.863), jamovi's principal-axis loadings in the jspss test suite
  (xxxspy/jspss, test/reliability.test.ts).
- On planted one-factor (parallel) items with inter-item correlation ρ, alpha's expectation is the
  Spearman-Brown formula kρ / (1 + (k - 1)ρ), and omega equals it too (equal loadings √ρ).
"""

from __future__ import annotations

import numpy as np
import pytest

from valuelex.quality import consistency as ic

# mtcars (R datasets): cyl, gear, carb, hp of the 32 cars in R's row order.
CYL = [6, 6, 4, 6, 8, 6, 8, 4, 4, 6, 6, 8, 8, 8, 8, 8, 8, 4, 4, 4, 4, 8, 8, 8, 8, 4, 4, 4, 8, 6, 8, 4]
GEAR = [4, 4, 4, 3, 3, 3, 3, 4, 4, 4, 4, 3, 3, 3, 3, 3, 3, 4, 4, 4, 3, 3, 3, 3, 3, 4, 5, 5, 5, 5, 5, 4]
CARB = [4, 4, 1, 1, 2, 1, 4, 2, 2, 4, 4, 3, 3, 3, 4, 4, 4, 1, 2, 1, 1, 2, 2, 4, 2, 1, 2, 2, 4, 6, 8, 2]
HP = [110, 110, 93, 110, 175, 105, 245, 62, 95, 123, 123, 180, 180, 180, 205, 215, 230, 66, 52, 65, 97, 150, 150,
      245, 175, 66, 91, 113, 264, 175, 335, 109]


def test_alpha_equals_the_published_mtcars_example() -> None:
    assert (sum(HP), sum(CYL), sum(GEAR), sum(CARB)) == (4694, 198, 118, 90)  # R: colSums(mtcars)
    x = np.array([CYL, GEAR, CARB, HP], dtype=float).T
    assert round(ic.cronbach_alpha(x), 3) == round(0.09463206, 3)
    assert ic.cronbach_alpha(x) == pytest.approx(0.09463206, abs=1e-6)


def test_omega_from_loadings_equals_the_published_example() -> None:
    assert round(ic.omega_from_loadings([0.856274547, 0.728978383, 0.776175521]), 3) == 0.831
    assert ic.omega_from_loadings([0.856274547, 0.728978383, 0.776175521]) == pytest.approx(0.831138, abs=1e-5)
    assert ic.omega_from_loadings([0.869263365, 0.754297177, 0.863339896]) == pytest.approx(0.869277, abs=1e-5)


def test_alpha_and_omega_on_planted_one_factor_items() -> None:
    rng = np.random.default_rng(11)
    k, rho, n = 8, 0.3, 4000
    factor = rng.normal(size=(n, 1))
    x = np.sqrt(rho) * factor + np.sqrt(1 - rho) * rng.normal(size=(n, k))
    expected = k * rho / (1 + (k - 1) * rho)
    assert ic.cronbach_alpha(x) == pytest.approx(expected, abs=0.01)
    assert ic.omega_total(x) == pytest.approx(expected, abs=0.01)
    # congeneric items (unequal loadings): omega is the reliability, alpha a lower bound
    lam = np.linspace(0.3, 0.9, k)
    y = factor * lam + rng.normal(size=(n, k)) * np.sqrt(1 - lam ** 2)
    true_omega = lam.sum() ** 2 / (lam.sum() ** 2 + (1 - lam ** 2).sum())
    assert ic.omega_total(y) == pytest.approx(true_omega, abs=0.01)
    assert ic.cronbach_alpha(y) < true_omega


def test_bootstrap_intervals_cover_and_flag() -> None:
    rng = np.random.default_rng(2)
    factor = rng.normal(size=(60, 1))
    x = 0.5 * factor + rng.normal(size=(60, 6))
    alpha = ic.alpha_estimate(x, np.random.default_rng(0), 500)
    assert alpha.low < alpha.value < alpha.high
    omega = ic.omega_estimate(x, np.random.default_rng(0), 30)
    assert omega.low < omega.value < omega.high and not omega.notices


def test_split_half_and_kendall_w() -> None:
    rng = np.random.default_rng(3)
    true = rng.normal(size=(20, 1, 1))
    y = true + 0.5 * rng.normal(size=(20, 15, 4))
    r_half = np.corrcoef(y[..., 1::2].mean(axis=(1, 2)), y[..., 0::2].mean(axis=(1, 2)))[0, 1]
    assert ic.split_half(y).value == pytest.approx(2 * r_half / (1 + r_half))
    assert ic.spearman_brown(0.5) == pytest.approx(2 / 3)
    # Kendall's W: identical rankings -> 1; a textbook case: 3 raters, 4 objects (Siegel & Castellan 1988)
    assert ic.kendall_w(np.array([[1, 2, 3, 4], [1, 2, 3, 4.0]])).value == pytest.approx(1.0)
    ranks = np.array([[1, 2, 3, 4], [2, 1, 4, 3], [1, 3, 2, 4.0]])
    s = ((ranks.sum(axis=0) - 7.5) ** 2).sum()
    assert ic.kendall_w(ranks).value == pytest.approx(12 * s / (9 * 60))
    assert ic.kendall_w(np.array([[1, 2.0], [2, 1.0]])).value == pytest.approx(0.0)


@pytest.mark.parametrize("x, words", [
    (np.full((10, 5), 0.5), "same total score"),
    (np.ones((10, 1)), "2 or more stems"),
    (np.ones((2, 5)), "3 or more persons"),
])
def test_degenerate_item_matrices_give_notices(x: np.ndarray, words: str) -> None:
    rng = np.random.default_rng(0)
    alpha = ic.alpha_estimate(x, rng, 100)
    assert np.isnan(alpha.value) and words in alpha.notices[0]
    omega = ic.omega_estimate(x, rng, 10)
    assert np.isnan(omega.value) and omega.notices
    assert "more persons than stems" in ic.omega_estimate(np.random.default_rng(1).normal(size=(5, 9)), rng).notices[0]
    assert ic.split_half(np.full((5, 4, 1), 0.5)).notices and ic.split_half(np.full((5, 4, 2), 0.5)).notices
    assert np.isnan(ic.kendall_w(np.ones((1, 3))).value) and np.isnan(ic.kendall_w(np.ones((3, 1))).value)


def test_iterated_principal_axes_match_factor_analyzer_minres() -> None:
    from factor_analyzer import FactorAnalyzer

    rng = np.random.default_rng(8)
    lam = np.linspace(0.3, 0.8, 10)
    x = rng.normal(size=(300, 1)) * lam + rng.normal(size=(300, 10)) * np.sqrt(1 - lam ** 2)
    corr = np.corrcoef(x, rowvar=False)
    fa = FactorAnalyzer(n_factors=1, rotation=None, method="minres", is_corr_matrix=True).fit(corr)
    ours = ic.one_factor_loadings(corr)
    theirs = fa.loadings_[:, 0] * np.sign(fa.loadings_[:, 0].sum())
    assert np.allclose(ours, theirs, atol=2e-3)
    assert ic.omega_from_loadings(ours) == pytest.approx(ic.omega_total(x), abs=1e-3)
