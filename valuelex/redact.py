"""Secrets out of everything a run writes: errors, stage records, logs, the report, CLI messages.

An endpoint may echo the API key in its error ("401 Incorrect API key provided: Bearer sk-..."),
and ValueLex stores error text as data. A `Redactor` replaces, before anything is written:

- the values of the secrets the run knows of: the environment variables that the spec's models
  name as ``options.api_key_env`` (respondents, an inline judge or namer), the AWS credentials
  and any variable whose name says it holds a secret (``*_API_KEY``, ``*TOKEN*``, ...);
- text that looks like a key whoever's it is: ``Bearer <token>``, ``sk-...``, ``AKIA...``, and a
  long token after ``key=`` / ``token=`` / ``secret:`` and the like.

It is built from a spec and the environment where it runs (an engine worker on another node
builds its own from its model spec), and holds the secrets in memory only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

REDACTED = "[redacted]"
AWS_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN")
SECRET_NAME = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)
MIN_SECRET = 8
"""Shorter values are not redacted: a word like ``EMPTY`` or ``testing`` would be blanked out of every
message, and a key that short protects nothing anyway."""
PATTERNS = (
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"), rf"\1{REDACTED}"),
    (re.compile(r"(?i)\b(basic\s+)[A-Za-z0-9+/=]{16,}"), rf"\1{REDACTED}"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), REDACTED),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
    (re.compile(r"(?i)([\w-]*(?:key|token|secret|password|signature|credential)['\"]?\s*[:=]\s*['\"]?)"
                r"[A-Za-z0-9_\-./+=~%]{16,}"), rf"\1{REDACTED}"),
)
"""Text shaped like a credential, whoever it belongs to: (pattern, replacement)."""
ERROR_COLUMNS = ("error", "invalid_reason")
"""Stored columns that hold error text (generation rows, judgments)."""


class Redactor:
    """Replaces known secret values and key-shaped text with ``[redacted]``."""

    def __init__(self, secrets: Iterable[str] = ()):
        values = {s for s in secrets if s and len(s) >= MIN_SECRET}
        # longest first: a secret that contains another is replaced whole
        self._literal = re.compile("|".join(re.escape(s) for s in sorted(values, key=len, reverse=True))) \
            if values else None

    @classmethod
    def from_spec(cls, spec: Any = None, env: Mapping[str, str] | None = None) -> Redactor:
        """The secrets of a spec (a Study, a ModelSpec, their JSON dump, or None) in an environment."""
        env = os.environ if env is None else env
        names = set(AWS_SECRETS) | {n for n in env if SECRET_NAME.search(n)} | set(key_env_names(spec))
        return cls(env[n] for n in names if n in env)

    def __call__(self, text: str | None) -> str | None:
        if not text:
            return text
        if self._literal is not None:
            text = self._literal.sub(REDACTED, text)
        for pattern, replacement in PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def document(self, value: Any) -> Any:
        """Every string in a JSON-like document (dicts, lists, strings), redacted."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, Mapping):
            return {k: self.document(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.document(v) for v in value]
        return value

    def table(self, table: pa.Table, columns: Iterable[str] = ERROR_COLUMNS) -> pa.Table:
        """The table with its error columns redacted (other columns are model output: kept as they are)."""
        import pyarrow as pa  # here: the CLI imports this module, and needs no Arrow to print an error
        for name in columns:
            if name not in table.column_names or not pa.types.is_string(table.schema.field(name).type):
                continue
            column = table[name]
            if column.null_count < len(column):
                redacted = pa.array([self(v) for v in column.to_pylist()], type=column.type)
                table = table.set_column(table.column_names.index(name), table.schema.field(name), redacted)
        return table

    def records(self, rows: list[dict[str, Any]], columns: Iterable[str] = ERROR_COLUMNS) -> list[dict[str, Any]]:
        """Rows (dicts) with their error fields redacted."""
        columns = tuple(columns)
        return [{k: self(v) if k in columns and isinstance(v, str) else v for k, v in row.items()} for row in rows]


def key_env_names(spec: Any) -> list[str]:
    """Every ``api_key_env`` named anywhere in a spec (respondents, inline judge and namer models)."""
    if spec is None:
        return []
    if hasattr(spec, "model_dump"):
        spec = spec.model_dump(mode="json")
    found: list[str] = []
    if isinstance(spec, Mapping):
        for key, value in spec.items():
            if key == "api_key_env" and isinstance(value, str):
                found.append(value)
            else:
                found += key_env_names(value)
    elif isinstance(spec, list | tuple):
        for value in spec:
            found += key_env_names(value)
    return found
