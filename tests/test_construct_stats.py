"""Incidence, correlations (phi, tetrachoric), K selection, smoothing and EFA."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp
from scipy.stats import multivariate_normal

from valuelex.construct.cooccurrence import (
    answers_chunk,
    build_incidence,
    correlation_matrix,
    incidence_chunk,
    map_chunks,
    prune,
    reduce_incidence,
    tetrachoric_from_counts,
    tetrachoric_from_tables,
    tetrachoric_pair,
)
from valuelex.construct.efa import (
    choose_k,
    eigenvalues,
    kaiser_k,
    ledermann_bound,
    parallel_k,
    parallel_thresholds,
    run_efa,
    smooth_correlation,
)
from valuelex.construct.extraction import extract_table
from valuelex.construct.synthetic import synthetic_elicitation
from valuelex.errors import ConstructionError


def tet(a: float, b: float, c: float, d: float) -> float:
    return float(tetrachoric_from_tables(np.array([a]), np.array([b]), np.array([c]), np.array([d]))[0])


# --- tetrachoric -------------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b"), [(40, 10), (30, 20), (45, 5), (10, 40)])
def test_tetrachoric_median_split_matches_pearsons_closed_form(a: int, b: int) -> None:
    # With both variables split at the median, r = cos(pi / (1 + sqrt(ad / bc))) holds exactly.
    expected = math.cos(math.pi / (1 + math.sqrt(a * a / (b * b))))
    assert tet(a, b, b, a) == pytest.approx(expected, abs=1e-6)
    assert tetrachoric_pair(a, b, b, a) == pytest.approx(expected, abs=1e-5)


def test_tetrachoric_of_an_independent_table_is_zero() -> None:
    assert tet(20, 30, 40, 60) == pytest.approx(0.0, abs=1e-9)
    assert tet(12, 108, 18, 162) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(("rho", "h", "k"), [(0.6, 0.3, -0.8), (-0.45, -0.2, 1.1), (0.9, 1.5, 1.0)])
def test_tetrachoric_recovers_rho_from_exact_bivariate_normal_cells(rho: float, h: float, k: float) -> None:
    # cells computed with scipy's multivariate normal CDF (Genz), independent of our Owen's T code
    p11 = multivariate_normal(mean=[0, 0], cov=[[1, rho], [rho, 1]]).cdf([-h, -k])  # P(X > h, Y > k)
    p1, p2 = 1 - _phi(h), 1 - _phi(k)
    n = 1_000_000
    a, b, c = p11 * n, (p1 - p11) * n, (p2 - p11) * n
    d = n - a - b - c
    assert tet(a, b, c, d) == pytest.approx(rho, abs=1e-4)


def _phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def test_vectorised_solver_agrees_with_scipy_likelihood_maximum() -> None:
    rng = np.random.default_rng(7)
    tables = rng.integers(1, 120, size=(25, 4))
    fast = tetrachoric_from_tables(*tables.T)
    slow = np.array([tetrachoric_pair(*row) for row in tables])
    np.testing.assert_allclose(fast, slow, atol=2e-5)


def test_tetrachoric_is_close_to_the_published_bonett_price_estimate() -> None:
    # Bonett & Price (2005), statpsych::ci.tetra(46, 15, 54, 85): approximation 0.5135 (f00, f01, f10, f11)
    mle = tet(85, 54, 15, 46)
    assert mle == pytest.approx(0.5135, abs=0.03)
    assert tetrachoric_pair(85, 54, 15, 46) == pytest.approx(mle, abs=1e-5)


@pytest.mark.parametrize(("rho", "h", "k"), [(-0.5, 0.0, 0.5), (0.2, -0.7, 0.4), (0.7, 0.8, -0.3), (0.0, 1.0, 1.0)])
def test_tetrachoric_recovers_rho_of_dichotomised_bivariate_normals(rho: float, h: float, k: float) -> None:
    rng = np.random.default_rng(abs(hash((rho, h, k))) % 2**32)
    z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=20_000)
    u, v = z[:, 0] > h, z[:, 1] > k
    a, b, c, d = (u & v).sum(), (u & ~v).sum(), (~u & v).sum(), (~u & ~v).sum()
    assert tet(a, b, c, d) == pytest.approx(rho, abs=0.05)


def test_tetrachoric_zero_cell_is_corrected_not_infinite() -> None:
    assert 0.9 < tet(30, 0, 20, 50) < 0.9999
    assert -0.9999 < tet(0, 25, 25, 50) < -0.5
    assert tet(0, 25, 25, 50) == pytest.approx(tetrachoric_pair(0, 25, 25, 50), abs=1e-5)
    uncorrected = tetrachoric_from_tables(np.array([30]), np.array([0]), np.array([20]), np.array([50]), correction=0)
    assert uncorrected[0] == pytest.approx(0.9999)


def test_tetrachoric_matrix_is_symmetric_with_unit_diagonal_and_matches_pairs() -> None:
    rng = np.random.default_rng(3)
    latent = rng.standard_normal((3000, 1)) + rng.standard_normal((3000, 4))
    binary = (latent > rng.uniform(-0.5, 0.8, 4)).astype(float)
    corr = correlation_matrix(sp.csr_matrix(binary), "tetrachoric")
    np.testing.assert_allclose(corr, corr.T)
    np.testing.assert_allclose(np.diag(corr), 1.0)
    x, y = binary[:, 0] > 0, binary[:, 2] > 0
    assert corr[0, 2] == pytest.approx(tet((x & y).sum(), (x & ~y).sum(), (~x & y).sum(), (~x & ~y).sum()))
    assert 0.35 < corr[0, 2] < 0.65  # latent correlation 0.5
    joint = binary.T @ binary
    np.testing.assert_allclose(tetrachoric_from_counts(joint, np.diag(joint), 3000), corr)


def test_phi_is_pearson_on_the_binary_matrix() -> None:
    rng = np.random.default_rng(0)
    binary = (rng.random((400, 6)) < rng.uniform(0.1, 0.6, 6)).astype(float)
    np.testing.assert_allclose(correlation_matrix(sp.csr_matrix(binary), "phi"), np.corrcoef(binary.T), atol=1e-12)


def test_dense_blocks_count_exactly_what_the_sparse_product_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    from valuelex.construct import cooccurrence

    rng = np.random.default_rng(1)
    binary = sp.csr_matrix((rng.random((1003, 7)) < rng.uniform(0.05, 0.7, 7)).astype(float))
    expected = (binary.T @ binary).toarray()
    monkeypatch.setattr(cooccurrence, "DENSE_BLOCK_CELLS", 7 * 100)  # 11 blocks of 100 rows (the last 3)
    joint, used, n = cooccurrence.cooccurrence_counts(binary)
    np.testing.assert_array_equal(joint, expected)
    np.testing.assert_array_equal(used, np.diag(expected))
    assert n == 1003


def test_random_counts_are_the_counts_of_the_same_random_incidence() -> None:
    from valuelex.construct.cooccurrence import cooccurrence_counts, random_counts, random_incidence

    used = np.array([1, 5, 40, 250, 499, 500])
    for seed in range(3):
        fast = random_counts(500, used, np.random.default_rng(seed))
        reference = cooccurrence_counts(random_incidence(500, used, np.random.default_rng(seed)))
        np.testing.assert_array_equal(fast[0], reference[0])
        np.testing.assert_array_equal(fast[1], used)


# --- incidence ---------------------------------------------------------------------------------


def _answers() -> pa.Table:
    return pa.table({
        "row_id": [f"r{i}" for i in range(7)],
        "model": ["a", "a", "a", "b", "b", "c", "c"],
        "config": ["x", "x", "y", "x", "x", "x", "x"],
        "response": ["Honesty, kindness", "Honesty", "Fairness", "1. Kindness\n2. Fairness", None, "", "Care"],
        "error": [None, None, None, None, "boom", None, None],
    })


def test_incidence_counts_answers_per_respondent_and_word() -> None:
    inc = incidence_chunk(extract_table(_answers()), "respondent")
    reduced = reduce_incidence([inc])
    assert reduced.units == [("a", "x"), ("a", "y"), ("b", "x"), ("c", "x")]
    assert reduced.words == ["care", "fairness", "honesty", "kindness"]
    np.testing.assert_array_equal(reduced.counts.toarray(), [[0, 0, 2, 1], [0, 1, 0, 0], [0, 1, 0, 1], [1, 0, 0, 0]])
    per_answer = reduce_incidence([incidence_chunk(extract_table(_answers()), "answer")])
    assert per_answer.units == [("r0",), ("r1",), ("r2",), ("r3",), ("r6",)]


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 5])
def test_chunked_incidence_reduces_to_the_same_matrix(chunk_rows: int) -> None:
    table = synthetic_elicitation(12, items=4, seed=5)
    whole = answers_chunk(table)[1]
    whole = reduce_incidence([whole])
    occurrences, chunked = build_incidence(table, chunk_rows=chunk_rows * 7, parallel=False)
    assert chunked.units == whole.units and chunked.words == whole.words
    assert (chunked.counts != whole.counts).nnz == 0
    assert occurrences.num_rows == whole.counts.sum()
    parts = map_chunks(answers_chunk, table, chunk_rows, parallel=False)
    assert len(parts) == math.ceil(table.num_rows / chunk_rows)


def test_prune_drops_rare_and_universal_words_and_empty_units() -> None:
    counts = sp.csr_matrix(np.array([
        [1, 1, 0, 1],
        [1, 0, 1, 0],
        [1, 1, 0, 0],
        [1, 0, 0, 0],
        [1, 1, 1, 0],
    ]))
    from valuelex.construct.cooccurrence import Incidence

    inc = Incidence([(str(i),) for i in range(5)], ["always", "often", "some", "once"], counts)
    pruned, info = prune(inc, min_units=2)
    assert pruned.words == ["often", "some"]
    assert pruned.units == [("0",), ("1",), ("2",), ("4",)]
    assert (info.n_rare, info.n_universal, info.n_units_dropped) == (1, 1, 1)


# --- K, smoothing, EFA -------------------------------------------------------------------------


def test_kaiser_and_parallel_rules() -> None:
    eigs = np.array([3.0, 2.0, 1.2, 0.5])
    assert kaiser_k(eigs) == 3
    assert parallel_k(eigs, np.array([1.5, 1.4, 1.3, 1.2])) == 2
    assert parallel_k(eigs, np.array([3.5, 1.0, 1.0, 1.0])) == 0
    assert parallel_k(eigs, np.zeros(4)) == 4
    choice = choose_k(eigs, "parallel", thresholds=np.array([1.5, 1.4, 1.3, 1.2]))
    assert (choice.chosen, choice.kaiser, choice.parallel) == (2, 3, 2)
    assert choose_k(eigs, "fixed", 4).chosen == 4
    assert [ledermann_bound(p) for p in (2, 3, 5, 12)] == [0, 1, 2, 7]


def test_parallel_analysis_finds_no_factor_in_random_words() -> None:
    rng = np.random.default_rng(11)
    binary = sp.csr_matrix((rng.random((300, 15)) < 0.3).astype(float))
    used = np.asarray(binary.sum(axis=0)).ravel()
    thresholds = parallel_thresholds(used, 300, "phi", iterations=20, seed=1)
    eigs = eigenvalues(correlation_matrix(binary))
    assert np.all(np.diff(thresholds) <= 1e-12) and thresholds[0] > 1.0
    with pytest.raises(ConstructionError, match="no factor"):
        choose_k(eigs, "parallel", thresholds=thresholds)


def test_parallel_mean_threshold_is_below_the_95th_percentile() -> None:
    used = np.array([30, 50, 80, 120, 60, 45])
    p95 = parallel_thresholds(used, 200, "phi", iterations=30, statistic="p95", seed=2)
    mean = parallel_thresholds(used, 200, "phi", iterations=30, statistic="mean", seed=2)
    assert np.all(mean < p95)
    tet95 = parallel_thresholds(used, 200, "tetrachoric", iterations=10, seed=2)
    assert tet95.shape == (6,) and tet95[0] > 1.0


def test_singular_matrix_is_smoothed_when_repairable() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((200, 6))
    x = np.column_stack([x, x[:, 0]])  # an exact duplicate word
    corr = np.corrcoef(x.T)
    smoothed, info = smooth_correlation(corr)
    assert info.smoothed and info.n_singular == 1 and info.ridge > 0
    assert np.linalg.eigvalsh(smoothed).min() > 1e-4
    np.testing.assert_allclose(np.diag(smoothed), 1.0)
    with pytest.raises(ConstructionError, match="singular"):
        smooth_correlation(corr, allow=False)
    _, clean_info = smooth_correlation(np.corrcoef(x[:, :6].T))
    assert not clean_info.smoothed and clean_info.ridge == 0


def test_hopelessly_singular_matrix_raises() -> None:
    rng = np.random.default_rng(5)
    base = rng.standard_normal((100, 2))
    corr = np.corrcoef(np.repeat(base, 4, axis=1).T)  # 8 words, rank 2
    with pytest.raises(ConstructionError, match="beyond repair"):
        smooth_correlation(corr)


def _three_factor_corr(seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    loadings = np.zeros((12, 3))
    for f in range(3):
        loadings[4 * f: 4 * f + 4, f] = 0.75
    scores = rng.standard_normal((3000, 3))
    return np.corrcoef((scores @ loadings.T + rng.standard_normal((3000, 12)) * 0.6).T)


@pytest.mark.parametrize("rotation", ["varimax", "oblimin", "promax", None])
def test_efa_recovers_planted_loading_pattern(rotation: str | None) -> None:
    result = run_efa(_three_factor_corr(), 3, rotation)
    primary = np.argmax(np.abs(result.loadings), axis=1)
    groups = [set(primary[4 * f: 4 * f + 4]) for f in range(3)]
    if rotation is not None:
        assert all(len(g) == 1 for g in groups) and len(set.union(*groups)) == 3
        assert np.all(result.loadings.max(axis=0) > 0.6)
    assert result.loadings.shape == (12, 3) and result.converged
    assert np.all(np.diff(np.sum(result.loadings**2, axis=0)) <= 1e-12)  # factors sorted by variance
    np.testing.assert_allclose(result.communalities, np.sum(result.loadings**2, axis=1))
    assert (result.factor_correlations is not None) == (rotation in ("oblimin", "promax"))


def test_efa_refuses_more_factors_than_the_words_identify() -> None:
    with pytest.raises(ConstructionError, match="cannot be identified"):
        run_efa(_three_factor_corr()[:5, :5], 3)


def test_ray_tasks_give_the_same_incidence_as_the_local_loop() -> None:
    ray = pytest.importorskip("ray")
    table = synthetic_elicitation(10, items=3, seed=9)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        _, remote = build_incidence(table, chunk_rows=8)  # Ray is up: chunks run as ray.remote tasks
        _, local = build_incidence(table, chunk_rows=8, parallel=False)
    finally:
        if started_here:
            ray.shutdown()
    assert remote.units == local.units and remote.words == local.words
    assert (remote.counts != local.counts).nnz == 0


@pytest.mark.parametrize("method", ["minres", "ml"])
def test_analytic_gradient_fit_matches_factor_analyzer(method: str) -> None:
    from factor_analyzer import FactorAnalyzer

    from valuelex.construct.efa import fit_unrotated

    corr = _three_factor_corr(seed=2)
    ours, converged = fit_unrotated(corr, 3, method)
    reference = FactorAnalyzer(n_factors=3, rotation=None, method=method, is_corr_matrix=True).fit(corr).loadings_
    assert converged
    np.testing.assert_allclose(ours @ ours.T, reference @ reference.T, atol=1e-5)  # equal up to rotation/sign
