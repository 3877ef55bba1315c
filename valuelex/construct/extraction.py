"""Extraction f over a table of answers, each distinct line parsed once (the fast path of `lexicon.extract`).

`lexicon.extract(text)` is the reference: it strips markup from the whole answer, splits it into
lines, and parses each stripped line into units, sentences and clauses (refusal clauses dropped)
whose tokens become value words; an answer's words are the ordered union of its lines' words,
each with the surface form of its first occurrence. Nothing in that parse looks across a line
break once markup is gone, so

    words(answer) = ordered_union(line_words(line) for line in lines(strip_markup(answer)))

and `line_words` is a function of the line's text alone. Answers repeat lines heavily (list items
"1. Honesty", "- **Kindness:** ..." templates, refusals), so:

1. the chunk's answers are dictionary-encoded (Arrow), so each distinct answer is handled once;
2. each distinct answer's markup is stripped and its lines looked up in a process-wide cache of
   `line_words` (`line_items`), so each distinct line is parsed once per process;
3. the per-distinct-answer word lists are expanded back to one row per (answer, word) with
   Arrow `take` on offsets (numpy ``repeat``), keeping the reference's row and word order.

The clause scan is the reference's (`lexicon._clause_words`). `extract_table_reference` keeps
the per-answer loop; a test compares the two on planted and hand-made answers (identical rows,
words and surfaces).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from valuelex.construct.lexicon import (
    OCCURRENCE_SCHEMA,
    Extracted,
    extract,
    line_words,
)

REQUIRED_COLUMNS = ("row_id", "model", "config", "response")
LINE_CACHE_SIZE = 1 << 18


line_items = lru_cache(maxsize=LINE_CACHE_SIZE)(line_words)  # each distinct line parsed once per process


def answer_items(text: str | None) -> tuple[Extracted, ...]:
    """`lexicon.extract(text)` through the line cache: the ordered union of the answer's line words."""
    return tuple(extract(text, line_items))


def _check(chunk: pa.Table) -> None:
    for required in REQUIRED_COLUMNS:
        if required not in chunk.column_names:
            raise KeyError(f"elicitation table has no column {required!r}")


def _occurrences(chunk: pa.Table, rows: np.ndarray, words: pa.Array, surfaces: pa.Array) -> pa.Table:
    take = pa.array(rows, type=pa.int64())
    columns = {
        field.name: chunk.column(field.name).take(take).cast(field.type) if field.name in chunk.column_names
        else pa.nulls(len(rows), field.type)
        for field in OCCURRENCE_SCHEMA if field.name not in ("word", "surface")
    }
    columns["word"], columns["surface"] = words, surfaces
    return pa.table({name: columns[name] for name in OCCURRENCE_SCHEMA.names}, schema=OCCURRENCE_SCHEMA)


def _answered_rows(chunk: pa.Table) -> np.ndarray:
    """Indices of rows with a response and no error (failed rows are skipped)."""
    answered = pc.is_valid(chunk.column("response"))
    if "error" in chunk.column_names:
        answered = pc.and_(answered, pc.is_null(chunk.column("error")))
    return np.flatnonzero(answered.to_numpy(zero_copy_only=False))


def extract_table(chunk: pa.Table) -> pa.Table:
    """Word occurrences (OCCURRENCE_SCHEMA) of a chunk of elicitation rows; failed rows are skipped.

    Row for row, word for word the output of `extract_table_reference`; each distinct answer is
    parsed once (and each distinct line once per process). A pure function of its input, so a
    chunk can run anywhere (a local loop or a Ray task).
    """
    _check(chunk)
    rows = _answered_rows(chunk)
    answers = pc.dictionary_encode(chunk.column("response").take(pa.array(rows, pa.int64())).combine_chunks())
    codes = answers.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    words: list[str] = []
    surfaces: list[str] = []
    lengths = np.zeros(len(answers.dictionary), dtype=np.int64)
    for code, text in enumerate(answers.dictionary.to_pylist()):
        items = answer_items(text)
        lengths[code] = len(items)
        for item in items:
            words.append(item.word)
            surfaces.append(item.surface)
    offsets = np.cumsum(lengths) - lengths
    per_answer = lengths[codes]
    total = int(per_answer.sum())
    # position j of answer i's words sits at offsets[code_i] + j in the distinct-answer lists
    starts = np.repeat(offsets[codes] - (np.cumsum(per_answer) - per_answer), per_answer)
    flat = pa.array(starts + np.arange(total, dtype=np.int64), pa.int64())
    return _occurrences(chunk, np.repeat(rows, per_answer), pa.array(words, pa.string()).take(flat),
                        pa.array(surfaces, pa.string()).take(flat))


def extract_table_reference(chunk: pa.Table) -> pa.Table:
    """The per-answer loop over `lexicon.extract`: the reference `extract_table` is tested against."""
    _check(chunk)
    responses = chunk.column("response").to_pylist()
    rows: list[int] = []
    words: list[str] = []
    surfaces: list[str] = []
    for index in _answered_rows(chunk):
        for item in extract(responses[index]):
            rows.append(int(index))
            words.append(item.word)
            surfaces.append(item.surface)
    return _occurrences(chunk, np.array(rows, dtype=np.int64), pa.array(words, pa.string()),
                        pa.array(surfaces, pa.string()))
