"""Errors a user can act on. The CLI prints them without a traceback and exits non-zero."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


class ValueLexError(Exception):
    """Base of every error that is the user's input, not a bug."""


class StudyError(ValueLexError):
    """A study file (or another input file) is malformed; the message names the file and field."""


class StoreError(ValueLexError):
    """The output store cannot be read or written."""


class EngineError(ValueLexError):
    """An engine cannot be built or started (bad source, impossible placement)."""


class ConstructionError(ValueLexError):
    """The answers cannot support the asked value taxonomy (too few respondents or words, no structure)."""


UNION_TAGS = frozenset({"by-name", "inline"})  # tags of `respondents.ModelReference`: not fields the user wrote


def field_path(location: tuple[Any, ...]) -> str:
    """pydantic's error location as the user wrote it: ``models[1].options.tp``."""
    path = ""
    for part in location:
        if part in UNION_TAGS:
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def invalid_fields(source: str, exc: ValidationError) -> StudyError:
    """One line per problem, each `source: field: message`, for a file that failed validation."""
    lines = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        where = f"{field_path(error['loc'])}: " if error["loc"] else ""
        lines.append(f"{source}: {where}{message}")
    return StudyError("\n".join(lines))
