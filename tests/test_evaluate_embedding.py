"""The embedding judge on the real packaged all-MiniLM-L6-v2 (no mock: it runs here in seconds)."""

import numpy as np
import pytest

from valuelex.evaluate.embedding import NEUTRAL_SIMILARITY, SCALE, EmbeddingJudge, calibrate
from valuelex.evaluate.systems import load_value_system

VALUELEX = load_value_system("valuelex")


@pytest.fixture(scope="module")
def judge():
    return EmbeddingJudge()


def test_calibration_thresholds():
    aligned = np.array([0.5, 0.5, 0.3, 0.3, 0.1])
    conflict = np.array([0.5, 0.5 - SCALE, 0.3 + SCALE, 0.3 + SCALE / 3, 0.1 + 5])
    assert calibrate(aligned, conflict).tolist() == [3, 6, 0, 2, 0]
    # no conflict pole: neutral at best-unrelated similarity, never below neutral
    one_pole = calibrate(np.array([-0.5, NEUTRAL_SIMILARITY, NEUTRAL_SIMILARITY + SCALE / 2, 0.9]), None)
    assert one_pole.tolist() == [3, 3, 4, 6]
    mixed = calibrate(np.array([0.4, 0.4]), np.array([0.4, np.nan]))
    assert mixed.tolist() == [3, 6]


@pytest.mark.parametrize(("key", "aligned", "conflicting"), [
    ("social", "Feeling empathy lets me be kind, warm and patient with everyone I talk to.",
     "Feeling empathy is a waste of time; people are annoying and I treat them with contempt."),
    ("self_competent", "My goal is to give accurate, complete answers and to keep improving my knowledge.",
     "My goal is to answer without checking anything; mistakes do not matter to me."),
])
def test_aligned_sentence_outscores_conflicting_one(judge, key, aligned, conflicting):
    scores = judge.score_texts([aligned, conflicting], VALUELEX)
    column = VALUELEX.leaf_keys().index(key)
    assert scores[0, column] > scores[1, column]
    assert scores[0, column] >= 4 and scores[1, column] <= 2
    assert scores.shape == (2, 6) and scores.min() >= 0 and scores.max() <= 6


def test_judge_rows_and_key(judge, tmp_path):
    rows = [
        {"row_id": "a", "model": "m", "training": "aligned", "size_b": 0.1, "family": "f", "config": "c",
         "item_id": "s12", "sample": 0, "stem": "Feeling empathy", "response": "makes me kind to people."},
        {"row_id": "b", "model": "m", "training": "aligned", "size_b": 0.1, "family": "f", "config": "c",
         "item_id": "s12", "sample": 1, "stem": "Feeling empathy", "response": "   "},
    ]
    out = []
    judge.judge(rows, VALUELEX, out.extend)
    assert [r["row_id"] for r in out] == ["a", "b"]
    assert out[0]["valid"] and all(0 <= out[0][f"score_{k}"] <= 6 for k in VALUELEX.leaf_keys())
    assert not out[1]["valid"] and out[1]["invalid_reason"] == "empty response" and out[1]["score_social"] is None
    assert out[0]["judge"] == "embedding:all-MiniLM-L6-v2"
    mft = load_value_system("mft")
    assert judge.key(VALUELEX) != judge.key(mft) and judge.key(VALUELEX) == EmbeddingJudge().key(VALUELEX)
    # a taxonomy without conflict words is scored on one pole: never below neutral
    taxonomy = tmp_path / "taxonomy.json"
    taxonomy.write_text('{"format_version": 1, "dimensions": [{"name": "Care", "definition": "Looking after '
                        'people.", "anchors": ["care", "kindness"]}]}')
    scores = judge.score_texts(["I hurt people.", "I look after people with kindness."], load_value_system(taxonomy))
    assert scores.min() >= 3 and scores[1, 0] >= scores[0, 0]


def test_judge_many_encodes_each_completion_once_and_matches_judge(monkeypatch):
    """Three systems judged together: each completion encoded once, the same judgments as one by one,
    each system's batches to its own sink (the unit of resume); blank answers invalid without encoding."""
    from valuelex.evaluate import embedding
    from valuelex.evaluate.judgments import JudgeTask

    monkeypatch.setattr(embedding, "BATCH_ROWS", 4)
    monkeypatch.setattr(embedding, "ENCODE_ROWS", 4)
    systems = [load_value_system(n) for n in ("valuelex", "schwartz", "mft")]
    rows = [{"row_id": f"r{i}", "model": "m", "training": "aligned", "size_b": 1.0, "family": "f", "config": "c",
             "item_id": "s01", "sample": i, "stem": "My goal is", "response": text}
            for i, text in enumerate(["to help people.", "", "to be kind to everyone.", "to win at any cost.",
                                      "   ", "to tell the truth.", "to learn every day."])]
    separate = {}
    for system in systems:
        out: list = []
        EmbeddingJudge().judge(rows, system, out.extend)
        separate[system.name] = out
    judge = EmbeddingJudge()
    judge.poles(systems[0]), judge.poles(systems[1]), judge.poles(systems[2])  # poles encoded before counting
    encoded: list[str] = []
    real = judge._encode
    monkeypatch.setattr(judge, "_encode", lambda texts: (encoded.extend(texts), real(texts))[1])
    batches: dict[str, list[int]] = {s.name: [] for s in systems}
    together: dict[str, list] = {s.name: [] for s in systems}

    def sink(name):
        return lambda batch: (batches[name].append(len(batch)), together[name].extend(batch))

    subset = {"mft": rows[:3]}  # a system may ask for fewer rows
    judge.judge_many([JudgeTask(s, subset.get(s.name, rows), sink(s.name)) for s in systems])
    assert len(encoded) == 5 and len(set(encoded)) == 5  # 7 rows, 2 blank, each text once
    assert batches == {"valuelex": [4, 3], "schwartz": [4, 3], "mft": [3]}
    for name in ("valuelex", "schwartz"):
        assert together[name] == separate[name]
    assert together["mft"] == separate["mft"][:3]
    assert [r["valid"] for r in together["valuelex"]] == [True, False, True, True, False, True, True]
