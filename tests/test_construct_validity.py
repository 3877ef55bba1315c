"""Does the taxonomy replicate (issue 17.1): planted structure replicates, phantoms do not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from tests.helpers import construct
from valuelex.construct import replication as rp
from valuelex.construct.synthetic import planted_study, synthetic_elicitation
from valuelex.construct.taxonomy import load_taxonomy
from valuelex.store import OutputRoot, RunStore


def planted(n: int, seed: int, *, k: int = 3, per: int = 8, strength: float = 2.5) -> np.ndarray:
    """Units x words 0/1: word w of factor f held with probability sigmoid(base_w + strength z_f), z ~ N(0, I)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, k))
    factor = np.repeat(np.arange(k), per)
    base = rng.uniform(-1.0, 0.5, k * per)
    held = 1 / (1 + np.exp(-(base + strength * z[:, factor])))
    return (rng.random(held.shape) < held).astype(float)


def shuffled(x: np.ndarray, seed: int) -> np.ndarray:
    """Each word's users permuted independently: the same word frequencies, no structure."""
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.permutation(col) for col in x.T])


SETTINGS = rp.Settings(k=3)


@pytest.fixture(scope="module")
def structured() -> np.ndarray:
    return planted(400, seed=1)


def test_kmo_and_bartlett_match_factor_analyzer(structured: np.ndarray) -> None:
    from factor_analyzer.factor_analyzer import calculate_bartlett_sphericity, calculate_kmo

    x = structured[:, :12]
    ours = rp.factorability(np.corrcoef(x, rowvar=False), len(x), [f"w{i}" for i in range(12)])
    kmo_words, kmo = calculate_kmo(x)
    chi2, p = calculate_bartlett_sphericity(x)
    assert ours.kmo == pytest.approx(kmo, abs=1e-8)
    np.testing.assert_allclose(ours.kmo_words, kmo_words, atol=1e-8)
    assert ours.bartlett_chi2 == pytest.approx(chi2, rel=1e-8) and ours.bartlett_p == pytest.approx(p, abs=1e-12)
    assert ours.bartlett_df == 66


def test_congruence_and_matching_on_known_loadings() -> None:
    a = np.array([[0.8, 0.0], [0.7, 0.1], [0.0, 0.9], [0.1, 0.6]])
    b = -a[:, ::-1]  # the same factors, swapped and reflected
    matched, phi = rp.match_factors(a, b)
    assert matched.tolist() == [1, 0] and np.allclose(phi, 1.0)
    assert rp.congruence(a[:, :1], a[:, 1:])[0, 0] == pytest.approx(
        (0.8 * 0 + 0.7 * 0.1 + 0 * 0.9 + 0.1 * 0.6)
        / np.sqrt(0.8**2 + 0.7**2 + 0.1**2)
        / np.sqrt(0.1**2 + 0.9**2 + 0.6**2)
    )


def test_planted_structure_replicates(structured: np.ndarray) -> None:
    result = rp.replicate(sp.csr_matrix(structured), np.arange(len(structured)), SETTINGS, n_splits=5, seed=0)
    assert result["verdict"] == "replicated", result["reason"]
    assert result["congruence_min"] >= rp.EQUAL and result["agreement"] >= 0.95
    assert result["cfa_within_cutoffs"] and result["cfa"]["cfi"] >= 0.95 and result["cfa"]["rmsea"] <= 0.06
    assert result["cfa"]["srmr"] <= 0.08 and result["cfa"]["tli"] >= 0.95
    assert len(result["rows"]) == 5 * 3


def test_noise_is_a_phantom_that_does_not_replicate(structured: np.ndarray) -> None:
    noise = shuffled(structured, seed=5)
    np.testing.assert_array_equal(noise.sum(axis=0), structured.sum(axis=0))
    corr = np.corrcoef(noise, rowvar=False)
    from valuelex.construct.efa import run_efa

    assert run_efa(corr, 3).loadings.shape == (24, 3)  # EFA still returns three factors
    result = rp.replicate(sp.csr_matrix(noise), np.arange(len(noise)), SETTINGS, n_splits=5, seed=0)
    assert result["verdict"] == "not replicated", result["reason"]
    assert result["congruence_mean"] < rp.FAIR and result["congruence_min"] < rp.FAIR


def test_structure_in_one_half_only_does_not_replicate(structured: np.ndarray) -> None:
    mixed = np.vstack([structured[:200], shuffled(structured, seed=6)[200:]])
    halves = [(np.arange(200), np.arange(200, 400))]
    result = rp.replicate(sp.csr_matrix(mixed), np.arange(400), SETTINGS, halves=halves)
    assert result["verdict"] == "not replicated" and result["congruence_mean"] < rp.FAIR
    whole = rp.replicate(sp.csr_matrix(structured), np.arange(400), SETTINGS, halves=halves)
    assert whole["verdict"] == "replicated"  # the same split of the structured data does replicate


def test_weak_and_verdict_rules() -> None:
    assert rp.verdict(0.96, 0.97, 0.99, True)[0] == "replicated"
    assert rp.verdict(0.70, 0.90, 0.99, True)[0] == "weak"
    assert rp.verdict(0.96, 0.97, 0.99, False)[0] == "weak"
    assert rp.verdict(0.96, 0.97, 0.99, None)[0] == "weak"
    assert rp.verdict(0.10, 0.84, 0.99, True)[0] == "not replicated"


def test_answers_split_with_their_respondent(structured: np.ndarray) -> None:
    groups = np.repeat(np.arange(40), 10)  # 40 respondents x 10 answers each
    for a, b in rp.seeded_halves(groups, 3, seed=2):
        assert not set(groups[a]) & set(groups[b]) and len(set(groups[a])) == 20


def test_oblique_view_recovers_correlated_factors() -> None:
    rng = np.random.default_rng(3)
    z = rng.multivariate_normal(np.zeros(2), [[1, 0.5], [0.5, 1]], size=2000)
    loadings = np.zeros((10, 2))
    loadings[:5, 0] = loadings[5:, 1] = 0.7
    x = z @ loadings.T + rng.standard_normal((2000, 10)) * np.sqrt(1 - 0.49)
    corr = np.corrcoef(x, rowvar=False)
    from valuelex.construct.efa import run_efa

    view = rp.oblique_view(corr, run_efa(corr, 2, "varimax").loadings, 2, "varimax")
    assert view["rotation"] == "oblimin" and view["factor_correlations"][0][1] == pytest.approx(0.5, abs=0.08)


def test_small_design_gets_a_notice_and_no_numbers(structured: np.ndarray) -> None:
    groups = np.repeat(np.arange(4), 100)  # the local study: 4 respondents, many answers
    x = sp.csr_matrix(structured)
    summary, tables = rp.validity_tables(
        x,
        groups,
        [f"w{i}" for i in range(24)],
        np.corrcoef(structured, rowvar=False),
        np.zeros((24, 3)) + 0.1,
        SETTINGS,
        label="",
    )
    assert summary["verdict"] is None and summary["congruence_min"] is None
    assert any("needs at least 20 respondents" in n and "has 4" in n for n in summary["notices"])
    assert summary["kmo"] is not None and len(tables["taxonomy_kmo"]) == 24
    assert tables["taxonomy_replication"].empty and list(tables["taxonomy_validity"]["verdict"]) == [None]


def test_construction_stage_writes_the_verdict(tmp_path: Path) -> None:
    root = OutputRoot(str(tmp_path / "run"))
    table = planted_study(synthetic_elicitation(240, strength=2.5, p_mention=0.4, seed=11))[1]
    root.table("elicitation").write(table)
    study = planted_study(
        table,
        output=root.uri,
        construction={"bootstrap": 0, "seed": 3, "k_rule": "fixed", "k": 3, "unit": "respondent"},
    )[0]
    construct(study)
    taxonomy = load_taxonomy(root.uri)
    validity = taxonomy.validity
    # through the real extractor the halves' factors are equal; the CFA on phi correlations of 120
    # respondents per half falls just short of CFI 0.95 (0.94): weak, never "not replicated"
    assert validity is not None and validity.verdict in ("replicated", "weak"), (validity.cfa, validity.reason)
    assert validity.congruence_min >= rp.EQUAL and validity.agreement >= 0.95
    assert validity.n_respondents == taxonomy.corpus.n_units_analysed >= 235 and validity.n_splits == 5
    assert validity.oblique_rotation == "oblimin" and len(validity.oblique_factor_correlations) == 3
    store = RunStore(root.uri)
    summary = store.quality("taxonomy_validity")
    assert isinstance(summary, pd.DataFrame) and summary["verdict"].tolist() == [validity.verdict]
    assert len(store.quality("taxonomy_replication")) == 15 and len(store.quality("taxonomy_kmo")) >= 20
    # the synthetic respondents' training groups share one generating process: invariant up to scalar;
    # the five families have 48 respondents each, below the floor of 5 units per word
    training, family = taxonomy.validity.invariance
    assert training.grouping == "training" and training.level == "scalar", training
    assert training.groups == ["aligned", "instruction-tuned", "pretrained"]
    assert "means can be compared" in training.sentence
    assert family.grouping == "family" and not family.computable and "0 qualify" in family.notice
    table = store.quality("taxonomy_invariance")
    assert table.query("grouping == 'training'")["model"].tolist() == ["configural", "metric", "scalar"]
    # every prompt asks for the same planted words: halves of the prompts give the same partition
    subsets = validity.prompt_subsets
    assert subsets is not None and subsets.n_splits == 3 and subsets.n_computed == 3, subsets
    assert subsets.ari_median >= 0.9, subsets
    rows = store.quality("taxonomy_prompt_subsets")
    assert len(rows) == 3 and rows["ari"].notna().all()
    halves = zip(rows["items_a"], rows["items_b"], strict=True)
    assert all(not set(a.split(",")) & set(b.split(",")) for a, b in halves)
    from valuelex.report.figures import FigureWriter, TableItem, Text
    from valuelex.report.load import load_run
    from valuelex.report.validity import validity_section

    section = validity_section(load_run(root.uri), FigureWriter(tmp_path / "report"))
    tables = {i.id: i for i in section.items if isinstance(i, TableItem)}
    assert [r[0] for r in tables["table-invariance-taxonomy-training"].rows] == ["configural", "metric", "scalar"]
    texts = [i.text for i in section.items if isinstance(i, Text)]
    assert training.sentence in texts and any("adjusted Rand index" in t for t in texts)
