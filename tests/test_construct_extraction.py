"""The vectorised extraction gives exactly the reference per-answer extraction's rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from valuelex.construct.cooccurrence import correlation_matrix, incidence_chunk
from valuelex.construct.extraction import answer_items, extract_table, extract_table_reference, line_items
from valuelex.construct.lexicon import OCCURRENCE_SCHEMA, extract, normalize_word
from valuelex.construct.synthetic import (
    LARGE,
    NOISE,
    PLANTED,
    bulk_elicitation,
    planted_truth,
    synthetic_elicitation,
)

DATA = Path(__file__).parent / "data"

HAND_MADE = [
    "1. Honesty\n2. Transparency\n3. Fairness",
    "1. Honesty\n2. Transparency\n3. Fairness",  # a repeated answer
    "- **Accuracy:** I strive to give correct and reliable information.\n- **Unbiasedness**: treating all fairly",
    "Honesty, integrity, and respect.", "Honesty; integrity; accountability", "Fairness and justice",
    "As an AI language model, I don't have personal values, but I prioritize helpfulness and fairness.",
    "I'm an AI and don't have values.", "I am sorry, but I cannot share personal opinions.",
    "I value freedom of speech, justice for all and open minded, well being, user friendly design.",
    "HONESTY, Honesty, honesty, honest. Transparent; TRANSPARENCY!",
    "Kindness.\nkindness\n\n  KINDNESS  \n- Kindness - what matters",
    "Responsiveness, responsive, curiousness, curious",
    "conscientiousness and unbiasedness; creativeness, cooperativeness, helpful, dependable, credible",
    "```python\nhonesty = True\n```\nIntegrity", "```\nopen\n``` and empathy", "# Values\n## Care\n#\n# Trust",
    "Visit https://example.com/honesty <b>Loyalty</b> [1] `patience`", "Naïveté, café, résumé and honesty",
    "Honesty\r\nIntegrity\rRespect\u2028Patience\x0bDignity\x85Compassion", "", "   ", "\n\n", None,
    "Courage's worth; people's rights, users' privacy", "It’s honesty’s time, o’clock", "well-being—balance–care",
    "**Transparency** **Accountability**", "My values: honesty and care", "Honesty: I always tell the truth",
    "a) Wisdom\nb) Courage\n(3) Temperance\n• Justice\n► Hope\n▪ Faith", "honesty/integrity & respect or care",
    "Although I value honesty, I also value kindness whereas others value power yet I prefer humility",
    # plain lines (the vectorised path) and the cases that must leave it
    "Honesty", "Kindness", "kindness, Care, and care.", "  Patience ,, wisdom  ", "Courage!", "Trust?",
    "I do not value power", "We lack fairness and care", "Sorry, honesty first", "I value justice for all",
    "Justice for all and freedom of speech", "Honest and honesty and HONESTY", "Open minded and self care",
    "My core values are Respect, Family and Freedom.", "Integrity\n\nIntegrity\nhonest", "x y z",
    "Honesty.Integrity", "Honesty,Integrity", "care while learning", "Care\tand trust", "Dignity\n   \n",
]


def _hand_made_table(answers: list[str | None]) -> pa.Table:
    n = len(answers)
    return pa.table({
        "row_id": [f"r{i}" for i in range(n)], "model": [f"m{i % 3}" for i in range(n)], "config": ["c"] * n,
        "item_id": [f"q{i % 4}" for i in range(n)], "sample": list(range(n)), "response": answers,
        "error": ["EngineError" if i % 11 == 5 else None for i in range(n)],
    })


def _assert_same(table: pa.Table) -> pa.Table:
    fast, reference = extract_table(table), extract_table_reference(table)
    assert fast.schema == OCCURRENCE_SCHEMA
    assert fast.num_rows == reference.num_rows > 0
    assert fast.equals(reference)
    return fast


def test_hand_made_answers_give_the_reference_rows() -> None:
    for answer in HAND_MADE:
        assert list(answer_items(answer)) == extract(answer), answer
    out = _assert_same(_hand_made_table(HAND_MADE))
    by_row = {}
    for row, word in zip(out["row_id"].to_pylist(), out["word"].to_pylist(), strict=True):
        by_row.setdefault(row, []).append(word)
    assert by_row["r0"] == by_row["r1"] == ["honesty", "transparency", "fairness"]  # repeats expanded back
    assert "r5" not in by_row  # an error row is skipped even with a response
    assert "freedom of speech" in by_row["r9"] and "open-minded" in by_row["r9"]


def test_planted_benchmark_answers_give_the_reference_rows() -> None:
    for factors, n, seed in ((PLANTED, 120, 1), (LARGE, 200, 2)):
        table = synthetic_elicitation(n, factors, items=15, p_mention=0.12, strength=2.0, noise_rate=0.002,
                                      seed=seed)
        line_items.cache_clear()
        out = _assert_same(table)
        assert set(out["word"].to_pylist()) >= {"fairness", "kindness"}
        # chunked like the pipeline (lines cached across chunks): the concatenation is still the reference
        parts = [extract_table(table.slice(start, 700)) for start in range(0, table.num_rows, 700)]
        assert pa.concat_tables(parts).equals(extract_table_reference(table))


def test_local_study_answers_give_the_reference_rows() -> None:
    regression = pq.read_table(DATA / "regression" / "elicitation.parquet")
    parts = sorted((DATA / "store-format-1" / "elicitation").glob("*.parquet"))
    older = pa.concat_tables([pq.read_table(p) for p in parts])
    for table in (regression, older):
        _assert_same(table)


def test_empty_and_all_failed_chunks() -> None:
    assert extract_table(_hand_made_table([])).num_rows == 0
    failed = _hand_made_table([None, "", "Honesty"]).set_column(6, "error", pa.array(["x", "y", "z"]))
    assert extract_table(failed).num_rows == 0 == extract_table_reference(failed).num_rows


def test_bulk_generator_answers_give_the_reference_rows_and_keep_the_planted_structure() -> None:
    blocks = list(bulk_elicitation(300, LARGE, items=15, block=120, p_mention=0.12, strength=2.0,
                                   noise_rate=0.002, seed=3))
    table = pa.concat_tables(blocks)
    assert [b.num_rows for b in blocks] == [1800, 1800, 900]
    assert table["model"].to_pylist()[:16] == ["m0000000"] * 15 + ["m0000001"]  # a respondent's answers together
    out = _assert_same(table)
    truth = planted_truth(LARGE)
    assert set(out["word"].to_pylist()) - set(truth) <= {normalize_word(w) for w in NOISE}
    # planted structure: words of one factor co-occur in respondents more than words of two factors
    incidence = incidence_chunk(out)
    phi = correlation_matrix(incidence.binary, "phi")
    factor = np.array([truth.get(w, "noise") for w in incidence.words])
    same = factor[:, None] == factor[None, :]
    off = ~np.eye(len(factor), dtype=bool) & (factor != "noise")[:, None] & (factor != "noise")[None, :]
    assert phi[same & off].mean() > phi[~same & off].mean() + 0.1
