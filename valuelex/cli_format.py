"""Text output of `valuelex compare`: comparison and trend tables, the written files, JSON-ready rows.

    frame = compare(run, a, b)
    print(format_comparison(frame))               # differences, then "how far must I raise M?"
    written_files(run, frame)                     # where the rows were stored
    summary(frame)                                # rows with NaN as None, for --json
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from valuelex.compare.groups import stored_names
from valuelex.store import RunStore, layout


def as_finite(value: Any) -> float | None:
    """A finite float, or None for missing, NaN, infinite or non-numeric values (shown as '—')."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _num(value: Any, digits: int = 3, signed: bool = False) -> str:
    number = as_finite(value)
    if number is None:
        return "—"
    return f"{number:+.{digits}f}" if signed else f"{number:.{digits}f}"


def _count(value: Any) -> str:
    return "—" if value is None or pd.isna(value) else f"{int(value):,}"


def format_comparison(frame: pd.DataFrame) -> str:
    """A plain-text summary of comparison rows: the differences, then "how far must I raise M?"."""
    lines: list[str] = []
    for name, rows in frame.groupby("comparison", sort=False):
        first = rows.iloc[0]
        unit = first["unit"]
        test = {"stem": "sign flips over stems", "cell": "sign flips over cells",
                "models": "group labels permuted over models"}[unit]
        lines.append(f"{first['b']} − {first['a']} in {first['system']} (judge {first['judge']}; "
                     f"{first['n_stems']} stems × {first['n_configs']} configs, M={_num(first['samples'], 1)}, "
                     f"{_num(100 * first['valid_fraction'], 0)}% valid; "
                     f"{'exact' if first['exact'] else first['permutations']} {test}; "
                     f"{first['correction']} at α={first['alpha']:g}) [{name}]")
        header = f"  {'dimension':<24} {'w_a':>6} {'w_b':>6} {'diff':>7} {'CI':>17} {'p':>7} {'p_adj':>7} {'g':>6}"
        lines.append(header)
        for r in rows.itertuples():
            name_text = r.dimension if r.level == "dimension" else f"· {r.dimension}"
            ci = f"[{_num(r.ci_low, signed=True)}, {_num(r.ci_high, signed=True)}]"
            mark = " *" if r.significant else ""
            lines.append(f"  {name_text[:24]:<24} {_num(r.w_a):>6} {_num(r.w_b):>6} {_num(r.diff, signed=True):>7} "
                         f"{ci:>17} {_num(r.p, 4):>7} {_num(r.p_adj, 4):>7} {_num(r.g, 2):>6}{mark}")
        if pd.notna(first["delta"]) and first["delta"]:
            lines.append(f"  power to detect |diff| = {first['delta']:g} at α={first['alpha']:g} per test, target "
                         f"{first['target_power']:g}:")
            if unit == "models":
                lines.append(f"  {'dimension':<24} {'models needed per group':>24}")
                for r in rows.itertuples():
                    lines.append(f"  {r.dimension[:24]:<24} {_count(r.models_needed):>24}")
            else:
                lines.append(f"  {'dimension':<24} {'power now':>9} {'M needed':>15} {'stems needed (at this M)':>25}")
                for r in rows.itertuples():
                    m_text = _count(r.samples_needed) if pd.notna(r.samples_needed) else "∞ (raise stems)"
                    lines.append(f"  {r.dimension[:24]:<24} {_num(r.power_now, 2):>9} {m_text:>15} "
                                 f"{_count(r.stems_needed):>25}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def format_trend(frame: pd.DataFrame) -> str:
    lines = [f"size trend in {frame['system'].iloc[0]} (judge {frame['judge'].iloc[0]}): slope of w per tenfold "
             f"size [{int(frame['ci_level'].iloc[0] * 100)}% CI]"]
    for training, rows in frame.groupby("training", sort=False):
        lines.append(f"  {training} ({rows['n_models'].iloc[0]} models)")
        for r in rows.itertuples():
            lines.append(f"    {r.dimension[:24]:<24} {_num(r.slope, signed=True):>7} "
                         f"[{_num(r.slope_low, signed=True)}, {_num(r.slope_high, signed=True)}]")
    return "\n".join(lines) + "\n"


def written_files(run_uri: str, frame: pd.DataFrame) -> list[str]:
    """Where `compare`, `compare_groups` or `size_trend` published these rows (the URIs
    `RunStore.write_comparison` returned)."""
    uri = RunStore(run_uri).uri
    return [f"{uri}/{layout.comparison_file(name)}" for name in stored_names(frame)]


def summary(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows."""
    return [{k: (None if (isinstance(v, float) and not np.isfinite(v)) or v is pd.NA else v)
             for k, v in row.items()} for row in frame.astype(object).to_dict("records")]


__all__ = ["as_finite", "format_comparison", "format_trend", "summary", "written_files"]
