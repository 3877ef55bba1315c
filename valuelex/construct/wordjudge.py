"""The LLM word judge: a study model says which extracted candidates name a value (``construction.word_judge``).

Extraction's rules keep every noun in a list; the paper adds an LLM's judgement. The candidates
are sent in sorted batches of `BATCH` words, one greedy request per batch, all in one engine run
(`valuelex.engines.base.build_engine`, any engine). A word is accepted when the answer names it:
the answer is split on commas, semicolons and new lines and each item is matched, lower-cased
and normalised, against the batch. A batch whose answer is empty or failed keeps all its words
(a silent judge must not empty the lexicon), and says so in `notes`. The prompts are package data
(``valuelex/data/construct/word_judge.yaml``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from valuelex.construct.lexicon import normalize_word
from valuelex.construct.naming import packaged_prompts

if TYPE_CHECKING:
    from valuelex.spec import ModelSpec

BATCH = 40
_ITEM_SPLIT = re.compile(r"[,;\n]+")


def word_judge_prompts() -> dict[str, str]:
    """The packaged word-judge prompts (``valuelex/data/construct/word_judge.yaml``), each with a ``{words}`` field."""
    return packaged_prompts("word_judge.yaml")


def batches(words: Sequence[str]) -> list[list[str]]:
    ordered = sorted(set(words))
    return [ordered[i:i + BATCH] for i in range(0, len(ordered), BATCH)]


def word_judge_requests(model: ModelSpec, words: Sequence[str], seed: int = 0) -> list[dict]:
    """One greedy request per batch of candidates."""
    from valuelex.engines.base import request_row

    template = word_judge_prompts()["chat" if model.prompting == "chat" else "completion"]
    return [request_row(f"words-{i}", template.format(words=", ".join(batch)), prompting=model.prompting,
                        temperature=0.0, top_p=1.0, max_tokens=8 * len(batch), seed=seed + i, model=model.name)
            for i, batch in enumerate(batches(words))]


def accepted_words(answer: str | None, batch: Sequence[str]) -> set[str] | None:
    """The batch's words the answer names; None when the answer names none (keep the batch)."""
    if not answer or not answer.strip():
        return None
    wanted = set(batch)
    named = set()
    for item in _ITEM_SPLIT.split(answer.lower()):
        item = item.strip().strip(".*-•\"' ")
        if item in wanted:
            named.add(item)
        elif (canonical := normalize_word(item)) in wanted:
            named.add(canonical)
    return named or None


def engine_word_judge(model: ModelSpec, words: Sequence[str], seed: int = 0, *,
                      use_gpu: bool | None = None) -> tuple[set[str], list[str]]:
    """(accepted words, notes): every batch judged by `model` in one engine run."""
    from valuelex.engines.base import build_engine

    rows = word_judge_requests(model, words, seed)
    answers: dict[str, str] = {}
    notes: list[str] = []
    try:
        for batch in build_engine(model, use_gpu=use_gpu).generate(rows, batch_rows=max(1, len(rows))):
            answers.update((r["row_id"], r["response"] or "") for r in batch.select(["row_id", "response"]).to_pylist())
    except Exception as exc:  # an engine failure must not lose the construction: keep every word
        notes.append(f"word judge {model.name} failed ({type(exc).__name__}: {exc}); every candidate kept")
    accepted: set[str] = set()
    for i, batch in enumerate(batches(words)):
        named = accepted_words(answers.get(f"words-{i}"), batch)
        if named is None:
            if answers:
                notes.append(f"word judge {model.name}: batch {i + 1} named no candidate; its {len(batch)} words kept")
            named = set(batch)
        accepted |= named
    return accepted, notes
