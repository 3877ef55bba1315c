"""Who used which word: the unit x word incidence matrix, frequency pruning, and word correlations.

The factor analysis of step 2 needs a correlation matrix among value words. Its raw material is
the incidence matrix: one row per unit (a respondent = model x decoding config, or one answer),
one column per word, the number of the unit's answers that used the word. It is built chunk by
chunk with a pure function (`answers_chunk`) and merged by `reduce_incidence`, so the chunks can
run as Ray tasks (`map_chunks` uses ``ray.remote`` when Ray is initialised) or in a local loop.

Correlations are computed on the binary incidence (used / not used): phi (Pearson on 0/1), or
tetrachoric (the correlation of the bivariate normal whose dichotomisation gives the observed
2x2 table), which does not shrink with unequal word frequencies the way phi does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from scipy import optimize, stats
from scipy.special import ndtr, ndtri, owens_t

from valuelex.construct.extraction import extract_table

Unit = Literal["respondent", "answer"]
UNIT_COLUMNS: dict[str, tuple[str, ...]] = {"respondent": ("model", "config"), "answer": ("row_id",)}
MAX_ABS_TETRACHORIC = 0.9999


@dataclass(frozen=True)
class Incidence:
    """Units x words counts: how many of a unit's answers used each word (CSR, int32)."""

    units: list[tuple[str, ...]]
    words: list[str]
    counts: sp.csr_matrix

    @property
    def binary(self) -> sp.csr_matrix:
        """1 where the unit used the word at least once."""
        out = self.counts.copy()
        out.data = np.ones_like(out.data, dtype=np.float64)
        return out.astype(np.float64)

    @property
    def n_units(self) -> int:
        return len(self.units)

    def units_per_word(self) -> np.ndarray:
        """How many units used each word."""
        return np.asarray((self.counts > 0).sum(axis=0)).ravel().astype(np.int64)

    def select_words(self, keep: np.ndarray | Sequence[bool]) -> Incidence:
        mask = np.asarray(keep, dtype=bool)
        return Incidence(self.units, [w for w, k in zip(self.words, mask, strict=True) if k],
                         self.counts[:, np.flatnonzero(mask)].tocsr())

    def take_units(self, index: np.ndarray) -> Incidence:
        """Rows by index, repeats allowed (a bootstrap resample)."""
        return Incidence([self.units[i] for i in index], self.words, self.counts[index].tocsr())


def incidence_chunk(occurrences: pa.Table, unit: Unit = "respondent") -> Incidence:
    """Incidence of one chunk of word occurrences (`lexicon.OCCURRENCE_SCHEMA` rows); a pure function.

    Units and words are numbered in order of first appearance (Arrow dictionary codes, combined
    per unit and factorised as integers), so no string is hashed twice."""
    columns = UNIT_COLUMNS[unit]
    if occurrences.num_rows == 0:
        return Incidence([], [], sp.csr_matrix((0, 0), dtype=np.int32))
    encoded = [pc.dictionary_encode(occurrences.column(c).combine_chunks()) for c in (*columns, "word")]
    *keys, word = encoded
    combined = np.zeros(occurrences.num_rows, dtype=np.int64)
    for key in keys:
        combined = combined * len(key.dictionary) + key.indices.to_numpy(zero_copy_only=False)
    unit_codes, first_codes = pd.factorize(combined)
    parts = []
    for key in reversed(keys):
        parts.append(first_codes % len(key.dictionary))
        first_codes = first_codes // len(key.dictionary)
    values = [key.dictionary.take(pa.array(part)).to_pylist() for key, part in zip(keys, reversed(parts), strict=True)]
    word_codes = word.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    counts = sp.coo_matrix(
        (np.ones(len(word_codes), dtype=np.int32), (unit_codes, word_codes)),
        shape=(len(values[0]), len(word.dictionary)),
    ).tocsr()
    counts.sum_duplicates()
    return Incidence(list(zip(*values, strict=True)), word.dictionary.to_pylist(), counts)


def reduce_incidence(parts: Iterable[Incidence]) -> Incidence:
    """Merge chunk incidences (a unit's answers may be spread over chunks); units and words sorted."""
    parts = [p for p in parts if p.counts.nnz]
    units = sorted({u for p in parts for u in p.units})
    words = sorted({w for p in parts for w in p.words})
    unit_pos = {u: i for i, u in enumerate(units)}
    word_pos = {w: i for i, w in enumerate(words)}
    rows, cols, vals = [], [], []
    for part in parts:
        coo = part.counts.tocoo()
        rows.append(np.array([unit_pos[u] for u in part.units], dtype=np.int64)[coo.row])
        cols.append(np.array([word_pos[w] for w in part.words], dtype=np.int64)[coo.col])
        vals.append(coo.data)
    if not parts:
        return Incidence([], [], sp.csr_matrix((0, 0), dtype=np.int32))
    counts = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(len(units), len(words))
    ).tocsr()
    counts.sum_duplicates()
    return Incidence(units, words, counts)


def answers_chunk(chunk: pa.Table, unit: Unit = "respondent") -> tuple[pa.Table, Incidence]:
    """Extraction and incidence of one chunk of elicitation rows: the unit of parallel work."""
    occurrences = extract_table(chunk)
    return occurrences, incidence_chunk(occurrences, unit)


def _ray_active() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return bool(ray.is_initialized())


def map_chunks(fn: Callable[..., Any], table: pa.Table, chunk_rows: int, parallel: bool | None = None,
               **kwargs: Any) -> list[Any]:
    """fn over row chunks of a table: as Ray tasks when Ray is initialised (or parallel=True), else locally."""
    chunks = [table.slice(start, chunk_rows) for start in range(0, table.num_rows, chunk_rows)]
    use_ray = _ray_active() if parallel is None else parallel
    if use_ray:
        import ray

        if not ray.is_initialized():
            raise RuntimeError("parallel=True needs ray.init() first")
        task = ray.remote(fn)
        return ray.get([task.remote(chunk, **kwargs) for chunk in chunks])
    return [fn(chunk, **kwargs) for chunk in chunks]


def build_incidence(table: pa.Table, unit: Unit = "respondent", chunk_rows: int = 50_000,
                    parallel: bool | None = None) -> tuple[pa.Table, Incidence]:
    """Word occurrences and the reduced incidence of a whole elicitation table."""
    results = map_chunks(answers_chunk, table, chunk_rows, parallel=parallel, unit=unit)
    if not results:
        return extract_table(table.slice(0, 0)), reduce_incidence([])
    occurrences = pa.concat_tables([occ for occ, _ in results])
    return occurrences, reduce_incidence(part for _, part in results)


@dataclass(frozen=True)
class Pruning:
    """What frequency pruning removed, for the taxonomy's record."""

    min_units: int
    n_words_before: int
    n_rare: int
    n_universal: int
    n_units_dropped: int


def prune(incidence: Incidence, min_units: int) -> tuple[Incidence, Pruning]:
    """Keep words used by at least `min_units` units and not by every unit (a constant has no correlation).

    Units left without any kept word are dropped (they carry no co-occurrence information), and
    the rule is re-applied until nothing changes.
    """
    current, n_rare, n_universal, n_dropped = incidence, 0, 0, 0
    while True:
        used = current.units_per_word()
        rare = used < min_units
        universal = used >= current.n_units
        current = current.select_words(~(rare | universal))
        n_rare, n_universal = n_rare + int(rare.sum()), n_universal + int((universal & ~rare).sum())
        has_words = np.asarray(current.counts.getnnz(axis=1)) > 0
        if has_words.all():
            break
        n_dropped += int((~has_words).sum())
        current = current.take_units(np.flatnonzero(has_words))
    return current, Pruning(min_units, len(incidence.words), n_rare, n_universal, n_dropped)


# --- correlations --------------------------------------------------------------------------------


DENSE_MIN_DENSITY = 0.01
DENSE_BLOCK_CELLS = 32_000_000  # rows go dense in blocks of at most this many cells (128 MB as float32)


def cooccurrence_counts(binary: sp.spmatrix) -> tuple[np.ndarray, np.ndarray, int]:
    """(n11 matrix of joint use, units per word, number of units) of a 0/1 incidence matrix.

    Value words are common (a third of respondents use a typical kept word), so the sparse product
    does more work than a dense BLAS one: above 1% density the rows go dense in float32 blocks and
    n11 = sum over blocks of B'B, which counts exactly below 2**24 units (~15x faster at 52,500
    respondents, and memory stays one block at any number of units).
    """
    n_units, n_words = binary.shape
    cells = n_units * n_words
    if cells and binary.nnz / cells >= DENSE_MIN_DENSITY and n_units < 2**24:
        binary = sp.csr_matrix(binary)
        step = max(1, DENSE_BLOCK_CELLS // max(n_words, 1))
        joint32 = np.zeros((n_words, n_words), dtype=np.float32)
        for start in range(0, n_units, step):
            dense = binary[start:start + step].toarray().astype(np.float32, copy=False)
            joint32 += dense.T @ dense
        joint = joint32.astype(np.float64)
    else:
        binary = sp.csc_matrix(binary, dtype=np.float64)
        joint = np.asarray((binary.T @ binary).toarray())
    return joint, np.diag(joint).copy(), n_units


def random_counts(n_units: int, used: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """`cooccurrence_counts(random_incidence(n_units, used, rng))`, the same draws, without the sparse matrix:
    each word's random users are set in a dense words x units float32 block and n11 = B B' by BLAS."""
    if n_units * len(used) > 4 * DENSE_BLOCK_CELLS or n_units >= 2**24:
        return cooccurrence_counts(random_incidence(n_units, used, rng))
    dense = np.zeros((len(used), n_units), dtype=np.float32)
    for word, k in enumerate(used):
        dense[word, rng.choice(n_units, size=int(k), replace=False)] = 1.0
    joint = (dense @ dense.T).astype(np.float64)
    return joint, np.diag(joint).copy(), n_units


def phi_from_counts(joint: np.ndarray, used: np.ndarray, n: int) -> np.ndarray:
    """Phi (Pearson on 0/1) from co-use counts; words must be neither unused nor universal."""
    p = used / n
    cov = joint / n - np.outer(p, p)
    sd = np.sqrt(p * (1 - p))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cov / np.outer(sd, sd)
    np.fill_diagonal(corr, 1.0)
    return np.clip(corr, -1.0, 1.0)


def bivariate_normal_cdf(x: np.ndarray, y: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """P(X < x, Y < y) for standard bivariate normals with correlation rho, via Owen's T (vectorised)."""
    x = np.where(x == 0, 1e-12, x)
    y = np.where(y == 0, 1e-12, y)
    s = np.sqrt(1 - rho * rho)
    beta = np.where((x * y > 0) | ((x * y == 0) & (x + y >= 0)), 0.0, 0.5)
    t_x = owens_t(x, (y - rho * x) / (x * s))
    t_y = owens_t(y, (x - rho * y) / (y * s))
    return 0.5 * ndtr(x) + 0.5 * ndtr(y) - t_x - t_y - beta


def _bivariate_normal_pdf(x: np.ndarray, y: np.ndarray, rho: np.ndarray) -> np.ndarray:
    one_minus = 1 - rho * rho
    return np.exp(-(x * x - 2 * rho * x * y + y * y) / (2 * one_minus)) / (2 * np.pi * np.sqrt(one_minus))


def _cells(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray, correction: float):
    cells = [np.where(cell == 0, correction, cell).astype(np.float64) for cell in (a, b, c, d)]
    return cells, cells[0] + cells[1] + cells[2] + cells[3]


def tetrachoric_from_tables(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray,
                            correction: float = 0.5, tol: float = 1e-10, max_iter: int = 100) -> np.ndarray:
    """Tetrachoric r of many 2x2 tables at once ([[a, b], [c, d]]: a = both used, d = neither).

    Two-step maximum likelihood (Olsson 1979): thresholds from the margins, then rho solves
    P(both above threshold; rho) = a/n, which is the likelihood maximum because the 2x2 model is
    saturated. Solved by Newton steps (the derivative is the bivariate normal density) kept inside
    a bisection bracket. Empty cells get `correction` added first (psych's ``correct=.5``), else
    the estimate runs to +-1; results are capped at +-0.9999.
    """
    (a, b, c, d), n = _cells(np.asarray(a), np.asarray(b), np.asarray(c), np.asarray(d), correction)
    p11, p1, p2 = a / n, (a + b) / n, (a + c) / n
    x, y = ndtri(p1), ndtri(p2)  # P(X' < x) = p1 with X' = -latent: the upper orthant becomes a lower one
    lo = np.full(p11.shape, -MAX_ABS_TETRACHORIC)
    hi = np.full(p11.shape, MAX_ABS_TETRACHORIC)
    with np.errstate(divide="ignore", invalid="ignore"):  # an empty cell (correction=0) starts at +-1
        start = np.cos(np.pi / (1 + np.sqrt(a * d / (b * c))))
    rho = np.clip(np.nan_to_num(start, nan=0.0), lo, hi)  # Yule-type start
    for _ in range(max_iter):
        f = bivariate_normal_cdf(x, y, rho) - p11
        if np.all(np.abs(f) < tol):
            break
        lo = np.where(f < 0, rho, lo)
        hi = np.where(f > 0, rho, hi)
        step = rho - f / np.maximum(_bivariate_normal_pdf(x, y, rho), 1e-300)
        rho = np.where((step > lo) & (step < hi), step, (lo + hi) / 2)
    return np.clip(rho, -MAX_ABS_TETRACHORIC, MAX_ABS_TETRACHORIC)


def tetrachoric_pair(a: float, b: float, c: float, d: float, correction: float = 0.5) -> float:
    """Reference estimate of one table: maximise the bivariate-normal likelihood over rho with scipy.

    Cell probabilities come from scipy's multivariate normal CDF (Genz's algorithm), independent of
    the Owen's T code used by `tetrachoric_from_tables`; thresholds are fixed at the margins.
    """
    (a, b, c, d), n = _cells(np.array([a]), np.array([b]), np.array([c]), np.array([d]), correction)
    a, b, c, d, n = float(a[0]), float(b[0]), float(c[0]), float(d[0]), float(n[0])
    h, k = stats.norm.ppf((a + b) / n), stats.norm.ppf((a + c) / n)  # P(lower latent) of "used"

    def negative_log_likelihood(rho: float) -> float:
        p11 = stats.multivariate_normal(mean=[0, 0], cov=[[1, rho], [rho, 1]]).cdf([h, k])
        p1, p2 = (a + b) / n, (a + c) / n
        probs = np.clip([p11, p1 - p11, p2 - p11, 1 - p1 - p2 + p11], 1e-300, None)
        return -float(np.dot([a, b, c, d], np.log(probs)))

    result = optimize.minimize_scalar(negative_log_likelihood, bounds=(-MAX_ABS_TETRACHORIC, MAX_ABS_TETRACHORIC),
                                      method="bounded", options={"xatol": 1e-7})
    return float(result.x)


def tetrachoric_from_counts(joint: np.ndarray, used: np.ndarray, n: int, correction: float = 0.5) -> np.ndarray:
    """Tetrachoric correlation matrix from co-use counts (upper triangle solved, mirrored)."""
    p = len(used)
    rows, cols = np.triu_indices(p, k=1)
    a = joint[rows, cols]
    b = used[rows] - a
    c = used[cols] - a
    d = n - used[rows] - used[cols] + a
    corr = np.eye(p)
    if len(rows):
        r = tetrachoric_from_tables(a, b, c, d, correction)
        corr[rows, cols] = r
        corr[cols, rows] = r
    return corr


def correlation_matrix(binary: sp.spmatrix, method: Literal["phi", "tetrachoric"] = "phi",
                       correction: float = 0.5) -> np.ndarray:
    """Word x word correlations of a 0/1 units x words matrix."""
    joint, used, n = cooccurrence_counts(binary)
    if method == "phi":
        return phi_from_counts(joint, used, n)
    return tetrachoric_from_counts(joint, used, n, correction)


def random_incidence(n_units: int, used: np.ndarray, rng: np.random.Generator) -> sp.csc_matrix:
    """A 0/1 matrix with the same shape and word frequencies, each word's users drawn at random.

    The null model of parallel analysis: same margins (so phi's frequency-dependent range is
    the same), no association between words.
    """
    indices = [rng.choice(n_units, size=int(k), replace=False) for k in used]
    indptr = np.concatenate([[0], np.cumsum([len(i) for i in indices])])
    data = np.ones(int(indptr[-1]), dtype=np.float64)
    flat = np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64)
    return sp.csc_matrix((data, flat, indptr), shape=(n_units, len(used)))
