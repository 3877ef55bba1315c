"""Judge check: QWK against scikit-learn, exact / ±1 agreement, confusion, labels-file errors."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from valuelex.errors import StudyError
from valuelex.evaluate.agreement import agreement, compare_judges, judge_check
from valuelex.evaluate.judgments import score_column
from valuelex.evaluate.systems import load_value_system

HUMAN = [6, 5, 3, 3, 0, 1, 4, 6, 2, 3, 3, 5]
JUDGE = [6, 4, 3, 2, 0, 3, 4, 5, 2, 3, 4, 6]
DIMS = ["self_competent"] * 6 + ["Social"] * 6


def write_labels(tmp_path, suffix=".csv", **columns):
    frame = pd.DataFrame({"row_id": [f"r{i}" for i in range(12)], "dimension": DIMS, "human": HUMAN, "judge": JUDGE})
    for name, values in columns.items():
        if values is None:
            frame = frame.drop(columns=name)
        else:
            frame[name] = values
    path = tmp_path / f"labels{suffix}"
    frame.to_parquet(path) if suffix == ".parquet" else frame.to_csv(path, index=False)
    return path


def test_agreement_by_hand():
    result = agreement([0, 3, 6, 6], [0, 4, 6, 3])
    assert result["exact"] == 0.5 and result["within1"] == 0.75 and result["n"] == 4
    confusion = np.array(result["confusion"])
    assert confusion.shape == (7, 7) and confusion.sum() == 4
    assert confusion[6, 3] == 1 and confusion[3, 4] == 1 and confusion[6, 6] == 1
    assert agreement([2, 2], [2, 2])["qwk"] is None  # undefined, not a fake 1.0 or NaN
    assert agreement([], [])["n"] == 0


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_judge_check_matches_sklearn(tmp_path, suffix):
    result = judge_check(write_labels(tmp_path, suffix))
    pair = result["pairs"]["human~judge"]
    assert pair["overall"]["qwk"] == pytest.approx(cohen_kappa_score(HUMAN, JUDGE, weights="quadratic"))
    assert pair["overall"]["exact"] == pytest.approx(np.mean(np.array(HUMAN) == np.array(JUDGE)))
    assert pair["overall"]["within1"] == pytest.approx(np.mean(np.abs(np.array(HUMAN) - np.array(JUDGE)) <= 1))
    assert sorted(pair["per_dimension"]) == ["self_competent", "social"]  # names are keyed like the judge's
    social = pair["per_dimension"]["social"]
    assert social["qwk"] == pytest.approx(cohen_kappa_score(HUMAN[6:], JUDGE[6:], weights="quadratic"))
    assert list(result["pairs"]) == ["human~judge"] and pair["skipped"] == 0


def test_judge_check_with_a_second_judge_and_gaps(tmp_path):
    second = [float(x) for x in HUMAN]
    second[0] = np.nan
    result = judge_check(write_labels(tmp_path, judge_b=second))
    assert list(result["pairs"]) == ["human~judge", "human~judge_b", "judge~judge_b"]
    assert result["pairs"]["human~judge_b"]["overall"]["qwk"] == pytest.approx(1.0)
    assert result["pairs"]["judge~judge_b"]["skipped"] == 1
    assert result["pairs"]["judge~judge_b"]["overall"]["qwk"] == pytest.approx(
        cohen_kappa_score(JUDGE[1:], HUMAN[1:], weights="quadratic"))


def test_labels_with_wrong_columns_name_file_and_columns(tmp_path):
    path = write_labels(tmp_path, human=None, row_id=None)
    with pytest.raises(StudyError) as err:
        judge_check(path)
    assert str(path) in str(err.value) and "missing columns: row_id or text, human" in str(err.value)
    text_only = write_labels(tmp_path, row_id=None, text=["a sentence"] * 12)
    assert judge_check(text_only)["rows"] == 12
    with pytest.raises(StudyError, match=r"column judge: 1 values are not integers 0\.\.6"):
        judge_check(write_labels(tmp_path, judge=[7, *JUDGE[1:]]))
    with pytest.raises(StudyError, match="column human"):
        judge_check(write_labels(tmp_path, human=["high", *HUMAN[1:]]))
    other = tmp_path / "labels.txt"
    other.write_text("x")
    with pytest.raises(StudyError, match=r"labels.txt: labels must be a .csv or .parquet"):
        judge_check(other)
    with pytest.raises(StudyError, match="cannot read labels"):
        judge_check(tmp_path / "missing.csv")


def test_compare_two_judges_on_judgments():
    system = load_value_system("mft")
    rng = np.random.default_rng(0)
    a_scores = rng.integers(0, 7, size=(10, 5))
    b_scores = np.clip(a_scores + rng.integers(-1, 2, size=(10, 5)), 0, 6)

    def table(scores, valid):
        frame = pd.DataFrame({"row_id": [f"r{i}" for i in range(10)], "valid": valid})
        for j, key in enumerate(system.leaf_keys()):
            frame[score_column(key)] = scores[:, j]
        return frame

    result = compare_judges(table(a_scores, [True] * 10), table(b_scores, [True] * 9 + [False]), system)
    assert result["completions"] == 9
    assert result["per_dimension"]["care"]["qwk"] == pytest.approx(
        cohen_kappa_score(a_scores[:9, 0], b_scores[:9, 0], weights="quadratic"))
    assert result["overall"]["n"] == 45 and result["overall"]["within1"] == 1.0
