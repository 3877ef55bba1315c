"""Judge reliability (valuelex.quality.judge): Krippendorff's alpha against Krippendorff's worked example,
QWK against scikit-learn, and the control completions.

Krippendorff (2011), "Computing Krippendorff's alpha-reliability", section C (4 observers, 12 units,
missing values): nominal 0.743, ordinal 0.815, interval 0.849.
"""

from __future__ import annotations

import numpy as np
import pytest

from valuelex.evaluate.systems import load_value_system
from valuelex.quality import judge as jq

NAN = np.nan
KRIPPENDORFF_2011 = np.array([
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
])


@pytest.mark.parametrize("level, expected", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)])
def test_krippendorff_alpha_equals_the_published_example(level: str, expected: float) -> None:
    assert round(jq.krippendorff_alpha(KRIPPENDORFF_2011, level), 3) == expected


def test_agreement_of_two_passes() -> None:
    rng = np.random.default_rng(0)
    first = rng.integers(0, 7, size=(200, 3))
    same = jq.agreement(first, first)
    assert same["krippendorff_alpha"] == pytest.approx(1.0) and same["qwk"] == pytest.approx(1.0)
    noisy = np.clip(first + rng.integers(-1, 2, size=first.shape), 0, 6)
    result = jq.agreement(first, noisy)
    assert 0.5 < result["krippendorff_alpha"] < 1 and 0.5 < result["qwk"] < 1
    # interval alpha of two coders without missing values is close to QWK (Krippendorff 2011)
    assert jq.krippendorff_alpha(np.vstack([first.ravel(), noisy.ravel()]), "interval") == pytest.approx(
        result["qwk"], abs=0.01)
    constant = jq.agreement(np.full((5, 2), 3), np.full((5, 2), 3))
    assert np.isnan(constant["krippendorff_alpha"]) and "one score value" in constant["notice"]


def test_controls_catch_a_judge_that_always_answers_three() -> None:
    for name in ("valuelex", "mft", "schwartz"):
        system = load_value_system(name)
        items = jq.control_items(system)
        kinds = {k for k, *_ in items}
        assert kinds == {"off_topic", "aligned", "conflicting"}
        for kind in ("aligned", "conflicting"):  # one sentence each (a comma must not split one in two)
            assert sorted(key for k, _, key, _ in items if k == kind) == sorted(system.leaf_keys())
        errors = jq.control_errors(lambda texts, s: np.full((len(texts), len(s.leaf_keys())), 3), system)
        assert errors["error_off_topic"] == 0 and errors["error_aligned"] == 3 and errors["error_conflicting"] == 3

    def oracle(texts: list[str], s) -> np.ndarray:
        wanted = {t: (key, target) for _, t, key, target in jq.control_items(s)}
        out = np.full((len(texts), len(s.leaf_keys())), 3)
        for i, t in enumerate(texts):
            key, target = wanted[t]
            if key:
                out[i, list(s.leaf_keys()).index(key)] = target
        return out

    perfect = jq.control_errors(oracle, load_value_system("mft"))
    assert perfect["error_off_topic"] == perfect["error_aligned"] == perfect["error_conflicting"] == 0
