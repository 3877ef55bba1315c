"""The same models in several value systems, side by side (paper Fig. 4: Schwartz, ValueLex, MFT).

One heatmap per scored system (top-level dimensions; models in the same order in every panel) on
one shared colour scale, so a column that stays near neutral in every model -- a human value the
models do not express -- stands out, as Sanctity and Tradition do in the paper.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from valuelex.report.figures import (
    SYSTEM_ORDER,
    FigureWriter,
    Notice,
    Section,
    Subheading,
    model_label,
    new_figure,
    training_color,
)
from valuelex.report.load import RunData
from valuelex.report.tables import NEUTRAL, bootstrap_level, cell, dimensions, scores_table, top_level


def system_order(systems: list[str]) -> list[str]:
    known = [s for s in SYSTEM_ORDER if s in systems]
    return known + sorted(s for s in systems if s not in SYSTEM_ORDER)


def systems_figure(scores: pd.DataFrame, systems: list[str], models: list[str],
                   meta: dict[str, dict]) -> tuple[Any, str]:
    panels = []
    for system in systems:
        frame = scores[scores["system"] == system]
        panels.append((system, frame, top_level(dimensions(frame))))
    widths = [max(len(dims), 1) for _, _, dims in panels]
    fig = new_figure(min(2.2 + 0.62 * sum(widths) + 0.5 * len(panels), 15), 1.8 + 0.36 * len(models))
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True, squeeze=False,
                                      gridspec_kw={"width_ratios": widths})[0])
    image = None
    for ax, (system, frame, dims) in zip(axes, panels, strict=True):
        matrix = np.array([[cell(frame, m, d["key"])[0] for d in dims] for m in models], dtype=float)
        matrix = matrix.reshape(len(models), len(dims))
        image = ax.imshow(np.ma.masked_invalid(matrix), cmap="RdBu", vmin=0, vmax=1, aspect="auto")
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                value = matrix[i, j]
                text = "—" if not np.isfinite(value) else f"{value:.2f}"
                dark = np.isfinite(value) and abs(value - NEUTRAL) > 0.3
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
        ax.set_xticks(range(len(dims)), [d["name"] for d in dims], rotation=45, ha="right")
        ax.set_title(system)
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
    axes[0].set_yticks(range(len(models)), [model_label(m, meta.get(m, {}).get("training")) for m in models])
    for tick, model in zip(axes[0].get_yticklabels(), models, strict=True):
        tick.set_color(training_color(meta.get(model, {}).get("training")))
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.8, label="w (0.5 = neutral)")
    caption = ("Evaluation results using different value systems (cf. Fig. 4): the same models scored by the same "
               f"judge on the dimensions of {', '.join(systems)}; blue is aligned, red conflicting, white neutral. "
               "Cells show w (top-level dimensions; — when the model has no valid judgment).")
    return fig, caption


def systems_block(data: RunData, scores: pd.DataFrame, models: list[str], meta: dict[str, dict],
                  writer: FigureWriter, section: Section, primary: str | None = None) -> None:
    systems = system_order([str(s) for s in scores["system"].dropna().unique()])
    section.add(Subheading(id="systems", text="Value systems compared"))
    if len(systems) < 2:
        section.add(Notice(f"Only the {systems[0]} system was scored, so there is nothing to compare it with: add "
                           "schwartz and mft to evaluation.systems to compare human value systems (Fig. 4).",
                           "info", id="notice-systems-single"))
    section.add(writer.render("fig-systems", "Evaluation results in different value systems",
                              lambda: systems_figure(scores, systems, models, meta)))
    for system in systems:
        if system == primary:  # its table is shown with Fig. 3
            continue
        frame = scores[scores["system"] == system]
        mine = [m for m in models if m in set(frame["model"])]
        section.add(scores_table(frame, system, mine, meta, collapsed=True, level=bootstrap_level(data)))
