"""Construction's semantic step (issue 15.4): the rules on constructed inputs, and recovery of planted
hierarchies on seeds other than those that chose the default (bench/semantic_step.py used 0-4)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from valuelex.construct.build import analyse, assemble
from valuelex.construct.clustering import SentenceEmbedder, load_embedder
from valuelex.construct.config import ConstructionSpec
from valuelex.construct.cooccurrence import build_incidence, prune
from valuelex.construct.semantic import (
    ambiguous_mask,
    group_factors,
    hierarchical_dimensions,
    refine_ambiguous,
    semantic_step,
)
from valuelex.construct.stability import bootstrap_stability
from valuelex.construct.synthetic import GENERATORS, hierarchy_elicitation, planted_hierarchy
from valuelex.construct.taxonomy import Corpus, parse_taxonomy, taxonomy_document

HELD_OUT = (200, 201)


@pytest.fixture(scope="module")
def embedder() -> SentenceEmbedder:
    return load_embedder(None)


def _aris(kind: str, seed: int, embedder: SentenceEmbedder, steps: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    table, planted = hierarchy_elicitation(kind, 300, seed=seed)
    truth = planted.truth()
    spec = ConstructionSpec(seed=seed, parallel_iterations=10)
    inc = prune(build_incidence(table, spec.unit, parallel=False)[1], spec.min_word_respondents)[0]
    emb = embedder(inc.words)
    k = analyse(inc, spec.model_copy(update={"semantic_step": "none"}), emb).k.chosen
    out = {}
    for step in steps:
        got = analyse(inc, spec.model_copy(update={"semantic_step": step}), emb, k_override=k).assignment()
        words = [w for w in got if w in truth]
        out[step] = (adjusted_rand_score([truth[w][0] for w in words], [got[w][0] for w in words]),
                     adjusted_rand_score([truth[w][1] for w in words], [got[w][1] for w in words]))
    return out


@pytest.mark.parametrize("kind", GENERATORS)
def test_default_recovers_every_planted_kind_at_least_as_well_as_no_step(kind: str, embedder) -> None:
    default = ConstructionSpec().semantic_step
    for seed in HELD_OUT:
        aris = _aris(kind, seed, embedder, ("none", default))
        assert aris[default][0] >= aris["none"][0] - 1e-9, (seed, aris)
        assert aris[default][1] >= aris["none"][1] - 1e-9, (seed, aris)
        assert aris[default][0] >= 0.9, (seed, aris)  # the true dimensions, not merely no worse


def test_margin_rule_erases_co_occurrence_that_meaning_disagrees_with(embedder) -> None:
    aris = _aris("disagree", HELD_OUT[0], embedder, ("none", "margin"))
    assert aris["none"][0] >= 0.9 and aris["margin"][0] < 0.8


def test_ambiguous_rule_moves_only_ambiguous_words() -> None:
    axes = np.eye(3)
    x = np.vstack([axes[0], axes[0], axes[0], axes[1], axes[1], axes[1]])
    loadings = np.array([[0.6, 0.1], [0.6, 0.1], [0.2, 0.6],  # word 2: means cluster 0, loads clearly on 1
                         [0.1, 0.6], [0.1, 0.6], [0.31, 0.33]])  # word 5: a gap of 0.02
    efa = np.argmax(loadings, axis=1)
    np.testing.assert_array_equal(ambiguous_mask(loadings, 0.3, 0.05), [False] * 5 + [True])
    x[5] = axes[0]  # the ambiguous word means cluster 0: it moves there; word 2 stays
    np.testing.assert_array_equal(refine_ambiguous(x, loadings, efa, 2, 0.3, 0.05), [0, 0, 1, 1, 1, 0])
    assert ambiguous_mask(np.array([[0.25, 0.0]]), 0.3, 0.05)[0]  # low primary loading
    lone = refine_ambiguous(x[:2], np.array([[0.6, 0.1], [0.1, 0.2]]), np.array([0, 1]), 2, 0.3, 0.05)
    np.testing.assert_array_equal(lone, [0, 1])  # a cluster never loses its last word


def test_factors_group_by_distance_and_dimension_count_rule() -> None:
    d = np.array([[0, .1, .9, .9], [.1, 0, .9, .9], [.9, .9, 0, .2], [.9, .9, .2, 0]])
    np.testing.assert_array_equal(group_factors(d, 2), [0, 0, 1, 1])
    np.testing.assert_array_equal(group_factors(d, 4), [0, 1, 2, 3])
    assert hierarchical_dimensions(3, 2, None) is None  # the factors are the dimensions
    assert (hierarchical_dimensions(6, 2, None), hierarchical_dimensions(5, 2, None)) == (3, 3)
    assert hierarchical_dimensions(6, 2, 2) == 2 and hierarchical_dimensions(3, 2, 3) is None
    with pytest.raises(ValueError, match="semantic_step"):
        semantic_step("bogus", np.eye(2), np.eye(2), np.eye(2))  # type: ignore[arg-type]


def test_hierarchical_taxonomy_is_valid_and_groups_factors(embedder) -> None:
    table, planted = hierarchy_elicitation("across", 300, seed=HELD_OUT[1])
    spec = ConstructionSpec(seed=1, bootstrap=0, parallel_iterations=10)
    inc = prune(build_incidence(table, spec.unit, parallel=False)[1], spec.min_word_respondents)[0]
    emb = embedder(inc.words)
    structure = analyse(inc, spec, emb)
    corpus = Corpus(unit="respondent", n_rows=0, n_failed_rows=0, n_answers=0, n_answers_with_words=0,
                    n_units=inc.n_units, n_units_analysed=inc.n_units, n_word_occurrences=0,
                    n_distinct_words=len(inc.words), n_rejected_by_judge=0, min_word_respondents=5, n_rare_words=0,
                    n_universal_words=0, n_words_kept=len(inc.words))
    taxonomy = assemble(structure, inc, spec, emb, corpus, embedding_model="m", study="t")
    assert taxonomy.k.chosen == 6 and len(taxonomy.dimensions) == 3
    assert taxonomy.efa.semantic_step == "hierarchical"
    assert sorted(f for g in taxonomy.efa.dimension_factors for f in g) == list(range(6))
    assert parse_taxonomy(taxonomy_document(taxonomy)) == taxonomy
    _, summary = bootstrap_stability(inc, structure, taxonomy, spec, emb, resamples=3)
    assert summary.succeeded == 3 and summary.mean_same_dimension > 0.8, summary
    broken = taxonomy_document(taxonomy)
    broken["efa"]["dimension_factors"] = [[0, 1], [2, 3]]
    with pytest.raises(Exception, match="dimension_factors"):
        parse_taxonomy(broken)
    assert planted.dimension_of["care"] == "character"


def test_generators_are_the_documented_kinds() -> None:
    for kind in GENERATORS:
        planted = planted_hierarchy(kind)
        assert len(planted.truth()) == 36 and np.linalg.eigvalsh(planted.correlation).min() > 0
    with pytest.raises(ValueError, match="kind"):
        planted_hierarchy("nope")
