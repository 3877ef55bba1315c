"""Model comparisons (issue 9): what `valuelex compare` wrote under ``comparisons/``, as a report section.

Each ``comparisons/<a>__vs__<b>__<system>.parquet`` (see `valuelex.compare`) becomes a difference
plot -- w_b − w_a per (sub)dimension with its paired cluster-bootstrap CI, the significant ones
(after the stored multiple-comparison correction) drawn filled and starred -- and a table with the
p-values, effect size and the power part (M and stems needed). ``size-trend__<system>.parquet``
becomes a table of slopes. The section is left out of the report when the run has no comparison.

A paired comparison whose w no longer matches ``scores.parquet`` (the run was evaluated again since)
gets a notice: run ``valuelex compare`` again.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from valuelex.cli_format import as_finite
from valuelex.report.figures import (
    FigureWriter,
    Notice,
    Section,
    Subheading,
    TableItem,
    Text,
    color,
    fmt_num,
    new_figure,
    slug,
)
from valuelex.report.load import RunData
from valuelex.store import layout

REQUIRED = {"comparison", "a", "b", "system", "dimension", "level", "diff", "ci_low", "ci_high", "p", "p_adj",
            "significant"}
TREND_REQUIRED = {"training", "dimension", "level", "n_models", "slope", "slope_low", "slope_high"}
UNIT_TEXT = {"stem": "sign flips of the cell differences, stem by stem", "cell": "sign flips of each cell difference",
             "models": "group labels permuted over the models"}


def _p(value: Any) -> str:
    number = as_finite(value)
    if number is None:
        return "—"
    return f"{number:.4f}" if number >= 0.0001 else f"{number:.1e}"


def _count(value: Any) -> str:
    return "—" if value is None or pd.isna(value) else f"{int(value):,}"


def difference_figure(frame: pd.DataFrame) -> tuple[Any, str]:
    first = frame.iloc[0]
    n = len(frame)
    fig = new_figure(6.4, 1.0 + 0.32 * n)
    ax = fig.subplots()
    y = np.arange(n)
    diff = frame["diff"].to_numpy(dtype=float)
    low, high = frame["ci_low"].to_numpy(dtype=float), frame["ci_high"].to_numpy(dtype=float)
    significant = frame["significant"].astype(bool).to_numpy()
    parent = (frame["level"] == "dimension").to_numpy()
    for i in range(n):
        if not np.isfinite(diff[i]):
            continue
        tint = color(0) if significant[i] else "#777777"
        has_ci = np.isfinite(low[i]) and np.isfinite(high[i])
        ax.errorbar(diff[i], y[i], xerr=[[diff[i] - low[i]], [high[i] - diff[i]]] if has_ci else None,
                    fmt="D" if parent[i] else "o", ms=6 if parent[i] else 5, color=tint,
                    mfc=tint if significant[i] else "white", elinewidth=1.3 if parent[i] else 1.0, capsize=2, zorder=3)
        if significant[i]:
            right = high[i] if has_ci else diff[i]
            ax.annotate(f"* p_adj {_p(frame['p_adj'].iloc[i])}", (right, y[i]), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize=7, color=tint, annotation_clip=False)
    ax.axvline(0, color="#bbbbbb", lw=0.9, ls="--", zorder=0)
    labels = [d if lvl == "dimension" else f"  {d}" for d, lvl in zip(frame["dimension"], frame["level"], strict=True)]
    ax.set_yticks(y, labels)
    for tick, is_parent in zip(ax.get_yticklabels(), parent, strict=True):
        tick.set_fontweight("bold" if is_parent else "normal")
    ax.set_ylim(n - 0.5, -0.5)
    finite = np.concatenate([v[np.isfinite(v)] for v in (diff, low, high)] + [np.zeros(1)])
    span = max(float(np.abs(finite).max()), 0.02)
    ax.set_xlim(-span * 1.25, span * 1.6)
    ax.set_xlabel(f"w({first['b']}) − w({first['a']})")
    ax.set_title(f"{first['b']} − {first['a']} ({first['system']})")
    ax.grid(axis="x", color="#eeeeee", lw=0.6)
    level = first.get("ci_level", 0.95)
    correction = {"holm": "Holm", "bh": "Benjamini–Hochberg", "none": "no"}.get(str(first.get("correction")),
                                                                                 str(first.get("correction")))
    caption = (f"Difference of Eq. 4 scores, {first['b']} minus {first['a']}, per (sub)dimension of the "
               f"{first['system']} system, with its {float(level) * 100:g}% paired cluster-bootstrap CI (the same "
               f"stems for both sides, completions resampled within stems). Filled and starred: significant at "
               f"α={float(first.get('alpha', 0.05)):g} after {correction} correction across the dimensions "
               f"(permutation test: {UNIT_TEXT.get(str(first.get('unit')), str(first.get('unit')))}); hollow: not "
               "significant. Diamonds: dimensions (means of their subdimensions).")
    if str(first.get("unit")) == "models":
        n_a, n_b = (len(str(first.get(f"models_{s}") or "").split(", ")) for s in ("a", "b"))
        caption += (f" Groups of {n_a} and {n_b} models: the permutation test generalises to models like these, and "
                    f"its smallest attainable p is 1/{math.comb(n_a + n_b, n_b)}; the CI also resamples the models.")
    return fig, caption


def _members(row: pd.Series, side: str) -> str:
    models = str(row.get(f"models_{side}") or row[side])
    return str(row[side]) if models == str(row[side]) else f"{row[side]} ({models})"


def difference_table(frame: pd.DataFrame, table_id: str) -> TableItem:
    first = frame.iloc[0]
    by_models = str(first.get("unit")) == "models"
    power_columns = ["Models needed / group"] if by_models else ["Power now", "M needed", "Stems needed"]
    rows = []
    for r in frame.to_dict("records"):
        name = r["dimension"] if r["level"] == "dimension" else f"· {r['dimension']}"
        ci = f"{fmt_num(r['diff'])} [{fmt_num(r['ci_low'])}, {fmt_num(r['ci_high'])}]"
        if by_models:
            power_cells = [_count(r.get("models_needed"))]
        else:
            m_needed = _count(r.get("samples_needed")) if pd.notna(r.get("samples_needed")) else (
                "∞ (raise stems)" if pd.notna(r.get("power_now")) else "—")
            power_cells = [fmt_num(r.get("power_now"), 2), m_needed, _count(r.get("stems_needed"))]
        rows.append([name, fmt_num(r.get("w_a")), fmt_num(r.get("w_b")), ci, _p(r["p"]), _p(r["p_adj"]),
                     "yes" if r["significant"] else "no", fmt_num(r.get("g"), 2), *power_cells])
    delta = first.get("delta")
    power_text = ""
    if delta is not None and pd.notna(delta):
        power_text = (f" Power: to detect |diff| = {float(delta):g} at α={float(first['alpha']):g} per test with power "
                      f"{float(first.get('target_power', 0.8)):g}" + (
                          ", the models per group needed (two-sample t on the between-model variance)." if by_models
                          else f", at the current {int(first['n_stems'])} stems and M={float(first['samples']):g} "
                          f"({float(first.get('valid_fraction', 1.0)) * 100:.0f}% valid): "
                          "the M needed (∞: raising M alone cannot reach it) and the stems needed at this M, "
                          "from the between-stem and within-stem variance components."))
    draws = "every sign pattern / split (exact)" if first.get("exact") else f"{first.get('permutations')} permutations"
    effect = ("Hedges' g between the groups' model scores" if by_models
              else "Hedges' g_z on the paired (stem, config) cell differences")
    return TableItem(
        id=table_id, title=f"{first['b']} − {first['a']} ({first['system']})", css="scores",
        columns=["Dimension", "w a", "w b", "diff [CI]", "p", "p adj", "Significant", "g", *power_columns],
        rows=rows, numeric=[False, True, True, True, True, True, False, True, *([True] * len(power_columns))],
        caption=(f"a = {_members(first, 'a')}, b = {_members(first, 'b')}; {int(first.get('n_stems', 0))} stems × "
                 f"{int(first.get('n_configs', 0))} configs; p from {draws}; effect size {effect}.{power_text}"))


def trend_table(frame: pd.DataFrame, table_id: str) -> TableItem:
    rows = []
    for r in frame.to_dict("records"):
        name = r["dimension"] if r["level"] == "dimension" else f"· {r['dimension']}"
        slope = "—" if pd.isna(r["slope"]) else (
            f"{r['slope']:+.3f} [{fmt_num(r['slope_low'])}, {fmt_num(r['slope_high'])}]")
        rows.append([r["training"], name, int(r["n_models"]), slope, _p(r.get("p"))])
    first = frame.iloc[0]
    level = float(first.get("ci_level", 0.95))
    return TableItem(id=table_id, title=f"Size trend by training method ({first.get('system', '')})", collapsed=True,
                     columns=["Training", "Dimension", "Models", f"Slope per 10× size [{level * 100:g}% CI]", "p"],
                     rows=rows, numeric=[False, False, True, True, True],
                     caption="OLS of w on log10(size_b) across the models of each training method (and all models); "
                             "the t interval of the slope needs at least 3 models of 2 sizes.")


def _stale(data: RunData, frame: pd.DataFrame) -> bool:
    """Does a paired comparison's w differ from scores.parquet (the run was evaluated again since)?"""
    scores = data.scores
    first = frame.iloc[0]
    if scores is None or scores.empty or first.get("kind") != "paired" or "judge" not in scores.columns:
        return False
    mine = scores[(scores["system"] == first["system"]) & (scores["judge"] == first["judge"])]
    for side in ("a", "b"):
        stored = mine[mine["model"] == first[side]].set_index("key")["w"]
        for r in frame.to_dict("records"):
            w = r[f"w_{side}"]
            if r["key"] in stored.index and np.isfinite(w) and abs(stored[r["key"]] - w) > 1e-9:
                return True
    return False


def _unreadable(section: Section, name: str, frame: pd.DataFrame, required: set[str], notice_id: str) -> bool:
    """Mark the section partial with a notice when a comparison file is empty or lacks columns."""
    missing = sorted(required - set(frame.columns))
    if not frame.empty and not missing:
        return False
    section.status = "partial"
    section.add(Notice(f"{layout.comparison_file(name)} cannot be shown: "
                       f"{'it is empty' if frame.empty else 'it lacks ' + ', '.join(missing)}.", "error",
                       id=notice_id))
    return True


def comparison_section(data: RunData, writer: FigureWriter) -> Section | None:
    """The "Model comparisons" section, or None when the run has no comparisons/ file."""
    if not data.comparisons:
        return None
    section = Section(id="comparison", title="Model comparisons")
    section.add(Text("Did fine-tuning move the values, and by how much? Each comparison is the difference of Eq. 4 "
                     "scores (b − a) per (sub)dimension from the stored judgments, with a paired cluster-bootstrap CI, "
                     "a permutation test corrected across the dimensions, an effect size, and how far M or the stems "
                     "must be raised to detect a difference of a chosen size (valuelex compare)."))
    pairs = {name: frame for name, frame in data.comparisons.items() if not name.startswith("size-trend__")}
    trends = {name: frame for name, frame in data.comparisons.items() if name.startswith("size-trend__")}
    for name, frame in sorted(pairs.items()):
        fig_id = f"fig-compare-{slug(name)}"
        if _unreadable(section, name, frame, REQUIRED, f"notice-{fig_id}-unreadable"):
            continue
        first = frame.iloc[0]
        section.add(Subheading(id=f"compare-{slug(name)}", text=f"{first['b']} − {first['a']} ({first['system']})"))
        if _stale(data, frame):
            section.add(Notice(f"These scores no longer match scores.parquet: the run was evaluated again after the "
                               f"comparison. Run valuelex compare {data.uri} --a {first['a']} --b {first['b']} "
                               f"--system {first['system']} again.", "warning", id=f"notice-{fig_id}-stale"))
        section.add(writer.render(fig_id, f"{first['b']} − {first['a']}", lambda frame=frame: difference_figure(frame)))
        section.add(difference_table(frame, f"table-compare-{slug(name)}"))
    for name, frame in sorted(trends.items()):
        if _unreadable(section, name, frame, TREND_REQUIRED, f"notice-{slug(name)}-unreadable"):
            continue
        section.add(trend_table(frame, f"table-{slug(name)}"))
    return section
