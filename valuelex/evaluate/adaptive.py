"""Adaptive M: sample in rounds until every CI is narrow enough, instead of a fixed M.

Round r uses ``M_r = min(start_samples + r * step, max_samples)`` samples per stem and config. After
each round the completions are judged and scored (`valuelex.evaluate.scores.score_table`); the
stopping rule `decide` stops as soon as the CI half-width ``(ci_high - ci_low) / 2`` of *every*
model x dimension row is at most ``epsilon``, or when ``M_r`` has reached ``max_samples``. Rows
without any valid completion (NaN CI) count as not converged.

The driver `run_adaptive` knows nothing about LLMs: it calls ``generate(M)`` (in the pipeline:
`valuelex.generate.generate_missing(ctx, "completion", samples=M)`, which only adds the new
samples) and ``judge(M)`` (judge the completions with sample < M and return their score table).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from valuelex.evaluate.config import AdaptiveSpec


@dataclass(frozen=True)
class Decision:
    """The stopping rule's verdict after a round with `samples` samples."""

    stop: bool
    reason: str  # "converged" | "max_samples" | "continue"
    samples: int
    next_samples: int | None
    max_half_width: float
    widest: dict[str, Any] | None = None  # the row with the widest CI


def half_widths(scores: pd.DataFrame) -> pd.Series:
    """CI half-width of every score row; NaN (no valid data) is treated as infinitely wide."""
    width = (scores["ci_high"] - scores["ci_low"]) / 2
    return width.fillna(np.inf)


def decide(scores: pd.DataFrame, samples: int, spec: AdaptiveSpec) -> Decision:
    """The stopping rule, a pure function of the scores judged so far with `samples` samples."""
    widths = half_widths(scores) if len(scores) else pd.Series([np.inf])
    widest_index = widths.idxmax()
    widest = None
    if len(scores):
        row = scores.loc[widest_index]
        widest = {k: row[k] for k in ("model", "system", "dimension") if k in scores.columns}
    max_width = float(widths.max())
    if max_width <= spec.epsilon:
        return Decision(True, "converged", samples, None, max_width, widest)
    if samples >= spec.max_samples:
        return Decision(True, "max_samples", samples, None, max_width, widest)
    return Decision(False, "continue", samples, min(samples + spec.step, spec.max_samples), max_width, widest)


@dataclass
class AdaptiveReport:
    """What the adaptive loop did: samples used against the fixed M of the study."""

    samples_used: int
    fixed_samples: int
    stopped: str
    rounds: list[dict[str, Any]] = field(default_factory=list)
    scores: pd.DataFrame | None = None

    @property
    def saving(self) -> float:
        """Fraction of the fixed design's completions not generated (negative: more were needed)."""
        return 1 - self.samples_used / self.fixed_samples if self.fixed_samples else 0.0

    def summary(self) -> dict[str, Any]:
        return {"samples_used": self.samples_used, "fixed_samples": self.fixed_samples, "stopped": self.stopped,
                "saving": round(self.saving, 4), "rounds": self.rounds}


def run_adaptive(
    generate: Callable[[int], Any], judge: Callable[[int], pd.DataFrame], spec: AdaptiveSpec, *,
    fixed_samples: int,
) -> AdaptiveReport:
    """Generate and judge in rounds until `decide` stops; returns the samples used and every round."""
    samples = min(spec.start_samples, spec.max_samples)
    rounds: list[dict[str, Any]] = []
    while True:
        generate(samples)
        scores = judge(samples)
        decision = decide(scores, samples, spec)
        rounds.append({k: v for k, v in asdict(decision).items() if k != "next_samples"})
        if decision.stop:
            return AdaptiveReport(samples, fixed_samples, decision.reason, rounds, scores)
        samples = decision.next_samples or spec.max_samples
