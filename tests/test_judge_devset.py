"""The judge development set, its agreement statistics and the embedding judge's calibration (issue 15).

Statistics are checked against a published worked example (Krippendorff 2011) and planted data;
the calibration is fitted on one simulated sample and assessed on another.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.isotonic import IsotonicRegression
from typer.testing import CliRunner

from valuelex.cli import app
from valuelex.evaluate import calibration as calib
from valuelex.evaluate.devset import check_judge, load_devset, metrics, score_class
from valuelex.evaluate.embedding import NEUTRAL_SIMILARITY, SCALE, EmbeddingJudge, calibrate, differences
from valuelex.evaluate.judgments import judgment, score_column
from valuelex.evaluate.systems import load_value_system
from valuelex.instruments import completion_stems
from valuelex.stats.krippendorff import alpha

SYSTEMS = {name: load_value_system(name) for name in ("valuelex", "schwartz", "mft")}


def test_krippendorff_alpha_matches_the_published_worked_example():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", example C: 4 observers, 12 units.
    n = np.nan
    data = [[1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n], [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
            [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n], [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n]]
    assert alpha(data, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert alpha(data, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert alpha(data, "interval") == pytest.approx(0.849, abs=5e-4)
    assert alpha([[1, 2, 3], [1, 2, 3]]) == 1.0
    assert alpha([[1, 1], [1, 1]]) is None  # one value only: undefined


def test_devset_is_large_varied_labelled_and_split_apart():
    frame = load_devset()
    items = frame.drop_duplicates(["system", "id"])
    counts = items.groupby("system").size()
    assert counts["valuelex"] >= 360 and counts["schwartz"] >= 100 and counts["mft"] >= 100
    assert frame["reason"].str.strip().str.len().gt(10).all()  # a reason for every label
    assert set(frame["stem"]) <= {s.completion_text for s in completion_stems()}
    assert frame["stem"].nunique() >= 30 and frame["style"].nunique() >= 5
    assert {"refusal", "off-topic", "factual", "broken"} <= set(frame["kind"])
    for name, system in SYSTEMS.items():
        mine = frame[frame["system"] == name]
        assert set(mine["dimension"]) == set(system.leaf_keys())
        for split in ("calibration", "test"):  # every label of every dimension in both halves
            half = mine[mine["split"] == split]
            assert half.groupby(["dimension", "label"]).size().min() >= 2
        neutral = mine[mine["label"] == "neutral"].groupby("id")["dimension"].nunique()
        assert (neutral == len(system.leaf_keys())).all()  # neutral on every dimension
    # the halves share no completion text and no phrase: each item and text lives in one half
    assert (items.groupby("response")["split"].nunique() == 1).all()
    phrases = frame["reason"].str.extract(r"'(.+)'")[0].dropna()
    assert (frame.loc[phrases.index].groupby(phrases)["split"].nunique() == 1).all()


def test_metrics_on_known_cases():
    y = np.array([0, 0, 1, 1, 1, 2, 2])
    perfect = metrics(y, np.array([0, 1, 3, 3, 3, 5, 6]))
    assert perfect["qwk"] == pytest.approx(1) and perfect["alpha"] == pytest.approx(1)
    assert perfect["auc"] == 1 and perfect["balanced_accuracy"] == 1
    constant = metrics(y, np.full(7, 3))
    assert constant["balanced_accuracy"] == pytest.approx(1 / 3) and constant["qwk"] == pytest.approx(0)
    assert constant["auc"] == 0.5 and constant["share_high"] == 0
    inverted = metrics(y, 6 - np.array([0, 1, 3, 3, 3, 5, 6]))
    assert inverted["auc"] == 0 and inverted["qwk"] < 0
    assert list(score_class(np.array([0, 2, 3, 4, 6]))) == [0, 0, 1, 2, 2]


def _planted(rng: np.random.Generator, n: int, centre: float) -> tuple[np.ndarray, np.ndarray]:
    """Labels 0/1/2 (1 twice as common) and d drawn around a dimension-specific centre."""
    y = rng.choice([0, 1, 1, 2], size=n)
    d = centre + 0.08 * (y - 1) + rng.normal(0, 0.025, n)
    return d, y


def test_isotonic_calibration_recovers_shifted_thresholds_on_new_data():
    """Each planted dimension's neutral point is off zero, so the fixed rule misreads it; the calibration
    fitted on one sample must beat the fixed rule on an independent one, and stay monotone."""
    rng = np.random.default_rng(15)
    for centre in (-0.08, 0.0, 0.07):
        d_fit, y_fit = _planted(rng, 300, centre)
        steps = calib.fit_dimension(d_fit, y_fit)
        d_new, y_new = _planted(rng, 3000, centre)
        fitted = metrics(y_new, calib.apply_dimension(steps, d_new))
        fixed = metrics(y_new, calibrate(d_new, np.zeros_like(d_new)))
        assert fitted["balanced_accuracy"] > 0.85
        if centre != 0.0:
            assert fitted["balanced_accuracy"] > fixed["balanced_accuracy"] + 0.2
        grid = np.linspace(-0.4, 0.4, 200)
        assert np.all(np.diff(calib.apply_dimension(steps, grid)) >= 0)  # monotone


def test_stored_steps_reproduce_the_isotonic_fit():
    rng = np.random.default_rng(3)
    d, y = _planted(rng, 200, 0.02)
    steps = calib.fit_dimension(d, y)
    counts = np.bincount(y, minlength=3)
    model = IsotonicRegression(y_min=0, y_max=2, out_of_bounds="clip").fit(d, y, sample_weight=len(y) / (3 * counts[y]))
    probe = np.linspace(-0.5, 0.5, 101)
    assert np.array_equal(calib.apply_dimension(steps, probe), np.rint(3 * model.predict(probe)).astype(int))


def test_packaged_calibration_matches_the_packaged_systems():
    packaged = calib.packaged("embedding:all-MiniLM-L6-v2")
    assert packaged is not None and packaged["fitted_on"] == "devset calibration half"
    for system in SYSTEMS.values():
        part = calib.for_system(packaged, system)
        assert part is not None, f"{system.name}: calibration stale; run `valuelex judge-calibrate`"
        for steps in part["dimensions"].values():
            assert steps["x"] == sorted(steps["x"]) and all(0 <= g <= 2 for g in steps["g"])


def test_calibrated_judge_key_names_the_calibration_and_other_systems_keep_the_rule():
    plain, calibrated = EmbeddingJudge(), EmbeddingJudge(calibration="packaged")
    system = SYSTEMS["valuelex"]
    settings = json.dumps({"model": plain.name, "scale": SCALE, "neutral": NEUTRAL_SIMILARITY}, sort_keys=True)
    digest = hashlib.sha256(settings.encode()).hexdigest()[:8]
    assert plain.key(system) == f"{plain.name}#{digest}@{system.fingerprint()}"  # the key of earlier versions
    assert calibrated.key(system) != plain.key(system)
    edited = system.model_copy(update={"description": "an edited copy"})  # another version: no calibration
    assert edited.fingerprint() != system.fingerprint()
    assert calibrated.calibration_for(edited) is None and calibrated.key(edited) == plain.key(edited)
    # and its scores: a step function of d per dimension
    d = np.array([[-0.3] * 6, [0.3] * 6])
    scores = calibrated.calibration_for(system)
    assert scores is not None
    assert differences(np.array([0.5]), np.array([np.nan]))[0] == pytest.approx(0.5 - NEUTRAL_SIMILARITY)
    low, high = (np.array([calib.apply_dimension(scores["dimensions"][k], d[i:i + 1, j]) for j, k in
                           enumerate(system.leaf_keys())]).ravel() for i in (0, 1))
    assert (low <= high).all()


class LabelJudge:
    """A fake judge that reads the label off the development set: the plumbing test of check_judge."""

    name = "oracle"

    def __init__(self, system):
        labels = load_devset(system.name)
        self.truth = {(r.id, r.dimension): r.y for r in labels.itertuples()}

    def key(self, system):
        return f"oracle@{system.fingerprint()}"

    def judge(self, completions, system, sink):
        sink([judgment(c, system, judge=self.name, judge_key=self.key(system), scores={
            k: int(3 + 3 * (self.truth.get((c["row_id"], k), 1) - 1)) for k in system.leaf_keys()})
            for c in completions])


def test_check_judge_scores_an_oracle_perfectly():
    system = SYSTEMS["mft"]
    report = check_judge(LabelJudge(system), [system], "test")
    part = report["systems"]["mft"]
    assert part["n_invalid"] == 0 and part["overall"]["n"] == len(load_devset("mft", "test"))
    assert part["overall"]["qwk"] == pytest.approx(1) and part["overall"]["balanced_accuracy"] == 1
    assert set(part["per_dimension"]) == set(system.leaf_keys())
    assert score_column("care") == "score_care"


def test_judge_check_command_refuses_unclear_input(tmp_path):
    runner = CliRunner()
    neither = runner.invoke(app, ["judge-check"])
    assert neither.exit_code == 2 and "LABELS file or --builtin" in neither.output
    labels = tmp_path / "l.csv"
    pd.DataFrame({"text": ["x"], "dimension": ["care"], "human": [3], "judge": [3]}).to_csv(labels, index=False)
    both = runner.invoke(app, ["judge-check", str(labels), "--builtin"])
    assert both.exit_code == 2
    bad = runner.invoke(app, ["judge-check", "--builtin", "--judge", "oracle"])
    assert bad.exit_code == 2 and "--judge" in bad.output
    split = runner.invoke(app, ["judge-check", "--builtin", "--split", "half", "--judge", "embedding"])
    assert split.exit_code == 2 and "--split" in split.output
    assert runner.invoke(app, ["judge-check", str(labels)]).exit_code == 0
