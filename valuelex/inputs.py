"""Reading the files a user hands in (study files, value systems): bounded, UTF-8, strict YAML.

Every failure is a `StudyError` that starts with the file's name, never a traceback: a file larger
than `MAX_BYTES` (or ``/dev/zero``) is refused after reading that much, bytes that are not UTF-8,
YAML that repeats a key (the last one would silently win), nesting too deep for the parser, and
integers too long to convert are all reported as `file: message`.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import yaml

from valuelex.errors import StudyError

MAX_BYTES = 10 * 2**20  # a study or value system is a few KiB; anything this large is the wrong file
MAX_FLOW_DEPTH = 64  # PyYAML scans nested `[` in time quadratic in the depth: refuse deep ones up front


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a mapping listing one key twice is an error."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *anchor` merges; keys written after it override on purpose
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:  # an unhashable key: the base class reports it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}",
                        key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_text(path: Path, what: str) -> str:
    """The whole text of a small UTF-8 file; `what` names it in messages ("study file")."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise StudyError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise StudyError(f"{path}: larger than {MAX_BYTES // 2**20} MiB: not a {what}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StudyError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start}): not a {what}") from None


def parse_yaml(text: str, path: Path | str) -> Any:
    """YAML with unique keys; every parse failure as `file: not valid YAML: ...`."""
    brackets = re.sub(r"[^\[\]{}]+", "", text)  # counted even inside strings: a study never nests 64 deep
    if max(itertools.accumulate(1 if c in "[{" else -1 for c in brackets), default=0) > MAX_FLOW_DEPTH:
        raise StudyError(f"{path}: not valid YAML: nested too deeply (more than {MAX_FLOW_DEPTH} levels of [ or {{)")
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        raise StudyError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:
        raise StudyError(f"{path}: not valid YAML: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise StudyError(f"{path}: not valid YAML: {exc}") from None


def parse_json(text: str, path: Path | str) -> Any:
    """JSON; every parse failure as `file: not valid JSON: ...`."""
    try:
        return json.loads(text)
    except RecursionError:
        raise StudyError(f"{path}: not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        raise StudyError(f"{path}: not valid JSON: {exc}") from None
