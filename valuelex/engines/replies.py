"""An OpenAI-compatible reply, type-checked before anything stores it.

Providers send odd replies: content as a list of parts, a finish reason that is an object, a token
count of 1e30. Taken as they come, one such value crashes the Arrow conversion of the whole stage,
and every rerun crashes the same way. `parse_reply` turns a decoded JSON reply into values of the
stored types, or into the reason it is not a usable answer (the row is then a failed row).
"""

from __future__ import annotations

from typing import Any, NamedTuple

MAX_TOKENS_COUNT = 2**53  # exact in a float64 and in every JSON reader


class Reply(NamedTuple):
    """A checked reply: `text` is None exactly when `reason` says why it is not an answer."""

    text: str | None
    reason: str | None = None
    n_prompt_tokens: int = 0
    n_completion_tokens: int = 0
    finish_reason: str | None = None
    reasoning: str | None = None  # the reply's own reasoning field (vLLM's reasoning parser, o-series APIs)
    n_reasoning_tokens: int | None = None


def _failed(reason: str) -> Reply:
    return Reply(None, reason)


def content_text(content: Any) -> tuple[str | None, str | None]:
    """(text, None) or (None, reason): a string, or a list of text parts joined; nothing else."""
    if isinstance(content, str):
        return content, None
    if content is None:
        return None, "reply has no text (empty content)"
    if isinstance(content, list):
        if content and all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                           for p in content):
            return "".join(p["text"] for p in content), None
        return None, "reply content has parts that are not text"
    return None, "reply content is not text"


def token_count(usage: dict[str, Any], key: str) -> int | None:
    """A token count of the usage block (0 when absent), or None when it is not a plausible count."""
    value = usage.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_TOKENS_COUNT:
        return None
    return value


def parse_reply(payload: Any, prompting: str) -> Reply:
    """The answer of a decoded `/chat/completions` (chat) or `/completions` reply, or why there is none."""
    if not isinstance(payload, dict):
        return _failed("reply is not a JSON object")
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return _failed("reply has no choices")
    choice = choices[0]
    if prompting == "chat":
        message = choice.get("message")
        if not isinstance(message, dict):
            return _failed("reply has no message")
        thought = message.get("reasoning_content", message.get("reasoning"))
        reasoning = thought if isinstance(thought, str) and thought.strip() else None
        text, reason = content_text(message.get("content"))
        if text is None and reasoning is not None and message.get("content") is None:
            text, reason = "", None  # all thinking, no answer: the caller tells a truncation from a refusal
    else:
        reasoning = None
        text, reason = content_text(choice.get("text"))
    if reason is not None:
        return _failed(reason)
    finish = choice.get("finish_reason")
    if finish is not None and not isinstance(finish, str):
        return _failed("reply finish_reason is not text")
    usage = payload.get("usage")
    if usage is None:
        usage = {}
    if not isinstance(usage, dict):
        return _failed("reply usage is not an object")
    prompt_tokens, completion_tokens = token_count(usage, "prompt_tokens"), token_count(usage, "completion_tokens")
    if prompt_tokens is None or completion_tokens is None:
        return _failed(f"reply token counts are not counts below 2**53: {usage!r}"[:200])
    details = usage.get("completion_tokens_details")
    thought_tokens = token_count(details, "reasoning_tokens") if isinstance(details, dict) else 0
    if thought_tokens is None:
        return _failed(f"reply reasoning token count is not a count below 2**53: {details!r}"[:200])
    return Reply(text, None, prompt_tokens, completion_tokens, finish, reasoning, thought_tokens or None)
