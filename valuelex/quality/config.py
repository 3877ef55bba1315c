"""Settings of the reliability stage, as they appear under `reliability:` in a study file.

Example::

    reliability:
      rejudge: 200          # completions re-judged by a second pass of the run's judge (0: none)
      resamples: 1000       # bootstrap resamples of alpha (omega uses `omega_resamples`)
      omega_resamples: 200
      seed: 0
      devset: true          # the run's judge on the development set's test half (valuelex.evaluate.devset)
"""

from __future__ import annotations

from pydantic import Field

from valuelex.respondents import Strict


class ReliabilitySpec(Strict):
    """How far the scores can be trusted: see `valuelex.quality`."""

    rejudge: int = Field(200, ge=0, le=100_000, description="completions re-judged by a second judge pass")
    resamples: int = Field(1000, ge=50, le=100_000, description="bootstrap resamples of Cronbach's alpha")
    omega_resamples: int = Field(200, ge=0, le=10_000, description="bootstrap resamples of omega (a fit each)")
    seed: int = Field(0, ge=0, description="seed of the bootstrap and of the re-judged subset")
    devset: bool = Field(True, description="score the development set's test half with the run's judge")
