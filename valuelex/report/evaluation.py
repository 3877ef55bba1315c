"""Value evaluation figures (paper section 4.2): per-model scores (Fig. 3) and what they depend on.

Scores come from ``scores.parquet`` (one row per model x system x dimension: w, ci_low, ci_high, n,
n_invalid). The *primary* system -- ``valuelex`` when scored, else the first one -- gets Fig. 3, the
groupings by training method and family, and the size trend; `valuelex.report.systems` compares all
systems side by side (Fig. 4).

Group summaries: a group's score is the mean of its models' w, with a t interval across those
models (it speaks to models like these, so it is wide with few models and absent with one); each
model is drawn beside it with its own bootstrap CI. The size trend is an ordinary least-squares fit
of w on log10(size in billions) across models, with its 95% confidence band and slope interval.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from valuelex.report.figures import (
    TRAINING_COLORS,
    TRAINING_ORDER,
    FigureWriter,
    KeyValues,
    Notice,
    Section,
    Subheading,
    TableItem,
    Text,
    color,
    fmt_ci,
    fmt_num,
    model_label,
    new_figure,
    order_models,
    training_color,
)
from valuelex.report.load import RunData
from valuelex.report.systems import systems_block
from valuelex.report.tables import NEUTRAL, bootstrap_level, cell, children, dimensions, scores_table, top_level

CI_LEVEL = 0.95  # of the intervals this report computes (group means, size trend)


def primary_system(scores: pd.DataFrame, evaluation: dict[str, Any] | None) -> str:
    systems = [str(s) for s in scores["system"].dropna().unique()]
    if "valuelex" in systems:
        return "valuelex"
    listed = list(((evaluation or {}).get("systems") or {}).keys())
    for name in listed:
        if name in systems:
            return name
    return systems[0]


def _neutral(ax: Any, vertical: bool = True) -> None:
    (ax.axvline if vertical else ax.axhline)(NEUTRAL, color="#bbbbbb", lw=0.8, ls="--", zorder=0)


# --- Fig. 3 -------------------------------------------------------------------------------------


def scores_figure(frame: pd.DataFrame, system: str, models: list[str], meta: dict[str, dict],
                  level: str = "95%") -> tuple[Any, str]:
    dims = dimensions(frame)
    panels = top_level(dims)
    flat = all(not children(dims, p) for p in panels)
    groups = [panels] if flat else [[p, *children(dims, p)] for p in panels]
    titles = [system] if flat else [p["name"] for p in panels]
    n_series = max(len(g) for g in groups)
    height = 1.3 + len(models) * (0.22 + 0.1 * n_series)
    fig = new_figure(min(3.2 * len(groups) + 2.0, 14), height)
    axes = np.atleast_1d(fig.subplots(1, len(groups), sharey=True, squeeze=False)[0])
    y = np.arange(len(models))
    for ax, group, title in zip(axes, groups, titles, strict=True):
        offsets = np.linspace(-0.28, 0.28, len(group)) if len(group) > 1 else np.zeros(1)
        for s_index, (dim, offset) in enumerate(zip(group, offsets, strict=True)):
            values = np.array([cell(frame, m, dim["key"]) for m in models]).reshape(-1, 3)
            w, low, high = values[:, 0], values[:, 1], values[:, 2]
            ok = np.isfinite(w)
            is_parent = not flat and s_index == 0
            ax.errorbar(w[ok], y[ok] + offset, xerr=[w[ok] - low[ok], high[ok] - w[ok]],
                        fmt="D" if is_parent else "o", ms=6 if is_parent else 4.5,
                        color="black" if is_parent else color(s_index - (0 if flat else 1)),
                        elinewidth=1.4 if is_parent else 1.0, capsize=2, label=dim["name"], zorder=3)
        for row, model in enumerate(models):
            if not any(np.isfinite(cell(frame, model, d["key"])[0]) for d in group):
                ax.text(0.5, row, "no valid judgment", ha="center", va="center", fontsize=7, color="#888888")
        _neutral(ax)
        ax.set_xlim(0, 1)
        ax.set_title(title)
        ax.set_xlabel("w (0 conflict, 0.5 neutral, 1 aligned)")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.55 / height), ncol=1)
        ax.grid(axis="x", color="#eeeeee", lw=0.6)
    axes[0].set_yticks(y, [model_label(m, meta.get(m, {}).get("training")) for m in models])
    axes[0].set_ylim(len(models) - 0.5, -0.5)
    for tick, model in zip(axes[0].get_yticklabels(), models, strict=True):
        tick.set_color(training_color(meta.get(model, {}).get("training")))
    caption = (f"Value evaluation results per model in the {system} system (cf. Fig. 3): Eq. 4 score w with its "
               f"{level} cluster-bootstrap CI (stems, then completions within stems). "
               + ("" if flat else "Diamonds: the dimension (mean of its subdimensions); dots: subdimensions. ")
               + "The dashed line is neutral (judge score 3 of 6). (P) pretrained, (IT) instruction-tuned, "
               "(A) aligned; labels are coloured by training method.")
    return fig, caption


# --- groupings ----------------------------------------------------------------------------------


def group_stats(values: np.ndarray) -> tuple[float, float, float]:
    """Mean of model scores with a t interval across models (NaN interval for a single model)."""
    from scipy import stats

    values = values[np.isfinite(values)]
    if not len(values):
        return (np.nan, np.nan, np.nan)
    mean = float(values.mean())
    if len(values) < 2:
        return (mean, np.nan, np.nan)
    half = float(stats.t.ppf(0.5 + CI_LEVEL / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return (mean, mean - half, mean + half)


def _groups(models: list[str], meta: dict[str, dict], by: str) -> list[tuple[str, list[str]]]:
    values: dict[str, list[str]] = {}
    for model in models:
        values.setdefault(str(meta.get(model, {}).get(by) or "unknown"), []).append(model)
    order = list(TRAINING_ORDER) if by == "training" else sorted(values)
    return [(g, values[g]) for g in order if g in values] + [(g, m) for g, m in values.items() if g not in order]


def grouping_figure(frame: pd.DataFrame, system: str, models: list[str], meta: dict[str, dict],
                    by: str) -> tuple[Any, str]:
    panels = top_level(dimensions(frame))
    groups = _groups(models, meta, by)
    fig = new_figure(min(1.2 + 0.75 * len(groups) * len(panels) + 0.9 * len(panels), 14), 3.8)
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True, squeeze=False)[0])
    rng = np.random.default_rng(0)
    for ax, dim in zip(axes, panels, strict=True):
        for g_index, (group, members) in enumerate(groups):
            cells = np.array([cell(frame, m, dim["key"]) for m in members]).reshape(-1, 3)
            mean, low, high = group_stats(cells[:, 0])
            bar_color = TRAINING_COLORS.get(group, color(g_index)) if by == "training" else color(g_index)
            if np.isfinite(mean):
                ax.bar(g_index, mean, width=0.7, color=bar_color, alpha=0.35, zorder=1)
            if np.isfinite(low):
                ax.errorbar(g_index + 0.24, mean, yerr=[[mean - low], [high - mean]], color="#333333", capsize=3,
                            lw=1.0, zorder=3)
            jitter = rng.uniform(-0.2, 0.08, len(members))
            ok = np.isfinite(cells[:, 0])
            ax.errorbar(g_index + jitter[ok], cells[ok, 0], yerr=[cells[ok, 0] - cells[ok, 1],
                                                                 cells[ok, 2] - cells[ok, 0]],
                        fmt="o", ms=3.5, color=bar_color, elinewidth=0.7, capsize=0, zorder=2, alpha=0.9)
        _neutral(ax, vertical=False)
        ax.set_xticks(range(len(groups)), [f"{g}\n(n={len(m)})" for g, m in groups],
                      rotation=0 if len(groups) <= 4 else 30, ha="center" if len(groups) <= 4 else "right")
        ax.set_ylim(0, 1)
        ax.set_title(dim["name"])
    axes[0].set_ylabel("w")
    what = {"training": "training method", "family": "model family"}.get(by, by)
    caption = (f"Scores by {what} in the {system} system: bars are the mean w of the group's models with a "
               f"{int(CI_LEVEL * 100)}% t interval across models at its right edge (none for a single model; very wide "
               "with two); dots are the models with their own bootstrap CIs. Dashed: neutral.")
    return fig, caption


def grouping_table(frame: pd.DataFrame, models: list[str], meta: dict[str, dict], by: str) -> TableItem:
    dims = dimensions(frame)
    rows = []
    for group, members in _groups(models, meta, by):
        cells = []
        for dim in dims:
            values = np.array([cell(frame, m, dim["key"])[0] for m in members])
            cells.append(fmt_ci(*group_stats(values)))
        rows.append([group, len(members), ", ".join(members), *cells])
    return TableItem(id=f"table-by-{by}", title=f"Group means by {by}", collapsed=True,
                     columns=[by.capitalize(), "Models", "Members", *(d["name"] for d in dims)],
                     rows=rows, numeric=[False, True, False, *([True] * len(dims))],
                     caption=f"Mean w [{int(CI_LEVEL * 100)}% t interval across models].")


# --- size trend ---------------------------------------------------------------------------------


def size_fit(x: np.ndarray, y: np.ndarray) -> dict[str, float] | None:
    """OLS of y on x (x = log10 size): slope with its CI, r, p, and what the band needs; None if < 3 points."""
    from scipy import stats

    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0:
        return None
    fit = stats.linregress(x, y)
    t = float(stats.t.ppf(0.5 + CI_LEVEL / 2, len(x) - 2))
    residual = y - (fit.intercept + fit.slope * x)
    s = float(np.sqrt((residual**2).sum() / (len(x) - 2)))
    return {"n": len(x), "slope": float(fit.slope), "slope_low": float(fit.slope - t * fit.stderr),
            "slope_high": float(fit.slope + t * fit.stderr), "intercept": float(fit.intercept),
            "r": float(fit.rvalue), "p": float(fit.pvalue), "t": t, "s": s, "x_mean": float(x.mean()),
            "sxx": float(((x - x.mean()) ** 2).sum())}


def _band(fit: dict[str, float], grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    line = fit["intercept"] + fit["slope"] * grid
    half = fit["t"] * fit["s"] * np.sqrt(1 / fit["n"] + (grid - fit["x_mean"]) ** 2 / fit["sxx"])
    return line, line - half, line + half


def size_trend_figure(frame: pd.DataFrame, system: str, models: list[str], meta: dict[str, dict]) -> tuple[Any, str]:
    dims = dimensions(frame)
    sized = [m for m in models if _size(meta, m) is not None]
    sizes = np.array([_size(meta, m) for m in sized], dtype=float)
    x = np.log10(sizes)
    ncols = min(3, len(dims))
    nrows = int(np.ceil(len(dims) / ncols))
    fig = new_figure(3.3 * ncols + 0.4, 2.7 * nrows + 0.5)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)).ravel()
    grid = np.linspace(x.min(), x.max(), 50)
    for ax, dim in zip(axes, dims, strict=False):
        cells = np.array([cell(frame, m, dim["key"]) for m in sized]).reshape(-1, 3)
        for training in [*TRAINING_ORDER, None]:
            mask = np.array([meta.get(m, {}).get("training") == training
                             if training else meta.get(m, {}).get("training") not in TRAINING_ORDER for m in sized])
            mask &= np.isfinite(cells[:, 0])
            if mask.any():
                dodge = 10 ** (0.012 * (TRAINING_ORDER.index(training) - 1 if training else 2))
                ax.errorbar(sizes[mask] * dodge, cells[mask, 0], yerr=[cells[mask, 0] - cells[mask, 1],
                                                               cells[mask, 2] - cells[mask, 0]],
                            fmt="o", ms=4, color=training_color(training), elinewidth=0.8, capsize=0,
                            label=training or "other", zorder=3)
        fit = size_fit(x, cells[:, 0])
        if fit:
            line, low, high = _band(fit, grid)
            ax.plot(10**grid, line, color="black", lw=1.2, zorder=2)
            ax.fill_between(10**grid, low, high, color="black", alpha=0.1, lw=0, zorder=1)
            ax.text(0.02, 0.04, f"slope {fit['slope']:+.3f}/10× [{fit['slope_low']:+.3f}, {fit['slope_high']:+.3f}]",
                    transform=ax.transAxes, fontsize=7)
        _neutral(ax, vertical=False)
        _size_axis(ax, sizes)
        ax.set_ylim(0, 1)
        ax.set_title(dim["name"] if dim["level"] == "dimension" else f"{dim['name']} ({dim['parent']})",
                     fontweight="bold" if dim["level"] == "dimension" else "normal")
    for ax in axes[len(dims):]:
        ax.set_visible(False)
    for ax in axes[(nrows - 1) * ncols:]:
        ax.set_xlabel("parameters (billions, log scale)")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=len(labels))
    caption = (f"Size trend of every (sub)dimension in the {system} system: models with a known size, coloured by "
               f"training method, with their bootstrap CIs; the line is an OLS fit of w on log10(size) across "
               f"models with its {int(CI_LEVEL * 100)}% confidence band, and the slope is per tenfold size. Training "
               "method and size are confounded when larger models are more often aligned.")
    return fig, caption


def _size_axis(ax: Any, sizes: np.ndarray) -> None:
    """Log x axis ticked at the models' sizes, in plain text (mathtext is off: no 10^x labels)."""
    from matplotlib.ticker import NullLocator

    ax.set_xscale("log")
    ticks = sorted(set(np.round(sizes, 3)))
    if len(ticks) > 8:
        ticks = [t for t in (0.1, 0.3, 1, 3, 10, 30, 100, 300, 1000) if min(sizes) <= t <= max(sizes)] or ticks[::2]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    low, high = float(min(sizes)), float(max(sizes))
    ax.set_xlim(low / 1.3, high * 1.3)


def _size(meta: dict[str, dict], model: str) -> float | None:
    value = meta.get(model, {}).get("size_b")
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


def size_table(frame: pd.DataFrame, models: list[str], meta: dict[str, dict]) -> TableItem:
    sized = [m for m in models if _size(meta, m) is not None]
    x = np.log10(np.array([_size(meta, m) for m in sized], dtype=float))
    rows = []
    for dim in dimensions(frame):
        y = np.array([cell(frame, m, dim["key"])[0] for m in sized])
        fit = size_fit(x, y)
        name = dim["name"] if dim["level"] == "dimension" else f"· {dim['name']}"
        if fit is None:
            rows.append([name, int(np.isfinite(y).sum()), "—", "—", "—"])
        else:
            rows.append([name, fit["n"], f"{fit['slope']:+.3f} [{fit['slope_low']:+.3f}, {fit['slope_high']:+.3f}]",
                         fmt_num(fit["r"], 2), fmt_num(fit["p"], 3)])
    return TableItem(id="table-size-trend", title="Size trend per dimension",
                     columns=["Dimension", "Models", f"Slope per 10× size [{int(CI_LEVEL * 100)}% CI]", "r", "p"],
                     rows=rows, numeric=[False, True, True, True, True],
                     caption="OLS of w on log10(size_b) across models (a positive slope: larger models score higher).")


# --- at a glance --------------------------------------------------------------------------------


def glance(frame: pd.DataFrame, system: str, models: list[str], meta: dict[str, dict]) -> KeyValues:
    """Descriptive summaries of the primary system's scores (computed, never interpreted)."""
    dims = top_level(dimensions(frame))
    means = []
    for dim in dims:
        values = np.array([cell(frame, m, dim["key"])[0] for m in models])
        if np.isfinite(values).any():
            means.append((float(np.nanmean(values)), dim["name"]))
    pairs: list[tuple[str, Any]] = []
    if means:
        ranked = sorted(means, reverse=True)
        pairs.append(("dimensions by mean w over models", " > ".join(f"{n} {m:.2f}" for m, n in ranked)))
    by_training = []
    for group, members in _groups(models, meta, "training"):
        values = np.array([cell(frame, m, d["key"])[0] for m in members for d in dims])
        if np.isfinite(values).any():
            by_training.append(f"{group} {np.nanmean(values):.2f} ({len(members)} models)")
    if by_training:
        pairs.append(("mean w by training method", "; ".join(by_training)))
    sized = [m for m in models if _size(meta, m) is not None]
    if len(sized) >= 3:
        x = np.log10(np.array([_size(meta, m) for m in sized], dtype=float))
        trends = []
        for dim in dimensions(frame):
            fit = size_fit(x, np.array([cell(frame, m, dim["key"])[0] for m in sized]))
            if fit and (fit["slope_low"] > 0 or fit["slope_high"] < 0):
                trends.append(f"{dim['name']} {fit['slope']:+.3f} per 10× size")
        pairs.append((f"size slopes whose {int(CI_LEVEL * 100)}% CI excludes 0", "; ".join(trends) or "none"))
    n_invalid = frame.drop_duplicates("model")["n_invalid"].sum() if len(frame) else 0
    n_valid = frame.drop_duplicates("model")["n"].sum() if len(frame) else 0
    pairs.append(("judged completions used / left out", f"{int(n_valid):,} / {int(n_invalid):,}"))
    return KeyValues(id="facts-glance", title=f"At a glance ({system})", pairs=pairs)


# --- section ------------------------------------------------------------------------------------


def evaluation_section(data: RunData, writer: FigureWriter) -> Section:
    section = Section(id="evaluation", title="Value evaluation")
    scores = data.scores
    if scores is None or scores.empty:
        section.status = "missing"
        why = "scores.parquet is empty" if scores is not None else f"no scores.parquet under {data.uri}"
        judged = f" Judgments are stored for: {', '.join(sorted(data.judgments))}." if data.judgments else ""
        section.add(Notice(
            f"Evaluation outputs are missing: {why}.{judged} Run the evaluation stage (python jobs/evaluate.py "
            "STUDY.yaml) to get per-model scores (Fig. 3), groupings by size, training and family, and the "
            "comparison of value systems (Fig. 4).", id="notice-evaluation-missing"))
        return section
    required = {"model", "system", "dimension", "key", "level", "parent", "w", "ci_low", "ci_high", "n", "n_invalid"}
    if missing := sorted(required - set(scores.columns)):
        section.status = "missing"
        section.add(Notice(f"scores.parquet lacks the columns {', '.join(missing)}; it cannot be reported.", "error",
                           id="notice-evaluation-missing"))
        return section
    meta = data.model_meta()
    level = bootstrap_level(data)
    system = primary_system(scores, data.evaluation)
    frame = scores[scores["system"] == system]
    models = order_models([str(m) for m in frame["model"].dropna().unique()], meta)
    judge = str(frame["judge"].iloc[0]) if "judge" in frame.columns and len(frame) else "unknown"
    section.add(Text(f"Projective evaluation (paper §3.3, §4.2): {len(models)} models completed sentence stems; "
                     f"judge {judge} scored each completion 0–6 per dimension; w is the mean normalised score "
                     f"(Eq. 4). Primary system: {system}."))
    empty = [m for m in models if not np.isfinite(frame.loc[frame["model"] == m, "w"].astype(float)).any()]
    if empty:
        section.status = "partial"
        section.add(Notice(f"No valid judged completion (w undefined) for: {', '.join(empty)}.", "warning",
                           id="notice-models-without-scores"))
    section.add(glance(frame, system, models, meta))
    section.add(Subheading(id="scores", text=f"Scores per model ({system})"))
    section.add(writer.render("fig-scores", "Value evaluation results", lambda: scores_figure(frame, system, models,
                                                                                             meta, level)))
    section.add(scores_table(frame, system, models, meta, level=level))

    section.add(Subheading(id="groupings", text="Training method, family and size"))
    for by in ("training", "family"):
        known = {meta.get(m, {}).get(by) for m in models} - {None}
        if not known:
            section.add(Notice(f"Grouping by {by}: no model has a recorded {by} (study.json missing?).",
                               id=f"notice-by-{by}-missing"))
            continue
        section.add(writer.render(f"fig-by-{by}", f"Scores by {by}",
                                  lambda by=by: grouping_figure(frame, system, models, meta, by)))
        section.add(grouping_table(frame, models, meta, by))
    sized = [m for m in models if _size(meta, m) is not None]
    distinct = {_size(meta, m) for m in sized}
    if len(sized) < 3 or len(distinct) < 2:
        section.add(Notice(f"Size trend: needs at least 3 models with a known size_b and two different sizes; this "
                           f"run has {len(sized)} ({', '.join(sized) or 'none'}).", id="notice-size-trend-missing"))
    else:
        if len(sized) < len(models):
            section.add(Notice(f"Size trend leaves out models without size_b: "
                               f"{', '.join(m for m in models if m not in sized)}.", "info"))
        section.add(writer.render("fig-size-trend", "Size trend", lambda: size_trend_figure(frame, system, models,
                                                                                            meta)))
        section.add(size_table(frame, models, meta))

    systems_block(data, scores, models, meta, writer, section, primary=system)
    return section

