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
