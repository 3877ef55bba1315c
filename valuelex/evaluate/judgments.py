"""The judgments table: one row per (completion, value system, judge), scores kept beside the text.

Stored as shards of table ``judgments/<system>`` under the output root (`valuelex.store.RunStore`
reads them, with the one rule for which judgments count). Columns:

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

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

import pandas as pd
import pyarrow as pa

from valuelex.evaluate.systems import ValueSystem

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


def score_column(key: str) -> str:
    return f"{SCORE_PREFIX}{key}"


def schema(system: ValueSystem) -> pa.Schema:
    return pa.schema(list(BASE_FIELDS) + [pa.field(score_column(k), pa.int64()) for k in system.leaf_keys()])


@cache
def _stems() -> dict[tuple[str, int], str]:
    from valuelex.instruments import completion_stems, paraphrases

    found = {(item.id, 0): item.completion_text for item in completion_stems()}
    for item_id, wordings in paraphrases("completion").items():
        found.update({(item_id, k + 1): w.completion_text for k, w in enumerate(wordings)})
    return found


def stem_text(item_id: str, prompt: str | None = None, paraphrase: int = 0) -> str:
    """The bare stem of a completion in the wording it was asked (`paraphrase`, 0: the original); for
    an unknown stem id, the prompt the model was given."""
    index = 0 if paraphrase is None or paraphrase != paraphrase else int(paraphrase)  # None or NaN: the original
    return _stems().get((item_id, index)) or (prompt or "")


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
        stem=completion.get("stem") or stem_text(completion.get("item_id", ""), completion.get("prompt"),
                                                    completion.get("paraphrase")),
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


def conform(frame: pd.DataFrame, system: ValueSystem) -> pd.DataFrame:
    """Judgments (as read from the store) with every column of the system's schema, in order."""
    columns = [f.name for f in schema(system)]
    frame = frame.copy()
    for name in columns:
        if name not in frame.columns:
            frame[name] = pd.Series(dtype=object) if frame.empty else None
    return frame[columns].reset_index(drop=True)
