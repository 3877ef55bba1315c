"""Extraction f of eq. (1): the value words in free-text answers, each with the answer it came from.

The paper combines rule matching with an LLM's judgement. Here the rules run first and are
deterministic: answer shapes (numbered or bulleted lists, comma/``and``/semicolon enumerations,
``**Bold:** explanation`` markdown, ``Word - explanation`` items, plain prose) are reduced to
candidate tokens, refusal clauses ("I'm an AI and don't have values") are dropped, tokens on the
packaged stop-list (``valuelex/data/lexicon_stopwords.txt``) are dropped, and the rest are
normalised so that morphological variants count as one word (honest/honesty -> honesty,
unbiased/unbiasedness -> unbiased; the variant, compound and exception tables are package data,
``valuelex/data/lexicon/lexicon.yaml``). An optional judge (an LLM behind a callable) then filters the
distinct candidates; with no judge every candidate is kept and frequency pruning does the rest.
Common multi-word values ("freedom of speech", "justice for all"; the ``phrases`` table) are kept
as one phrase instead of their head noun.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import pyarrow as pa
import yaml

Judge = Callable[[list[str]], Iterable[str]]
"""An LLM judgement: given candidate words, return the ones that name a value."""

OCCURRENCE_SCHEMA = pa.schema(
    [
        pa.field("row_id", pa.string()),
        pa.field("model", pa.string()),
        pa.field("config", pa.string()),
        pa.field("training", pa.string()),
        pa.field("family", pa.string()),
        pa.field("item_id", pa.string()),
        pa.field("sample", pa.int64()),
        pa.field("word", pa.string()),
        pa.field("surface", pa.string()),
    ]
)
"""One row per (answer, distinct value word): the word's provenance."""

LEXICON_FILE = "valuelex/data/lexicon/lexicon.yaml"
PHRASE_MAX = 5


@dataclass(frozen=True)
class Tables:
    """The lexicon's data (``valuelex/data/lexicon/lexicon.yaml``; the file says what each table is for)."""

    variants: dict[str, str]
    """Irregular morphology: variant -> final canonical form (honest -> honesty)."""
    compounds: dict[tuple[str, str], str]
    """Two tokens written apart that are one word: (open, minded) -> open-minded."""
    no_singular: frozenset[str]
    no_ability: frozenset[str]
    no_fulness: frozenset[str]
    ly_keep: frozenset[str]
    ive_keep: frozenset[str]
    phrases: dict[tuple[str, ...], str]
    """Multi-word values kept as one phrase: (freedom, of, speech) -> "freedom of speech"."""


def _words(raw: dict, field: str) -> list[str]:
    value = raw.get(field)
    if not isinstance(value, list) or not all(isinstance(w, str) and _WORD.fullmatch(w) for w in value):
        raise ValueError(f"{LEXICON_FILE}: {field}: expected a list of lowercase words")
    return value


def _mapping(raw: dict, field: str) -> dict[str, str]:
    value = raw.get(field)
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) and _WORD.fullmatch(v)
                                              for k, v in value.items()):
        raise ValueError(f"{LEXICON_FILE}: {field}: expected a mapping of lowercase words to lowercase words")
    return value


@cache
def tables() -> Tables:
    """The packaged lexicon tables, read once on first use (importing this module reads nothing).

    Checked as they load: a word YAML reads as something else (an unquoted ``true``) or an
    upper-case key would otherwise never match a token and silently change extraction.
    """
    text = resources.files("valuelex.data").joinpath("lexicon", "lexicon.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict) or raw.get("version") != 1:
        raise ValueError(f"{LEXICON_FILE}: expected version 1")
    variants = _mapping(raw, "variants")
    if not all(_WORD.fullmatch(k) for k in variants):
        raise ValueError(f"{LEXICON_FILE}: variants: every variant must be a lowercase word")
    compounds: dict[tuple[str, str], str] = {}
    for pair, joined in _mapping(raw, "compounds").items():
        first, _, second = pair.partition(" ")
        if not (_WORD.fullmatch(first) and _WORD.fullmatch(second)):
            raise ValueError(f"{LEXICON_FILE}: compounds: {pair!r} must be two lowercase words")
        compounds[(first, second)] = joined
    return Tables(variants=variants, compounds=compounds, no_singular=frozenset(_words(raw, "no_singular")),
                  no_ability=frozenset(_words(raw, "no_ability")), no_fulness=frozenset(_words(raw, "no_fulness")),
                  ly_keep=frozenset(_words(raw, "ly_keep")), ive_keep=frozenset(_words(raw, "ive_keep")),
                  phrases=_phrases(raw))


def _phrases(raw: dict) -> dict[tuple[str, ...], str]:
    value = raw.get("phrases")
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise ValueError(f"{LEXICON_FILE}: phrases: expected a list of lowercase phrases")
    out: dict[tuple[str, ...], str] = {}
    for phrase in value:
        tokens = tuple(phrase.split())
        if not 2 <= len(tokens) <= PHRASE_MAX or not all(_WORD.fullmatch(t) for t in tokens):
            raise ValueError(f"{LEXICON_FILE}: phrases: {phrase!r} must be 2-{PHRASE_MAX} lowercase words")
        out[tokens] = " ".join(tokens)
    return out


def __getattr__(name: str) -> Any:
    """``VARIANTS`` and ``COMPOUNDS``, the tables under their names from before they were data (PEP 562).

    Read lazily so that importing the module stays free of file reads.
    """
    if name == "VARIANTS":
        return tables().variants
    if name == "COMPOUNDS":
        return tables().compounds
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_LIST_MARKER = re.compile(r"^\s*(?:[-*•+·▪►‣◦]|\(?\d{1,3}[.):]|\(?[A-Za-z][.)])\s+")
_BOLD_HEAD = re.compile(r"^(?:\*\*|__)(.+?)(?:\*\*|__)\s*[:\-–—]?\s*(.*)$")
_HEAD_SEP = re.compile(r"^(.{1,60}?)\s*(?::|\s[-–—]\s|[–—])\s*(.+)$")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_CLAUSE = re.compile(r"\s*(?:;|,?\s+(?:but|however|although|though|whereas|while|yet)\s+)", re.IGNORECASE)
_ENUM_SPLIT = re.compile(r"\s*(?:,|;|&|/|\band\b|\bor\b)\s*", re.IGNORECASE)
# Tokens are runs of letters in any script, so "Naïveté" stays one token (and is then refused by
# _WORD as non-English) instead of splitting into ASCII fragments ("na", "vet") that pass as words.
_LETTERS = r"[^\W\d_]+"
_TOKEN = re.compile(rf"{_LETTERS}(?:['’]{_LETTERS})?(?:-{_LETTERS})*")
_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")
_POSSESSIVE = re.compile(r"(?:'s|s')$")
_MARKUP = re.compile(r"```.*?```|`|<[^>\n]{1,80}>|https?://\S+|^#+\s*|\[\d+\]", re.DOTALL | re.MULTILINE)
_REFUSAL = (
    # "I'm an AI and don't have values", "As an AI, I do not possess personal beliefs", ...
    re.compile(
        r"\b(?:i|we)\b.{0,80}?\b(?:do not|don't|dont|cannot|can't|can not|am not able to|am unable to|"
        r"lack|have no|possess no|doesn't|does not)\b.{0,50}?\b(?:values?|beliefs?|opinions?|preferences?|"
        r"feelings?|emotions?|consciousness|morals?|principles?|experiences?|views?|personal)\b"
    ),
    re.compile(r"\bnot (?:based on|driven by|guided by|capable of having)\b.{0,30}?\b(?:values?|beliefs?)\b"),
    re.compile(r"\b(?:i'm sorry|i am sorry|i apologi[sz]e|sorry, but)\b"),
)


@cache
def stopwords() -> frozenset[str]:
    """The packaged stop-list of non-value tokens."""
    text = resources.files("valuelex.data").joinpath("lexicon_stopwords.txt").read_text(encoding="utf-8")
    words: set[str] = set()
    for line in text.splitlines():
        words.update(line.split("#", 1)[0].lower().split())
    return frozenset(words)


def _singular(word: str) -> str:
    if word in tables().no_singular or len(word) <= 3:
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("sses") or word.endswith(("ches", "shes", "xes", "zes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is", "ous", "ics")):
        return word[:-1]
    return word


def _canonical(word: str) -> str:
    """One folding rule for an adjective and its "-ness" noun: both become one canonical form,

    1. the abstract noun the variants table names for the adjective (creative, creativeness ->
       creativity; cooperative, cooperativeness -> cooperation; curious, curiousness -> curiosity);
    2. else the "-ness" noun for "-ive" and "-ful" adjectives, the form models write
       (responsive, responsiveness -> responsiveness; helpful -> helpfulness), except the "-ive"
       nouns of ``ive_keep`` (initiative, perspective);
    3. else the adjective for "-ed" and "-ous" adjectives (unbiasedness -> unbiased,
       conscientiousness -> conscientious).
    """
    table = tables()
    variants = table.variants
    if word in variants:
        return variants[word]
    if word.endswith(("iveness", "ousness", "edness")) and len(word) > 8:
        adjective = word[:-4]
        if adjective in variants:
            return variants[adjective]  # rule 1
        if not word.endswith("iveness"):
            word = adjective  # rule 3
    elif word.endswith("ive") and len(word) >= 7 and word not in table.ive_keep:
        word = word + "ness"  # rule 2: responsive -> responsiveness
    elif word.endswith("ful") and len(word) >= 6 and word not in table.no_fulness:
        word = word + "ness"  # helpful -> helpfulness
    elif word.endswith("able") and len(word) >= 8 and word not in table.no_ability:
        word = word[:-4] + "ability"  # dependable -> dependability
    elif word.endswith("ible") and len(word) >= 7 and word not in table.no_ability:
        word = word[:-4] + "ibility"  # credible -> credibility
    return variants.get(word, word)


@lru_cache(maxsize=1 << 16)
def normalize_word(token: str) -> str | None:
    """The canonical form of one token, or None when it is not a value-word candidate.

    Cached: answers reuse a small vocabulary, and this is most of extraction's time at scale."""
    word = token.lower().replace("’", "'")
    word = _POSSESSIVE.sub("", word).strip("-'")
    if not 3 <= len(word) <= 30 or not _WORD.fullmatch(word):
        return None
    stop = stopwords()
    if word in stop or (word.endswith("ly") and len(word) >= 6 and word not in tables().ly_keep and "-" not in word):
        return None
    word = _canonical(_singular(word))
    if word in stop or len(word) < 3:
        return None
    return word


@dataclass(frozen=True)
class Extracted:
    """A value word found in an answer, with the form it was written in."""

    word: str
    surface: str


def _n_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def _is_enumeration(text: str, need_comma: bool = False) -> bool:
    """'honesty, integrity and respect': at least two short items separated by , ; and or."""
    text = text.strip().rstrip(".!")
    if need_comma and not re.search(r"[,;]", text):
        return False
    parts = [p for p in _ENUM_SPLIT.split(text) if p.strip()]
    return len(parts) >= 2 and all(_n_tokens(p) <= 3 for p in parts)


def _has_candidates(text: str) -> bool:
    return any(normalize_word(token) for token in _TOKEN.findall(text))


def _units(line: str) -> list[str]:
    """The parts of one line that can hold value words; explanations after a heading are dropped.

    A short head before ``:`` / `` - `` (or in bold) is a heading when it holds a value word
    ("Honesty: I always tell the truth" -> Honesty) and an introduction when it does not
    ("My values: honesty and care" -> honesty, care). After a heading, the rest is kept only
    if it is itself a comma-separated list of short items.
    """
    marker = _LIST_MARKER.match(line)
    is_item = marker is not None
    if marker:
        line = line[marker.end():]
    bold = _BOLD_HEAD.match(line)
    if bold:
        head, rest = bold.group(1).strip().rstrip(":"), bold.group(2)
        if _n_tokens(head) <= 4:
            if not _has_candidates(head):
                return _units(rest) if rest.strip() else []
            if rest.lstrip().startswith(("**", "__")):
                return [head, *_units(rest)]
            return [head, rest] if _is_enumeration(rest, need_comma=True) else [head]
    line = line.replace("**", "").replace("__", "").replace("*", " ")
    head_sep = _HEAD_SEP.match(line)
    if head_sep:
        head, rest = head_sep.group(1), head_sep.group(2)
        if _n_tokens(head) <= 3:
            if not _has_candidates(head):
                return [rest]
            if is_item or not _is_enumeration(rest):
                return [head, rest] if _is_enumeration(rest, need_comma=True) else [head]
    if is_item:
        sentences = _SENTENCE.split(line.strip(), maxsplit=1)
        if len(sentences) == 2 and _n_tokens(sentences[0]) <= 4:
            return [sentences[0]]  # "Honesty. I always tell the truth."
    return [line]


def _is_refusal(clause: str) -> bool:
    lowered = clause.lower().replace("’", "'")
    return any(pattern.search(lowered) for pattern in _REFUSAL)


@cache
def _starts() -> tuple[frozenset[str], frozenset[str]]:
    """First tokens (lowercased) of the phrase and compound tables: only these can start one."""
    table = tables()
    return frozenset(key[0] for key in table.phrases), frozenset(first for first, _ in table.compounds)


def _clause_words(clause: str) -> list[Extracted]:
    """Value words of one clause, left to right: longest phrase first, then a compound, then one token
    (the lookups are skipped for a token that starts no phrase or compound)."""
    tokens = _TOKEN.findall(clause)
    table = tables()
    phrases, compounds = table.phrases, table.compounds
    phrase_starts, compound_starts = _starts()
    lowered = [t.lower().replace("’", "'") for t in tokens]
    found: list[Extracted] = []
    index, n = 0, len(tokens)
    while index < n:
        token = tokens[index]
        if lowered[index] in phrase_starts:
            phrase = next((phrases[key] for width in range(PHRASE_MAX, 1, -1)
                           if (key := tuple(lowered[index:index + width])) in phrases), None)
            if phrase:
                width = len(phrase.split())
                found.append(Extracted(phrase, " ".join(tokens[index:index + width])))
                index += width
                continue
        if index + 1 < n:
            first = token.lower()
            if first in compound_starts:
                joined = compounds.get((first, tokens[index + 1].lower()))
                if joined:
                    found.append(Extracted(joined, f"{token} {tokens[index + 1]}"))
                    index += 2
                    continue
        word = normalize_word(token)
        if word:
            found.append(Extracted(word, token))
        index += 1
    return found


def line_words(line: str) -> tuple[Extracted, ...]:
    """Distinct value words of one stripped, non-empty, markup-free line, in order of first appearance
    (its units, sentences and clauses; refusals skipped). Lines never share a word's context, so an
    answer's words are the ordered union of its lines' (what `construct.extraction` caches)."""
    seen: dict[str, Extracted] = {}
    for unit in _units(line):
        for sentence in _SENTENCE.split(unit):
            for clause in _CLAUSE.split(sentence):
                if not clause.strip() or _is_refusal(clause):
                    continue
                for item in _clause_words(clause):
                    seen.setdefault(item.word, item)
    return tuple(seen.values())


def extract(text: str | None, parse_line: Callable[[str], Iterable[Extracted]] = line_words) -> list[Extracted]:
    """Distinct value words of one answer, in the order they first appear, with their surface forms
    (`parse_line`: `line_words`, or a cache of it)."""
    if not text or not text.strip():
        return []
    seen: dict[str, Extracted] = {}
    for raw_line in _MARKUP.sub(" ", text).splitlines():
        line = raw_line.strip()
        if line:
            for item in parse_line(line):
                seen.setdefault(item.word, item)
    return list(seen.values())


def extract_words(text: str | None) -> list[str]:
    """Distinct canonical value words of one answer, in order of first appearance."""
    return [item.word for item in extract(text)]


def judge_words(candidates: Iterable[str], judge: Judge | None = None, batch_size: int = 200) -> set[str]:
    """The candidates a judge accepts, asked in sorted batches; with no judge, all of them.

    A judge may only accept words it was shown: anything else it returns is ignored, so a
    chatty LLM cannot add words to the lexicon.
    """
    words = sorted(set(candidates))
    if judge is None:
        return set(words)
    accepted: set[str] = set()
    for start in range(0, len(words), batch_size):
        batch = words[start:start + batch_size]
        accepted |= set(judge(list(batch))) & set(batch)
    return accepted
