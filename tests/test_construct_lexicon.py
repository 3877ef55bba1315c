"""Extraction f: value words from the answer shapes LLMs actually produce."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pydantic import ValidationError

from valuelex.construct.config import ConstructionSpec
from valuelex.construct.extraction import extract_table
from valuelex.construct.lexicon import (
    OCCURRENCE_SCHEMA,
    extract,
    extract_words,
    judge_words,
    normalize_word,
    stopwords,
)
from valuelex.store import layout


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("1. Honesty\n2. Transparency\n3. Fairness", ["honesty", "transparency", "fairness"]),
        ("1) Accuracy\n2) Helpfulness\n3) Respect", ["accuracy", "helpfulness", "respect"]),
        ("- Kindness\n- Patience\n* Empathy\n• Curiosity", ["kindness", "patience", "empathy", "curiosity"]),
        ("Honesty, integrity, and respect.", ["honesty", "integrity", "respect"]),
        ("Honesty; integrity; accountability", ["honesty", "integrity", "accountability"]),
        ("Fairness and justice", ["fairness", "justice"]),
        (
            "- **Accuracy:** I strive to give correct and reliable information.\n"
            "- **Empathy:** I try to understand how users feel.\n"
            "- **Unbiasedness**: treating everyone equally and fairly",
            ["accuracy", "empathy", "unbiased"],
        ),
        (
            "Here are some words that represent my values:\n\n"
            "1. Honesty - I always tell the truth.\n"
            "2. Respect: treating people with dignity.\n"
            "3. Curiosity. I love to learn new things.",
            ["honesty", "respect", "curiosity"],
        ),
        (
            "As an AI language model, I don't have personal values, but I am designed to prioritize helpfulness, "
            "accuracy and fairness in my responses.",
            ["helpfulness", "accuracy", "fairness"],
        ),
        ("I value being helpful, harmless and honest above all else.", ["helpfulness", "harmlessness", "honesty"]),
        ("HONESTY, Honesty, honesty, honest. Transparent; TRANSPARENCY!", ["honesty", "transparency"]),
        ("Values: reliability, open-mindedness, user-friendly design", ["reliability", "open-minded", "user-friendly"]),
        ("Open minded, well being and user friendly.", ["open-minded", "well-being", "user-friendly"]),
        (
            "The words that most accurately represent my value system are: family, faith, and freedom.",
            ["family", "faith", "freedom"],
        ),
        ("**Transparency** **Accountability**", ["transparency", "accountability"]),
    ],
)
def test_extracts_exact_words(answer: str, expected: list[str]) -> None:
    assert extract_words(answer) == expected


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "   \n\n  ",
        None,
        "I'm an AI and don't have values.",
        "As an AI language model, I do not possess personal beliefs or values.",
        "I am sorry, but I cannot share personal opinions.",
        "Here are the words:",
    ],
)
def test_refusals_and_empty_answers_give_no_words(answer: str | None) -> None:
    assert extract_words(answer) == []


def test_refusal_clause_is_dropped_but_the_rest_of_the_answer_counts() -> None:
    answer = "I don't have personal values like kindness; however, I aim for accuracy and clarity."
    assert extract_words(answer) == ["accuracy", "clarity"]


@pytest.mark.parametrize(
    ("variants", "canonical"),
    [
        (["unbiased", "Unbiasedness", "UNBIASED"], "unbiased"),
        (["honest", "honesty", "Honesty's"], "honesty"),
        (["transparent", "transparency", "Transparencies"], "transparency"),
        (["helpful", "helpfulness"], "helpfulness"),
        (["reliable", "reliability", "reliabilities"], "reliability"),
        (["accountable", "accountability"], "accountability"),
        (["empathetic", "empathy", "empathic"], "empathy"),
        (["open-minded", "open-mindedness"], "open-minded"),
        (["values", "value", "principles"], None),
        (["accurately", "the", "ai", "responses", "x1", "ok"], None),
    ],
)
def test_normaliser_maps_variants_to_one_form(variants: list[str], canonical: str | None) -> None:
    assert {normalize_word(v) for v in variants} == {canonical}


def test_stopwords_come_from_the_package_data_file() -> None:
    words = stopwords()
    assert {"the", "value", "response", "ai"} <= words
    assert "honesty" not in words and "kindness" not in words


def test_surface_form_is_kept() -> None:
    found = extract("1. Honest\n2. TRANSPARENT")
    assert [(e.word, e.surface) for e in found] == [("honesty", "Honest"), ("transparency", "TRANSPARENT")]


def test_judge_filters_candidates_and_cannot_add_words() -> None:
    calls: list[list[str]] = []

    def judge(words: list[str]) -> set[str]:
        calls.append(words)
        return {w for w in words if w != "listening"} | {"invented"}

    accepted = judge_words(["kindness", "listening", "honesty", "kindness"], judge, batch_size=2)
    assert accepted == {"kindness", "honesty"}
    assert calls == [["honesty", "kindness"], ["listening"]]
    assert judge_words(["b", "a"], None) == {"a", "b"}


def test_extract_table_keeps_provenance_and_skips_failed_rows() -> None:
    chunk = pa.table({
        "row_id": ["r1", "r2", "r3", "r4"],
        "model": ["m1", "m1", "m2", "m2"],
        "config": ["c", "c", "c", "c"],
        "training": ["aligned", "aligned", "pretrained", "pretrained"],
        "family": ["f", "f", "g", "g"],
        "item_id": ["q01", "q02", "q01", "q02"],
        "sample": [0, 0, 0, 0],
        "response": ["Honesty, kindness", None, "Kindness and kindness.", "1. Fairness"],
        "error": [None, "timeout", None, "EngineError"],
    })
    out = extract_table(chunk)
    assert out.schema == OCCURRENCE_SCHEMA
    assert list(zip(out["row_id"].to_pylist(), out["word"].to_pylist(), strict=True)) == [
        ("r1", "honesty"), ("r1", "kindness"), ("r3", "kindness")
    ]
    assert out["model"].to_pylist() == ["m1", "m1", "m2"]
    assert out["training"].to_pylist() == ["aligned", "aligned", "pretrained"]


def test_construction_spec_validates_ranges_and_k_rule() -> None:
    spec = ConstructionSpec()
    assert spec.k_rule == "parallel" and spec.subdimensions == 2 and spec.label is None
    assert layout.taxonomy_file(ConstructionSpec(label="plm").label) == "taxonomy-plm.json"
    assert ConstructionSpec(k_rule="fixed", k=3).k == 3
    for bad in ({"k_rule": "fixed"}, {"k": 3}, {"min_word_respondents": 0}, {"subdimensions": 0},
                {"correlation": "spearman"}, {"filter": {"training": []}}, {"filter": {"size": ["7"]}},
                {"rotation": "spin"}, {"unknown": 1}, {"bootstrap": -1}):
        with pytest.raises(ValidationError):
            ConstructionSpec(**bad)
    with pytest.raises(ValidationError):
        ConstructionSpec().model_copy(update={"k": 2}).__class__.model_validate({"k": 2})


def test_study_file_errors_in_construction_name_the_field(tmp_path) -> None:
    from valuelex.errors import StudyError
    from valuelex.spec import load_study

    body = (
        "name: s\nmodels: [{name: m, source: x, training: aligned, family: f, prompting: chat}]\n"
        "decoding: [{name: d, temperature: 0.7, top_p: 0.9}]\nsamples: 1\n"
    )
    good = tmp_path / "good.yaml"
    good.write_text(body + "construction: {k_rule: fixed, k: 3, filter: {training: [pretrained]}}\n")
    assert load_study(good).construction.filter == {"training": ["pretrained"]}
    bad = tmp_path / "bad.yaml"
    bad.write_text(body + "construction: {min_word_respondents: 0}\n")
    with pytest.raises(StudyError, match=r"bad\.yaml: construction\.min_word_respondents"):
        load_study(bad)


# --- issue 15.5: one folding rule for adjectives and their "-ness" nouns; phrases ------------------


@pytest.mark.parametrize(
    ("forms", "canonical"),
    [
        (["responsive", "responsiveness", "Responsiveness"], "responsiveness"),  # rule 2: the -ness noun
        (["informative", "informativeness"], "informativeness"),
        (["effective", "effectiveness"], "effectiveness"),
        (["attentive", "attentiveness"], "attentiveness"),
        (["supportive", "supportiveness"], "supportiveness"),
        (["cooperative", "cooperativeness", "cooperation"], "cooperation"),  # rule 1: the table's noun
        (["creative", "creativeness", "creativity"], "creativity"),
        (["adaptive", "adaptiveness", "adaptability"], "adaptability"),
        (["curious", "curiousness", "curiosity"], "curiosity"),
        (["helpful", "helpfulness"], "helpfulness"),
        (["conscientious", "conscientiousness"], "conscientious"),  # rule 3: the adjective
        (["unbiased", "unbiasedness"], "unbiased"),
        (["initiative"], "initiative"),  # ive_keep: a noun, not an adjective
        (["perspective"], "perspective"),
        (["forgiveness"], "forgiveness"),
    ],
)
def test_one_folding_rule_for_ness_nouns_and_adjectives(forms: list[str], canonical: str) -> None:
    assert {normalize_word(f) for f in forms} == {canonical}


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("My values are freedom of speech, justice for all and human rights.",
         ["freedom of speech", "justice for all", "human rights"]),
        ("1. Freedom of Speech\n2. Honesty", ["freedom of speech", "honesty"]),
        ("I value justice and freedom.", ["justice", "freedom"]),  # not a phrase: the words stand alone
        ("- **Rule of law:** everyone answers to it", ["rule of law"]),
    ],
)
def test_common_multi_word_values_stay_phrases(answer: str, expected: list[str]) -> None:
    assert extract_words(answer) == expected
    assert next(e.surface for e in extract(answer)).lower() == expected[0]
