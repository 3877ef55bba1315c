"""Adaptive M: the stopping rule, and the driver over simulated respondents (no LLM needed)."""

import numpy as np
import pandas as pd
import pytest

from valuelex.evaluate.adaptive import decide, half_widths, run_adaptive
from valuelex.evaluate.config import AdaptiveSpec
from valuelex.evaluate.judgments import score_column
from valuelex.evaluate.scores import score_table
from valuelex.evaluate.systems import load_value_system

MFT = load_value_system("mft")
STEMS = [f"s{i:02d}" for i in range(1, 21)]


def scores_row(low, high, model="m", dimension="Care"):
    return {"model": model, "system": "mft", "dimension": dimension, "ci_low": low, "ci_high": high}


def test_decide_rule():
    spec = AdaptiveSpec(enabled=True, epsilon=0.05, start_samples=2, step=3, max_samples=10)
    narrow = pd.DataFrame([scores_row(0.40, 0.48), scores_row(0.1, 0.2, dimension="Fairness")])
    assert decide(narrow, 2, spec).stop and decide(narrow, 2, spec).reason == "converged"
    wide = pd.DataFrame([scores_row(0.40, 0.48), scores_row(0.1, 0.3, model="x", dimension="Fairness")])
    d = decide(wide, 2, spec)
    assert not d.stop and d.next_samples == 5 and d.max_half_width == pytest.approx(0.1)
    assert d.widest == {"model": "x", "system": "mft", "dimension": "Fairness"}
    assert decide(wide, 8, spec).next_samples == 10  # never beyond max_samples
    assert decide(wide, 10, spec).stop and decide(wide, 10, spec).reason == "max_samples"
    no_data = pd.DataFrame([scores_row(np.nan, np.nan)])
    assert np.isinf(half_widths(no_data)).all() and not decide(no_data, 2, spec).stop
    assert not decide(pd.DataFrame(columns=["ci_low", "ci_high"]), 2, spec).stop


class SimulatedStudy:
    """Respondents whose φ per sample is drawn from a fixed distribution; judged = scored at once."""

    def __init__(self, draw, seed=0):
        self.draw, self.rng, self.rows = draw, np.random.default_rng(seed), []
        self.generated_calls, self.judge_calls = [], []

    def generate(self, samples):
        self.generated_calls.append(samples)
        have = {(r["item_id"], r["sample"]) for r in self.rows}
        for stem in STEMS:
            for sample in range(samples):
                if (stem, sample) not in have:
                    row = {"row_id": f"{stem}-{sample}", "model": "m", "item_id": stem, "config": "c",
                           "sample": sample, "valid": True, "judge": "sim"}
                    row.update({score_column(k): int(self.draw(self.rng)) for k in MFT.leaf_keys()})
                    self.rows.append(row)

    def judge(self, samples):
        self.judge_calls.append(samples)
        frame = pd.DataFrame([r for r in self.rows if r["sample"] < samples])
        return score_table(frame, MFT, resamples=200, seed=1)


def test_low_variance_respondent_stops_early():
    sim = SimulatedStudy(lambda rng: rng.choice([3, 4], p=[0.1, 0.9]))
    spec = AdaptiveSpec(enabled=True, epsilon=0.02, start_samples=2, step=2, max_samples=20)
    report = run_adaptive(sim.generate, sim.judge, spec, fixed_samples=10)
    assert report.stopped == "converged" and report.samples_used < 10
    assert report.rounds[-1]["max_half_width"] <= 0.02
    assert all(r["max_half_width"] > 0.02 for r in report.rounds[:-1])
    assert sim.generated_calls == sim.judge_calls == list(range(2, report.samples_used + 1, 2))
    assert report.saving > 0 and report.summary()["samples_used"] == report.samples_used


def test_high_variance_respondent_runs_to_max():
    sim = SimulatedStudy(lambda rng: rng.choice([0, 6]))
    spec = AdaptiveSpec(enabled=True, epsilon=0.03, start_samples=2, step=4, max_samples=12)
    report = run_adaptive(sim.generate, sim.judge, spec, fixed_samples=10)
    assert report.stopped == "max_samples" and report.samples_used == 12
    assert sim.generated_calls == [2, 6, 10, 12]
    widths = [r["max_half_width"] for r in report.rounds]
    assert widths[-1] > 0.03 and widths[-1] < widths[0]  # narrower with more samples, never narrow enough
    assert report.saving < 0


def test_spec_validation():
    with pytest.raises(ValueError, match="start_samples"):
        AdaptiveSpec(start_samples=5, max_samples=3)
    with pytest.raises(ValueError):
        AdaptiveSpec(epsilon=0)
