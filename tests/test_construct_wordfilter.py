"""The offline value-word filter (issue 15.5): measured on planted set "b", its threshold tuned on "a"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from valuelex.construct.clustering import SentenceEmbedder, load_embedder
from valuelex.construct.config import ConstructionSpec
from valuelex.construct.lexicon import extract_words, judge_words, normalize_word
from valuelex.construct.synthetic import FILTER_SETS, noisy_lists
from valuelex.construct.wordfilter import EmbeddingWordFilter, both, prototype_words, value_scores


@pytest.fixture(scope="module")
def embedder() -> SentenceEmbedder:
    return load_embedder(None)


def test_filter_drops_planted_noise_on_the_held_out_set(embedder) -> None:
    words = sorted({w for answer in noisy_lists("b", 120, seed=3) for w in extract_words(answer)})
    values = {normalize_word(w) for w in FILTER_SETS["b"]["values"]}
    assert {w for w in words if w not in values} >= {"book", "product"}  # the rules keep them
    kept = judge_words(words, EmbeddingWordFilter(embedder, ConstructionSpec().word_filter_threshold))
    precision = len(kept & values) / len(kept)
    recall = len(kept & values) / len(set(words) & values)
    assert precision >= 0.9 and recall >= 0.85, (precision, recall, sorted(set(words) - kept))


def test_prototypes_are_disjoint_from_the_planted_sets() -> None:
    proto = {normalize_word(w) for ws in prototype_words() for w in ws}
    planted = {normalize_word(w) for s in FILTER_SETS.values() for ws in s.values() for w in ws}
    assert not (proto & planted) - {None}


def test_scores_are_value_minus_non_value_similarity() -> None:
    def fake(words):  # 2-d: values point along x, non-values along y
        values = prototype_words()[0]
        return np.array([[1.0, 0.0] if w in values or w == "good" else [0.0, 1.0] for w in words])

    np.testing.assert_allclose(value_scores(fake, ["good", "chair"]), [1.0, -1.0])
    filt = EmbeddingWordFilter(fake, 0.0)
    assert list(filt(["good", "chair"])) == ["good"] and filt.rejected == ["chair"]
    assert set(both(filt, lambda ws: [w for w in ws if w != "good"])(["good", "chair"])) == set()
    assert both(None, None) is None and both(filt, None) is filt


def test_word_filter_runs_in_the_construction_stage(tmp_path: Path, embedder) -> None:
    from tests.helpers import construct
    from valuelex.construct.synthetic import NOISE, planted_study, synthetic_elicitation
    from valuelex.construct.taxonomy import load_taxonomy
    from valuelex.store import OutputRoot

    root = OutputRoot(str(tmp_path / "run"))
    table = planted_study(synthetic_elicitation(200, strength=1.8, p_mention=0.3, noise_rate=0.3, seed=6))[1]
    root.table("elicitation").write(table)
    words = {}
    for word_filter in ("none", "embedding"):
        study = planted_study(table, output=root.uri, construction={"word_filter": word_filter, "bootstrap": 0,
                                                                     "seed": 6})[0]
        construct(study, embedder=embedder)
        taxonomy = load_taxonomy(root.uri)
        words[word_filter] = {e.word for s in taxonomy.subdimensions() for e in s.words}
        rejected = taxonomy.corpus.n_rejected_by_judge
    before, after = words["none"] & set(NOISE), words["embedding"] & set(NOISE)
    assert len(before) >= 5  # without the filter the planted noise nouns reach the taxonomy
    assert len(after) <= 1 and rejected >= 10, after  # NOISE is the tuning set: "poetry" passed there too


# --- the LLM word judge (construction.word_judge) ------------------------------------------------


def test_word_judge_answer_is_read_against_the_batch() -> None:
    from valuelex.construct.wordjudge import accepted_words

    batch = ["book", "care", "honesty", "time"]
    assert accepted_words("Honesty, care.", batch) == {"honesty", "care"}
    assert accepted_words("- honest\n- Care\n- coffee", batch) == {"honesty", "care"}  # normalised; coffee not asked
    assert accepted_words("", batch) is None and accepted_words("none of them", batch) is None


def test_word_judge_runs_through_an_engine_and_a_silent_batch_keeps_its_words(ray_local: None) -> None:
    from tests.fault_server import FaultServer
    from valuelex.construct.wordjudge import BATCH, engine_word_judge, word_judge_requests
    from valuelex.spec import ModelSpec

    fillers = [f"word{a}{b}" for a in "abcdef" for b in "abcdefg"]
    words = sorted(["honesty", "care", "book", "product", "fairness", *fillers])
    assert len(words) > BATCH  # two batches
    with FaultServer() as server:
        model = ModelSpec.model_validate({"name": "judge", "source": "judge", "engine": "openai",
                                          "training": "aligned", "family": "f", "prompting": "chat",
                                          "options": {"base_url": server.base_url}})
        first, second = (r["prompt"] for r in word_judge_requests(model, words))
        def reply(content: str) -> dict:
            return {"id": "x", "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": content}}]}

        server.replies[first], server.replies[second] = reply("care, honesty"), reply("")
        accepted, notes = engine_word_judge(model, words)
    first_batch, second_batch = sorted(set(words))[:BATCH], sorted(set(words))[BATCH:]
    assert accepted == ({"care", "honesty"} & set(first_batch)) | set(second_batch)
    assert any("batch 2 named no candidate" in n for n in notes)


def test_word_judge_must_be_a_study_model(tmp_path: Path) -> None:
    from valuelex.construct.stage import ConstructionStage
    from valuelex.construct.synthetic import planted_study, synthetic_elicitation

    study = planted_study(synthetic_elicitation(6, seed=1), output=str(tmp_path))[0]
    with pytest.raises(ValueError, match=r"construction\.word_judge: no model named 'ghost'"):
        type(study).model_validate({**study.model_dump(mode="json"), "construction": {"word_judge": "ghost"}})
    named = type(study).model_validate({**study.model_dump(mode="json"),
                                        "construction": {"word_judge": study.models[0].name}})
    assert ConstructionStage().uses_engines(named) and not ConstructionStage().uses_engines(study)
