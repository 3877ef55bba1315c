"""Value construction figures (paper section 4.1): scree, keyword clusters, value system, correlations, stability.

One block per constructed taxonomy (``taxonomy.json`` and every ``taxonomy-<label>.json``, e.g. the
PLM system of Fig. 2c/d); figure ids carry the label (``fig-scree``, ``fig-scree-plm``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from valuelex.report.figures import (
    FigureWriter,
    KeyValues,
    Labeller,
    Notice,
    Section,
    Subheading,
    TableItem,
    Text,
    color,
    fmt_int,
    fmt_num,
    new_figure,
    shade,
)
from valuelex.report.load import RunData, TaxonomyRun

MAX_SCREE = 40  # factors shown on the scree plot
LABEL_ALL_WORDS = 70  # try to label every word up to this many; beyond, only the top words of each subdimension
LABELS_PER_SUBDIMENSION = 8


def _sub_colors(taxonomy: Any) -> dict[str, Any]:
    """Subdimension id -> colour: the dimension's hue, darker / lighter per subdimension."""
    out = {}
    for d_index, dim in enumerate(taxonomy.dimensions):
        n = len(dim.subdimensions)
        for s_index, sub in enumerate(dim.subdimensions):
            amount = 0.0 if n == 1 else -0.35 + 0.85 * s_index / (n - 1)
            out[sub.id] = shade(color(d_index), amount)
    return out


MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "h", "<"]


def scree(taxonomy: Any) -> tuple[Any, str]:
    k = taxonomy.k
    eigs = np.asarray(k.eigenvalues, dtype=float)
    shown = min(len(eigs), max(MAX_SCREE // 2, 3 * k.chosen), MAX_SCREE)
    x = np.arange(1, shown + 1)
    fig = new_figure(6.4, 3.6)
    ax = fig.subplots()
    ax.plot(x, eigs[:shown], "o-", color="#0072B2", ms=4, label="eigenvalue of the word correlation matrix")
    if k.parallel_thresholds:
        thresholds = np.asarray(k.parallel_thresholds, dtype=float)[:shown]
        stat = "95th percentile" if k.parallel_statistic == "p95" else "mean"
        ax.plot(x[: len(thresholds)], thresholds, "--", color="#D55E00",
                label=f"parallel analysis ({stat} of {k.parallel_iterations} random sets)")
    ax.axhline(k.kaiser_threshold, color="#777777", lw=0.8, ls=":",
               label=f"Kaiser (eigenvalue > {k.kaiser_threshold:g})")
    ax.axvline(k.chosen, color="#009E73", lw=1.2)
    ax.annotate(f"K = {k.chosen} ({k.rule})", (k.chosen, ax.get_ylim()[1]), xytext=(4, -12),
                textcoords="offset points", color="#009E73", fontweight="bold")
    ax.set_xlabel("factor")
    ax.set_ylabel("eigenvalue")
    ax.set_xticks(x if shown <= 20 else x[::2])
    ax.legend(loc="upper right")
    rules = [f"Kaiser suggests {k.kaiser}"]
    if k.parallel is not None:
        rules.append(f"parallel analysis suggests {k.parallel}")
    if k.fixed is not None:
        rules.append(f"the study fixed K = {k.fixed}")
    more = f" The first {shown} of {len(eigs)} eigenvalues are shown." if shown < len(eigs) else ""
    caption = (f"Scree plot of the {taxonomy.correlation.n_words} value words' {taxonomy.correlation.method} "
               f"correlations over {taxonomy.correlation.n_units} {taxonomy.corpus.unit}s. The study's rule "
               f"({k.rule}) chose K = {k.chosen}; {', '.join(rules)}.{more}")
    return fig, caption


def clusters(taxonomy: Any) -> tuple[Any, str]:
    colors = _sub_colors(taxonomy)
    fig = new_figure(7.8, 5.8)
    ax = fig.subplots()
    entries = [(d_index, sub, w) for d_index, dim in enumerate(taxonomy.dimensions) for sub in dim.subdimensions
               for w in sub.words]
    n_moved = 0
    for dim in taxonomy.dimensions:
        for s_index, sub in enumerate(dim.subdimensions):
            pts = np.array([w.position for w in sub.words], dtype=float).reshape(-1, 2)
            moved = np.array([w.moved for w in sub.words], dtype=bool)
            n_moved += int(moved.sum())
            marker = MARKERS[s_index % len(MARKERS)]
            ax.scatter(pts[~moved, 0], pts[~moved, 1], s=28, color=colors[sub.id], marker=marker,
                       label=f"{dim.name} / {sub.name}", edgecolors="white", linewidths=0.4, zorder=3)
            if moved.any():
                ax.scatter(pts[moved, 0], pts[moved, 1], s=28, facecolors="none", edgecolors=colors[sub.id],
                           marker=marker, linewidths=1.2, zorder=3)
    if n_moved:
        ax.scatter([], [], s=28, facecolors="none", edgecolors="#555555", label="moved by semantic refinement")
    ax.set_xlabel("PC 1 of the word embeddings")
    ax.set_ylabel("PC 2")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    every = np.array([w.position for _, _, w in entries], dtype=float).reshape(-1, 2)
    low, high = every.min(axis=0), every.max(axis=0)
    pad = np.maximum((high - low) * 0.08, 1e-3)
    ax.set_xlim(low[0] - pad[0], high[0] + pad[0])
    ax.set_ylim(low[1] - pad[1], high[1] + pad[1])
    labeller = Labeller(ax)
    for _, _, entry in entries:
        labeller.block(entry.position, 3.0)
    ranked: dict[str, int] = {}
    candidates = []
    for d_index, sub, entry in sorted(entries, key=lambda e: -abs(e[2].loading)):
        ranked[sub.id] = ranked.get(sub.id, 0) + 1
        if ranked[sub.id] <= LABELS_PER_SUBDIMENSION or len(entries) <= LABEL_ALL_WORDS:
            candidates.append((d_index, entry))
    shown = sum(labeller.place(entry.position, entry.word, gap=3.5, fontsize=7, drop=True,
                               color=shade(color(d_index), -0.45), zorder=4) for d_index, entry in candidates)
    limit = "" if len(entries) <= LABEL_ALL_WORDS else f" (at most {LABELS_PER_SUBDIMENSION} per subdimension)"
    caption = (f"Keyword clusters (cf. Fig. 2a/c): the {len(entries)} value words at the first two principal "
               f"components of their embeddings ({taxonomy.embedding_model}), coloured by subdimension (the hue is "
               f"the dimension); {shown} words are labelled, highest loadings first{limit}, where a label fits "
               f"without covering another. Hollow markers: {n_moved} word(s) moved to another dimension by semantic "
               "refinement. Every word is listed in the taxonomy table.")
    return fig, caption


def spread(points: np.ndarray, min_distance: float, iterations: int = 300) -> np.ndarray:
    """Push points apart until no two are closer than `min_distance` (deterministic)."""
    p = np.array(points, dtype=float).reshape(-1, 2)
    n = len(p)
    for _ in range(iterations):
        moved = False
        for i in range(n):
            for j in range(i + 1, n):
                delta = p[j] - p[i]
                dist = float(np.hypot(*delta))
                if dist >= min_distance:
                    continue
                if dist < 1e-9:
                    angle = 2 * np.pi * (i + j) / max(n, 1)
                    delta, dist = np.array([np.cos(angle), np.sin(angle)]), 1.0
                push = (min_distance - float(np.hypot(*(p[j] - p[i])))) / 2 * delta / dist
                p[i] -= push
                p[j] += push
                moved = True
        if not moved:
            break
    return p


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.hypot(*vector))
    return vector / norm if norm > 1e-9 else np.array([0.0, 1.0])


def value_system(taxonomy: Any) -> tuple[Any, str]:
    from matplotlib.patches import Circle

    subs = taxonomy.subdimensions()
    corr = np.asarray(taxonomy.subdimension_correlation.matrix, dtype=float)
    index = {s.id: i for i, s in enumerate(subs)}
    raw = np.array([s.position for s in subs], dtype=float).reshape(-1, 2)
    span = float(np.ptp(raw, axis=0).max()) if len(raw) > 1 else 0.0
    span = span if span > 1e-9 else 1.0
    pos = spread(raw, 0.38 * span)
    colors = _sub_colors(taxonomy)
    centre = pos.mean(axis=0)
    sizes = np.array([len(s.words) for s in subs], dtype=float)
    radii = span * (0.045 + 0.045 * np.sqrt(sizes / max(sizes.max(), 1)))
    groups = []
    for dim in taxonomy.dimensions:
        rows = [index[s.id] for s in dim.subdimensions]
        middle = pos[rows].mean(axis=0)
        radius = float((np.linalg.norm(pos[rows] - middle, axis=1) + radii[rows]).max()) + 0.08 * span
        groups.append((dim, rows, middle, radius))
    low = np.min([g[2] - g[3] for g in groups], axis=0) - 0.4 * span
    high = np.max([g[2] + g[3] for g in groups], axis=0) + 0.4 * span
    fig = new_figure(8.4, 7.0)
    ax = fig.subplots()
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_aspect("equal")
    ax.axis("off")
    for d_index, (_, rows, middle, radius) in enumerate(groups):
        ax.add_patch(Circle(middle, radius, color=color(d_index), alpha=0.08, zorder=0, lw=0))
        for i in rows:
            ax.add_patch(Circle(pos[i], radii[i], facecolor=colors[subs[i].id], edgecolor="white", lw=1.5, zorder=3))
    labeller = Labeller(ax)
    for i in range(len(subs)):
        labeller.block_radius(pos[i], radii[i])
    for i in range(len(subs)):
        for j in range(i + 1, len(subs)):
            r = corr[i, j]
            if not np.isfinite(r) or abs(r) < 0.1:
                continue
            ax.plot(pos[[i, j], 0], pos[[i, j], 1], color="#009E73" if r > 0 else "#D55E00",
                    lw=0.5 + 4 * abs(r), alpha=0.5, zorder=1, solid_capstyle="round")
            for share in (0.5, 0.35, 0.65) if abs(r) >= 0.2 else ():  # on the line, hiding no disc or label
                if labeller.put(pos[i] + share * (pos[j] - pos[i]), f"{r:+.2f}", fontsize=7, color="#333333",
                                zorder=2, bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                                                "alpha": 0.85}):
                    break
    for _, rows, middle, _ in groups:
        for i in rows:
            sub = subs[i]
            preferred = _unit(_unit(pos[i] - middle) + 0.6 * _unit(pos[i] - centre))
            labeller.place(pos[i], f"{sub.name} ({len(sub.words)})\n{', '.join(sub.anchors[:3])}",
                           gap=labeller.size(radii[i]) + 3,
                           preferred=preferred, fontsize=7.5, zorder=4,
                           bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.75})
    for d_index, (dim, _, middle, radius) in enumerate(groups):
        labeller.place(middle, dim.name, gap=labeller.size(radius) + 3, preferred=_unit(middle - centre),
                       fontsize=11, fontweight="bold",
                       color=shade(color(d_index), -0.3), zorder=5)
    caption = ("Value system (cf. Fig. 2b/d): each disc is a subdimension (labelled with its number of words and "
               "top anchors; area grows with the words), placed by classical MDS of 1 − the correlation between "
               "subdimensions across units (nudged apart where discs would overlap), so correlated subdimensions "
               "sit close and conflicting ones far apart. Lines join pairs with |r| ≥ 0.1 (green positive, orange "
               "negative; width ∝ |r|; r is printed for |r| ≥ 0.2 where there is room, every value is in the "
               "heatmap below). Shaded "
               "circles group the subdimensions of a dimension.")
    return fig, caption


def correlation_heatmap(taxonomy: Any) -> tuple[Any, str]:
    subs = taxonomy.subdimensions()
    corr = np.asarray(taxonomy.subdimension_correlation.matrix, dtype=float)
    dim_of = {s.id: d.name for d in taxonomy.dimensions for s in d.subdimensions}
    labels = [f"{s.name} ({dim_of[s.id]})" for s in subs]
    n = len(subs)
    size = 2.2 + 0.62 * n
    fig = new_figure(size + 1.6, size)
    ax = fig.subplots()
    image = ax.imshow(corr, cmap="RdBu_r", vmin=-1, vmax=1)
    for i in range(n):
        for j in range(n):
            value = corr[i, j]
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if abs(value) > 0.6 else "black")
    ax.set_xticks(range(n), labels, rotation=40, ha="right")
    ax.set_yticks(range(n), labels)
    start = 0
    for dim in taxonomy.dimensions[:-1]:
        start += len(dim.subdimensions)
        ax.axhline(start - 0.5, color="black", lw=1)
        ax.axvline(start - 0.5, color="black", lw=1)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.colorbar(image, ax=ax, shrink=0.8, label="correlation")
    caption = (f"Correlation among subdimensions (cf. Fig. 5): {taxonomy.subdimension_correlation.score}, "
               f"correlated across the {taxonomy.correlation.n_units} {taxonomy.corpus.unit}s. Lines separate "
               "dimensions.")
    return fig, caption


def stability(run: TaxonomyRun) -> tuple[Any, str]:
    taxonomy = run.taxonomy
    table = run.stability
    subs = taxonomy.subdimensions()
    dim_of = {s.id: d.name for d in taxonomy.dimensions for s in d.subdimensions}
    colors = _sub_colors(taxonomy)
    fig = new_figure(7.6, 1.2 + 0.42 * len(subs))
    axes = fig.subplots(1, 2, sharey=True)
    rng = np.random.default_rng(0)
    for ax, column, title in ((axes[0], "same_dimension", "kept in its dimension"),
                              (axes[1], "same_subdimension", "kept in its subdimension")):
        for i, sub in enumerate(subs):
            values = table.loc[table["subdimension_id"] == sub.id, column].dropna().to_numpy(dtype=float)
            if not len(values):
                continue
            y = i + rng.uniform(-0.18, 0.18, len(values))
            ax.scatter(values, y, s=22, color=colors[sub.id], alpha=0.8, edgecolors="white", linewidths=0.4)
            ax.plot([values.mean()] * 2, [i - 0.34, i + 0.34], color="black", lw=1.2)
        ax.set_xlim(-0.04, 1.04)
        ax.set_title(title)
        ax.set_xlabel("share of bootstrap resamples")
        ax.axvline(1.0, color="#cccccc", lw=0.6, zorder=0)
    axes[0].set_yticks(range(len(subs)), [f"{s.name} ({dim_of[s.id]})" for s in subs])
    axes[0].invert_yaxis()
    summary = taxonomy.stability
    runs = f"{summary.succeeded} of {summary.resamples} resamples succeeded" if summary else "resamples: not recorded"
    caption = ("Word stability under resampling: construction rerun on bootstrap resamples of units (K fixed); a "
               "dot is a word, placed at the share of resamples (where it was kept) that put it in its own "
               f"(matched) dimension / subdimension; bars are subdimension means; {runs}.")
    return fig, caption


def _taxonomy_table(run: TaxonomyRun) -> TableItem:
    taxonomy = run.taxonomy
    rows = []
    for dim in taxonomy.dimensions:
        for sub in dim.subdimensions:
            words = sorted(sub.words, key=lambda w: -abs(w.loading))
            rows.append([dim.name, sub.name, sub.definition, ", ".join(sub.anchors), len(sub.words),
                         ", ".join(w.word for w in words[:15]) + (" …" if len(words) > 15 else "")])
    return TableItem(id=f"table-taxonomy{run.suffix}", title="The value taxonomy",
                     columns=["Dimension", "Subdimension", "Definition", "Anchors", "Words", "Words by loading"],
                     rows=rows, numeric=[False, False, False, False, True, False],
                     caption="Dimensions → subdimensions → words (highest |loading| first, at most 15 shown).")


def _facts(run: TaxonomyRun, data: RunData) -> KeyValues:
    t = run.taxonomy
    c = t.corpus
    pairs: list[tuple[str, Any]] = [
        ("file", f"{data.uri.rstrip('/')}/{run.path}"),
        ("created", t.created),
        ("built by valuelex", t.valuelex_version),
        ("answers filter", ", ".join(f"{k} ∈ {v}" for k, v in t.filter.items()) or "none (all answers)"),
        ("unit", c.unit),
        ("elicitation rows (failed)", f"{fmt_int(c.n_rows)} ({fmt_int(c.n_failed_rows)} failed)"),
        ("answers (with value words)", f"{fmt_int(c.n_answers)} ({fmt_int(c.n_answers_with_words)})"),
        ("units (analysed)", f"{fmt_int(c.n_units)} ({fmt_int(c.n_units_analysed)})"),
        ("word occurrences", fmt_int(c.n_word_occurrences)),
        ("distinct words → kept", f"{fmt_int(c.n_distinct_words)} → {fmt_int(c.n_words_kept)} (rare: "
                                   f"{fmt_int(c.n_rare_words)}, used by every unit: {fmt_int(c.n_universal_words)}, "
                                   f"rejected by judge: {fmt_int(c.n_rejected_by_judge)})"),
        ("correlation", f"{t.correlation.method}, smallest eigenvalue {fmt_num(t.correlation.min_eigenvalue)}"
                        + (f", smoothed (ridge {fmt_num(t.correlation.ridge, 4)})" if t.correlation.smoothed else "")),
        ("K", f"{t.k.chosen} by {t.k.rule} (Kaiser {t.k.kaiser}, parallel "
              f"{t.k.parallel if t.k.parallel is not None else '—'})"),
        ("factor analysis", f"{t.efa.method}, rotation {t.efa.rotation or 'none'}, "
                            f"{'converged' if t.efa.converged else 'NOT converged'}, variance explained "
                            + ", ".join(fmt_num(v) for v in t.efa.variance_explained)),
        ("semantic refinement", (f"margin {t.efa.semantic_margin}, {t.efa.refinement_passes} pass(es)"
                                 if t.efa.semantic_step == "margin" else t.efa.semantic_step)
                                + f", {t.efa.n_moved} word(s) moved"
                                + (f", {t.k.chosen} factors grouped into {len(t.dimensions)} dimensions"
                                   if t.efa.dimension_factors else "")),
        ("names", t.naming.method + (f" ({t.naming.requested_model})" if t.naming.requested_model else "")),
        ("embedding model", t.embedding_model),
    ]
    if t.stability:
        s = t.stability
        pairs.append(("stability", f"{s.succeeded}/{s.resamples} resamples; mean same dimension "
                                   f"{fmt_num(s.mean_same_dimension)}, same subdimension "
                                   f"{fmt_num(s.mean_same_subdimension)}, dimension ARI "
                                   f"{fmt_num(s.mean_dimension_ari)}"))
    if data.study_fingerprint and t.study_fingerprint and t.study_fingerprint != data.study_fingerprint:
        pairs.append(("study fingerprint", f"{t.study_fingerprint} (≠ study.json's {data.study_fingerprint}: "
                                           "built from another version of the spec)"))
    return KeyValues(id=f"facts-taxonomy{run.suffix}", title="How this taxonomy was built", pairs=pairs)


def _least_stable(run: TaxonomyRun, n: int = 10) -> TableItem | None:
    table = run.stability
    if table is None or table.empty:
        return None
    names = {s.id: s.name for s in run.taxonomy.subdimensions()}
    worst = table.sort_values(["same_subdimension", "same_dimension", "word"], na_position="first").head(n)
    rows = [[r["word"], names.get(r["subdimension_id"], r["subdimension_id"]), fmt_int(r["resamples"]),
             fmt_num(r["same_dimension"], 2), fmt_num(r["same_subdimension"], 2)] for r in worst.to_dict("records")]
    return TableItem(id=f"table-unstable{run.suffix}", title=f"The {len(rows)} least stable words",
                     columns=["Word", "Subdimension", "Resamples kept", "Same dimension", "Same subdimension"],
                     rows=rows, numeric=[False, False, True, True, True])


def taxonomy_block(run: TaxonomyRun, data: RunData, writer: FigureWriter, section: Section) -> None:
    name = run.label or "all answers"
    section.add(Subheading(id=f"taxonomy{run.suffix}", text=f"Value system: {name} ({run.path})"))
    if run.taxonomy is None:
        section.status = "partial"
        section.add(Notice(f"{run.path} is present but cannot be used: {run.error}", "error",
                           id=f"notice-taxonomy{run.suffix}-invalid"))
        return
    t = run.taxonomy
    dims = "; ".join(f"{d.name}: {', '.join(s.name for s in d.subdimensions)}" for d in t.dimensions)
    section.add(Text(f"{len(t.dimensions)} dimensions and {len(t.subdimensions())} subdimensions from "
                     f"{t.corpus.n_words_kept} value words — {dims}."))
    notes = [*t.efa.notes, *t.naming.notes]
    if t.stability and t.stability.failures:
        notes += [f"bootstrap failure: {f}" for f in t.stability.failures]
    section.add(*(Notice(n, "warning") for n in notes))
    s = run.suffix
    section.add(writer.render(f"fig-scree{s}", "Scree plot and parallel analysis", lambda: scree(t)))
    section.add(writer.render(f"fig-clusters{s}", "Keyword clusters", lambda: clusters(t)))
    section.add(writer.render(f"fig-system{s}", "Value system", lambda: value_system(t), width=760))
    section.add(writer.render(f"fig-subcorr{s}", "Correlation among subdimensions", lambda: correlation_heatmap(t),
                              width=760))
    measured = run.stability is not None and not run.stability.empty and \
        run.stability[["same_dimension", "same_subdimension"]].notna().any().any()
    if not measured:
        section.status = "partial"
        section.add(Notice(f"Word stability: the table {run.tables_prefix}/stability is missing or empty "
                           "(construction.bootstrap: 0, or the stage did not finish).",
                           id=f"notice-stability{s}-missing"))
    else:
        section.add(writer.render(f"fig-stability{s}", "Word stability under resampling", lambda: stability(run)))
        section.add(_least_stable(run))
    section.add(_taxonomy_table(run), _facts(run, data))


def construction_section(data: RunData, writer: FigureWriter) -> Section:
    section = Section(id="construction", title="Value construction")
    if not data.taxonomies:
        section.status = "missing"
        section.add(Notice(
            f"Construction outputs are missing: no taxonomy.json under {data.uri}. Run the construction stage "
            "(python jobs/construct.py STUDY.yaml) to get the scree plot, keyword clusters, value system, "
            "subdimension correlations and word stability.", id="notice-construction-missing"))
        return section
    section.add(Text("Generative value construction (paper §3.2, §4.1): value words elicited from the respondents "
                     "are factor-analysed into dimensions (K chosen on the scree plot) and split into "
                     "subdimensions by meaning."))
    for run in data.taxonomies:
        taxonomy_block(run, data, writer, section)
    if any(r.taxonomy is None for r in data.taxonomies) and section.status == "ok":
        section.status = "partial"
    return section
