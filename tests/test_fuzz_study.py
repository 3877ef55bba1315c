"""Fuzz: malformed studies made by mutating a valid one are each a `StudyError` that names the file.

Every mutation is invalid by construction (a wrong type, a number out of range, an unknown or
missing field, a bad name, a number as a string or a boolean, nested garbage, bytes that are not
UTF-8, a repeated key, nesting too deep), so `load_study` must raise `StudyError` -- never another
exception -- with a message that starts with the file's name, and nothing may be written.
"""

from __future__ import annotations

import copy
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import study_dict
from valuelex.errors import StudyError
from valuelex.respondents import NAME_PATTERN
from valuelex.spec import load_study

FieldPath = tuple[str | int, ...]

INT_FIELDS: dict[FieldPath, st.SearchStrategy[int]] = {  # field -> integers out of its range
    ("samples",): st.integers(max_value=0),
    ("seed",): st.integers(max_value=-1) | st.integers(min_value=2**63, max_value=2**200),
    ("shard_rows",): st.integers(max_value=0),
    ("decoding", 0, "max_tokens"): st.integers(max_value=0) | st.integers(min_value=32769),
    ("models", 0, "options", "batch_size"): st.integers(max_value=0),
    ("models", 1, "options", "tensor_parallel_size"): st.integers(max_value=0),
    ("construction", "bootstrap"): st.integers(max_value=-1) | st.integers(min_value=1001),
    ("evaluation", "bootstrap_resamples"): st.integers(max_value=49) | st.integers(min_value=100_001),
}
FLOAT_FIELDS: dict[FieldPath, st.SearchStrategy[float]] = {  # field -> floats out of its range
    ("decoding", 0, "temperature"): st.floats(max_value=-0.001) | st.floats(min_value=2.001),
    ("decoding", 1, "top_p"): st.floats(max_value=0) | st.floats(min_value=1.001),
    ("models", 1, "size_b"): st.floats(max_value=0),
    ("evaluation", "ci_level"): st.floats(max_value=0.5) | st.floats(min_value=1),
}
STRING_FIELDS: tuple[FieldPath, ...] = (("name",), ("description",), ("output",), ("models", 0, "family"),
                                        ("models", 1, "source"), ("decoding", 1, "name"))
NAME_FIELDS: tuple[FieldPath, ...] = (("name",), ("models", 0, "name"), ("decoding", 0, "name"))
CONTAINER_FIELDS: tuple[FieldPath, ...] = (("models",), ("decoding",), ("prompts",), ("models", 0),
                                           ("models", 1, "options"), ("evaluation",), ("construction",))
REQUIRED_FIELDS: tuple[FieldPath, ...] = (
    ("name",), ("models",), ("decoding",), ("samples",), ("models", 0, "name"), ("models", 0, "source"),
    ("models", 1, "training"), ("models", 0, "family"), ("models", 1, "prompting"), ("decoding", 0, "name"),
    ("decoding", 1, "temperature"), ("decoding", 0, "top_p"),
)
MAPPINGS: tuple[FieldPath, ...] = ((), ("models", 0), ("models", 1, "options"), ("decoding", 1), ("prompts",),
                                   ("construction",), ("evaluation",), ("evaluation", "adaptive"))

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
unknown_key = text.map(lambda s: f"x_{s}")  # never a field of any spec model
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
garbage = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(unknown_key, inner, min_size=1, max_size=3), max_leaves=12)
not_a_number = (text | st.booleans() | st.integers().map(str) | st.floats(allow_nan=False).map(str)
                | st.lists(st.integers(), max_size=2) | st.dictionaries(unknown_key, st.integers(), max_size=2))
bad_name = text.filter(lambda s: re.fullmatch(NAME_PATTERN, s) is None)


def _node(document: dict, path: FieldPath) -> Any:
    """The mapping or list at `path`, creating missing mappings (construction:, evaluation: ...)."""
    node: Any = document
    for part in path:
        node = node.setdefault(part, {}) if isinstance(part, str) else node[part]
    return node


def _at(path: FieldPath, value: Any) -> Callable[[dict], None]:
    return lambda document: _node(document, path[:-1]).__setitem__(path[-1], value)


def _delete(path: FieldPath) -> Callable[[dict], None]:
    return lambda document: _node(document, path[:-1]).__delitem__(path[-1])


def _unknown(path: FieldPath, key: str, value: Any) -> Callable[[dict], None]:
    return lambda document: _node(document, path).__setitem__(key, value)


mutations = st.one_of(
    st.sampled_from(sorted(INT_FIELDS)).flatmap(lambda p: INT_FIELDS[p].map(lambda v: _at(p, v))),
    st.sampled_from(sorted(FLOAT_FIELDS)).flatmap(lambda p: FLOAT_FIELDS[p].map(lambda v: _at(p, v))),
    st.sampled_from(sorted(INT_FIELDS) + sorted(FLOAT_FIELDS)).flatmap(
        lambda p: not_a_number.filter(lambda v: p != ("models", 1, "size_b") or v is not None).map(
            lambda v: _at(p, v))),
    st.sampled_from(STRING_FIELDS).flatmap(
        lambda p: (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                   | st.lists(text, max_size=2)).map(lambda v: _at(p, v))),
    st.sampled_from(NAME_FIELDS).flatmap(lambda p: bad_name.map(lambda v: _at(p, v))),
    st.sampled_from((("models", 0, "family"), ("models", 1, "source"), ("output",))).flatmap(
        lambda p: st.text(" \t\n", max_size=4).map(lambda v: _at(p, v))),
    st.sampled_from(CONTAINER_FIELDS).flatmap(
        lambda p: garbage.filter(lambda v: not isinstance(v, dict)).map(lambda v: _at(p, v))),
    st.sampled_from(CONTAINER_FIELDS[2:]).flatmap(
        lambda p: st.dictionaries(unknown_key, garbage, min_size=1, max_size=3).map(lambda v: _at(p, v))),
    st.sampled_from(REQUIRED_FIELDS).map(_delete),
    st.tuples(st.sampled_from(MAPPINGS), unknown_key, garbage).map(lambda t: _unknown(*t)),
)
"""Mutations of the document; each one alone makes the study invalid."""

TEXT_MUTATIONS = ("non-utf8", "duplicate-key", "deep-nesting")


def _study_bytes(document: dict, text_mutation: str | None, position: int, depth: int) -> bytes:
    data = yaml.safe_dump(document, sort_keys=False).encode()
    if text_mutation == "non-utf8":
        position %= len(data) + 1
        return data[:position] + b"\xff" + data[position:]
    if text_mutation == "duplicate-key":
        return data + b"shard_rows: 5\n"  # shard_rows is in the base study and never deleted
    if text_mutation == "deep-nesting":
        return data + b"description: " + b"[" * depth + b"]" * depth + b"\n"
    return data


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutation=mutations, text_mutation=st.none() | st.sampled_from(TEXT_MUTATIONS),
       position=st.integers(min_value=0), depth=st.integers(min_value=65, max_value=3000))
def test_malformed_studies_are_study_errors_naming_the_file(
    mutation: Callable[[dict], None], text_mutation: str | None, position: int, depth: int,
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out"
        document = copy.deepcopy(study_dict(output=str(out)))
        mutation(document)
        path = Path(folder) / "study.yaml"
        path.write_bytes(_study_bytes(document, text_mutation, position, depth))
        try:
            load_study(path)
        except StudyError as exc:
            assert str(exc).startswith(f"{path}: "), str(exc)
        else:
            raise AssertionError(f"accepted a malformed study:\n{path.read_text(errors='replace')}")
        assert not out.exists()


def test_the_unmutated_study_loads(tmp_path: Path) -> None:
    """The fuzz's base study is valid: every failure above is the mutation's."""
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study_dict(output=str(tmp_path / "out"))))
    assert load_study(path).name == "tiny"
