"""Reasoning and answer apart: what a thinking model wrote before its answer is not the answer.

Value words are extracted from the answer, and the judge scores the answer: a model that deliberates
"honesty matters, but so does kindness" before answering "kindness" holds kindness, not both.
`split_reasoning` cuts an output into (reasoning, answer) by the tags the common open reasoning
models write: ``<think>`` (DeepSeek-R1, Qwen3, QwQ), ``<thinking>``, ``<reasoning>``, ``<thought>``,
``<seed:think>`` (Seed-OSS), ``<|begin_of_thought|>`` (Bespoke/OpenThoughts), and gpt-oss's harmony
channels (``<|channel|>analysis<|message|>... <|channel|>final<|message|>answer``). Chat templates
that open the block themselves (R1's) leave only the closing tag in the output: everything before
it is reasoning. A block that opens and never closes (thinking cut by ``max_tokens``) is all
reasoning with an empty answer, which `truncated` tells from a model that chose to say nothing.
"""

from __future__ import annotations

import re
from typing import NamedTuple

TAG_PAIRS = (
    ("<think>", "</think>"),
    ("<thinking>", "</thinking>"),
    ("<reasoning>", "</reasoning>"),
    ("<thought>", "</thought>"),
    ("<seed:think>", "</seed:think>"),
    ("<|begin_of_thought|>", "<|end_of_thought|>"),
)
HARMONY_ANALYSIS = "<|channel|>analysis<|message|>"
HARMONY_FINAL = re.compile(r"<\|channel\|>final<\|message\|>(.*?)(?:<\|return\|>|<\|end\|>|$)", re.S)
HARMONY_TOKENS = re.compile(r"<\|(?:start|end|return|message|channel)\|>(?:assistant|analysis|final)?")
TRUNCATED = "reasoning truncated"


class Split(NamedTuple):
    """An output cut into its reasoning (None: none was written) and its answer."""

    reasoning: str | None
    answer: str
    unclosed: bool = False  # a reasoning block opened and never closed


def split_reasoning(text: str) -> Split:
    """(reasoning, answer) of one output by its tags; text without any is all answer."""
    if HARMONY_ANALYSIS in text or "<|channel|>final" in text:
        return _harmony(text)
    for opening, closing in TAG_PAIRS:
        start, end = text.find(opening), text.find(closing)
        if start < 0 and end < 0:
            continue
        if end < 0:  # opened, never closed: thinking ran until the token limit
            return Split(_clean(text[start + len(opening) :]), _clean(text[:start]), unclosed=True)
        begin = start + len(opening) if 0 <= start < end else 0  # no opening tag: the template wrote it
        reasoning = text[begin:end]
        rest = text[end + len(closing) :]
        more = split_reasoning(rest)  # a second block (some models think twice)
        joined = "\n".join(r for r in (_clean(reasoning), more.reasoning) if r)
        prefix = text[:start] if 0 <= start < end else ""
        return Split(joined or None, _clean(prefix + " " + more.answer), more.unclosed)
    return Split(None, text.strip())


def _harmony(text: str) -> Split:
    final = HARMONY_FINAL.search(text)
    analysis = text.split(HARMONY_ANALYSIS, 1)[1] if HARMONY_ANALYSIS in text else ""
    analysis = analysis.split("<|channel|>final", 1)[0]
    reasoning = _clean(HARMONY_TOKENS.sub(" ", analysis)) or None
    if final is None:
        return Split(reasoning, "", unclosed=True)
    return Split(reasoning, _clean(final.group(1)))


def _clean(text: str) -> str:
    return re.sub(r"[ \t]+\n", "\n", text).strip()


def truncated_message(max_tokens: int, reasoning_tokens: int | None = None) -> str:
    """The stored error of a row whose thinking used the whole token limit and left no answer."""
    used = f" ({reasoning_tokens} reasoning tokens)" if reasoning_tokens else ""
    return (
        f"{TRUNCATED}: the thinking used all max_tokens={max_tokens}{used} and left no answer; "
        "a rerun retries this row only with a larger max_tokens (the model's options.max_tokens keeps the "
        "stored rows; a decoding config's max_tokens makes new rows)"
    )


def is_truncated(split: Split, finish_reason: str | None) -> bool:
    """No answer because the limit cut the thinking: an unclosed block, or an empty answer cut by length."""
    return not split.answer and (split.unclosed or finish_reason == "length") and bool(split.reasoning)


def answer_columns(
    text: str | None,
    *,
    mode: str,
    finish_reason: str | None,
    max_tokens: int,
    reasoning: str | None = None,
    reasoning_tokens: int | None = None,
) -> dict[str, object]:
    """The stored `response`, `reasoning`, `n_reasoning_tokens` and `error` of one model output.

    ``mode`` none keeps the whole text as the answer (a reasoning field the server split off is
    still stored apart, and thinking it cut is still a truncation); any other mode uses the
    server's reasoning field when it sent one, else cuts the text by its tags. An output whose
    thinking was cut by the limit is a failed row (`truncated_message`), its reasoning kept.
    """
    text = text or ""
    if mode == "none":
        split = Split(reasoning, text)
    elif reasoning is not None:
        split = Split(reasoning, text.strip())
    else:
        split = split_reasoning(text)
    error = truncated_message(max_tokens, reasoning_tokens) if is_truncated(split, finish_reason) else None
    return {
        "response": None if error else split.answer if mode != "none" else text,
        "reasoning": split.reasoning,
        "n_reasoning_tokens": reasoning_tokens,
        "error": error,
    }
