"""The judgments table: one row per (completion, value system, judge), scores kept beside the text.

Stored as shards of table ``judgments/<system>`` under the output root. Columns:

- completion identity: ``row_id`` (the completion's), ``model``, ``training``, ``size_b``, ``family``,
  ``config``, ``item_id`` (stem id), ``sample``, ``stem`` (bare stem text), ``response``;
- ``system``, ``judge`` (e.g. ``embedding:all-MiniLM-L6-v2``, ``llm:qwen-judge``) and ``judge_key``
  (judge + its settings + the value system's fingerprint: rows of another key are stale and ignored);
- ``valid`` (bool), ``invalid_reason`` (null when valid), ``attempts``, ``rationale``, ``judge_response``
  (the raw answer of an LLM judge), ``n_prompt_tokens``, ``n_completion_tokens`` (judge cost);
- ``score_<key>``: the integer 0..6 score of each scored (leaf) dimension, null when invalid.

A judged row is never dropped: an answer that could not be used is stored with ``valid=False`` and
its reason, counted as ``n_invalid`` in the scores and not judged again on a rerun.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

import pandas as pd
import pyarrow as pa

from valuelex.evaluate.systems import ValueSystem
from valuelex.store import OutputRoot

COMPLETIONS_TABLE = "completions"
COMPLETION_COLUMNS = ("row_id", "model", "training", "size_b", "family", "config", "item_id", "sample")
BASE_FIELDS = (
    pa.field("row_id", pa.string()), pa.field("model", pa.string()), pa.field("training", pa.string()),
    pa.field("size_b", pa.float64()), pa.field("family", pa.string()), pa.field("config", pa.string()),
    pa.field("item_id", pa.string()), pa.field("sample", pa.int64()), pa.field("stem", pa.string()),
    pa.field("response", pa.string()), pa.field("system", pa.string()), pa.field("judge", pa.string()),
    pa.field("judge_key", pa.string()), pa.field("valid", pa.bool_()), pa.field("invalid_reason", pa.string()),
    pa.field("attempts", pa.int64()), pa.field("rationale", pa.string()), pa.field("judge_response", pa.string()),
    pa.field("n_prompt_tokens", pa.int64()), pa.field("n_completion_tokens", pa.int64()),
)
SCORE_PREFIX = "score_"


def table_name(system: ValueSystem) -> str:
    return "judgments/" + (re.sub(r"[^A-Za-z0-9_.-]+", "_", system.name).strip("._") or "system")


def score_column(key: str) -> str:
    return f"{SCORE_PREFIX}{key}"


def schema(system: ValueSystem) -> pa.Schema:
    return pa.schema(list(BASE_FIELDS) + [pa.field(score_column(k), pa.int64()) for k in system.leaf_keys()])


@cache
def _stems() -> dict[str, str]:
    from valuelex.instruments import completion_stems

    return {item.id: item.completion_text for item in completion_stems()}


def stem_text(item_id: str, prompt: str | None = None) -> str:
    """The bare stem of a completion; for an unknown stem id, the prompt the model was given."""
    return _stems().get(item_id) or (prompt or "")


@dataclass
class JudgeTask:
    """Completions to judge on one value system, and where their judgments go (stored as they come).

    A judge given several tasks at once (`judge_many`) may serve them in one engine run."""

    system: ValueSystem
    completions: list[dict[str, Any]]
    sink: Callable[[list[dict[str, Any]]], None]


_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))  # str.strip() keeps these


def is_blank(response: str | None) -> bool:
    """No visible text: None, whitespace, or only zero-width characters. Blank answers are not judged."""
    return not (response or "").translate(_INVISIBLE).strip()


def completed_sentence(stem: str, response: str) -> str:
    """What the respondent said: the stem continued by the response (a chat answer may repeat the stem)."""
    response = (response or "").strip()
    if not stem or response.lower().startswith(stem.lower().rstrip(". ")):
        return response
    joiner = "" if response[:1] in (",", ".", ";", ":", "'") else " "
    return f"{stem.rstrip()}{joiner}{response}"


def judgment(
    completion: dict[str, Any], system: ValueSystem, *, judge: str, judge_key: str,
    scores: dict[str, int] | None, reason: str | None = None, rationale: str = "",
    judge_response: str | None = None, attempts: int = 1, n_prompt_tokens: int = 0, n_completion_tokens: int = 0,
) -> dict[str, Any]:
    """One judgments row: valid with every leaf score, or invalid with its reason and no scores."""
    valid = scores is not None and reason is None
    if valid and sorted(scores) != sorted(system.leaf_keys()):
        raise ValueError(f"scores must cover exactly {system.leaf_keys()}, got {sorted(scores)}")
    row = {f.name: completion.get(f.name) for f in BASE_FIELDS[:8]}
    row.update(
        stem=completion.get("stem") or stem_text(completion.get("item_id", ""), completion.get("prompt")),
        response=completion.get("response"), system=system.name, judge=judge, judge_key=judge_key,
        valid=valid, invalid_reason=None if valid else (reason or "no scores"), attempts=attempts,
        rationale=rationale, judge_response=judge_response,
        n_prompt_tokens=n_prompt_tokens, n_completion_tokens=n_completion_tokens,
    )
    for key in system.leaf_keys():
        row[score_column(key)] = int(scores[key]) if valid else None
    return row


def to_table(rows: Iterable[dict[str, Any]], system: ValueSystem) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=schema(system))


def read_judgments(root: OutputRoot, system: ValueSystem, judge_key: str | None = None) -> pd.DataFrame:
    """Stored judgments of a system (of one judge_key when given), one row per completion row_id.

    A valid judgment wins over an invalid one; otherwise the latest stored row wins.
    """
    columns = [f.name for f in schema(system)]
    raw = root.table(table_name(system)).read_raw()
    if raw is None:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in columns})
    frame = raw.to_pandas()
    if judge_key is not None:
        frame = frame[frame["judge_key"] == judge_key]
    for name in columns:
        if name not in frame.columns:
            frame[name] = None
    frame = frame.reset_index(drop=True)
    frame["_order"] = range(len(frame))
    frame = frame.sort_values(["valid", "_order"], kind="stable").drop_duplicates("row_id", keep="last")
    return frame.sort_values("_order").drop(columns="_order")[columns].reset_index(drop=True)


def completions_to_judge(
    root: OutputRoot, *, models: set[str] | None = None, configs: set[str] | None = None,
    stems: set[str] | None = None, max_samples: int | None = None,
) -> pd.DataFrame:
    """Successful completions of the store, restricted to the study's current grid.

    Rows whose generation failed (``error`` set) are not judged: the generation stage retries them.
    """
    table = root.table(COMPLETIONS_TABLE).read()
    wanted = [*COMPLETION_COLUMNS, "prompt", "response", "error"]
    if table is None:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in wanted})
    frame = table.select([c for c in wanted if c in table.column_names]).to_pandas()
    for name in wanted:
        if name not in frame.columns:
            frame[name] = None
    keep = frame["error"].isna()
    if models is not None:
        keep &= frame["model"].isin(models)
    if configs is not None:
        keep &= frame["config"].isin(configs)
    if stems is not None:
        keep &= frame["item_id"].isin(stems)
    if max_samples is not None:
        keep &= frame["sample"] < max_samples
    frame = frame[keep].copy()
    frame["stem"] = [stem_text(i, p) for i, p in zip(frame["item_id"], frame["prompt"], strict=True)]
    return frame.reset_index(drop=True)
