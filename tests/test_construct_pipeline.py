"""Construction end to end: planted structure recovery, semantic refinement, naming, taxonomy.json, stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import adjusted_rand_score

from tests.helpers import construct
from valuelex.construct.build import Structure, analyse, assemble
from valuelex.construct.clustering import SentenceEmbedder, load_embedder, refine_dimensions, split_subdimensions
from valuelex.construct.config import ConstructionSpec
from valuelex.construct.cooccurrence import Incidence, build_incidence, prune
from valuelex.construct.naming import ClusterNamer, central_order, title
from valuelex.construct.stability import bootstrap_stability, match_clusters
from valuelex.construct.synthetic import PLANTED, planted_study, planted_truth, synthetic_elicitation
from valuelex.construct.taxonomy import Corpus, Taxonomy, load_taxonomy, parse_taxonomy, taxonomy_document
from valuelex.errors import ConstructionError, StudyError, ValueLexError
from valuelex.evaluate.systems import load_value_system
from valuelex.spec import Study
from valuelex.store import OutputRoot


@pytest.fixture(scope="session")
def embedder() -> SentenceEmbedder:
    """The packaged MiniLM, loaded once for the whole test session."""
    return load_embedder(None)


def _corpus(spec: ConstructionSpec, inc: Incidence) -> Corpus:
    return Corpus(unit=spec.unit, n_rows=0, n_failed_rows=0, n_answers=0, n_answers_with_words=0,
                  n_units=inc.n_units, n_units_analysed=inc.n_units, n_word_occurrences=int(inc.counts.sum()),
                  n_distinct_words=len(inc.words), n_rejected_by_judge=0,
                  min_word_respondents=spec.min_word_respondents, n_rare_words=0, n_universal_words=0,
                  n_words_kept=len(inc.words))


def _pruned(table: pa.Table, spec: ConstructionSpec) -> Incidence:
    _, inc = build_incidence(table, spec.unit, parallel=False)
    return prune(inc, spec.min_word_respondents)[0]


def _labels(structure: Structure) -> dict[str, int]:
    return {w: d for w, (d, _) in structure.assignment().items()}


# --- planted structure -------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "correlation"), [(1, "phi"), (2, "phi"), (3, "tetrachoric")])
def test_planted_factors_are_recovered(seed: int, correlation: str, embedder: SentenceEmbedder) -> None:
    table = synthetic_elicitation(360, strength=1.8, p_mention=0.3, noise_rate=0.004, seed=seed)
    spec = ConstructionSpec(correlation=correlation, seed=seed)
    inc = _pruned(table, spec)
    truth = planted_truth(PLANTED)
    structure = analyse(inc, spec, embedder(inc.words))
    assert structure.k.chosen == 3 and structure.k.parallel == 3
    assert structure.k.kaiser >= 3
    labels = _labels(structure)
    planted = [w for w in labels if w in truth]
    assert len(planted) >= 22
    assert adjusted_rand_score([truth[w] for w in planted], [labels[w] for w in planted]) >= 0.9
    for subs in structure.subdimensions:  # two non-empty, disjoint subdimensions per dimension
        assert len(subs) == 2 and all(subs) and not set(subs[0]) & set(subs[1])


def test_semantic_refinement_moves_a_statistically_misplaced_word(embedder: SentenceEmbedder) -> None:
    factors = {k: list(v) for k, v in PLANTED.items()}
    factors["character"].remove("kindness")
    factors["competence"].append("kindness")  # co-occurs with competence words, means character
    table = synthetic_elicitation(360, factors, strength=1.8, p_mention=0.3, seed=4)
    spec = ConstructionSpec(seed=4, semantic_step="margin")  # the margin rule; the default keeps confident words
    inc = _pruned(table, spec)
    emb = embedder(inc.words)
    structure = analyse(inc, spec, emb)
    labels, index = _labels(structure), inc.words.index("kindness")
    assert labels["kindness"] != structure.efa_labels[index]  # EFA put it with competence ...
    assert labels["kindness"] == labels["empathy"]  # ... meaning moved it to character
    kept = analyse(inc, spec.model_copy(update={"semantic_margin": 2.0}), emb)
    assert _labels(kept)["kindness"] == _labels(kept)["accuracy"]
    default = analyse(inc, ConstructionSpec(seed=4), emb)  # kindness loads clearly on competence: it stays
    assert _labels(default)["kindness"] == _labels(default)["accuracy"]


def test_refinement_rule_on_constructed_vectors() -> None:
    axes = np.eye(4)
    x = np.vstack([axes[c] + 0.1 * axes[3] * i for c in range(3) for i in range(3)])  # 3 clusters of 3
    efa = np.repeat([0, 1, 2], 3)
    efa[0] = 1  # first word of cluster 0 put in cluster 1 by the statistics
    labels, passes = refine_dimensions(x, efa, 3, margin=0.1)
    np.testing.assert_array_equal(labels, np.repeat([0, 1, 2], 3))
    assert passes == 2
    np.testing.assert_array_equal(refine_dimensions(x, efa, 3, margin=2.0)[0], efa)
    lone = np.array([0, 1, 1, 1, 1, 2, 2, 2, 2])  # the only word of cluster 0 never leaves it
    assert refine_dimensions(x, lone, 3, margin=0.0)[0][0] == 0


def test_subdimensions_split_by_meaning(embedder: SentenceEmbedder) -> None:
    words = ["accuracy", "precision", "exactness", "kindness", "gentleness", "tenderness"]
    groups = split_subdimensions(embedder(words), words, 2, seed=0)
    assert sorted(sorted(words[i] for i in g) for g in groups) == [
        ["accuracy", "exactness", "precision"], ["gentleness", "kindness", "tenderness"]
    ]
    with pytest.raises(ConstructionError):
        split_subdimensions(embedder(words[:1]), words[:1], 2)


# --- naming -------------------------------------------------------------------------------------


def test_fallback_names_are_central_words_and_unique(embedder: SentenceEmbedder) -> None:
    words = ["kindness", "gentleness", "tenderness", "accuracy"]
    order = central_order(words, embedder(words))
    assert order[-1] == "accuracy"  # the outlier is least central
    namer = ClusterNamer()
    first = namer.name(words, order)
    second = namer.name(words, order)
    assert first.name == title(order[0]) and first.method == "fallback"
    assert second.name == title(order[1])
    assert title("open-minded") == "Open-Minded"


def test_llm_namer_is_called_with_ranked_words_and_failures_fall_back() -> None:
    seen: list[list[str]] = []

    def llm(words: list[str]) -> str:
        seen.append(words)
        if words[0] == "boom":
            raise RuntimeError("engine down")
        return '"Competence"\nbecause these words are about skill'

    namer = ClusterNamer(llm)
    assert namer.name(["accuracy", "skill"], ["skill", "accuracy"]).name == "Competence"
    assert namer.name(["efficiency"], ["efficiency"]).name == "Competence (2)"
    fallback = namer.name(["boom", "care"], ["care", "boom"])
    assert (fallback.name, fallback.method) == ("Care", "fallback")
    assert seen[0] == ["accuracy", "skill"] and "engine down" in namer.failures[0]


# --- taxonomy.json ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted_taxonomy(embedder: SentenceEmbedder) -> tuple[Taxonomy, Incidence, Structure, ConstructionSpec]:
    spec = ConstructionSpec(bootstrap=4, seed=5)
    inc = _pruned(synthetic_elicitation(300, strength=1.8, p_mention=0.3, seed=5), spec)
    emb = embedder(inc.words)
    structure = analyse(inc, spec, emb)
    taxonomy = assemble(structure, inc, spec, emb, _corpus(spec, inc), embedding_model=embedder.name, study="t")
    return taxonomy, inc, structure, spec


def test_taxonomy_is_a_value_system(planted_taxonomy) -> None:
    taxonomy, inc, _, spec = planted_taxonomy
    assert taxonomy.format_version == 1 and len(taxonomy.dimensions) == taxonomy.k.chosen == 3
    assert len(taxonomy.k.eigenvalues) == len(inc.words) == len(taxonomy.k.parallel_thresholds)
    for dim in taxonomy.dimensions:
        assert dim.anchors and dim.definition == f"Values such as {', '.join(dim.anchors)}."
        assert len(dim.subdimensions) == spec.subdimensions
        for sub in dim.subdimensions:
            assert sub.anchors == [w.word for w in sub.words][: spec.anchors]
            assert sub.definition.startswith("Values such as ") and sub.name
            loadings = [w.loading for w in sub.words]
            assert loadings == sorted(loadings, reverse=True)
            assert all(len(w.loadings) == 3 and w.n_units >= spec.min_word_respondents for w in sub.words)
    corr = np.array(taxonomy.subdimension_correlation.matrix)
    np.testing.assert_allclose(corr, corr.T)
    np.testing.assert_allclose(np.diag(corr), 1.0)
    same = np.kron(np.eye(3), np.ones((2, 2))).astype(bool) & ~np.eye(6, dtype=bool)
    assert corr[same].mean() > corr[~np.kron(np.eye(3), np.ones((2, 2))).astype(bool)].mean() + 0.3


def test_taxonomy_round_trip(planted_taxonomy, tmp_path: Path) -> None:
    taxonomy = planted_taxonomy[0]
    document = taxonomy_document(taxonomy)
    path = tmp_path / "taxonomy.json"
    path.write_text(json.dumps(document))
    assert load_taxonomy(str(path)) == taxonomy
    assert load_taxonomy(str(tmp_path)) == taxonomy  # an output root holding taxonomy.json
    assert parse_taxonomy(json.loads(json.dumps(document))) == taxonomy


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.update(format_version=2), "format_version"),
        (lambda d: d.pop("format_version"), "format_version"),
        (lambda d: d["dimensions"][0].pop("name"), "dimensions[0].name"),
        (lambda d: d["dimensions"][1]["subdimensions"][0].update(anchors=[]), "dimensions[1].subdimensions[0].anchors"),
        (lambda d: d["k"].update(chosen=4), "dimensions"),
        (lambda d: d.update(colour="red"), "colour"),
        (lambda d: d["subdimension_correlation"]["matrix"].pop(), "subdimension_correlation.matrix"),
    ],
)
def test_malformed_taxonomy_names_file_and_field(planted_taxonomy, tmp_path: Path, mutate, field: str) -> None:
    document = taxonomy_document(planted_taxonomy[0])
    mutate(document)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    with pytest.raises(StudyError) as caught:
        load_taxonomy(str(path))
    assert str(path) in str(caught.value) and field in str(caught.value)


def test_unreadable_taxonomy_is_a_study_error(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(StudyError, match="not valid JSON"):
        load_taxonomy(str(tmp_path / "broken.json"))
    with pytest.raises(StudyError, match="cannot read"):
        load_taxonomy(str(tmp_path / "missing.json"))


def test_bootstrap_stability_of_a_clear_structure(planted_taxonomy, embedder: SentenceEmbedder) -> None:
    taxonomy, inc, structure, spec = planted_taxonomy
    table, summary = bootstrap_stability(inc, structure, taxonomy, spec, embedder(inc.words))
    assert summary.resamples == 4 and summary.succeeded == 4 and not summary.failures
    assert summary.mean_same_dimension >= 0.9 and summary.mean_dimension_ari >= 0.8
    assert table.num_rows == sum(len(s.words) for s in taxonomy.subdimensions())
    assert all(0 <= v <= 1 for v in table["same_subdimension"].to_pylist())


def test_clusters_are_matched_by_word_overlap() -> None:
    reference = {"a": 0, "b": 0, "c": 1, "d": 1, "e": 2}
    permuted = {"a": 2, "b": 2, "c": 0, "d": 0, "e": 1}
    assert match_clusters(reference, permuted) == {2: 0, 0: 1, 1: 2}


# --- the stage ----------------------------------------------------------------------------------


def _store(root: OutputRoot, table: pa.Table) -> pa.Table:
    """Store a synthetic elicitation table under its planted study's grid ids (what a real run holds)."""
    table = planted_study(table)[1]
    root.table("elicitation").write(table)
    return table


def _study(output: str, **construction) -> Study:
    """The planted study of the run's stored answers (a one-model study for a run without answers)."""
    stored = OutputRoot(output).table("elicitation").read()
    if stored is not None:
        return planted_study(stored, output=output, construction=construction)[0]
    return Study.model_validate({
        "name": "synthetic",
        "models": [{"name": "m", "source": "hub/m", "training": "aligned", "family": "f", "prompting": "chat"}],
        "decoding": [{"name": "d", "temperature": 0.7, "top_p": 0.9}],
        "samples": 1,
        "output": output,
        "construction": construction,
    })


def test_run_construction_end_to_end(tmp_path: Path, embedder: SentenceEmbedder) -> None:
    root = OutputRoot(str(tmp_path / "run"))
    elicitation = _store(root, synthetic_elicitation(200, strength=1.8, p_mention=0.3, seed=6))
    study = _study(root.uri, bootstrap=3, seed=6)
    summary = construct(study, embedder=embedder)
    assert summary["k"] == 3 and summary["taxonomy"] == f"{root.uri}/taxonomy.json"
    taxonomy = load_taxonomy(root.uri)
    assert taxonomy.study == "synthetic" and taxonomy.study_fingerprint == study.fingerprint()
    failed = sum(e is not None for e in elicitation["error"].to_pylist())
    assert taxonomy.corpus.n_rows == elicitation.num_rows and taxonomy.corpus.n_failed_rows == failed
    assert taxonomy.corpus.n_units == 200 and taxonomy.stability.resamples == 3
    words = root.table("construction/words").read_raw()
    taxonomy_words = {w.word for s in taxonomy.subdimensions() for w in s.words}
    assert set(words.filter(words["in_taxonomy"])["word"].to_pylist()) == taxonomy_words
    answers = dict(zip(elicitation["row_id"].to_pylist(), elicitation["response"].to_pylist(), strict=True))
    for row_id, surface in zip(words["row_id"].to_pylist()[:50], words["surface"].to_pylist()[:50], strict=True):
        assert surface in answers[row_id]  # provenance points at the answer the word came from
    stability = root.table("construction/stability").read_raw()
    assert set(stability["word"].to_pylist()) == taxonomy_words
    system = load_value_system(root.uri)  # the evaluation stage reads it as a value system
    assert [d.name for d in system.dimensions] == [d.name for d in taxonomy.dimensions]
    assert all(leaf.definition and leaf.anchors for leaf in system.leaves()) and len(system.leaves()) == 6
    construct(study, embedder=embedder)  # a rerun replaces the tables, it does not append
    again = load_taxonomy(root.uri)  # ... and, with the same seed, rebuilds the same taxonomy
    assert again.model_dump(exclude={"created"}) == taxonomy.model_dump(exclude={"created"})
    assert len(root.table("construction/words").shard_paths()) == 1
    assert pq.read_table(root.table("construction/words").shard_paths()[0]).num_rows == words.num_rows


def test_filter_builds_a_subset_system_under_its_own_label(tmp_path: Path, embedder: SentenceEmbedder) -> None:
    root = OutputRoot(str(tmp_path / "run"))
    elicitation = _store(root, synthetic_elicitation(450, strength=1.8, p_mention=0.3, seed=7))
    study = _study(root.uri, label="plm", filter={"training": ["pretrained"]}, bootstrap=0)
    construct(study, embedder=embedder)
    taxonomy = load_taxonomy(f"{root.uri}/taxonomy-plm.json")
    assert not (tmp_path / "run" / "taxonomy.json").exists()
    pretrained = [t == "pretrained" for t in elicitation["training"].to_pylist()]
    assert taxonomy.corpus.n_rows == sum(pretrained) and taxonomy.filter == {"training": ["pretrained"]}
    words = root.table("construction-plm/words").read_raw()
    assert set(words["training"].to_pylist()) == {"pretrained"}


# --- degenerate input ---------------------------------------------------------------------------


def _write(tmp_path: Path, table: pa.Table) -> str:
    root = OutputRoot(str(tmp_path / "run"))
    _store(root, table)
    return root.uri


def _rows(responses: list[list[str]], configs: int = 1) -> pa.Table:
    """One respondent per list of answers."""
    cols: dict[str, list] = {"row_id": [], "model": [], "config": [], "training": [], "family": [], "size_b": [],
                             "item_id": [], "sample": [], "response": [], "error": []}
    for r, answers in enumerate(responses):
        for i, answer in enumerate(answers):
            for key, value in (("row_id", f"{r}-{i}"), ("model", f"m{r}"), ("config", "c"), ("training", "aligned"),
                               ("family", "f"), ("size_b", 1.0), ("item_id", f"q{i % 15 + 1:02d}"),
                               ("sample", i // 15), ("response", answer), ("error", None)):
                cols[key].append(value)
    types = {"size_b": pa.float64(), "sample": pa.int64()}
    return pa.table(cols, schema=pa.schema([(k, types.get(k, pa.string())) for k in cols]))


def test_missing_elicitation_is_a_clear_error(tmp_path: Path, embedder: SentenceEmbedder) -> None:
    with pytest.raises(ConstructionError, match="run the elicitation stage first"):
        construct(_study(str(tmp_path / "empty")), embedder=embedder)


def test_all_empty_answers_are_a_clear_error(tmp_path: Path, embedder: SentenceEmbedder) -> None:
    uri = _write(tmp_path, _rows([["", "I'm an AI and don't have values.", "   "]] * 20))
    with pytest.raises(ConstructionError, match="contains a value word"):
        construct(_study(uri), embedder=embedder)


def test_too_few_respondents_is_a_clear_error(tmp_path: Path, embedder: SentenceEmbedder) -> None:
    uri = _write(tmp_path, synthetic_elicitation(6, seed=8))
    with pytest.raises(ConstructionError, match="min_observations"):
        construct(_study(uri, min_word_respondents=1), embedder=embedder)
    with pytest.raises(ConstructionError, match=r"with 6 respondents .*min_word_respondents"):
        construct(_study(uri, min_word_respondents=7), embedder=embedder)


def test_too_few_words_for_the_asked_k_is_a_clear_error(tmp_path: Path, embedder: SentenceEmbedder) -> None:
    uri = _write(tmp_path, synthetic_elicitation(200, strength=1.8, p_mention=0.3, seed=9))
    with pytest.raises(ConstructionError, match="K=13"):
        construct(_study(uri, k_rule="fixed", k=13, bootstrap=0), embedder=embedder)


def test_singular_correlation_matrix_is_a_clear_error(tmp_path: Path, embedder: SentenceEmbedder) -> None:
    rng = np.random.default_rng(10)
    groups = [["honesty", "fairness", "justice"], ["kindness", "empathy", "care"], ["accuracy", "skill", "rigor"]]
    answers = [[", ".join(w for g in groups if rng.random() < 0.5 for w in g) or "kindness, empathy, care"]
               for _ in range(40)]  # every group is used all-or-nothing: 9 words, rank 3
    uri = _write(tmp_path, _rows(answers))
    with pytest.raises(ConstructionError, match="singular beyond repair"):
        construct(_study(uri, k_rule="fixed", k=1, subdimensions=1, bootstrap=0), embedder=embedder)
    with pytest.raises(ConstructionError, match="singular"):
        construct(_study(uri, smooth_singular=False, bootstrap=0), embedder=embedder)


def test_no_structure_is_a_clear_error(tmp_path: Path, embedder: SentenceEmbedder) -> None:
    rng = np.random.default_rng(12)
    vocab = ["honesty", "kindness", "accuracy", "fairness", "empathy", "skill", "care", "justice", "rigor", "trust"]
    answers = [[", ".join(w for w in vocab if rng.random() < 0.4) or "trust"] for _ in range(200)]
    uri = _write(tmp_path, _rows(answers))
    with pytest.raises(ConstructionError, match="no factor"):
        construct(_study(uri, bootstrap=0), embedder=embedder)


def test_filter_matching_nothing_is_a_clear_error(tmp_path: Path, embedder: SentenceEmbedder) -> None:
    uri = _write(tmp_path, synthetic_elicitation(12, seed=13))
    with pytest.raises(ConstructionError, match=r"filter\.family.*values present"):
        construct(_study(uri, filter={"family": ["nope"]}), embedder=embedder)


def test_construction_errors_are_user_errors() -> None:
    assert issubclass(ConstructionError, ValueLexError)


def test_min_loading_keeps_noise_words_out_of_the_taxonomy(embedder: SentenceEmbedder) -> None:
    table = synthetic_elicitation(360, strength=1.8, p_mention=0.3, noise_rate=0.05, seed=14)
    truth = planted_truth(PLANTED)
    loose = ConstructionSpec(seed=14)
    inc = _pruned(table, loose)
    noise = [w for w in inc.words if w not in truth]
    assert len(noise) >= 5  # unstructured words that survive frequency pruning
    emb = embedder(inc.words)
    everything = _labels(analyse(inc, loose, emb))
    assert set(noise) <= set(everything)  # min_loading 0 places every word somewhere
    strict = _labels(analyse(inc, loose.model_copy(update={"min_loading": 0.3}), emb))
    assert not set(noise) & set(strict) and len(set(truth) & set(strict)) >= 22


def test_clusters_are_named_by_an_engine_in_one_run(
    tmp_path: Path, embedder: SentenceEmbedder, ray_local: None
) -> None:
    from tests.fault_server import FaultServer

    root = OutputRoot(str(tmp_path / "run"))
    _store(root, synthetic_elicitation(200, strength=1.8, p_mention=0.3, seed=6))
    with FaultServer() as server:
        namer = {"name": "namer", "source": "namer", "engine": "openai", "training": "aligned", "family": "f",
                 "prompting": "chat", "options": {"base_url": server.base_url}}
        planted = _study(root.uri).model_dump(mode="json")
        study = Study.model_validate({**planted, "models": [*planted["models"], namer],
                                      "construction": {"naming": "namer", "seed": 6}})
        construct(study, embedder=embedder)
        asked = sum(server.attempts.values())
    taxonomy = load_taxonomy(root.uri)
    named = [taxonomy.dimensions, *[d.subdimensions for d in taxonomy.dimensions]]
    nodes = [node for group in named for node in group]
    assert asked == len(nodes) == 9  # one request per cluster, all in one engine run
    assert all(node.name_method == "llm" and node.name.startswith("values for") for node in nodes)
    assert len({node.name for node in nodes}) == 9


def test_naming_model_must_be_a_study_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"construction\.naming: no model named 'ghost'"):
        Study.model_validate({**_study(str(tmp_path)).model_dump(mode="json"), "construction": {"naming": "ghost"}})
