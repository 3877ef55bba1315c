"""The response-bias part of "Does it measure what it claims?": general factor, acquiescence, centred scores.

Reads ``quality/response_bias`` and the ``acquiescence`` / ``w_centred`` columns of ``scores.parquet``
(`valuelex.evaluate.bias`); scores written before those columns existed get a notice.
"""

from __future__ import annotations

import pandas as pd

from valuelex.report.figures import Notice, Section, Subheading, TableItem, Text, fmt_num, slug
from valuelex.report.load import RunData


def bias_part(section: Section, data: RunData) -> bool:
    """Add the response-bias part; False when the run has no response-bias figures."""
    section.add(Subheading("validity-bias", "Response bias"))
    table = data.quality.get("response_bias")
    scores = data.scores
    if table is None or not len(table) or scores is None or "w_centred" not in scores:
        section.add(
            Notice(
                "No response-bias figures: the evaluation stage computes them with the scores "
                "(rerun `valuelex evaluate` on a run scored by an earlier ValueLex).",
                id="notice-bias-missing",
            )
        )
        return False
    for system, part in table.groupby("system", sort=True):
        share = part["general_share"].dropna()
        if len(share):
            section.add(
                Text(
                    f"{system}: the first principal component of the model × dimension scores explains "
                    f"{float(share.iloc[0]):.0%} of the between-model variance (a response bias shared "
                    "by every dimension shows as a share near 1)."
                )
            )
        for note in part["notice"].dropna().unique():
            section.add(Notice(f"{system}: {note}", level="warning", id=f"notice-bias-{slug(str(system))}"))
        mine = scores[(scores["system"] == system) & (scores["judge"].isin(part["judge"].unique()))]
        rows = [
            [r["model"], r["dimension"], fmt_num(r["w"]), fmt_num(r["w_centred"])]
            for r in mine.sort_values(["model", "key"]).to_dict("records")
            if pd.notna(r.get("w_centred"))
        ]
        acq = ", ".join(f"{r['model']} {fmt_num(r['acquiescence'])}" for r in part.to_dict("records"))
        section.add(
            TableItem(
                f"table-centred-{slug(str(system))}",
                f"{system}: raw and respondent-centred scores",
                ["model", "dimension", "w", "w − model mean"],
                rows,
                numeric=[False, False, True, True],
                caption=f"Acquiescence (each model's mean w over every dimension): {acq}. A difference between models "
                "that survives in the centred column is a difference in values, not in level.",
                collapsed=True,
            )
        )
    return True


def _judges_part(section: Section, summary: pd.DataFrame, pairs: pd.DataFrame | None) -> None:
    """MTMM with the judges as methods, per system two judges scored."""
    section.add(Subheading("validity-mtmm-judges", "Convergent and discriminant validity across judges"))
    for s in summary.to_dict("records"):
        sid = slug(str(s["system"]))
        if pd.notna(s.get("gap")):
            section.add(
                Text(
                    f"{s['system']}, judged by {s['systems']}, across {int(s['n_units'])} "
                    f"{'respondents' if s['unit'] == 'respondent' else '(model, config, stem) cells'}: the same "
                    f"dimension by the other judge correlates with mean |r| {fmt_num(s['convergent'])} (convergent, "
                    f"{int(s['n_convergent'])} pairs), other dimensions by the other judge with "
                    f"{fmt_num(s['discriminant'])} (discriminant, {int(s['n_discriminant'])} pairs): gap "
                    f"{fmt_num(s['gap'])} (bar: ≥ 0.40)."
                )
            )
        if pd.notna(s.get("notice")) and s.get("notice"):
            section.add(Notice(str(s["notice"]), level="warning" if pd.notna(s.get("gap")) else "missing",
                               id=f"notice-mtmm-judges-{sid}"))
        mine = pairs[(pairs["system"] == s["system"]) & (pairs["kind"] == "convergent")] if pairs is not None \
            else pd.DataFrame()
        if len(mine):
            section.add(
                TableItem(
                    f"table-mtmm-judges-{sid}",
                    f"{s['system']}: each dimension by two judges",
                    ["dimension", "dimension", "r"],
                    [[r["a"], r["b"], fmt_num(r["r"])] for r in mine.to_dict("records")],
                    caption="r: Pearson correlation across the units of the dimension's mean φ by each judge, on "
                    "the completions both judged validly.",
                    numeric=[False, False, True],
                    collapsed=True,
                )
            )


def mtmm_part(section: Section, data: RunData) -> bool:
    """The multitrait-multimethod summaries (across systems, then across judges) and their pairs; False
    when the reliability stage has not computed them."""
    summary, pairs = data.quality.get("mtmm_summary"), data.quality.get("mtmm")
    judges_summary = judges_pairs = None
    if summary is not None and "across" in summary:  # written before the judges' rows existed: systems only
        judges_summary = summary[summary["across"] == "judges"]
        summary = summary[summary["across"] == "systems"]
        if pairs is not None and "across" in pairs:
            judges_pairs, pairs = pairs[pairs["across"] == "judges"], pairs[pairs["across"] == "systems"]
    shown = _systems_part(section, summary, pairs)
    if judges_summary is not None and len(judges_summary):
        _judges_part(section, judges_summary, judges_pairs)
        return True
    return shown


def _systems_part(section: Section, summary: pd.DataFrame | None, pairs: pd.DataFrame | None) -> bool:
    section.add(Subheading("validity-mtmm", "Convergent and discriminant validity across value systems"))
    if summary is None or not len(summary):
        section.add(
            Notice(
                "No multitrait-multimethod table: the reliability stage computes it when two or more "
                "value systems are judged (`valuelex reliability RUN`).",
                id="notice-mtmm-missing",
            )
        )
        return False
    s = summary.iloc[0]
    units = "respondents (model × config)" if s["unit"] == "respondent" else "(model, config, stem) cells"
    if pd.notna(s.get("gap")):
        section.add(
            Text(
                f"Across {int(s['n_units'])} {units} of {s['systems']}: convergent mean |r| "
                f"{fmt_num(s['convergent'])} over {int(s['n_convergent'])} expected related pairs, "
                f"discriminant mean |r| {fmt_num(s['discriminant'])} over {int(s['n_discriminant'])} other "
                f"pairs, gap {fmt_num(s['gap'])} (bar: ≥ 0.40)."
            )
        )
    if pd.notna(s.get("notice")) and s.get("notice"):
        section.add(
            Notice(str(s["notice"]), level="warning" if pd.notna(s.get("gap")) else "missing", id="notice-mtmm")
        )
    if pairs is not None and len(pairs):
        conv = pairs[pairs["kind"] == "convergent"]
        section.add(
            TableItem(
                "table-mtmm",
                "Expected related pairs",
                ["dimension", "dimension", "r", "why related"],
                [[r["a"], r["b"], fmt_num(r["r"]), r["reason"]] for r in conv.to_dict("records")],
                caption="r: Pearson correlation across the units of the two dimensions' mean φ; '—': a dimension does "
                "not vary across the units.",
                numeric=[False, False, True, False],
            )
        )
    return True
