"""A plain verdict per model x dimension: reliable, doubtful or unreliable, with its reason.

The rule, from the figures of `valuelex.quality.assess` and the score's own CI:

- unreliable: G < 0.5 (models are ranked mostly by error), or alpha < 0.5;
- doubtful: G < 0.8, Phi < 0.8, alpha < 0.7, a CI half-width above 0.1 (a tenth of the scale), or
  G not computable (the design is too small: the reason says what is missing);
- reliable: none of these.

0.8 for G / Phi is the usual target of generalizability theory (Brennan 2001), 0.7 for alpha the
usual floor for research use (Nunnally 1978); 0.5 separates "more signal than noise" from less.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

GOOD, FLOOR, BAD = 0.8, 0.7, 0.5
MAX_HALF_WIDTH = 0.1
VERDICT_COLUMNS = ("system", "model", "key", "dimension", "level", "w", "ci_low", "ci_high", "G", "Phi", "alpha",
                   "verdict", "reason")


def _fmt(value: float) -> str:
    return f"{value:.2f}"


def verdict(g: float, phi: float, alpha: float, half_width: float, g_notice: str | None = None) -> tuple[str, str]:
    """(verdict, reason) from one dimension's G, Phi, alpha and one score's CI half-width."""
    bad, doubt, good = [], [], []
    if np.isfinite(g):
        (bad if g < BAD else doubt if g < GOOD else good).append(f"G {_fmt(g)}")
    else:
        doubt.append(f"G not computable ({g_notice or 'design too small'})")
    if np.isfinite(phi):
        (doubt if phi < GOOD else good).append(f"Phi {_fmt(phi)}")
    if np.isfinite(alpha):
        (bad if alpha < BAD else doubt if alpha < FLOOR else good).append(f"alpha {_fmt(alpha)}")
    if np.isfinite(half_width):
        (doubt if half_width > MAX_HALF_WIDTH else good).append(f"CI ±{_fmt(half_width)}")
    else:
        doubt.append("no CI")
    name = "unreliable" if bad else "doubtful" if doubt else "reliable"
    parts = [f"low: {', '.join(bad)}"] if bad else []
    parts += [f"short of target: {', '.join(doubt)}"] if doubt else []
    parts += [f"fine: {', '.join(good)}"] if good else []
    return name, "; ".join(parts)


def verdicts(scores: pd.DataFrame, coefficients: pd.DataFrame, consistency: pd.DataFrame) -> pd.DataFrame:
    """One row per score row (model x dimension of each system) with its verdict and reason."""
    rows = []
    coef = coefficients.set_index(["system", "key"]) if len(coefficients) else pd.DataFrame()
    cons = consistency.set_index(["system", "key"]) if len(consistency) else pd.DataFrame()
    for s in scores.to_dict("records"):
        at = (s["system"], s["key"])
        c = coef.loc[at] if at in coef.index else {}
        k = cons.loc[at] if at in cons.index else {}
        g, phi = float(c.get("G", np.nan)), float(c.get("Phi", np.nan))
        alpha = float(k.get("alpha", np.nan))
        half = (float(s["ci_high"]) - float(s["ci_low"])) / 2
        name, reason = verdict(g, phi, alpha, half, c.get("notice") if len(c) else "not assessed")
        rows.append({"system": s["system"], "model": s["model"], "key": s["key"], "dimension": s["dimension"],
                     "level": s.get("level"), "w": s["w"], "ci_low": s["ci_low"], "ci_high": s["ci_high"],
                     "G": g, "Phi": phi, "alpha": alpha, "verdict": name, "reason": reason})
    return pd.DataFrame(rows, columns=list(VERDICT_COLUMNS))
