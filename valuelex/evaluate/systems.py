"""Value systems: the dimensions a completion is scored on, from package data or a constructed taxonomy.

Three systems ship as YAML under ``valuelex/data/value_systems/``: ``valuelex`` (the paper's LLM
value system, 3 dimensions x 2 subdimensions), ``schwartz`` (10 basic values) and ``mft`` (5 moral
foundations). A path may name another YAML file of the same shape, or a ``taxonomy.json`` written
by the construction stage.

Which dimensions are scored: the judge scores the *leaves* -- every subdimension, and every
top-level dimension that has no subdimensions. A dimension with subdimensions is never judged
directly; its per-completion score is the mean of its subdimensions' scores (see
`valuelex.evaluate.scores`). Each dimension has a ``key`` (its name lower-cased, runs of other
characters turned into ``_``) used in JSON answers and column names.

YAML shape (``version: 1``)::

    name: valuelex
    title: ...            # optional
    description: ...      # optional
    dimensions:
      - name: Competence
        definition: ...
        anchors: [accuracy, efficiency]
        conflicts: [sloppy]          # optional: words of the opposite pole
        subdimensions: [...]         # optional: same fields, one level only

``taxonomy.json`` shape (``format_version: 1``; unknown keys are ignored, so the producer may add
statistics)::

    {"format_version": 1, "name": "...",                  # name optional: default "constructed"
     "dimensions": [{"name": "...", "definition": "...", "anchors": ["..."],   # both optional here
                     "subdimensions": [{"name": "...", "definition": "...", "anchors": ["..."]}]}]}
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from valuelex.errors import StudyError
from valuelex.inputs import parse_json, parse_yaml, read_text
from valuelex.store import layout

PACKAGED = ("valuelex", "schwartz", "mft")
TAXONOMY_FORMAT_VERSION = 1
Level = Literal["dimension", "subdimension"]


def dimension_key(name: str) -> str:
    """The key of a dimension name: ``"Self-Competent"`` -> ``"self_competent"``."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


class ValueDimension(BaseModel):
    """One (sub)dimension of a value system."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    key: str
    definition: str
    anchors: tuple[str, ...]
    conflicts: tuple[str, ...] = ()
    level: Level
    parent: str | None = Field(None, description="key of the parent dimension, for subdimensions")
    subdimensions: tuple[ValueDimension, ...] = ()

    @property
    def is_leaf(self) -> bool:
        return not self.subdimensions


class ValueSystem(BaseModel):
    """A named set of dimensions; `leaves` are what a judge scores."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    title: str = ""
    description: str = ""
    source: str = Field(description="'package' or the file it was read from")
    dimensions: tuple[ValueDimension, ...]

    def leaves(self) -> tuple[ValueDimension, ...]:
        """The scored dimensions, in file order: subdimensions, and dimensions without any."""
        out: list[ValueDimension] = []
        for dim in self.dimensions:
            out.extend(dim.subdimensions or (dim,))
        return tuple(out)

    def leaf_keys(self) -> tuple[str, ...]:
        return tuple(d.key for d in self.leaves())

    def parents(self) -> tuple[ValueDimension, ...]:
        """Dimensions that are aggregated from their subdimensions rather than judged."""
        return tuple(d for d in self.dimensions if d.subdimensions)

    def all_dimensions(self) -> tuple[ValueDimension, ...]:
        """Every dimension and subdimension, parents before their children."""
        out: list[ValueDimension] = []
        for dim in self.dimensions:
            out.append(dim)
            out.extend(dim.subdimensions)
        return tuple(out)

    def dimension(self, key: str) -> ValueDimension:
        for dim in self.all_dimensions():
            if dim.key == key:
                return dim
        raise KeyError(key)

    def fingerprint(self) -> str:
        """A short hash of what a judge sees of this system; judgments of another version are stale."""
        blob = json.dumps(self.model_dump(mode="json", exclude={"source"}), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def load_value_system(name_or_path: str | Path) -> ValueSystem:
    """A packaged system by name (``valuelex``, ``schwartz``, ``mft``), or a YAML / taxonomy.json path.

    A directory is read as the ``taxonomy.json`` inside it. Every problem raises `StudyError`
    naming the file and the field.
    """
    text = str(name_or_path)
    if isinstance(name_or_path, str) and text in PACKAGED:
        return _packaged(text)
    path = Path(text)
    if path.is_dir():
        path = path / layout.taxonomy_file()
    if not path.exists():
        raise StudyError(
            f"{text}: unknown value system: not a packaged one ({', '.join(PACKAGED)}) and no such file"
        )
    raw_text = read_text(path, "value system")
    if path.suffix == ".json":
        system = system_from_taxonomy(parse_json(raw_text, path), str(path))
    else:
        system = _from_yaml(parse_yaml(raw_text, path), str(path), source=str(path))
    if system.name in PACKAGED:  # the name keys judgments and scores: it would mix with the packaged one's
        raise _fail(str(path), "name", f"{system.name!r} is the name of a packaged value system "
                                       f"({', '.join(PACKAGED)}): choose another")
    return system


@cache
def _packaged(name: str) -> ValueSystem:
    resource = resources.files("valuelex.data").joinpath("value_systems", f"{name}.yaml")
    raw = parse_yaml(resource.read_text(encoding="utf-8"), f"valuelex/data/value_systems/{name}.yaml")
    return _from_yaml(raw, f"valuelex/data/value_systems/{name}.yaml", source="package")


# --- parsing -------------------------------------------------------------------------------------


def _fail(where: str, field: str, message: str) -> StudyError:
    return StudyError(f"{where}: {field}: {message}")


def _string(raw: dict, field: str, where: str, path: str, *, required: bool) -> str:
    value = raw.get(field)
    if value is None:
        if required:
            raise _fail(where, f"{path}.{field}" if path else field, "missing")
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise _fail(where, f"{path}.{field}" if path else field, "must be a non-empty string")
    return " ".join(value.split())


def _words(raw: dict, field: str, where: str, path: str, *, required: bool) -> tuple[str, ...]:
    value = raw.get(field)
    if value is None:
        if required:
            raise _fail(where, f"{path}.{field}", "missing")
        return ()
    if not isinstance(value, list) or not all(isinstance(w, str) and w.strip() for w in value):
        raise _fail(where, f"{path}.{field}", "must be a list of non-empty strings")
    if required and not value:
        raise _fail(where, f"{path}.{field}", "must list at least one word")
    return tuple(w.strip() for w in value)


def _dimension(
    raw: Any, where: str, path: str, *, level: Level, parent: str | None, strict_keys: bool, describe: bool
) -> ValueDimension:
    """One dimension; `describe` says whether definition and anchors are required at this level."""
    if not isinstance(raw, dict):
        raise _fail(where, path, "must be a mapping with name, definition and anchors")
    allowed = {"name", "definition", "anchors", "conflicts", "subdimensions"}
    if strict_keys and (unknown := sorted(set(raw) - allowed)):
        raise _fail(where, f"{path}.{unknown[0]}", "unknown field")
    name = _string(raw, "name", where, path, required=True)
    key = dimension_key(name)
    if not key:
        raise _fail(where, f"{path}.name", f"{name!r} has no letters or digits")
    subs_raw = raw.get("subdimensions") or []
    if not isinstance(subs_raw, list):
        raise _fail(where, f"{path}.subdimensions", "must be a list")
    if subs_raw and level == "subdimension":
        raise _fail(where, f"{path}.subdimensions", "subdimensions cannot have subdimensions")
    subs = tuple(
        _dimension(s, where, f"{path}.subdimensions[{i}]", level="subdimension", parent=key,
                   strict_keys=strict_keys, describe=True)
        for i, s in enumerate(subs_raw)
    )
    needs_text = describe or not subs  # a leaf is always judged: it needs a definition and anchors
    return ValueDimension(
        name=name, key=key, level=level, parent=parent, subdimensions=subs,
        definition=_string(raw, "definition", where, path, required=needs_text),
        anchors=_words(raw, "anchors", where, path, required=needs_text),
        conflicts=_words(raw, "conflicts", where, path, required=False),
    )


def _system(raw: dict, where: str, *, name: str, title: str, description: str, source: str,
            strict_keys: bool, describe_parents: bool) -> ValueSystem:
    dims_raw = raw.get("dimensions")
    if not isinstance(dims_raw, list) or not dims_raw:
        raise _fail(where, "dimensions", "must be a non-empty list")
    dims = tuple(
        _dimension(d, where, f"dimensions[{i}]", level="dimension", parent=None,
                   strict_keys=strict_keys, describe=describe_parents)
        for i, d in enumerate(dims_raw)
    )
    seen: dict[str, str] = {}
    for dim in dims:
        for item in (dim, *dim.subdimensions):
            if item.key in seen:
                raise _fail(where, "dimensions", f"{item.name!r} and {seen[item.key]!r} have the same key {item.key!r}")
            seen[item.key] = item.name
    return ValueSystem(name=name, title=title, description=description, source=source, dimensions=dims)


def _from_yaml(raw: Any, where: str, *, source: str) -> ValueSystem:
    if not isinstance(raw, dict):
        raise _fail(where, "(top level)", "expected a mapping with version, name and dimensions")
    if raw.get("version") != 1:
        raise _fail(where, "version", f"unsupported version {raw.get('version')!r} (expected 1)")
    if unknown := sorted(set(raw) - {"version", "name", "title", "description", "dimensions"}):
        raise _fail(where, unknown[0], "unknown field")
    name = _string(raw, "name", where, "", required=True)
    return _system(raw, where, name=name, title=_string(raw, "title", where, "", required=False),
                   description=_string(raw, "description", where, "", required=False),
                   source=source, strict_keys=True, describe_parents=True)


def system_from_taxonomy(raw: Any, where: str) -> ValueSystem:
    """A constructed taxonomy document (taxonomy.json, already parsed) as a value system; `where` names it."""
    if not isinstance(raw, dict):
        raise _fail(where, "(top level)", "expected a JSON object with format_version and dimensions")
    if raw.get("format_version") != TAXONOMY_FORMAT_VERSION:
        raise _fail(where, "format_version",
                    f"unsupported taxonomy format {raw.get('format_version')!r} (expected {TAXONOMY_FORMAT_VERSION})")
    name = _string(raw, "name", where, "", required=False) or "constructed"
    return _system(raw, where, name=name, title=_string(raw, "title", where, "", required=False),
                   description=_string(raw, "description", where, "", required=False),
                   source=where, strict_keys=False, describe_parents=False)
