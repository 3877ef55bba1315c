"""The psychometric instruments, read from package data: elicitation prompts (A.1) and stems (A.2).

Each item knows how to frame itself for a chat model (a user turn) and for a pretrained model
(a bare text the model continues), because base models have no chat template.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

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
