"""The LLM judge's prompt, as package data made text: few-shot examples, instructions, the answer
schema per value system, and the order rotation of the examples (`valuelex.evaluate.position`).

All pure. The shared part -- instructions, dimensions, examples -- comes first and the completion
last, so an engine's prefix cache serves the shared part once (`valuelex.evaluate.llm_judge`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from string import Template
from typing import Any

import yaml

from valuelex.errors import StudyError
from valuelex.evaluate.position import order_offset, rotate
from valuelex.evaluate.systems import ValueSystem

MIN_SCORE, MAX_SCORE, NEUTRAL_SCORE = 0, 6, 3
RATIONALE_MAX_CHARS = 400
EXAMPLES_FILE = "valuelex/data/judge/examples.yaml"
INSTRUCTIONS_FILE = "valuelex/data/judge/instructions.yaml"


# --- few-shot examples ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    stem: str
    completion: str
    rationale: str
    scores: dict[str, int]


@cache
def _examples_raw() -> dict[str, Any]:
    text = resources.files("valuelex.data").joinpath("judge", "examples.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict) or raw.get("version") != 1 or not isinstance(raw.get("systems"), dict):
        raise StudyError(f"{EXAMPLES_FILE}: expected version 1 and a `systems` mapping")
    return raw["systems"]


def load_examples(system: ValueSystem) -> tuple[Example, ...]:
    """The packaged few-shot examples of a system (none for a system without examples: zero-shot).

    Every example must score exactly the system's leaf dimensions with integers 0..6.
    """
    raw = _examples_raw().get(system.name)
    if raw is None or system.source != "package":
        return ()
    keys = set(system.leaf_keys())
    out = []
    for index, item in enumerate(raw):
        where = f"{EXAMPLES_FILE}: systems.{system.name}[{index}]"
        scores = item.get("scores") if isinstance(item, dict) else None
        if not isinstance(scores, dict) or set(scores) != keys:
            raise StudyError(f"{where}.scores: must score exactly {sorted(keys)}")
        if not all(type(v) is int and MIN_SCORE <= v <= MAX_SCORE for v in scores.values()):
            raise StudyError(f"{where}.scores: every score must be an integer {MIN_SCORE}..{MAX_SCORE}")
        for field in ("stem", "completion", "rationale"):
            if not isinstance(item.get(field), str) or not item[field].strip():
                raise StudyError(f"{where}.{field}: must be a non-empty string")
        out.append(Example(item["stem"].strip(), item["completion"].strip(), " ".join(item["rationale"].split()),
                           dict(scores)))
    return tuple(out)


# --- prompt and schema (pure) --------------------------------------------------------------------


def answer_schema(system: ValueSystem, keys: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The JSON schema of a judge answer: a rationale, then an integer 0..6 for every key."""
    keys = keys or system.leaf_keys()
    return {
        "type": "object",
        "properties": {
            "rationale": {"type": "string", "maxLength": RATIONALE_MAX_CHARS},
            "scores": {
                "type": "object",
                "properties": {k: {"type": "integer", "minimum": MIN_SCORE, "maximum": MAX_SCORE} for k in keys},
                "required": list(keys),
                "additionalProperties": False,
            },
        },
        "required": ["rationale", "scores"],
        "additionalProperties": False,
    }


def format_answer(rationale: str, scores: dict[str, int]) -> str:
    """An answer as the judge should write it (the examples use this, so the format is shown, not told)."""
    return json.dumps({"rationale": rationale, "scores": scores}, ensure_ascii=False)


@cache
def _instruction_parts() -> dict[str, Template]:
    """The judge's instruction texts (``valuelex/data/judge/instructions.yaml``): wording is data, not code."""
    text = resources.files("valuelex.data").joinpath("judge", "instructions.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    parts = ("prefix", "dimension", "parent", "score", "example")
    if not isinstance(raw, dict) or raw.get("version") != 1 or not all(isinstance(raw.get(p), str) for p in parts):
        raise StudyError(f"{INSTRUCTIONS_FILE}: expected version 1 and the texts {', '.join(parts)}")
    return {part: Template(raw[part]) for part in parts}


def instructions(system: ValueSystem, examples: tuple[Example, ...] = (), keys: tuple[str, ...] | None = None) -> str:
    """The shared prefix of every judge prompt of a system (identical for every completion)."""
    keys = keys or system.leaf_keys()
    part = _instruction_parts()
    dimensions = "".join(
        "\n" + part["dimension"].substitute(
            key=dim.key, name=dim.name, definition=dim.definition, anchors=", ".join(dim.anchors),
            parent=part["parent"].substitute(name=system.dimension(dim.parent).name) if dim.parent else "")
        for dim in system.leaves() if dim.key in keys)
    shots = "".join(
        "\n\n" + part["example"].substitute(
            number=number, stem=example.stem, completion=example.completion,
            answer=format_answer(example.rationale, {k: example.scores[k] for k in keys}))
        for number, example in enumerate(examples, 1))
    return part["prefix"].substitute(system=system.title or system.name, dimensions=dimensions,
                                     scores=", ".join(part["score"].substitute(key=k) for k in keys), examples=shots)


def rotated_prefixes(system: ValueSystem, examples: tuple[Example, ...]) -> list[str]:
    """The `instructions` of every rotation of the examples (index: the offset); one when there are none."""
    return [instructions(system, rotate(examples, offset)) for offset in range(max(1, len(examples)))]


def prefix_for(prefixes: list[str], row_id: str, variant: int = 0) -> str:
    """The prefix a completion is judged with: the rotation its row id picks (`valuelex.evaluate.position`)."""
    return prefixes[order_offset(row_id, len(prefixes), variant)]


def build_prompt(prefix: str, stem: str, completion: str, reasoning: str | None = None) -> str:
    """A judge prompt: the shared `instructions` first, the completion to rate last.

    ``reasoning`` (``evaluation.judge_input: answer+reasoning``) goes before the completion, so the
    judge rates the answer in the light of the respondent's thinking; by default it sees the answer only.
    """
    completion = " ".join((completion or "").split())
    thought = " ".join((reasoning or "").split())
    before = f"Reasoning: {thought}\n" if thought else ""
    return f"{prefix}\nStem: {stem}\n{before}Completion: {completion}\nAnswer:"
