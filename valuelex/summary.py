"""The end-of-run summary a person reads: scores with CIs, reliability verdicts, time per stage, the report.

    valuelex run configs/quick.yaml          # prints this summary; --json prints the stage summaries

What it shows, all read back through `valuelex.store.RunStore`:

- per value system, a table of models x top-level dimensions (``level == "dimension"``), each cell
  ``w [ci_low, ci_high]`` (Eq. 4 with its bootstrap CI, `valuelex.evaluate.scores`), of the scores
  that count (`RunStore.current_scores`), followed by the reliability verdict of the cell's model x
  dimension (`valuelex.quality.verdict`: R reliable, D doubtful, U unreliable) when that stage ran;
- the wall seconds of every stage that ran, as the runner recorded them (``stages/<name>.json``),
  and the parts a stage ran inside itself (the completion generation inside evaluation);
- the report's ``index.html`` as a file:// URI, so a terminal makes it a link.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from valuelex.store import RunStore

VERDICT_MARK = {"reliable": "R", "doubtful": "D", "unreliable": "U"}
PARTS = {"evaluation": ("completion",)}


def cell(w: Any, low: Any, high: Any, verdict: str | None = None) -> str:
    """``0.62 [0.55, 0.70] R``: a score, its CI and the verdict's letter ('—' when missing)."""
    if w is None or pd.isna(w):
        return "—"
    text = f"{w:.2f} [{low:.2f}, {high:.2f}]" if pd.notna(low) and pd.notna(high) else f"{w:.2f}"
    return f"{text} {VERDICT_MARK.get(verdict or '', '?') if verdict else ''}".rstrip()


def score_tables(store: RunStore) -> list[str]:
    """One text table per judged value system: models (rows) x top-level dimensions (columns)."""
    scores = store.current_scores()
    if scores is None or scores.empty:
        return []
    verdicts = store.quality("verdicts")
    marks: dict[tuple[str, str, str], str] = {}
    if verdicts is not None and not verdicts.empty:
        marks = {(str(r.system), str(r.model), str(r.key)): str(r.verdict) for r in verdicts.itertuples()}
    top = scores[scores["level"] == "dimension"]
    lines = []
    for system, frame in top.groupby("system", sort=True):
        keys = list(dict.fromkeys(frame["key"]))
        names = dict(zip(frame["key"], frame["dimension"], strict=True))
        rows = [["model", *[str(names[k]) for k in keys]]]
        for model, mine in frame.groupby("model", sort=True):
            by_key = {r.key: r for r in mine.itertuples()}
            rows.append(
                [
                    str(model),
                    *[
                        cell(by_key[k].w, by_key[k].ci_low, by_key[k].ci_high, marks.get((str(system), str(model), k)))
                        if k in by_key
                        else "—"
                        for k in keys
                    ],
                ]
            )
        judge = str(frame["judge"].iloc[0])
        lines.append(f"{system} (judge {judge}; w [95% CI]" + (", verdict R/D/U" if marks else "") + ")")
        lines += _aligned(rows)
    return lines


def _aligned(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def stage_times(store: RunStore, stages: Iterable[str]) -> list[str]:
    """``elicitation 12.3 s`` per stage that ran (and its recorded parts), from the runner's records."""
    found = []
    for name in stages:
        for part in (name, *PARTS.get(name, ())):
            record = store.stage_record(part) or {}
            if "seconds" in record:
                label = part if part == name else f"  {part}"
                found.append(f"  {label:<14}{record['seconds']:>9.1f} s" + (" FAILED" if record.get("failed") else ""))
    return found


def report_uri(summaries: dict[str, dict[str, Any]]) -> str | None:
    index = (summaries.get("report") or {}).get("index")
    return Path(index).resolve().as_uri() if index else None


def format_summary(store: RunStore, summaries: dict[str, dict[str, Any]]) -> str:
    """The whole end-of-run summary (see the module docstring)."""
    lines = [f"run {store.uri}: {', '.join(summaries) or 'no stage'} done"]
    lines += score_tables(store) or ["no scores yet (the evaluation stage has not run)"]
    lines.append("time per stage")
    lines += stage_times(store, summaries)
    uri = report_uri(summaries)
    lines.append(f"report: {uri}" if uri else f"report: not built (valuelex report {store.uri})")
    return "\n".join(lines) + "\n"
