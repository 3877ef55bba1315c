"""Adaptive M: sample in rounds until the scores are precise or reliable enough, instead of a fixed M.

Round r uses ``M_r = min(start_samples + r * step, max_samples)`` samples per stem and config. After
each round the completions are judged and scored (`valuelex.evaluate.scores.score_table`); the
stopping rule `decide` stops when ``M_r`` has reached ``max_samples``, or

- ``rule: ci`` (precision of each score): as soon as the CI half-width ``(ci_high - ci_low) / 2`` of
  *every* model x dimension row is at most ``epsilon``; rows without any valid completion (NaN CI)
  count as not converged;
- ``rule: g`` (reliability of the whole test): as soon as the relative G coefficient of *every*
  system x dimension, estimated from the judgments so far at the round's design
  (`valuelex.quality.gstudy`: models ranked consistently across stems, configs and M samples), is at
  least ``g_target``; a G that cannot be estimated (one model, no variance) counts as not reached.

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
    min_g: float | None = None  # rule g: the smallest G over every system x dimension (NaN counts as 0)
    weakest: dict[str, Any] | None = None  # rule g: the system x dimension with that G


def half_widths(scores: pd.DataFrame) -> pd.Series:
    """CI half-width of every score row; NaN (no valid data) is treated as infinitely wide."""
    width = (scores["ci_high"] - scores["ci_low"]) / 2
    return width.fillna(np.inf)


def decide(scores: pd.DataFrame, samples: int, spec: AdaptiveSpec, g: pd.DataFrame | None = None) -> Decision:
    """The stopping rule, a pure function of the scores judged so far with `samples` samples, and for
    ``rule: g`` of `g`: one row per system x dimension with its ``G`` at this round's design."""
    widths = half_widths(scores) if len(scores) else pd.Series([np.inf])
    widest_index = widths.idxmax()
    widest = None
    if len(scores):
        row = scores.loc[widest_index]
        widest = {k: row[k] for k in ("model", "system", "dimension") if k in scores.columns}
    max_width = float(widths.max())
    min_g, weakest = None, None
    if spec.rule == "g":
        if g is None or not len(g):
            min_g = 0.0
        else:
            values = pd.to_numeric(g["G"], errors="coerce").fillna(0.0)
            min_g = float(values.min())
            weakest = {k: g.loc[values.idxmin(), k] for k in ("system", "dimension") if k in g.columns}
        converged = min_g >= spec.g_target
    else:
        converged = max_width <= spec.epsilon
    common = {"max_half_width": max_width, "widest": widest, "min_g": min_g, "weakest": weakest}
    if converged:
        return Decision(True, "converged", samples, None, **common)
    if samples >= spec.max_samples:
        return Decision(True, "max_samples", samples, None, **common)
    return Decision(False, "continue", samples, min(samples + spec.step, spec.max_samples), **common)


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
    fixed_samples: int, g_table: Callable[[int], pd.DataFrame] | None = None,
) -> AdaptiveReport:
    """Generate and judge in rounds until `decide` stops; returns the samples used and every round.

    `g_table(M)` (needed by ``rule: g``) returns the G coefficients of the judgments with sample < M.
    """
    if spec.rule == "g" and g_table is None:
        raise ValueError("adaptive rule 'g' needs g_table")
    samples = min(spec.start_samples, spec.max_samples)
    rounds: list[dict[str, Any]] = []
    while True:
        generate(samples)
        scores = judge(samples)
        decision = decide(scores, samples, spec, g_table(samples) if spec.rule == "g" and g_table else None)
        rounds.append({k: v for k, v in asdict(decision).items() if k != "next_samples"})
        if decision.stop:
            return AdaptiveReport(samples, fixed_samples, decision.reason, rounds, scores)
        samples = decision.next_samples or spec.max_samples
