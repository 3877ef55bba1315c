"""Errors a user can act on. The CLI prints them without a traceback and exits non-zero."""


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
