"""Run facts: stage status and wall time, the study spec, counts (and why rows are invalid), the judge
and its agreement figures, and software versions.

Wall time per stage is read from ``evaluation.json`` (``seconds``) and from ``stages/<stage>.json``
records when a stage writes one; anything else is shown as "not recorded", never guessed.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pandas as pd

from valuelex.records import versions
from valuelex.report.figures import (
    KeyValues,
    Notice,
    Preformatted,
    Section,
    Subheading,
    TableItem,
    fmt_int,
    fmt_num,
    truncate,
)
from valuelex.report.load import RunData
from valuelex.store import layout

NOT_RECORDED = "not recorded"
def _seconds(value: Any) -> str:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return NOT_RECORDED
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h ({seconds:,.0f} s)"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min ({seconds:,.0f} s)"
    return f"{seconds:.1f} s"


def _table_counts(frame: pd.DataFrame | None, attempts: int) -> dict[str, Any]:
    if frame is None:
        return {}
    error = frame["error"].notna() if "error" in frame.columns else pd.Series(False, index=frame.index)
    response = (frame["response"].fillna("").astype(str) if "response" in frame.columns
                else pd.Series("", index=frame.index))
    ok = ~error
    counts = {
        "rows": len(frame), "attempts": attempts, "failed": int(error.sum()),
        "empty": int((ok & (response.str.strip() == "")).sum()),
        "models": int(frame["model"].nunique()) if "model" in frame.columns else 0,
        "items": int(frame["item_id"].nunique()) if "item_id" in frame.columns else 0,
    }
    if "finish_reason" in frame.columns:
        counts["length"] = int((ok & (frame["finish_reason"] == "length")).sum())
    if "n_completion_tokens" in frame.columns:
        tokens = pd.to_numeric(frame.loc[ok, "n_completion_tokens"], errors="coerce")
        counts["tokens"] = int(tokens.sum()) if tokens.notna().any() else None
    return counts


def expected_rows(data: RunData, stage: str) -> int | None:
    """Rows of a generation stage in the study's grid (None when study.json is absent or unreadable).

    For completions, M is the one the last evaluation used (adaptive M may differ from the study's).
    """
    if not data.study:
        return None
    try:
        from valuelex import grid
        from valuelex.spec import Study

        study = Study.model_validate(data.study)
        samples = (data.evaluation or {}).get("samples") if stage == "completion" else None
        return grid.count(study, stage, samples=int(samples) if samples else None)
    except Exception:
        return None


def _stage_rows(data: RunData) -> list[list[Any]]:
    records = data.stage_records
    rows = []
    for stage, frame, attempts in (("elicitation", data.elicitation, data.elicitation_attempts),
                                   ("completion", data.completions, data.completion_attempts)):
        c = _table_counts(frame, attempts)
        table = "elicitation" if stage == "elicitation" else "completions"
        expected = expected_rows(data, stage)
        if frame is None:
            status = "missing"
        elif expected is not None:
            status = "done" if c["rows"] - c["failed"] >= expected else "partial"
        else:
            status = "partial" if c["failed"] else "done"
        of = f" of {fmt_int(expected)} in the grid" if expected is not None else ""
        summary = "no table" if frame is None else (
            f"{fmt_int(c['rows'])} rows{of} ({fmt_int(c['failed'])} failed, {fmt_int(c['empty'])} empty), "
            f"{c['models']} models × {c['items']} items; {fmt_int(c['attempts'])} stored attempts")
        rows.append([stage, f"{table}/", status, summary, _seconds(records.get(stage, {}).get("seconds"))])
    valid = [t for t in data.taxonomies if t.taxonomy is not None]
    if data.taxonomies:
        summary = "; ".join(f"{t.path}: K={t.taxonomy.k.chosen}, {t.taxonomy.corpus.n_words_kept} words"
                            if t.taxonomy is not None else f"{t.path}: invalid" for t in data.taxonomies)
    else:
        summary = f"no {layout.taxonomy_file()}"
    status = "missing" if not data.taxonomies else ("done" if len(valid) == len(data.taxonomies) else "partial")
    rows.append(["construction", "taxonomy*.json, construction*/", status, summary,
                 _seconds(records.get("construction", {}).get("seconds"))])
    ev = data.evaluation or {}
    if data.scores is not None:
        systems = sorted(map(str, data.scores["system"].dropna().unique())) if "system" in data.scores else []
        summary = f"{len(data.scores)} score rows; systems: {', '.join(systems)}"
        status = "done"
    else:
        summary, status = "no scores.parquet", "missing"
    seconds = records.get("evaluation", {}).get("seconds", ev.get("seconds"))
    rows.append(["evaluation", "scores.parquet, evaluation.json, judgments/", status, summary, _seconds(seconds)])
    return rows


def _study_items(data: RunData) -> list[Any]:
    study = data.study
    if not study:
        return [Notice(f"study.json is missing under {data.uri}: the spec of this run is unknown (it is written "
                       "by the generation stages).", id="notice-study-missing")]
    prompts = study.get("prompts") or {}
    pairs = [
        ("name", study.get("name")), ("description", study.get("description") or "—"),
        ("fingerprint", data.study_fingerprint), ("output", study.get("output")),
        ("samples M", study.get("samples")), ("seed", study.get("seed")),
        ("elicitation prompts", _ids(prompts.get("elicitation", "all"))),
        ("completion stems", _ids(prompts.get("stems", "all"))),
    ]
    construction = study.get("construction") or {}
    if construction:
        pairs.append(("construction", ", ".join(f"{k}={v}" for k, v in sorted(construction.items())
                                                  if v not in (None, {}, []))))
    evaluation = study.get("evaluation") or {}
    if evaluation:
        pairs.append(("evaluation", ", ".join(f"{k}={v}" for k, v in sorted(evaluation.items())
                                                if v not in (None, {}, []))))
    items: list[Any] = [KeyValues(id="facts-study", title="Study", pairs=pairs)]
    models = [m for m in study.get("models", []) or [] if isinstance(m, dict)]
    if models:
        items.append(TableItem(
            id="table-models", title="Models (respondents × decoding configs)",
            columns=["Model", "Training", "Size (B)", "Family", "Prompting", "Engine", "Source"],
            rows=[[m.get("name"), m.get("training"), fmt_num(m.get("size_b"), 3) if m.get("size_b") else "unknown",
                   m.get("family"), m.get("prompting"), m.get("engine", "vllm"), m.get("source")] for m in models],
            numeric=[False, False, True, False, False, False, False]))
    decoding = [d for d in study.get("decoding", []) or [] if isinstance(d, dict)]
    if decoding:
        items.append(TableItem(
            id="table-decoding", title="Decoding configs Θ", columns=["Config", "Temperature", "top_p", "max_tokens"],
            rows=[[d.get("name"), d.get("temperature"), d.get("top_p"), d.get("max_tokens")] for d in decoding],
            numeric=[False, True, True, True]))
    items.append(Preformatted(id="pre-study", title=layout.STUDY, text=json.dumps(study, indent=2, sort_keys=True)))
    return items


def _ids(value: Any) -> str:
    return value if isinstance(value, str) else f"{len(value)}: {', '.join(map(str, value))}"


def _per_model(data: RunData) -> TableItem | None:
    columns = ["Model"]
    counters: list[tuple[str, pd.DataFrame]] = []
    for name, frame in (("elicitation", data.elicitation), ("completions", data.completions)):
        if frame is not None and "model" in frame.columns:
            counters.append((name, frame))
            columns += [f"{name} rows", f"{name} failed"]
    judged = [(s, f) for s, f in sorted(data.judgments.items()) if "model" in f.columns and "valid" in f.columns]
    for system, _ in judged:
        columns += [f"{system} valid", f"{system} invalid"]
    if len(columns) == 1:
        return None
    models = sorted({str(m) for _, f in counters for m in f["model"].dropna().unique()}
                    | {str(m) for _, f in judged for m in f["model"].dropna().unique()})
    rows = []
    for model in models:
        row: list[Any] = [model]
        for _, frame in counters:
            mine = frame[frame["model"] == model]
            failed = int(mine["error"].notna().sum()) if "error" in mine.columns else 0
            row += [fmt_int(len(mine)), fmt_int(failed)]
        for _, frame in judged:
            mine = frame[frame["model"] == model]
            valid = int(mine["valid"].astype(bool).sum())
            row += [fmt_int(valid), fmt_int(len(mine) - valid)]
        rows.append(row)
    return TableItem(id="table-counts-per-model", title="Rows per model", columns=columns, rows=rows,
                     numeric=[False] + [True] * (len(columns) - 1), collapsed=len(rows) > 12)


def _reasons(data: RunData) -> TableItem | None:
    rows = []
    for name, frame in (("elicitation", data.elicitation), ("completions", data.completions)):
        if frame is None or "error" not in frame.columns:
            continue
        messages = Counter(str(e).splitlines()[0] if str(e) else "" for e in frame["error"].dropna())
        for message, n in messages.most_common(8):
            rows.append([name, "generation failed", truncate(message, 300), fmt_int(n)])
        if "response" in frame.columns:
            empty = int((frame["error"].isna() & (frame["response"].fillna("").astype(str).str.strip() == "")).sum())
            if empty:
                rows.append([name, "empty response", "the model answered nothing", fmt_int(empty)])
        if "finish_reason" in frame.columns:
            cut = int((frame["error"].isna() & (frame["finish_reason"] == "length")).sum())
            if cut:
                rows.append([name, "cut at max_tokens", "finish_reason = length (kept, but truncated)", fmt_int(cut)])
    for system, frame in sorted(data.judgments.items()):
        if "valid" not in frame.columns:
            continue
        invalid = frame[~frame["valid"].astype(bool)]
        reasons = invalid["invalid_reason"].fillna("no reason recorded") if "invalid_reason" in invalid else \
            pd.Series(["no reason recorded"] * len(invalid))
        for message, n in Counter(truncate(r, 300) for r in reasons).most_common(8):
            rows.append([layout.judgments_table(system), "invalid judgment", message, fmt_int(n)])
    if not rows:
        return None
    return TableItem(id="table-invalid", title="Failed, empty and invalid rows, and why", rows=rows,
                     columns=["Table", "What", "Reason", "Rows"], numeric=[False, False, False, True],
                     caption="Failed generations are retried by the next run of their stage; invalid judgments are "
                             "left out of w and counted in n_invalid.")


def _judge_items(data: RunData) -> list[Any]:
    ev = data.evaluation
    items: list[Any] = []
    if ev is None and not data.judgments:
        return [Notice("Judge: no evaluation.json and no judgments: the evaluation stage has not run.",
                       id="notice-judge-missing")]
    keys = {s: sorted(map(str, f["judge_key"].dropna().unique())) for s, f in data.judgments.items()
            if "judge_key" in f.columns}
    judges = sorted({str(j) for f in data.judgments.values() if "judge" in f.columns for j in f["judge"].dropna()})
    pairs: list[tuple[str, Any]] = [("judge", (ev or {}).get("judge") or ", ".join(judges) or NOT_RECORDED)]
    for system, key in sorted(keys.items()):
        pairs.append((f"judge key ({system})", ", ".join(key) or NOT_RECORDED))
    if ev:
        pairs.append(("samples M used", ev.get("samples", NOT_RECORDED)))
        adaptive = ev.get("adaptive")
        if adaptive:
            pairs.append(("adaptive M", f"stopped: {adaptive.get('stopped')}, used {adaptive.get('samples_used')} of "
                                        f"fixed {adaptive.get('fixed_samples')} (saving {adaptive.get('saving')}), "
                                        f"{len(adaptive.get('rounds') or [])} rounds"))
    stale = {s: n for s, n in data.stale_judgments.items() if n}
    if stale:
        pairs.append(("stale judgments ignored", ", ".join(f"{s}: {n}" for s, n in sorted(stale.items()))))
    items.append(KeyValues(id="facts-judge", title="Judge", pairs=pairs))
    systems = (ev or {}).get("systems") or {}
    if systems:
        rows = [[s, fmt_int(c.get("completions")), fmt_int(c.get("already_judged")), fmt_int(c.get("judged")),
                 fmt_int(c.get("invalid")), fmt_int(((ev or {}).get("invalid") or {}).get(s))]
                for s, c in systems.items() if isinstance(c, dict)]
        items.append(TableItem(id="table-judging", title="Judging in the last evaluation run",
                               columns=["System", "Completions", "Already judged", "Judged now", "Invalid now",
                                        "Invalid in scores"],
                               rows=rows, numeric=[False, True, True, True, True, True]))
    items.extend(_agreement(data))
    return items


def _agreement(data: RunData) -> list[Any]:
    check = data.judge_check or ((data.evaluation or {}).get("agreement"))
    if not check:
        return [Notice("Judge agreement: not recorded. No judge_check.json in the run (the paper reports a "
                       "quadratic weighted kappa of 0.8 between humans and its judge; compute it with "
                       "valuelex.evaluate.agreement.judge_check on a labelled sample).", "info",
                       id="notice-agreement-missing")]
    rows = []
    for pair, result in (check.get("pairs") or {}).items():
        if not isinstance(result, dict):
            continue
        overall = result.get("overall") or {}
        rows.append([pair, "all", fmt_int(overall.get("n")), fmt_num(overall.get("qwk")), fmt_num(overall.get("exact")),
                     fmt_num(overall.get("within1")), fmt_int(result.get("skipped"))])
        for dim, res in sorted((result.get("per_dimension") or {}).items()):
            rows.append([pair, dim, fmt_int(res.get("n")), fmt_num(res.get("qwk")), fmt_num(res.get("exact")),
                         fmt_num(res.get("within1")), ""])
    if not rows:
        return [Preformatted(id="pre-agreement", title="Judge agreement (raw)",
                             text=json.dumps(check, indent=2, default=str), collapsed=False)]
    return [TableItem(id="table-agreement", title="Judge agreement", rows=rows,
                      columns=["Raters", "Dimension", "n", "QWK", "Exact", "Within ±1", "Skipped"],
                      numeric=[False, False, True, True, True, True, True],
                      caption=f"From {check.get('file', 'judge_check.json')}: quadratic weighted kappa, exact and "
                              "within-one agreement of the 0–6 scores.")]


def _versions_table(data: RunData) -> TableItem:
    here = versions()
    recorded: dict[str, dict[str, str]] = {}
    for stage, record in data.stage_records.items():
        for package, version in (record.get("versions") or {}).items():
            recorded.setdefault(str(package), {})[stage] = str(version)
    for run in data.taxonomies:
        if run.taxonomy is not None:
            recorded.setdefault("valuelex", {})[f"construction ({run.path})"] = run.taxonomy.valuelex_version
    names = list(here) + sorted(set(recorded) - set(here))
    rows = []
    for name in names:
        stages = recorded.get(name, {})
        run = "; ".join(f"{stage}: {version}" for stage, version in sorted(stages.items())) or NOT_RECORDED
        rows.append([name, here.get(name, "—"), run])
    return TableItem(id="table-versions", title="Software versions", columns=["Package", "This report", "The run"],
                     rows=rows, caption="'This report' is the environment that built this page; 'The run' is what "
                                        "the stages recorded, where they did.")


def _spending(data: RunData) -> TableItem | None:
    """What each stage has spent over the whole output (its record's ``spent``, `valuelex.budget`), its caps,
    and the cap that stopped it; None when no stage recorded spending."""
    rows = []
    for stage, name in (("elicitation", "elicitation"), ("completion", "completion"), ("evaluation", "judging")):
        record = data.stage_records.get(stage) or {}
        spent = record.get("spent")
        if not isinstance(spent, dict):
            continue
        budget = record.get("budget") or {}
        caps = [f"run: {k} {v:g}" for k, v in budget.items() if k in ("max_usd", "max_tokens")]
        caps += [f"{name}: {k} {v:g}" for k, v in (budget.get("stages", {}).get(name) or {}).items()]
        total, this_run = spent.get("stage", {}), spent.get("this_run", {})
        rows.append([name, fmt_int(total.get("tokens")), f"${total.get('usd', 0):.4f}",
                     f"{fmt_int(this_run.get('tokens'))} / ${this_run.get('usd', 0):.4f}", "; ".join(caps) or "none",
                     truncate(str(record.get("budget_reached") or "no"), 160)])
    if not rows:
        return None
    return TableItem(id="table-spending", title="Spending (tokens and USD at list prices)",
                     columns=["Stage", "Tokens (all runs)", "USD (all runs)", "Last run", "Budget caps",
                              "Stopped by a cap"], rows=rows,
                     caption="Prompt + completion tokens of every stored row, failed attempts included; USD at the "
                             "price table's list prices (vLLM models: own hardware, $0). A stage stopped by a cap "
                             "kept every finished row; a rerun with a higher cap finishes the rest.")


def facts_section(data: RunData) -> Section:
    section = Section(id="facts", title="Run facts")
    section.add(Subheading(id="stages", text="Stages"))
    section.add(TableItem(id="table-stages", title="Stages of this run",
                          columns=["Stage", "Output", "Status", "What is stored", "Wall time"],
                          rows=_stage_rows(data),
                          caption="Wall time as recorded by the stage (evaluation.json's seconds cover generating "
                                  "the completions, judging and scoring); 'not recorded' where a stage does not "
                                  "record it."))
    section.add(Subheading(id="study", text="Study spec"))
    section.add(*_study_items(data))
    section.add(Subheading(id="counts", text="Counts"))
    per_model, reasons = _per_model(data), _reasons(data)
    section.add(per_model, reasons)
    if per_model is None and reasons is None:
        section.add(Notice("No elicitation, completion or judgment rows are stored.", id="notice-counts-missing"))
    spending = _spending(data)
    if spending is not None:
        section.add(Subheading(id="spending", text="Spending"), spending)
    section.add(Subheading(id="judge", text="Judge"))
    section.add(*_judge_items(data))
    section.add(Subheading(id="software", text="Software"))
    section.add(_versions_table(data))
    return section
