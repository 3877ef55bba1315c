""" "Does it measure what it claims?": the taxonomy's replication checks and the scores' response bias.

Taxonomy part, per constructed system (``taxonomy.json`` ``validity``, tables ``quality/taxonomy_*``):
the verdict (replicated / weak / not replicated) and its reason, factorability (KMO, Bartlett), the
split-half congruence and word agreement, the CFA fit of one half's structure on the other against
its cut-offs, the words of KMO < 0.5, the oblique solution's factor correlations, measurement
invariance across training groups and families (the level reached and the sentence saying which mean
comparisons the data support, with the configural / metric / scalar fits; `valuelex.construct.invariance`)
and the taxonomy's agreement when built from disjoint prompt subsets (`valuelex.construct.prompt_subsets`).
A design too small for a check shows the notice that says what is missing, never a NaN.

Scores part (``scores.parquet`` ``w_centred``, `valuelex.evaluate.bias`): the general-factor share
and each model's acquiescence, and the centred scores beside the raw ones; the multitrait-multimethod
summary across value systems (``quality/mtmm*``, `valuelex.quality.mtmm`).
"""

from __future__ import annotations

from typing import Any

from valuelex.report.figures import FigureWriter, Notice, Section, Subheading, TableItem, Text, fmt_num, slug
from valuelex.report.load import RunData, TaxonomyRun

TITLE = "Does it measure what it claims?"
CUTOFF_TEXT = {"cfi": "≥ 0.95", "tli": "≥ 0.95", "rmsea": "≤ 0.06", "srmr": "≤ 0.08"}


def _taxonomy_part(section: Section, run: TaxonomyRun) -> None:
    name = run.taxonomy.name
    sid = slug(run.label or "taxonomy")
    section.add(Subheading(f"validity-{sid}", f"Taxonomy: {name}"))
    v = run.taxonomy.validity
    if v is None:
        section.add(
            Notice(
                f"{name}: built before the replication checks existed: rerun `valuelex construct` to compute them.",
                id=f"notice-validity-{sid}-missing",
            )
        )
        return
    if v.verdict:
        section.add(Text(f"Verdict: {v.verdict}. {v.reason}"))
    for i, note in enumerate(v.notices):
        section.add(Notice(note, level="warning" if v.verdict else "missing", id=f"notice-validity-{sid}-{i}"))
    rows: list[list[Any]] = []
    if v.kmo is not None:
        rows.append(["KMO (overall)", fmt_num(v.kmo), "≥ 0.5 (≥ 0.8 good)"])
    if v.bartlett_chi2 is not None:
        rows.append(
            [
                f"Bartlett χ² (df {v.bartlett_df})",
                fmt_num(v.bartlett_chi2, 1),
                f"p = {fmt_num(v.bartlett_p)}" if v.bartlett_p is not None else "",
            ]
        )
    if v.congruence_min is not None:
        rows += [
            [
                f"smallest matched congruence ({v.n_splits} splits, median)",
                fmt_num(v.congruence_min),
                "≥ 0.85 fair, ≥ 0.95 equal",
            ],
            ["mean matched congruence", fmt_num(v.congruence_mean), "≥ 0.85"],
            ["word → dimension agreement", fmt_num(v.agreement), "≥ 0.80"],
        ]
    for key, value in (v.cfa or {}).items():
        if value is not None:
            rows.append([f"CFA {key.upper()} (other half)", fmt_num(value), CUTOFF_TEXT.get(key, "")])
    if rows:
        section.add(
            TableItem(
                f"table-validity-{sid}",
                "Factorability and replication",
                ["check", "value", "bar"],
                rows,
                caption="Split halves are halves of the respondents (model × config). Congruence: "
                "Tucker's φ of Hungarian-matched factors; CFA: one half's structure fitted to the "
                "other half's correlations (semopy, ML); cut-offs of Hu & Bentler (1999).",
                numeric=[False, True, False],
            )
        )
    if v.oblique_factor_correlations:
        ids = [d.id for d in run.taxonomy.dimensions]
        k = len(v.oblique_factor_correlations)
        labels = ids if len(ids) == k else [f"F{i + 1}" for i in range(k)]
        section.add(
            TableItem(
                f"table-oblique-{sid}",
                f"Factor correlations ({v.oblique_rotation})",
                ["", *labels],
                [[labels[i], *[fmt_num(x) for x in row]] for i, row in enumerate(v.oblique_factor_correlations)],
                caption=f"The {v.oblique_rotation} solution beside the taxonomy's {run.taxonomy.efa.rotation}; its "
                "factors' congruence with the taxonomy's: "
                + ", ".join(fmt_num(c) for c in v.oblique_congruence or [])
                + ".",
                numeric=[False, *[True] * k],
            )
        )
    _invariance_part(section, v, sid)
    _prompt_subsets_part(section, v)


def _invariance_part(section: Section, v: Any, sid: str) -> None:
    """Per computable grouping: its sentence, its notes and the fit table (a grouping that could not be
    computed has its notice among the validity notices)."""
    for inv in v.invariance:
        if not inv.computable:
            continue
        section.add(Text(inv.sentence or ""))
        if inv.notice:
            section.add(Notice(inv.notice, level="info", id=f"notice-invariance-{sid}-{slug(inv.grouping)}"))
        section.add(
            TableItem(
                f"table-invariance-{sid}-{slug(inv.grouping)}",
                f"Measurement invariance across {inv.grouping} ({', '.join(inv.groups)})",
                ["model", "χ²", "df", "CFI", "RMSEA", "ΔCFI", "ΔRMSEA", "holds"],
                [[f.model, fmt_num(f.chi2, 1), f.df, fmt_num(f.cfi), fmt_num(f.rmsea), fmt_num(f.delta_cfi),
                  fmt_num(f.delta_rmsea), "yes" if f.holds else "no"] for f in inv.fits],
                caption=f"Multi-group CFA (ML) of the taxonomy's {len(inv.words)} strongest words; configural holds "
                "at CFI ≥ 0.90 and RMSEA ≤ 0.08, each further step when CFI drops by ≤ 0.01 (Cheung & "
                "Rensvold 2002) and RMSEA rises by ≤ 0.015 (Chen 2007).",
                numeric=[False, *[True] * 6, False],
            )
        )


def _prompt_subsets_part(section: Section, v: Any) -> None:
    ps = v.prompt_subsets
    if ps is None or ps.ari_median is None:
        return
    section.add(
        Text(
            f"Built from disjoint halves of the prompts ({ps.n_splits} seeded splits), the taxonomy's word → "
            f"dimension assignment agrees with median adjusted Rand index {fmt_num(ps.ari_median)} "
            f"(range {fmt_num(ps.ari_min)}–{fmt_num(ps.ari_max)}; 1 the same partition, about 0 unrelated)."
        )
    )


def validity_section(data: RunData, writer: FigureWriter) -> Section:
    section = Section(id="validity", title=TITLE)
    section.add(
        Text(
            "A factor structure fitted to LLM answers can be a phantom, and one model rating everything "
            "higher can look like a value: these checks ask whether the taxonomy replicates across "
            "respondents and whether score differences survive removing each model's mean."
        )
    )
    runs = [r for r in data.taxonomies if r.taxonomy is not None]
    if not runs:
        section.add(
            Notice(
                "No constructed taxonomy: the construction stage makes one and checks it.",
                id="notice-validity-no-taxonomy",
            )
        )
    for run in runs:
        _taxonomy_part(section, run)
    from valuelex.report.bias import bias_part, mtmm_part

    has_bias = bias_part(section, data)
    has_bias = mtmm_part(section, data) or has_bias
    if not runs and not has_bias:
        section.status = "missing"
    elif any(isinstance(i, Notice) and i.level == "missing" for i in section.items):
        section.status = "partial"
    return section
