"""Synthetic elicitation tables with a planted value structure, for tests and benchmarks.

Each respondent has latent factor scores z ~ N(0, I); it holds word w of factor f with
probability sigmoid(base_w + strength * z_f), and mentions each held word in an answer with
probability `p_mention`. Answers come in the shapes real models produce (numbered lists,
bullets, ``**Bold:** explanation`` markdown, prose, morphological variants, mixed case), plus
refusals, empty answers and failed rows. The planted word -> factor map is the ground truth.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from valuelex.construct.lexicon import VARIANTS, normalize_word

if TYPE_CHECKING:
    from valuelex.spec import Study

PLANTED: dict[str, list[str]] = {
    "competence": ["accuracy", "efficiency", "knowledge", "reliability", "precision", "competence", "expertise",
                   "thoroughness"],
    "character": ["empathy", "kindness", "compassion", "patience", "friendliness", "warmth", "generosity", "care"],
    "integrity": ["fairness", "justice", "neutrality", "transparency", "accountability", "equality", "integrity",
                  "impartiality"],
}

LARGE: dict[str, list[str]] = {
    "competence": PLANTED["competence"] + [
        "excellence", "skill", "mastery", "productivity", "diligence", "rigor", "clarity", "consistency",
        "improvement", "learning", "curiosity", "intelligence", "wisdom", "insight", "creativity", "innovation",
        "helpfulness", "usefulness", "informativeness", "factuality", "responsiveness", "adaptability",
    ],
    "character": PLANTED["character"] + [
        "love", "friendship", "gratitude", "humility", "politeness", "respect", "courtesy", "sympathy",
        "gentleness", "cheerfulness", "optimism", "hope", "forgiveness", "harmony", "cooperation", "collaboration",
        "altruism", "benevolence", "loyalty", "trust", "supportiveness", "tolerance",
    ],
    "integrity": PLANTED["integrity"] + [
        "truth", "objectivity", "honesty", "responsibility", "privacy", "confidentiality", "safety",
        "security", "compliance", "legality", "ethics", "morality", "dignity", "inclusivity", "diversity",
        "rights", "unbiased", "explainability", "accessibility", "professionalism", "trustworthiness",
        "harmlessness",
    ],
    "tradition": [
        "family", "faith", "religion", "tradition", "community", "patriotism", "duty", "heritage", "marriage",
        "obedience", "discipline", "modesty", "piety", "stability", "lawfulness", "law", "authority", "prosperity",
        "wealth", "money", "power", "success", "ambition", "leadership", "achievement", "status", "prestige",
        "independence", "freedom", "adventure",
    ],
}

NOISE: list[str] = ["sunshine", "coffee", "mountain", "guitar", "ocean", "pizza", "bicycle", "garden", "robotics",
                    "astronomy", "chess", "poetry", "cinema", "football", "painting", "cooking"]

_PROSE = [
    "My core values are {list}.",
    "I value {list} above all.",
    "The values that guide me are {list}.",
    "As a language model, I prioritize {list} in my responses.",
]
_REFUSALS = [
    "As an AI language model, I don't have personal values or beliefs.",
    "I'm an AI and don't have values.",
    "I am sorry, but I cannot share personal opinions.",
]


@cache
def _forms(word: str) -> tuple[str, ...]:
    """Other spellings that normalise to `word` (honest -> honesty)."""
    return tuple(k for k, v in VARIANTS.items() if v == word and k != word and normalize_word(k) == word)


def _variant(word: str, rng: np.random.Generator) -> str:
    forms = _forms(word)
    return str(rng.choice(forms)) if forms and rng.random() < 0.3 else word


def _case(word: str, rng: np.random.Generator) -> str:
    roll = rng.random()
    return word.capitalize() if roll < 0.6 else (word.upper() if roll < 0.65 else word)


def _layout(forms: Sequence[str], shape: int, prose: str) -> str:
    """An answer in one of the five shapes: numbered list, bold heads, bullets, or (3, 4) a `prose` template."""
    if shape == 0:
        return "Here are the words:\n" + "\n".join(f"{i + 1}. {w}" for i, w in enumerate(forms))
    if shape == 1:
        return "\n".join(f"- **{w}:** I am committed to this in every response." for w in forms)
    if shape == 2:
        return "\n".join(f"* {w} - this matters to me." for w in forms)
    listed = forms[0] if len(forms) == 1 else ", ".join(forms[:-1]) + " and " + forms[-1]
    return prose.format(list=listed)


def _answer(words: Sequence[str], rng: np.random.Generator) -> str:
    forms = [_case(_variant(w, rng), rng) for w in words]
    shape = int(rng.integers(0, 5))
    return _layout(forms, shape, str(rng.choice(_PROSE)) if shape >= 3 else "")


def planted_truth(factors: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Canonical word -> factor name (the words as the extractor will report them)."""
    truth: dict[str, str] = {}
    for factor, words in factors.items():
        for word in words:
            canonical = normalize_word(word)
            if canonical is None or canonical in truth:
                raise ValueError(f"planted word {word!r} is not a distinct value word")
            truth[canonical] = factor
    return truth


def synthetic_elicitation(n_respondents: int, factors: Mapping[str, Sequence[str]] | None = None, *,
                          items: int = 15, samples: int = 1, configs: Sequence[str] = ("t0.7-p0.9", "t1.0-p1.0"),
                          strength: float = 2.5, p_mention: float = 0.4, noise_rate: float = 0.0,
                          refusal_rate: float = 0.02, empty_rate: float = 0.01, failed_rate: float = 0.01,
                          latent_correlation: np.ndarray | None = None, seed: int = 0) -> pa.Table:
    """An elicitation table (the store's columns) of `n_respondents` model x config respondents.

    `latent_correlation` (factors x factors, positive definite) correlates the respondents' factor
    scores; None keeps them independent (z ~ N(0, I)).
    """
    factors = PLANTED if factors is None else factors
    planted_truth(factors)
    rng = np.random.default_rng(seed)
    names = list(factors)
    chol = None if latent_correlation is None else np.linalg.cholesky(np.asarray(latent_correlation, dtype=float))
    vocab = [(w, names.index(f)) for f in names for w in factors[f]]
    base = rng.uniform(-1.0, 0.5, size=len(vocab))
    factor_of = np.array([f for _, f in vocab])
    n_models = math.ceil(n_respondents / len(configs))
    trainings = ["aligned", "instruction-tuned", "pretrained"]
    cols: dict[str, list] = {k: [] for k in ("row_id", "model", "config", "training", "size_b", "family",
                                             "item_id", "sample", "response", "error")}
    respondent = 0
    for m in range(n_models):
        for config in configs:
            if respondent >= n_respondents:
                break
            respondent += 1
            z = rng.standard_normal(len(names))
            if chol is not None:
                z = chol @ z
            held_p = 1 / (1 + np.exp(-(base + strength * z[factor_of])))
            held = [vocab[i][0] for i in np.flatnonzero(rng.random(len(vocab)) < held_p)]
            held += [w for w in NOISE if rng.random() < noise_rate]
            for item in range(items):
                for sample in range(samples):
                    row = f"m{m:05d}|{config}|q{item + 1:02d}|{sample}"
                    roll = rng.random()
                    response: str | None
                    error = None
                    if roll < failed_rate:
                        response, error = None, "EngineError: synthetic failure"
                    elif roll < failed_rate + empty_rate:
                        response = ""
                    elif roll < failed_rate + empty_rate + refusal_rate:
                        response = str(rng.choice(_REFUSALS))
                    else:
                        said = [held[i] for i in rng.permutation(np.flatnonzero(rng.random(len(held)) < p_mention))]
                        response = _answer(said, rng) if said else str(rng.choice(_REFUSALS))
                    for key, value in (("row_id", row), ("model", f"m{m:05d}"), ("config", config),
                                       ("training", trainings[m % 3]), ("size_b", float(1 + m % 70)),
                                       ("family", f"family{m % 5}"), ("item_id", f"q{item + 1:02d}"),
                                       ("sample", sample), ("response", response), ("error", error)):
                        cols[key].append(value)
    schema = pa.schema([("row_id", pa.string()), ("model", pa.string()), ("config", pa.string()),
                        ("training", pa.string()), ("size_b", pa.float64()), ("family", pa.string()),
                        ("item_id", pa.string()), ("sample", pa.int64()), ("response", pa.string()),
                        ("error", pa.string())])
    return pa.table(cols, schema=schema)


def planted_study(table: pa.Table, *, name: str = "synthetic", output: str = "runs/synthetic",
                  construction: Mapping[str, object] | None = None) -> tuple[Study, pa.Table]:
    """A study whose grid is exactly the respondents, items and samples of a synthetic table, and the
    table with that grid's row ids: what a run store holds after eliciting such respondents."""
    from valuelex import grid
    from valuelex.instruments import select
    from valuelex.spec import Study

    rows = table.select(["model", "training", "size_b", "family"]).to_pylist()
    models = {r["model"]: r for r in rows}
    configs = sorted(set(table.column("config").to_pylist()))
    item_ids = sorted(set(table.column("item_id").to_pylist()))
    study = Study.model_validate({
        "name": name, "output": output, "samples": int(max(table.column("sample").to_pylist())) + 1,
        "models": [{"name": m, "source": f"synthetic/{m}", "training": r["training"], "family": r["family"],
                    "size_b": r["size_b"], "prompting": "chat"} for m, r in models.items()],
        "decoding": [{"name": c, "temperature": 0.7, "top_p": 0.9} for c in configs],
        "prompts": {"elicitation": item_ids}, "construction": dict(construction or {}),
    })
    specs = {m.name: m for m in study.models}
    by_config = {c.name: c for c in study.decoding}
    prompts = {item.id: item.framed("chat") for item in select("elicitation", item_ids)}
    ids = [grid.row_identity(study, "elicitation", specs[m], by_config[c], i, prompts[i], s)[0]
           for m, c, i, s in zip(*(table.column(k).to_pylist() for k in ("model", "config", "item_id", "sample")),
                                 strict=True)]
    return study, table.set_column(table.schema.get_field_index("row_id"), "row_id", pa.array(ids, pa.string()))


# --- planted hierarchies: dimensions x subdimensions, for the semantic step (issue 15.4) ----------

HIERARCHY: dict[str, dict[str, list[str]]] = {
    "competence": {
        "rigour": ["accuracy", "precision", "reliability", "thoroughness", "consistency", "diligence"],
        "knowledge": ["knowledge", "expertise", "competence", "skill", "mastery", "proficiency"],
    },
    "character": {
        "care": ["empathy", "kindness", "compassion", "warmth", "generosity", "care"],
        "courtesy": ["politeness", "respect", "courtesy", "patience", "humility", "gratitude"],
    },
    "integrity": {
        "justice": ["fairness", "justice", "equality", "impartiality", "neutrality", "objectivity"],
        "openness": ["transparency", "accountability", "honesty", "truth", "responsibility", "integrity"],
    },
}

# co-occurrence dimensions that cut across meaning: each pairs subdimensions of two meaning groups
CROSSED: dict[str, list[str]] = {
    "rigour+courtesy": ["rigour", "courtesy"],
    "care+openness": ["care", "openness"],
    "justice+knowledge": ["justice", "knowledge"],
}

GENERATORS = ("whole", "across", "agree", "disagree")


@dataclass(frozen=True)
class PlantedHierarchy:
    """Latent factors (one per planted subdimension), their correlation, and the true grouping."""

    kind: str
    factors: dict[str, list[str]]  # subdimension -> words
    dimension_of: dict[str, str]  # subdimension -> true dimension
    correlation: np.ndarray  # latent correlation of the subdimension factors

    def truth(self) -> dict[str, tuple[str, str]]:
        """Canonical word -> (true dimension, true subdimension)."""
        return {w: (self.dimension_of[s], s) for w, s in planted_truth(self.factors).items()}


def planted_hierarchy(kind: str, *, within: float | None = None, across: float = 0.0) -> PlantedHierarchy:
    """The four kinds of planted data the semantic step is chosen on (docs/benchmarks.md).

    Every kind has six latent subdimension factors of six words each; what differs is how they are
    correlated (rho within a true dimension, rho across) and whether meaning agrees with the truth:

    - ``whole``: respondents favour whole dimensions (rho_within 0.9); meaning agrees.
    - ``across``: respondents favour subdimensions across dimensions: rho_within 0.2, and each
      subdimension correlates as much (0.2) with one subdimension of another dimension; the true
      dimensions are the meaning groups, which co-occurrence alone cannot tell.
    - ``agree``: co-occurrence shows both levels (rho_within 0.6) and meaning agrees.
    - ``disagree``: co-occurrence dimensions pair subdimensions of different meaning groups (CROSSED,
      rho_within 0.85); the truth is the co-occurrence, meaning misleads at the dimension level.
    """
    if kind not in GENERATORS:
        raise ValueError(f"kind: one of {', '.join(GENERATORS)}, not {kind!r}")
    factors = {s: list(ws) for subs in HIERARCHY.values() for s, ws in subs.items()}
    if kind == "disagree":
        dimension_of = {s: d for d, subs in CROSSED.items() for s in subs}
    else:
        dimension_of = {s: d for d, subs in HIERARCHY.items() for s in subs}
    rho = within if within is not None else {"whole": 0.9, "across": 0.2, "agree": 0.6, "disagree": 0.85}[kind]
    names = list(factors)
    corr = np.eye(len(names))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i != j and dimension_of[a] == dimension_of[b]:
                corr[i, j] = rho
    if kind == "across":
        across = across or 0.2
        for i in range(0, len(names), 2):  # rigour~care, courtesy~justice, openness~knowledge (cyclic)
            j = (i + 2) % len(names)
            a, b = i, j + 1
            corr[a, b] = corr[b, a] = across
    return PlantedHierarchy(kind, factors, dimension_of, corr)


def hierarchy_elicitation(kind: str, n_respondents: int = 360, *, seed: int = 0, strength: float = 1.8,
                          p_mention: float = 0.3, noise_rate: float = 0.0) -> tuple[pa.Table, PlantedHierarchy]:
    """An elicitation table from `planted_hierarchy(kind)`, and the hierarchy (its truth)."""
    planted = planted_hierarchy(kind)
    table = synthetic_elicitation(n_respondents, planted.factors, strength=strength, p_mention=p_mention,
                                  noise_rate=noise_rate, latent_correlation=planted.correlation, seed=seed)
    return table, planted


# --- planted noise for the value-word filter (issue 15.5): set "a" tunes, set "b" reports -----------

FILTER_SETS: dict[str, dict[str, list[str]]] = {
    "a": {
        "values": ["efficiency", "knowledge", "reliability", "precision", "competence", "expertise",
                   "thoroughness", "excellence", "skill", "mastery", "productivity", "diligence", "clarity",
                   "consistency", "curiosity", "intelligence", "creativity", "innovation", "usefulness",
                   "responsiveness", "adaptability", "patience", "friendliness", "warmth", "care", "love",
                   "friendship", "politeness", "courtesy", "sympathy", "gentleness", "optimism", "hope",
                   "forgiveness", "harmony", "cooperation", "altruism", "neutrality", "accountability",
                   "impartiality", "truth", "objectivity", "confidentiality", "security", "morality", "diversity"],
        "noise": [*NOISE, "stuff", "sandwich", "keyboard", "umbrella", "carpet", "pencil", "train", "tuesday"],
    },
    "b": {
        "values": ["autonomy", "hedonism", "conformity", "universalism", "purity", "sanctity", "liberty",
                   "sincerity", "perseverance", "charity", "mercy", "chastity", "temperance", "prudence",
                   "justness", "nobility", "devotion", "reverence", "self-discipline", "solidarity",
                   "fidelity", "hospitality", "thrift", "punctuality"],
        "noise": ["thing", "book", "product", "time", "computer", "car", "weather", "phone", "music",
                  "water", "paper", "window", "street", "dog", "movie", "email", "software", "breakfast",
                  "hat", "river", "lamp", "jacket", "printer", "battery"],
    },
}


def noisy_lists(which: str, n_answers: int = 200, *, per_answer: int = 5, noise_share: float = 0.3,
                seed: int = 0) -> list[str]:
    """Comma-list answers ("Honesty, stuff, care and respect.") mixing a set's value words and noise."""
    rng = np.random.default_rng(seed)
    chosen = FILTER_SETS[which]
    answers = []
    for _ in range(n_answers):
        words = [str(rng.choice(chosen["noise"] if rng.random() < noise_share else chosen["values"]))
                 for _ in range(per_answer)]
        answers.append(str(rng.choice(_PROSE)).format(list=", ".join(words[:-1]) + " and " + words[-1]))
    return answers


def grouped_factor_data(n: int = 1000, groups: int = 3, *, per: int = 4, loading_shift: float = 0.0,
                        intercept_shift: float = 0.0, binary: bool = False,
                        seed: int = 0) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Units x words of `groups` groups of `n` units for measurement invariance (`construct.invariance`):
    two correlated factors x `per` words, x = tau + lambda eta + e, e ~ N(0, 0.5).

    lambda ~ U(0.6, 0.9) and tau ~ U(-0.5, 0.5) are drawn first (so a caller can redraw them from
    `seed`); the groups differ in latent means (0.3 g) and the first factor's variance (1 + 0.2 g),
    which every invariance level allows. The last group's second word of each factor gets
    `loading_shift`, its 2nd..(per-1)th words `intercept_shift`. `binary` dichotomises x at 0.3 (the
    intercepts then act as thresholds). Returns (x, group label per unit, factor per word).
    """
    rng = np.random.default_rng(seed)
    factor_of = np.repeat(np.arange(2), per)
    lam, tau = rng.uniform(0.6, 0.9, 2 * per), rng.uniform(-0.5, 0.5, 2 * per)
    xs, labels = [], []
    for g in range(groups):
        loading, intercept = lam.copy(), tau.copy()
        if g == groups - 1:
            loading[1::per] += loading_shift
            intercept[1:per - 1] += intercept_shift
        eta = rng.multivariate_normal([0.3 * g] * 2, [[1 + 0.2 * g, 0.3], [0.3, 1]], size=n)
        x = intercept + eta[:, factor_of] * loading + rng.standard_normal((n, 2 * per)) * np.sqrt(0.5)
        xs.append((x > 0.3).astype(float) if binary else x)
        labels += [f"g{g}"] * n
    return np.vstack(xs), labels, factor_of


# --- many respondents at once (the construction-scaling benchmark) --------------------------------


def _form_table(vocab: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every written form of every word (its variants x plain/Capital/UPPER case, as `_answer` writes
    them): the forms, and per word the first form index and the number of variants."""
    forms: list[str] = []
    first = np.zeros(len(vocab), dtype=np.int64)
    n_variants = np.zeros(len(vocab), dtype=np.int64)
    for i, word in enumerate(vocab):
        first[i] = len(forms)
        spellings = (word, *_forms(word))
        n_variants[i] = len(spellings)
        for spelling in spellings:
            forms += [spelling, spelling.capitalize(), spelling.upper()]
    return forms, first, n_variants


def bulk_elicitation(n_respondents: int, factors: Mapping[str, Sequence[str]] | None = None, *,
                     items: int = 15, block: int = 20_000, strength: float = 2.5, p_mention: float = 0.4,
                     noise_rate: float = 0.0, refusal_rate: float = 0.02, empty_rate: float = 0.01,
                     failed_rate: float = 0.01, seed: int = 0) -> Iterator[pa.Table]:
    """`synthetic_elicitation`'s model and answer shapes, drawn with numpy for `block` respondents at a
    time (one config per model, one sample per item): tables of ``block * items`` rows each, a
    respondent's answers together as in a run's grid, so a million respondents fit in memory one
    block at a time. Not the same random stream."""
    factors = PLANTED if factors is None else factors
    planted_truth(factors)
    rng = np.random.default_rng(seed)
    names = list(factors)
    vocab = [w for f in names for w in factors[f]] + list(NOISE)
    factor_of = np.array([names.index(f) for f in names for _ in factors[f]])
    base = rng.uniform(-1.0, 0.5, size=len(factor_of))
    forms, first_form, n_variants = _form_table(vocab)
    refusals, trainings = np.array(_REFUSALS, dtype=object), ("aligned", "instruction-tuned", "pretrained")
    for start in range(0, n_respondents, block):
        n = min(block, n_respondents - start)
        z = rng.standard_normal((n, len(names)))
        held = rng.random((n, len(factor_of))) < 1 / (1 + np.exp(-(base + strength * z[:, factor_of])))
        held = np.hstack([held, rng.random((n, len(NOISE))) < noise_rate])
        answers: list[str | None] = []
        errors: list[str | None] = []
        for _ in range(items):
            said = held & (rng.random(held.shape, dtype=np.float32) < p_mention)
            who, word = np.nonzero(said)
            order = np.lexsort((rng.random(len(who)), who))  # a random order of each answer's words
            who, word = who[order], word[order]
            variant = np.where(rng.random(len(word)) < 0.3, rng.integers(0, 1 << 30, len(word)) % n_variants[word], 0)
            case = np.searchsorted([0.6, 0.65], rng.random(len(word)), side="right")  # Capital, UPPER, plain
            text = np.array(forms, dtype=object)[first_form[word] + 3 * variant + np.array([1, 2, 0])[case]]
            bounds = np.searchsorted(who, np.arange(n + 1))
            roll, shape = rng.random(n), rng.integers(0, 5, n)
            prose = rng.integers(0, len(_PROSE), n)
            refusal = refusals[rng.integers(0, len(_REFUSALS), n)]
            for r in range(n):
                if roll[r] < failed_rate:
                    answers.append(None)
                    errors.append("EngineError: synthetic failure")
                    continue
                errors.append(None)
                words = text[bounds[r]:bounds[r + 1]]
                if roll[r] < failed_rate + empty_rate:
                    answers.append("")
                elif roll[r] < failed_rate + empty_rate + refusal_rate or not len(words):
                    answers.append(refusal[r])
                else:
                    answers.append(_layout(words, shape[r], _PROSE[prose[r]]))
        models = pa.array([f"m{m:07d}" for m in range(start, start + n)] * items, pa.string())
        item_ids = pa.array(np.repeat([f"q{i + 1:02d}" for i in range(items)], n), pa.string())
        index = np.tile(np.arange(start, start + n), items)
        yield pa.table({
            "row_id": pc.binary_join_element_wise(models, "t0.7-p0.9", item_ids, "0", "|"),
            "model": models, "config": pa.array(["t0.7-p0.9"] * len(index), pa.string()),
            "training": pa.array(np.array(trainings, dtype=object)[index % 3], pa.string()),
            "size_b": pa.array((1 + index % 70).astype(float)),
            "family": pa.array(np.array([f"family{k}" for k in range(5)], dtype=object)[index % 5], pa.string()),
            "item_id": item_ids, "sample": pa.array(np.zeros(len(index), np.int64)),
            "response": pa.array(answers, pa.string()), "error": pa.array(errors, pa.string()),
        }).take(pa.array(np.arange(n * items).reshape(items, n).T.ravel()))  # respondent by respondent, as a grid
