"""Render the report page: Jinja2 with autoescaping on, templates from package data.

The templates (``valuelex/data/report/``) never mark a value safe: every string that reaches the page
-- model answers, value words, dimension names an LLM chose, error messages -- is escaped, and the
page carries a Content-Security-Policy that forbids scripts and any network access, so it opens
from disk as a single self-contained file.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import jinja2

TEMPLATE = "report.html.j2"


def _load(name: str) -> str | None:
    resource = resources.files("valuelex.data").joinpath("report", name)
    return resource.read_text(encoding="utf-8") if resource.is_file() else None


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(_load),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(**context: Any) -> str:
    """The whole page; `context` holds plain data (see `valuelex.report.stage.build_report`)."""
    return environment().get_template(TEMPLATE).render(**context)
