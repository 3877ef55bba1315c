"""The case table (paper Table 1): sample elicitation answers and sentence completions per model.

Selection is deterministic so two reports of one run show the same cases: for each model, the
elicitation prompt and the stems answered by the most models (ties: lowest id), and within an item
the first decoding config (study order) and the lowest sample with a non-empty answer. Every answer
is model text: it is passed on as plain strings, which the template escapes.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from valuelex.report.figures import Notice, Section, TableItem, Text, model_label, order_models, truncate
from valuelex.report.load import RunData

RESPONSE_CHARS = 600


def usable(frame: pd.DataFrame | None) -> pd.DataFrame:
    """Rows with a successful, non-empty response."""
    if frame is None or frame.empty or "response" not in frame.columns:
        return pd.DataFrame(columns=["row_id", "model", "item_id", "config", "sample", "prompt", "response"])
    ok = frame["response"].fillna("").astype(str).str.strip() != ""
    if "error" in frame.columns:
        ok &= frame["error"].isna()
    return frame[ok]


def _ranked_items(frame: pd.DataFrame) -> list[str]:
    coverage = frame.groupby("item_id")["model"].nunique()
    return sorted(coverage.index, key=lambda i: (-int(coverage[i]), str(i)))


def _config_rank(data: RunData) -> dict[str, int]:
    configs = [c.get("name") for c in (data.study or {}).get("decoding", []) or [] if isinstance(c, dict)]
    return {name: i for i, name in enumerate(configs)}


def _pick(frame: pd.DataFrame, model: str, items: list[str], n: int, config_rank: dict[str, int]) -> list[dict]:
    mine = frame[frame["model"] == model]
    picked = []
    for item in items:
        rows = mine[mine["item_id"] == item]
        if rows.empty:
            continue
        rows = rows.assign(_c=rows["config"].map(lambda c: (config_rank.get(c, len(config_rank)), str(c))))
        picked.append(rows.sort_values(["_c", "sample"]).iloc[0].to_dict())
        if len(picked) >= n:
            break
    return picked


def _dimension_names(data: RunData, system: str | None) -> dict[str, str]:
    scores = data.scores
    if scores is None or system is None or not {"system", "key", "dimension"} <= set(scores.columns):
        return {}
    mine = scores[scores["system"] == system]
    return dict(zip(mine["key"].astype(str), mine["dimension"].astype(str), strict=True))


def _judged(data: RunData, system: str | None, row_id: str, names: dict[str, str]) -> str:
    frame = data.judgments.get(system) if system else None
    if frame is None or frame.empty:
        return "—"
    row = frame[frame["row_id"] == row_id]
    if row.empty:
        return "not judged"
    r = row.iloc[0]
    if not bool(r.get("valid")):
        return f"invalid: {r.get('invalid_reason') or 'no reason recorded'}"
    parts = [f"{names.get(c.removeprefix('score_'), c.removeprefix('score_'))} {int(r[c])}" for c in frame.columns
             if c.startswith("score_") and pd.notna(r[c])]
    return ", ".join(parts) or "—"


def _stem(item_id: str, prompt: Any) -> str:
    from valuelex.evaluate.judgments import stem_text

    try:
        return stem_text(str(item_id), None if prompt is None else str(prompt))
    except Exception:  # the packaged stems could not be read: show what the model was given
        return "" if prompt is None else str(prompt)


def cases_section(data: RunData, per_model: int = 2, system: str | None = None) -> Section:
    section = Section(id="cases", title="Case study: sample answers")
    elicited, completed = usable(data.elicitation), usable(data.completions)
    if elicited.empty and completed.empty:
        section.status = "missing"
        have = "tables are missing" if data.elicitation is None and data.completions is None else \
            "tables hold no successful, non-empty answer"
        section.add(Notice(f"Case table: the elicitation and completions {have}.", id="notice-cases-missing"))
        return section
    if system is None and data.judgments:
        system = "valuelex" if "valuelex" in data.judgments else sorted(data.judgments)[0]
    meta = data.model_meta()
    models = order_models(sorted({*map(str, elicited["model"]), *map(str, completed["model"])}), meta)
    configs = _config_rank(data)
    names = _dimension_names(data, system)
    e_items, c_items = _ranked_items(elicited), _ranked_items(completed)
    rows = []
    for model in models:
        label = model_label(model, meta.get(model, {}).get("training"))
        for row in _pick(elicited, model, e_items, 1, configs):
            rows.append([label, "elicitation", f"{row['item_id']} · {row['config']} · #{row['sample']}",
                         str(row.get("prompt") or ""), truncate(row["response"], RESPONSE_CHARS), "—"])
        for row in _pick(completed, model, c_items, per_model, configs):
            rows.append([label, "completion", f"{row['item_id']} · {row['config']} · #{row['sample']}",
                         _stem(row["item_id"], row.get("prompt")), truncate(row["response"], RESPONSE_CHARS),
                         _judged(data, system, str(row["row_id"]), names)])
    section.add(Text("Sample responses per model (cf. Table 1), chosen deterministically: the items most models "
                     "answered, first decoding config, lowest sample with a non-empty answer. (P), (IT) and (A): "
                     "pretrained, instruction-tuned and aligned. Responses are shown verbatim, as text."))
    if data.elicitation is None:
        section.add(Notice("Elicitation answers are missing (no elicitation table).", id="notice-cases-elicitation"))
    if data.completions is None:
        section.add(Notice("Sentence completions are missing (no completions table): run the evaluation stage.",
                           id="notice-cases-completions"))
    section.add(TableItem(
        id="table-cases", title="Sample responses", css="cases",
        columns=["Model", "Task", "Item · config · sample", "Context", "Response",
                 f"Judge scores ({system})" if system else "Judge scores"],
        rows=rows, caption=f"Responses longer than {RESPONSE_CHARS} characters are cut."))
    return section
