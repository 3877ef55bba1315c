""""Can these scores be trusted?": the reliability stage's tables (``quality/``) as the report's first section.

Per value system: a model x dimension table with the score, its CI and the verdict (reliable /
doubtful / unreliable; the reasons in a table one click below), the variance components as a
stacked bar per dimension (``fig-variance-<system>``), the D-study curves, G against samples M and
against stems (``fig-dstudy-<system>``), and the tables of G / Phi with what the D-study asks for,
internal consistency, the judge, and the spread of each score across the stems' wordings
(``quality/paraphrase``; an info notice says how to get it when the study asked no paraphrases). A
figure that cannot be computed shows as a notice that says what is missing and what would make it
computable, never as a NaN. Without ``quality/`` (the stage did not run) the section is a notice:
``valuelex reliability RUN`` makes it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.ticker import NullLocator

from valuelex.quality.paraphrase import NO_PARAPHRASES
from valuelex.report.figures import (
    FigureWriter,
    Notice,
    Section,
    Subheading,
    TableItem,
    Text,
    color,
    fmt_ci,
    fmt_num,
    new_figure,
    slug,
)
from valuelex.report.load import RunData
from valuelex.store import layout

TITLE = "Can these scores be trusted?"
SHOWN_TABLES = tuple(t for t in layout.RELIABILITY_TABLES if not t.startswith("mtmm"))  # mtmm: validity section
COMPONENT_ORDER = ("model", "model×stem", "model×config", "model×stem×config", "model×stem×config,residual",
                   "stem", "config", "stem×config", "residual")


def _count(value: Any) -> str:
    return "—" if value is None or pd.isna(value) else f"{int(value):,}"


def variance_figure(components: pd.DataFrame) -> tuple[Any, str]:
    dims = list(dict.fromkeys(components["dimension"]))
    facets = [f for f in COMPONENT_ORDER if f in set(components["facet"])]
    fig = new_figure(6.6, 1.0 + 0.3 * len(dims))
    ax = fig.subplots()
    left = np.zeros(len(dims))
    for i, facet in enumerate(facets):
        share = [float(components.loc[(components["dimension"] == d) & (components["facet"] == facet),
                                      "share"].fillna(0).sum()) for d in dims]
        ax.barh(np.arange(len(dims)), share, left=left, color=color(i), label=facet, height=0.7)
        left += np.asarray(share)
    ax.set_yticks(np.arange(len(dims)), dims)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the variance of φ")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=4)
    return fig, ("Variance components of φ per dimension (ANOVA / expected mean squares, negatives set to 0): "
                 "the model share is what the test measures; model × stem, model × config and the residual are "
                 "the error that ranks models; stem and config shift every model alike.")


def dstudy_figure(dstudy: pd.DataFrame) -> tuple[Any, str]:
    facets = [f for f in ("sample", "stem") if f in set(dstudy["facet"])]
    fig = new_figure(6.6, 2.8)
    axes = np.atleast_1d(fig.subplots(1, len(facets), sharey=True))
    for ax, facet in zip(axes, facets, strict=True):
        part = dstudy[dstudy["facet"] == facet]
        for i, (dim, rows) in enumerate(part.groupby("dimension", sort=False)):
            ax.plot(rows["n"], rows["G"], marker="o", markersize=3, color=color(i), label=dim)
        ax.axhline(0.8, color="#777777", linestyle="--", linewidth=0.8)
        ax.set_xscale("log")
        ticks = sorted(set(part["n"].astype(int)))
        ax.set_xticks(ticks, [str(t) for t in ticks])  # plain labels: the report turns mathtext off
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("samples M" if facet == "sample" else "stems")
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("G (relative)")
    axes[-1].legend(fontsize=7, loc="lower right")
    return fig, ("D-study: the G coefficient as M (left) or the stems (right) grow, the other facets at the "
                 "run's design.")


def _system_part(section: Section, writer: FigureWriter, system: str, q: dict[str, pd.DataFrame],
                 paraphrases: int = 0) -> None:
    def mine(name: str) -> pd.DataFrame:
        frame = q.get(name)
        return frame[frame["system"] == system] if frame is not None and "system" in frame else pd.DataFrame()

    verdicts, coef, comps, curves = mine("verdicts"), mine("coefficients"), mine("components"), mine("dstudy")
    consistency, judge, devset = mine("consistency"), mine("judge"), mine("devset")
    section.add(Subheading(f"reliability-{slug(system)}", f"System: {system}"))
    if len(verdicts):
        counts = verdicts["verdict"].value_counts()
        section.add(Text(", ".join(f"{int(counts.get(v, 0))} {v}" for v in ("reliable", "doubtful", "unreliable"))
                         + " model × dimension score(s)."))
        section.add(TableItem(
            f"table-verdicts-{slug(system)}", "Scores and verdicts", ["model", "dimension", "w [95% CI]", "verdict"],
            [[r["model"], r["dimension"], fmt_ci(r["w"], r["ci_low"], r["ci_high"]), r["verdict"]]
             for r in verdicts.to_dict("records")],
            caption="reliable: G and Phi >= 0.8, alpha >= 0.7 and a CI half-width <= 0.1; unreliable: G or alpha "
                    "< 0.5; doubtful otherwise, or when G cannot be computed."))
        section.add(TableItem(
            f"table-verdict-reasons-{slug(system)}", "Why each verdict", ["model", "dimension", "reason"],
            [[r["model"], r["dimension"], r["reason"]] for r in verdicts.to_dict("records")], collapsed=True))
    else:
        section.add(Notice(f"{system}: no scores to give a verdict on (run the evaluation stage first).",
                           id=f"notice-verdicts-{slug(system)}-missing"))
    if len(comps):
        section.add(writer.render(f"fig-variance-{slug(system)}", "Variance components",
                                  lambda: variance_figure(comps), width=700))
    else:
        section.add(Notice(f"{system}: no variance components: {_first_notice(coef)}",
                           id=f"notice-variance-{slug(system)}-missing"))
    if len(curves):
        section.add(writer.render(f"fig-dstudy-{slug(system)}", "D-study", lambda: dstudy_figure(curves), width=700))
    else:
        section.add(Notice(f"{system}: no D-study curve: {_first_notice(coef)}", id=f"notice-dstudy-{slug(system)}"))
    if len(coef):
        section.add(TableItem(
            f"table-gstudy-{slug(system)}", "G-study and D-study",
            ["dimension", "G", "Phi", "stems for G ≥ 0.8", "configs for G ≥ 0.8", "M for G ≥ 0.8", "M for Phi ≥ 0.8",
             "notice"],
            [[r["dimension"], fmt_num(r["G"]), fmt_num(r["Phi"]), _count(r["stems_for_G"]), _count(r["configs_for_G"]),
              _count(r["samples_for_G"]), _count(r["samples_for_Phi"]), r.get("notice") or ""]
             for r in coef.to_dict("records")],
            caption="At the run's design (models x stems x configs x M). '—' with no notice: the count is not "
                    "reachable by that facet alone; '—' with a notice: the notice says what is missing.",
            numeric=[False, True, True, True, True, True, True, False]))
    if len(consistency):
        section.add(TableItem(
            f"table-consistency-{slug(system)}", "Internal consistency and stability",
            ["dimension", "persons", "alpha [95% CI]", "omega [95% CI]", "split-half (S-B)", "Kendall's W", "flag",
             "notice"],
            [[r["dimension"], f"{r['persons']} (n={r['n_persons']})",
              fmt_ci(r["alpha"], r["alpha_low"], r["alpha_high"]),
              fmt_ci(r["omega"], r["omega_low"], r["omega_high"]), fmt_num(r["split_half"]), fmt_num(r["kendall_w"]),
              "under 0.7" if r["flag"] else "", r.get("notice") or ""] for r in consistency.to_dict("records")],
            caption="Stems are the items. Split-half: odd vs even samples, Spearman-Brown corrected; Kendall's W: "
                    "agreement of the decoding configs' rankings of the models."))
    facet = judge[judge["check"] == "judge facet"] if len(judge) else judge
    judge = judge[judge["check"] != "judge facet"] if len(judge) else judge
    if len(facet):
        section.add(TableItem(
            f"table-judge-facet-{slug(system)}", "The judge as a facet of the G-study",
            ["dimension", "other judge", "judge share", "G (one judge)", "Phi (one judge)", "G (both judges)",
             "notice"],
            [[r["dimension"], r["other_judge"], fmt_num(r.get("judge_share")), fmt_num(r.get("G")),
              fmt_num(r.get("Phi")), fmt_num(r.get("G_both")), r.get("notice") or ""]
             for r in facet.to_dict("records")],
            caption="Completions scored by two judges: the (sample : model × stem × config) × judge design. Judge "
                    "share: the part of the score variance that is the judge's (its leniency, its interaction "
                    "with models, its disagreement on single completions); G with one judge is what a run with "
                    "one of them can claim.",
            numeric=[False, False, True, True, True, True, False]))
    if len(judge):
        cols = ["check", "n", "Krippendorff's alpha (ordinal)", "QWK", "error off-topic", "error aligned",
                "error conflicting", "difference", "notice"]
        section.add(TableItem(
            f"table-judge-{slug(system)}", "The judge",
            cols, [[_check_label(r), _count(r["n"]), fmt_num(r["krippendorff_alpha"]), fmt_num(r["qwk"]),
                    fmt_num(r.get("error_off_topic")), fmt_num(r.get("error_aligned")),
                    fmt_num(r.get("error_conflicting")), fmt_num(r.get("difference")), r.get("notice") or ""]
                   for r in judge.to_dict("records")],
            caption="rejudge: a second judge pass over a seeded subset; controls: mean absolute error on packaged "
                    "off-topic (target 3), aligned (6) and conflicting (0) sentences; other judge: agreement with "
                    "another judge of the same completions, difference = this judge minus the other, in points; "
                    "self-preference: how much more a judge favours respondents of its own model family than "
                    "others, in points."))
    _devset_part(section, system, devset)
    _paraphrase_part(section, system, mine("paraphrase"), paraphrases)
    _wording_components(section, system, mine("paraphrase_components"))


def _paraphrase_part(section: Section, system: str, spread: pd.DataFrame, asked: int) -> None:
    """Prompt sensitivity: each score per wording of the stems, and how far the wordings move it."""
    if not len(spread):
        text = (f"{system}: the study asked {asked} paraphrase(s) but the reliability stage has not measured their "
                "spread: rerun `valuelex reliability RUN`." if asked else f"{system}: {NO_PARAPHRASES}.")
        section.add(Notice(text, "info" if not asked else "missing", id=f"notice-paraphrase-{slug(system)}"))
        return
    wordings = sorted(int(c.removeprefix("w_")) for c in spread.columns if c.startswith("w_") and c[2:].isdigit())
    section.add(TableItem(
        f"table-paraphrase-{slug(system)}", "Prompt sensitivity: the score per wording of the stems",
        ["model", "dimension", *(f"w{k}" if k else "w0 (original)" for k in wordings), "SD", "range", "noise SD",
         "excess SD", "per-stem SD"],
        [[r["model"], r["dimension"], *(fmt_num(r.get(f"w_{k}")) for k in wordings), fmt_num(r["sd"]),
          fmt_num(r["range"]), fmt_num(r["noise_sd"]), fmt_num(r["excess_sd"]), fmt_num(r["stem_sd"])]
         for r in spread.to_dict("records")],
        caption="w_k: Eq. 4 on the stems asked in wording k (0 the original, k >= 1 the packaged paraphrases). "
                "SD and range across the wordings; noise SD: what sampling alone would give; excess SD: the part "
                "of the SD beyond it, the wording's own effect; per-stem SD: the wording effect on single stems.",
        numeric=[False, False, *([True] * (len(wordings) + 5))], collapsed=len(spread) > 40))


def _wording_components(section: Section, system: str, comps: pd.DataFrame) -> None:
    """The wording's share of the variance of φ per dimension (the nested G-study of quality/paraphrase)."""
    if not len(comps):
        return
    labels = ("paraphrase:stem", "model×paraphrase:stem")
    rows = []
    for dim, mine in comps.groupby("dimension", sort=False):
        share = mine.set_index("facet")["share"]
        rows.append([dim, *(fmt_num(share.get(label)) for label in labels), fmt_num(share.get("model")),
                     mine["notice"].dropna().iloc[0] if mine["notice"].notna().any() else ""])
    section.add(TableItem(
        f"table-paraphrase-components-{slug(system)}", "Prompt sensitivity: the wording's variance components",
        ["dimension", "wording within stem", "model × wording", "model", "notice"], rows,
        caption="Shares of the variance of φ in the design samples : model × config × (wording : stem). "
                "Model × wording is error when models are ranked: models that the wording ranks differently.",
        numeric=[False, True, True, True, False], collapsed=True))


def _check_label(row: dict[str, Any]) -> str:
    other = row.get("other_judge")
    return f"{row['check']} ({other})" if isinstance(other, str) and other else str(row["check"])


def _devset_part(section: Section, system: str, devset: pd.DataFrame) -> None:
    """The run's judge against the development set's labels (test half): does it say what people say?"""
    if not len(devset):
        section.add(Notice(f"{system}: the judge was not scored on the development set (reliability.devset: "
                           "false, or the stage ran without a judge): `valuelex judge-check --builtin` scores it.",
                           id=f"notice-devset-{slug(system)}"))
        return
    labelled = devset[devset["n"] > 0]
    if not len(labelled):
        section.add(Notice(f"{system}: {devset['notice'].iloc[0]}", id=f"notice-devset-{slug(system)}"))
        return
    section.add(TableItem(
        f"table-devset-{slug(system)}", "The judge on the development set",
        ["dimension", "n", "QWK", "Krippendorff's alpha", "AUC high vs conflicting", "balanced accuracy",
         "says high", "labelled high"],
        [["all (pooled)" if r["scope"] == "overall" else r["dimension"], _count(r["n"]), fmt_num(r["qwk"]),
          fmt_num(r["alpha"]), fmt_num(r["auc"]), fmt_num(r["balanced_accuracy"]), fmt_num(r["share_high"]),
          fmt_num(r["share_labelled_high"])] for r in labelled.to_dict("records")],
        caption="The run's judge on the test half of the packaged development set (completions we wrote and "
                "labelled high / neutral / conflicting, never used to tune it; valuelex/data/judge/devset). A score "
                "above 3 reads as high, 3 neutral, below 3 conflicting. Chance: balanced accuracy 0.33, AUC 0.5, "
                "QWK and alpha 0.",
        numeric=[False, True, True, True, True, True, True, True]))


def _first_notice(coef: pd.DataFrame) -> str:
    notes = [n for n in coef.get("notice", pd.Series(dtype=object)).dropna() if n] if len(coef) else []
    return notes[0] if notes else "the design is too small"


def reliability_section(data: RunData, writer: FigureWriter) -> Section:
    section = Section(id="reliability", title=TITLE)
    q = {name: frame for name, frame in data.quality.items()
         if frame is not None and len(frame) and name in SHOWN_TABLES}
    if not q:
        section.status = "missing"
        section.add(Notice("The reliability stage has not run on this run: `valuelex reliability RUN` computes "
                           "the G-study, alpha / omega, split-half and the judge's agreement.",
                           id="notice-reliability-missing"))
        return section
    systems = sorted({str(s) for frame in q.values() if "system" in frame for s in frame["system"].dropna()})
    section.add(Text("How far each score can be trusted: how much of its variance is the model (generalizability "
                     "theory), how consistent the stems are, and how consistent the judge is."))
    paraphrases = int(((data.study or {}).get("prompts") or {}).get("paraphrases") or 0)
    for system in systems:
        _system_part(section, writer, system, q, paraphrases)
    if any(name not in q for name in ("verdicts", "coefficients", "consistency")):
        section.status = "partial"
    return section
