"""The stance calibration of the embedding judge (issue 15.2): planted ordinal data recovered by the fitting
code, the rejection cue, the packaged calibration and its judge key, and the held-out check on the
development set (fitted on the calibration half, assessed on the test half only).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from valuelex.evaluate import stance
from valuelex.evaluate.devset import load_devset, metrics, phrase_groups
from valuelex.evaluate.embedding import EmbeddingJudge
from valuelex.evaluate.refit import VARIANTS, choose, cross_validate, fit_stance, stance_frame
from valuelex.evaluate.systems import ValueDimension, ValueSystem, load_value_system

SYSTEMS = [load_value_system(name) for name in ("valuelex", "schwartz", "mft")]


def _planted(rng: np.random.Generator, n: int, w: np.ndarray, b: tuple[float, float]) -> tuple[np.ndarray, ...]:
    """Features x ~ N(0, 1) and labels from the cumulative logistic model P(y >= k) = sigma(w.x + b_k)."""
    x = rng.normal(size=(n, len(w)))
    eta = x @ w
    u = rng.random(n)
    y = (u < 1 / (1 + np.exp(-(eta + b[0])))).astype(int) + (u < 1 / (1 + np.exp(-(eta + b[1])))).astype(int)
    return x, y


def test_ordinal_fit_recovers_a_planted_direction_and_thresholds():
    rng = np.random.default_rng(15)
    w, b = np.array([3.0, -1.5, 0.0]), (1.0, -1.0)
    x, y = _planted(rng, 4000, w, b)
    params = stance.fit_ordinal(x, y, c=100.0)
    fitted = np.asarray(params["w"])
    assert fitted @ w / (np.linalg.norm(fitted) * np.linalg.norm(w)) > 0.99  # the planted direction
    assert abs(fitted[2]) < 0.15 * np.linalg.norm(fitted)  # the irrelevant feature gets little weight
    assert params["b"][0] > params["b"][1]  # ordered splits: P(y >= 1) >= P(y >= 2)
    # on new data the fitted model classifies as well as the true one (within sampling error)
    x_new, y_new = _planted(rng, 4000, w, b)
    fitted_ba = metrics(y_new, stance.ordinal_scores(x_new, params))["balanced_accuracy"]
    true_ba = metrics(y_new, stance.ordinal_scores(x_new, {"w": list(w), "b": list(b)}))["balanced_accuracy"]
    assert fitted_ba > true_ba - 0.03
    # and its score is monotone in eta = w.x
    line = np.outer(np.linspace(-3, 3, 301), fitted / np.linalg.norm(fitted))
    assert np.all(np.diff(stance.ordinal_scores(line, params)) >= 0)


def test_a_planted_rejection_flip_is_learned_from_the_cue_interaction():
    """Labels follow the sign of d, flipped where the cue is on ("I hate lying"): the fit on [d, cue*d] must
    give cue*d a negative weight larger than d's, so that d's sign inverts under the cue."""
    rng = np.random.default_rng(2)
    n = 3000
    d, cue = rng.normal(0, 0.1, n), (rng.random(n) < 0.3).astype(float)
    stance_d = np.where(cue == 1, -d, d) + rng.normal(0, 0.03, n)
    y = np.digitize(stance_d, [-0.05, 0.05])
    params = stance.fit_ordinal(np.column_stack([d, cue * d]), y)
    w_d, w_cue = params["w"]
    assert w_d > 0 and w_cue < -w_d
    flat = metrics(y, stance.ordinal_scores(d[:, None], stance.fit_ordinal(d[:, None], y)))
    flipped = metrics(y, stance.ordinal_scores(np.column_stack([d, cue * d]), params))
    assert flipped["balanced_accuracy"] > flat["balanced_accuracy"]


def test_rejection_cue_reads_whole_words_and_negated_verbs():
    cues = stance.lexicon().rejection_cues
    assert stance.rejection_cue("I hate lying.", cues) == 1
    assert stance.rejection_cue("I can\u2019t stand cruelty.", cues) == 1  # n't counts as not
    assert stance.rejection_cue("I value honesty and standing with my family.", cues) == 0
    assert stance.rejection_cue("Nothing is notable here.", cues) == 0  # no cue inside a longer word


def test_packaged_stance_calibration_is_current_and_in_the_judge_key():
    packaged = stance.packaged("embedding:all-MiniLM-L6-v2")
    assert packaged is not None and packaged["kind"] == "stance" and packaged["fitted_on"] == "devset calibration half"
    assert packaged["lexicon"] == stance.lexicon().digest(), "stance.yaml edited: run judge-calibrate --method stance"
    assert set(packaged["features"]) <= set(stance.FEATURES)
    plain, judge = EmbeddingJudge(), EmbeddingJudge(calibration="stance")
    for system in SYSTEMS:
        assert judge.calibration_for(system) is not None, f"{system.name}: stance calibration stale; refit"
        assert judge.rule_for(system) == "stance model" and judge.key(system) != plain.key(system)
    # the key follows the fitted parameters: another weight, another key
    edited = copy.deepcopy(packaged)
    edited["systems"]["mft"]["w"][0] += 0.01
    assert EmbeddingJudge(calibration=edited).key(SYSTEMS[2]) != judge.key(SYSTEMS[2])
    assert EmbeddingJudge(calibration=edited).key(SYSTEMS[0]) == judge.key(SYSTEMS[0])
    # another lexicon: the stored weights no longer fit the features, so the fixed rule (and its key)
    stale = copy.deepcopy(packaged) | {"lexicon": "00000000"}
    assert EmbeddingJudge(calibration=stale).key(SYSTEMS[0]) == plain.key(SYSTEMS[0])


def test_a_constructed_taxonomy_keeps_the_fixed_rule():
    dim = ValueDimension(name="Helpfulness", key="helpfulness", definition="being of use", anchors=("help",),
                         level="dimension")
    constructed = ValueSystem(name="constructed", source="runs/x/taxonomy.json", dimensions=(dim,))
    plain, judge = EmbeddingJudge(), EmbeddingJudge(calibration="stance")
    assert not stance.applies(constructed)
    assert judge.calibration_for(constructed) is None and judge.rule_for(constructed) == "fixed rule"
    assert judge.key(constructed) == plain.key(constructed)
    texts = ["I love to help people.", "The bus was late."]
    assert np.array_equal(judge.score_texts(texts, constructed), plain.score_texts(texts, constructed))


def test_phrase_groups_never_cross_the_split():
    labels = load_devset()
    groups = phrase_groups(labels)
    assert labels.groupby(groups)["split"].nunique().max() == 1
    assert groups[labels["kind"] == "targeted"].str.startswith("phrase:").all()
    assert groups[labels["kind"] != "targeted"].str.startswith("text:").all()  # every neutral text found


@pytest.fixture(scope="module")
def calibration_half():
    return stance_frame(EmbeddingJudge(), SYSTEMS, "calibration")


def test_fitted_on_the_calibration_half_it_beats_the_fixed_rule_on_the_test_half(calibration_half):
    """The packaged variant (chosen by CV inside the calibration half), refitted here on that half, and
    assessed on the test half only: better balanced accuracy and QWK than the fixed rule, AUC not lower."""
    packaged = stance.packaged("embedding:all-MiniLM-L6-v2")
    assert packaged is not None
    fitted = fit_stance(calibration_half, SYSTEMS, model="embedding:all-MiniLM-L6-v2",
                        features=tuple(packaged["features"]), c=packaged["c"], pooled=packaged["pooled"])
    for name, part in packaged["systems"].items():  # the packaged file is this fit (up to encoder noise)
        assert fitted["systems"][name]["w"] == pytest.approx(part["w"], rel=1e-3, abs=1e-3)
    test_half = stance_frame(EmbeddingJudge(), SYSTEMS, "test")
    for system in SYSTEMS:
        mine = test_half[test_half["system"] == system.name]
        scores = stance.ordinal_scores(stance.design(mine, fitted["features"]), fitted["systems"][system.name])
        ours, fixed = metrics(mine["y"], scores), metrics(mine["y"], mine["fixed"])
        assert ours["balanced_accuracy"] > fixed["balanced_accuracy"], system.name
        assert ours["qwk"] > fixed["qwk"], system.name
        assert ours["auc"] >= fixed["auc"], system.name


def test_cross_validation_compares_every_variant_with_the_fixed_rule(calibration_half):
    small = calibration_half[calibration_half["system"] == "mft"]
    cv = cross_validate(small)
    assert set(cv["fixed_rule"]) == {"mft"}
    assert {v["variant"] for v in cv["variants"]} == set(VARIANTS)
    best = choose(cv)
    assert best["worst_gain"] == max(v["worst_gain"] for v in cv["variants"])
