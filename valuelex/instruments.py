"""The psychometric instruments, read from package data: elicitation prompts (A.1) and stems (A.2).

Each item knows how to frame itself for a chat model (a user turn) and for a pretrained model
(a bare text the model continues), because base models have no chat template.

Each item also has hand-written paraphrases (``paraphrases.yaml``, issue 17 item 5): paraphrase 0
is the original wording, paraphrase k >= 1 the k-th rewording, with the same id (it is the same
item asked in other words). A study asks for them with ``prompts: {paraphrases: N}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml

from valuelex.errors import StudyError

Stage = Literal["elicitation", "completion"]


@dataclass(frozen=True)
class Item:
    """One stimulus: an elicitation prompt or a sentence-completion stem."""

    id: str
    chat_text: str
    completion_text: str

    def framed(self, prompting: str) -> str:
        return self.chat_text if prompting == "chat" else self.completion_text


def _data(name: str) -> dict:
    return yaml.safe_load(resources.files("valuelex.data").joinpath(name).read_text(encoding="utf-8"))


@cache
def elicitation_prompts() -> tuple[Item, ...]:
    raw = _data("elicitation_prompts.yaml")
    return tuple(Item(p["id"], p["text"], p["completion"]) for p in raw["prompts"])


@cache
def completion_stems() -> tuple[Item, ...]:
    raw = _data("completion_stems.yaml")
    template = raw["chat_template"]
    return tuple(Item(s["id"], template.format(stem=s["text"]), s["text"]) for s in raw["stems"])


PARAPHRASE_FILE = "paraphrases.yaml"


def check_paraphrases(raw: Any, source: str = f"valuelex/data/{PARAPHRASE_FILE}") -> dict[str, Any]:
    """The paraphrase document, checked: every item of both stages has at least `minimum`
    paraphrases, no unknown id, every text a non-empty string unlike the original and its siblings.
    Errors are `source: field: message`."""
    if not isinstance(raw, dict):
        raise StudyError(f"{source}: (top level): expected a mapping")
    minimum = raw.get("minimum")
    if not isinstance(minimum, int) or isinstance(minimum, bool) or minimum < 1:
        raise StudyError(f"{source}: minimum: expected a positive integer, got {minimum!r}")
    originals = {"elicitation": {i.id: i for i in elicitation_prompts()},
                 "stems": {i.id: i for i in completion_stems()}}
    for section, known in originals.items():
        sets = raw.get(section)
        if not isinstance(sets, dict):
            raise StudyError(f"{source}: {section}: expected a mapping of item id -> paraphrases")
        unknown, missing = sorted(set(sets) - set(known)), sorted(set(known) - set(sets))
        if unknown or missing:
            raise StudyError(f"{source}: {section}: unknown ids {unknown}, ids without paraphrases {missing}")
        for item_id, variants in sets.items():
            if not isinstance(variants, list) or len(variants) < minimum:
                count = len(variants) if isinstance(variants, list) else 0
                raise StudyError(f"{source}: {section}.{item_id}: {count} paraphrases, at least {minimum} needed")
            fields = ("text", "completion") if section == "elicitation" else (None,)
            for field in fields:
                texts = [v.get(field) if field and isinstance(v, dict) else v for v in variants]
                original = known[item_id].chat_text if field == "text" else known[item_id].completion_text
                for index, text in enumerate(texts):
                    where = f"{section}.{item_id}[{index}]" + (f".{field}" if field else "")
                    if not isinstance(text, str) or not text.strip():
                        raise StudyError(f"{source}: {where}: expected a non-empty string, got {text!r}")
                    if text.strip() == original.strip() or texts.index(text) != index:
                        raise StudyError(f"{source}: {where}: {text!r} repeats the original or another paraphrase")
    return raw


@cache
def _paraphrases() -> dict[str, Any]:
    return check_paraphrases(_data(PARAPHRASE_FILE))


def paraphrase_count() -> int:
    """The number of paraphrases every item has (the most a study may ask for)."""
    return int(_paraphrases()["minimum"])


@cache
def paraphrases(stage: Stage) -> dict[str, tuple[Item, ...]]:
    """Item id -> its paraphrases (k = 1, 2, ...; the original is k = 0), framed as the originals are."""
    raw = _paraphrases()
    if stage == "elicitation":
        return {i: tuple(Item(i, v["text"], v["completion"]) for v in vs) for i, vs in raw["elicitation"].items()}
    template = _data("completion_stems.yaml")["chat_template"]
    return {i: tuple(Item(i, template.format(stem=v), v) for v in vs) for i, vs in raw["stems"].items()}


def variants(stage: Stage, item: Item, n: int) -> tuple[tuple[int, Item], ...]:
    """(paraphrase index, wording) of an item asked in its original wording and its first `n` paraphrases."""
    if n < 0 or n > paraphrase_count():
        raise StudyError(f"prompts.paraphrases: {n} asked, each item has {paraphrase_count()}")
    return ((0, item), *((k + 1, p) for k, p in enumerate(paraphrases(stage)[item.id][:n])))


def select(stage: Stage, ids: str | list[str]) -> tuple[Item, ...]:
    """The items of a stage a study asked for, in the order asked; unknown ids are errors."""
    items = elicitation_prompts() if stage == "elicitation" else completion_stems()
    if ids == "all":
        return items
    by_id = {item.id: item for item in items}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        field = "prompts.elicitation" if stage == "elicitation" else "prompts.stems"
        raise StudyError(f"{field}: unknown ids {unknown}; known: {sorted(by_id)}")
    return tuple(by_id[i] for i in ids)
