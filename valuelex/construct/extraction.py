r"""Extraction f over a table of answers, vectorised: what `lexicon.extract` gives, answer for answer.

`lexicon.extract(text)` is the reference: it strips markup from the whole answer, splits it into
lines, and parses each stripped line into units, sentences and clauses (refusal clauses dropped)
whose tokens become value words; an answer's words are the ordered union of its lines' words,
each with the surface form of its first occurrence. Nothing in that parse looks across a line
break once markup is gone, so

    words(answer) = ordered_union(line_words(line) for line in lines(strip_markup(answer)))

and the ordered union of the lines' (deduplicated) words is the first occurrence of each word in
the answer's concatenated item sequence. `extract_table` computes that with numpy and Arrow, and
Python runs once per distinct line, never per answer:

1. One byte-table pass over the chunk's answers finds newlines, markup bytes and bytes outside
   printable ASCII. Answers with such "foreign" bytes take the reference path (each distinct
   answer once); answers with a markup byte are stripped with Arrow's RE2 (leftmost-first like
   Python's ``re``; ``\s``, ``\S``, ``\d`` agree on ASCII). Lines are byte spans between newlines.
2. Lines are dictionary-encoded, so each distinct line is handled once per chunk. A trimmed line
   is *plain* when it is one clause of letters, spaces and commas with at most a final ``.``,
   ``!`` or ``?`` (``SIMPLE_LINE``), with no token that can split a clause or start a refusal
   (``CLAUSE_WORDS``, ``REFUSAL_WORDS``) and no adjacent token pair that can start a phrase or
   compound of the lexicon. For such a line `lexicon.line_words` provably reduces to its letter
   runs in order, normalised and deduplicated: they are found with numpy on the bytes and each
   distinct token is normalised once. Other lines (list items, ``**Bold:**`` heads, refusals,
   phrases) go through `lexicon.line_words`, each distinct line once per process (`line_items`).
3. The distinct lines' items are expanded back to lines and answers (numpy ``repeat``), and the
   first occurrence of each (answer, word) is kept: the ordered union above.

`extract_table_reference` keeps the per-answer loop; a test compares the two on hand-made,
planted and local-study answers (identical rows, words and surfaces).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from valuelex.construct.lexicon import (
    OCCURRENCE_SCHEMA,
    Extracted,
    extract,
    line_words,
    normalize_word,
    tables,
)

REQUIRED_COLUMNS = ("row_id", "model", "config", "response")
LINE_CACHE_SIZE = 1 << 18
MARKUP_RE2 = r"(?sm)```.*?```|`|<[^>\n]{1,80}>|https?://\S+|^#+\s*|\[\d+\]"  # lexicon._MARKUP, flags inline
SIMPLE_LINE = r"^[A-Za-z][A-Za-z ,]*[.!?]?$"
CLAUSE_WORDS = frozenset({"but", "however", "although", "though", "whereas", "while", "yet"})  # lexicon._CLAUSE
# every alternative of lexicon._REFUSAL needs one of these as a whole token in an apostrophe-free line
REFUSAL_WORDS = frozenset({"not", "dont", "cannot", "lack", "no", "unable", "sorry", "apologise", "apologize"})

line_items = lru_cache(maxsize=LINE_CACHE_SIZE)(line_words)  # each distinct line parsed once per process


def answer_items(text: str | None) -> tuple[Extracted, ...]:
    """`lexicon.extract(text)` through the line cache: the ordered union of the answer's line words."""
    return tuple(extract(text, line_items))


@cache
def _pair_starts() -> frozenset[tuple[str, str]]:
    """The first two (lowercased) tokens of every phrase and compound: a plain line holds none of them."""
    table = tables()
    return frozenset(key[:2] for key in table.phrases) | frozenset(table.compounds)


@dataclass
class _Items:
    """Word items in parse order, as id arrays: the answer (row of the chunk), the word, the surface."""

    answer: list[np.ndarray]
    word: list[np.ndarray]
    surface: list[np.ndarray]

    def add(self, answer, word, surface) -> None:
        for part, values in zip((self.answer, self.word, self.surface), (answer, word, surface), strict=True):
            part.append(np.asarray(values, dtype=np.int64))

    def joined(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(np.concatenate(parts) if parts else np.zeros(0, np.int64)  # type: ignore[return-value]
                     for parts in (self.answer, self.word, self.surface))


class _Vocabulary:
    """Strings to dense ids (words, surfaces), so items stay integer arrays until the end."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def id(self, text: str) -> int:
        return self.ids.setdefault(text, len(self.ids))

    def array(self) -> pa.Array:
        return pa.array(list(self.ids), pa.string())


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


def _reference_answers(answers: pa.Array, which: np.ndarray, items: _Items, words: _Vocabulary,
                       surfaces: _Vocabulary) -> None:
    """Answers outside the fast path: `answer_items` for each distinct one (line cache underneath)."""
    if not len(which):
        return
    encoded = pc.dictionary_encode(answers.take(pa.array(which, pa.int64())))
    parsed = [answer_items(text) for text in encoded.dictionary.to_pylist()]
    for index, code in zip(which, encoded.indices.to_numpy(zero_copy_only=False), strict=True):
        found = parsed[code]
        items.add(np.full(len(found), index), [words.id(item.word) for item in found],
                  [surfaces.id(item.surface) for item in found])


_LETTER = np.zeros(256, dtype=bool)
_LETTER[np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8)] = True
_NEWLINE, _MARKUP, _FOREIGN = 1, 2, 3  # byte kinds of an answer (0: anything else)
_KIND = np.full(256, _FOREIGN, dtype=np.int8)
_KIND[0x20:0x7F] = 0
_KIND[10] = _NEWLINE
_KIND[np.frombuffer(b"`<#[:", np.uint8)] = _MARKUP  # every alternative of MARKUP_RE2 holds one of these


def _buffer(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, offsets) of a string array, offsets rebased to the bytes."""
    texts = texts.cast(pa.large_string())
    offsets = np.frombuffer(texts.buffers()[1], np.int64)[texts.offset:texts.offset + len(texts) + 1]
    data = texts.buffers()[2]
    data = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    return data[offsets[0]:offsets[-1]], offsets - offsets[0]


def _spans(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """The byte spans [start, end) of `data` as a string array (one copy, by `take`)."""
    if not len(starts):
        return pa.array([], pa.large_string())
    bounds = np.empty(2 * len(starts), dtype=np.int64)
    bounds[0::2], bounds[1::2] = starts, ends  # spans and the gaps between them, alternating
    both = pa.Array.from_buffers(pa.large_string(), len(bounds) - 1,
                                 [None, pa.py_buffer(bounds), pa.py_buffer(data)])
    return both.take(pa.array(np.arange(0, len(bounds), 2), pa.int64()))


def _within(lengths: np.ndarray) -> np.ndarray:
    """0, 1, ..., n - 1 for each run of n = `lengths` items, concatenated (positions in a CSR row)."""
    return np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def _flagged(offsets: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Which texts hold at least one of the byte positions."""
    out = np.zeros(len(offsets) - 1, dtype=bool)
    out[np.searchsorted(offsets, positions, side="right") - 1] = True
    return out


def _raw_lines(offsets: np.ndarray, newlines: np.ndarray, texts: np.ndarray) -> tuple[np.ndarray, ...]:
    """Untrimmed, non-empty lines (`str.splitlines` on \n-only text) of the chosen texts: start, end, text."""
    chosen = np.zeros(len(offsets) - 1, dtype=bool)
    chosen[texts] = True
    newlines = newlines[chosen[np.searchsorted(offsets, newlines, side="right") - 1]]
    starts = np.sort(np.concatenate([offsets[:-1][texts], newlines + 1]))
    ends = np.sort(np.concatenate([offsets[1:][texts], newlines]))
    owner = np.searchsorted(offsets, starts, side="right") - 1
    keep = ends > starts
    return starts[keep], ends[keep], owner[keep]


def _tokens(lines: pa.Array) -> tuple[pa.DictionaryArray, np.ndarray, np.ndarray]:
    """Letter runs of each line: dictionary-encoded tokens, the line and the position of each."""
    data, offsets = _buffer(lines)
    run = _LETTER[data]
    opens = np.zeros(len(data), dtype=bool)
    opens[offsets[:-1][np.diff(offsets) > 0]] = True  # a run never continues into the next line
    before = np.r_[False, run[:-1]] & ~opens
    after = np.r_[run[1:] & ~opens[1:], False]
    starts, ends = np.flatnonzero(run & ~before), np.flatnonzero(run & ~after) + 1
    line = np.searchsorted(offsets, starts, side="right") - 1
    first = np.r_[True, line[1:] != line[:-1]] if len(line) else np.zeros(0, bool)
    position = np.arange(len(line)) - np.maximum.accumulate(np.where(first, np.arange(len(line)), 0)) \
        if len(line) else line
    return pc.dictionary_encode(_spans(data, starts, ends)), line, position


def _plain_items(lines: pa.Array, words: _Vocabulary,
                 surfaces: _Vocabulary) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Items of plain-candidate lines, each token normalised once: (line, position, word, surface) of
    every kept item, and which lines must take the reference parse after all."""
    tokens, token_line, position = _tokens(lines)
    distinct = tokens.dictionary.to_pylist()
    codes = tokens.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    lowered = [t.lower() for t in distinct]
    special = np.array([t in CLAUSE_WORDS or t in REFUSAL_WORDS for t in lowered], dtype=bool)
    rejected = np.zeros(len(lines), dtype=bool)
    rejected[token_line[special[codes]]] = True
    lower_id = {t: i for i, t in enumerate(dict.fromkeys(lowered))}
    pair_keys = np.array([lower_id[a] * len(lower_id) + lower_id[b] for a, b in _pair_starts()
                          if a in lower_id and b in lower_id], dtype=np.int64)
    if len(pair_keys) and len(codes) > 1:
        low = np.array([lower_id[t] for t in lowered], dtype=np.int64)[codes]
        hit = (token_line[1:] == token_line[:-1]) & np.isin(low[:-1] * len(lower_id) + low[1:], pair_keys)
        rejected[token_line[:-1][hit]] = True
    word_of = np.array([words.id(w) if (w := normalize_word(t)) else -1 for t in distinct], dtype=np.int64)
    surface_of = np.array([surfaces.id(t) for t in distinct], dtype=np.int64)
    word = word_of[codes] if len(codes) else codes
    keep = ~rejected[token_line] & (word >= 0) if len(codes) else np.zeros(0, bool)
    line, position, word, surface = token_line[keep], position[keep], word[keep], surface_of[codes[keep]]
    first = ~pd.Series(line * max(len(words.ids), 1) + word).duplicated().to_numpy()  # a line's words once
    line, word, surface = line[first], word[first], surface[first]
    position = np.arange(len(line)) - np.searchsorted(line, line)
    return line, position, word, surface, rejected


def _line_table(lines: pa.Array, words: _Vocabulary, surfaces: _Vocabulary) -> tuple[np.ndarray, ...]:
    """Items of distinct lines as CSR (offsets, word, surface): plain lines vectorised, others by `line_items`."""
    trimmed = pc.utf8_trim(lines, " ")
    plain = pc.match_substring_regex(trimmed, SIMPLE_LINE).to_numpy(zero_copy_only=False)
    candidates = np.flatnonzero(plain)
    line, position, word, surface, rejected = _plain_items(trimmed.take(pa.array(candidates, pa.int64())),
                                                           words, surfaces)
    plain[candidates[rejected]] = False
    line = candidates[line]
    keep = plain[line]
    line, position, word, surface = line[keep], position[keep], word[keep], surface[keep]
    others = np.flatnonzero(~plain)
    parsed = [line_items(text) if text else () for text in trimmed.take(pa.array(others, pa.int64())).to_pylist()]
    other_lengths = np.array([len(p) for p in parsed], dtype=np.int64)
    lengths = np.bincount(line, minlength=len(lines))
    lengths[others] = other_lengths
    offsets = np.r_[0, np.cumsum(lengths)]
    out_word = np.empty(offsets[-1], dtype=np.int64)
    out_surface = np.empty(offsets[-1], dtype=np.int64)
    out_word[offsets[line] + position] = word
    out_surface[offsets[line] + position] = surface
    slots = np.repeat(offsets[others], other_lengths) + _within(other_lengths)
    out_word[slots] = [words.id(i.word) for p in parsed for i in p]
    out_surface[slots] = [surfaces.id(i.surface) for p in parsed for i in p]
    return offsets, out_word, out_surface


def _fast_answers(answers: pa.Array, items: _Items, words: _Vocabulary, surfaces: _Vocabulary) -> np.ndarray:
    """Items of the answers of printable ASCII; returns the indices of the other answers."""
    data, offsets = _buffer(answers)
    kind = _KIND[data]
    marked = np.flatnonzero(kind)
    marked_kind = kind[marked]
    foreign = _flagged(offsets, marked[marked_kind == _FOREIGN])
    markup = _flagged(offsets, marked[marked_kind == _MARKUP]) & ~foreign
    as_is = np.flatnonzero(~foreign & ~markup)
    starts, ends, owner = _raw_lines(offsets, marked[marked_kind == _NEWLINE], as_is)
    parts, owners = [_spans(data, starts, ends)], [owner]
    if markup.any():  # RE2 only where a markup byte occurs
        which = np.flatnonzero(markup)
        stripped = pc.replace_substring_regex(answers.take(pa.array(which, pa.int64())), MARKUP_RE2, " ")
        data2, offsets2 = _buffer(stripped)
        starts2, ends2, owner2 = _raw_lines(offsets2, np.flatnonzero(data2 == 10), np.arange(len(which)))
        parts.append(_spans(data2, starts2, ends2))
        owners.append(which[owner2])
    owner = np.concatenate(owners)
    order = np.argsort(owner, kind="stable")  # answer order, lines of an answer in order
    encoded = pc.dictionary_encode(pa.concat_arrays(parts).take(pa.array(order, pa.int64())))
    owner = owner[order]
    offsets_d, word_d, surface_d = _line_table(encoded.dictionary, words, surfaces)
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    lengths = np.diff(offsets_d)
    per_line = lengths[codes]
    source = np.repeat(offsets_d[codes], per_line) + _within(per_line)
    items.add(np.repeat(owner, per_line), word_d[source], surface_d[source])
    return np.flatnonzero(foreign)


def extract_table(chunk: pa.Table) -> pa.Table:
    """Word occurrences (OCCURRENCE_SCHEMA) of a chunk of elicitation rows; failed rows are skipped.

    Row for row, word for word the output of `extract_table_reference`. A pure function of its
    input, so a chunk can run anywhere (a local loop or a Ray task).
    """
    _check(chunk)
    rows = _answered_rows(chunk)
    answers = chunk.column("response").take(pa.array(rows, pa.int64())).combine_chunks().cast(pa.large_string())
    items, words, surfaces = _Items([], [], []), _Vocabulary(), _Vocabulary()
    others = _fast_answers(answers, items, words, surfaces)
    _reference_answers(answers, others, items, words, surfaces)
    answer, word, surface = items.joined()
    order = np.argsort(answer, kind="stable")  # two runs sorted by answer: a merge
    answer, word, surface = answer[order], word[order], surface[order]
    first = ~pd.Series(answer * max(len(words.ids), 1) + word).duplicated().to_numpy()
    return _occurrences(chunk, rows[answer[first]], words.array().take(pa.array(word[first])),
                        surfaces.array().take(pa.array(surface[first])))


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
