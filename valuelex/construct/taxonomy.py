"""The output of construction: a versioned taxonomy.json, and the validated reader the evaluation uses.

A taxonomy is a value system: dimensions, each split into subdimensions, each with a ``name``, a
``definition`` and ``anchors`` (its top words) - what the evaluation stage reads - plus the
evidence behind it: every word with its loadings, how K was chosen (eigenvalues, Kaiser and
parallel-analysis thresholds), the correlation among subdimensions across units, and 2-D
positions for a diagram. ``format_version`` changes whenever a reader would misread the file.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from valuelex.construct.naming import name_key
from valuelex.errors import StudyError, invalid_fields
from valuelex.store import filesystem, layout

FORMAT_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Point = tuple[float, float]


class WordEntry(_Model):
    """One value word: where it sits and why."""

    word: str = Field(min_length=1)
    loading: float = Field(description="loading on its dimension's factor")
    loadings: list[float] = Field(description="loadings on every factor, in dimension order")
    communality: float
    n_units: int = Field(ge=0, description="units (respondents or answers) that used the word")
    efa_dimension: str = Field(description="dimension of its highest |loading| before semantic refinement")
    moved: bool = Field(description="semantic refinement moved it away from its EFA dimension")
    position: Point = Field(description="2-D PCA of the word embeddings")


class _Named(_Model):
    """What dimensions and subdimensions share: the name, definition and anchors evaluation reads."""

    id: str
    name: str = Field(min_length=1)
    definition: str = Field(min_length=1)
    anchors: list[str] = Field(min_length=1)
    name_method: Literal["llm", "fallback"] = "fallback"


class Subdimension(_Named):
    position: Point = Field(description="classical MDS of 1 - correlation among subdimensions")
    words: list[WordEntry] = Field(min_length=1)


class Dimension(_Named):
    factor: int = Field(ge=0, description="column of the EFA loadings")
    variance_explained: float
    position: Point = Field(description="mean position of its subdimensions")
    subdimensions: list[Subdimension] = Field(min_length=1)


class KSelection(_Model):
    chosen: int = Field(ge=1)
    rule: Literal["kaiser", "parallel", "fixed"]
    kaiser: int = Field(ge=0)
    kaiser_threshold: float = 1.0
    parallel: int | None = None
    parallel_statistic: Literal["p95", "mean"] | None = None
    parallel_iterations: int | None = None
    fixed: int | None = None
    eigenvalues: list[float] = Field(description="of the word correlation matrix, largest first (scree data)")
    parallel_thresholds: list[float] | None = None


class CorrelationInfo(_Model):
    method: Literal["phi", "tetrachoric"]
    n_words: int = Field(ge=1)
    n_units: int = Field(ge=1)
    smoothed: bool
    ridge: float = Field(ge=0)
    min_eigenvalue: float
    n_singular: int = Field(ge=0)


class EFAInfo(_Model):
    method: str
    rotation: str | None
    variance_explained: list[float]
    factor_correlations: list[list[float]] | None
    converged: bool
    notes: list[str] = Field(default_factory=list)
    semantic_margin: float
    refinement_passes: int
    n_moved: int
    n_below_min_loading: int
    semantic_step: str = "margin"
    dimension_factors: list[list[int]] | None = Field(
        None, description="hierarchical step: the EFA factors each dimension groups (null: dimension d is factor d)"
    )


class Corpus(_Model):
    unit: Literal["respondent", "answer"]
    n_rows: int = Field(ge=0, description="elicitation rows after the filter")
    n_failed_rows: int = Field(ge=0)
    n_answers: int = Field(ge=0)
    n_answers_with_words: int = Field(ge=0)
    n_units: int = Field(ge=0, description="units with an answer")
    n_units_analysed: int = Field(ge=0, description="units with at least one kept word")
    n_word_occurrences: int = Field(ge=0)
    n_distinct_words: int = Field(ge=0)
    n_rejected_by_judge: int = Field(ge=0)
    min_word_respondents: int
    n_rare_words: int = Field(ge=0)
    n_universal_words: int = Field(ge=0)
    n_words_kept: int = Field(ge=0)


class NamingInfo(_Model):
    method: Literal["llm", "fallback", "mixed"]
    requested_model: str | None = None
    notes: list[str] = Field(default_factory=list)


class SubdimensionCorrelation(_Model):
    score: str = "fraction of the subdimension's words the unit used"
    ids: list[str]
    matrix: list[list[float]]


class StabilitySummary(_Model):
    resamples: int = Field(ge=0)
    succeeded: int = Field(ge=0)
    failures: list[str] = Field(default_factory=list)
    mean_same_dimension: float | None = None
    mean_same_subdimension: float | None = None
    mean_dimension_ari: float | None = None


class InvarianceFit(_Model):
    model: Literal["configural", "metric", "scalar"]
    chi2: float
    df: int
    cfi: float
    rmsea: float
    delta_cfi: float | None = None
    delta_rmsea: float | None = None
    holds: bool
    converged: bool


class InvarianceInfo(_Model):
    """Measurement invariance across one grouping of the respondents (`valuelex.construct.invariance`)."""

    grouping: str
    computable: bool
    level: Literal["none", "configural", "metric", "scalar"] | None = None
    sentence: str | None = None
    groups: list[str] = Field(default_factory=list)
    n_units: dict[str, int] = Field(default_factory=dict)
    skipped: list[str] = Field(default_factory=list)
    words: list[str] = Field(default_factory=list)
    fits: list[InvarianceFit] = Field(default_factory=list)
    notice: str | None = None


class PromptSubsetsInfo(_Model):
    """The taxonomy built from disjoint prompt halves: ARI of the halves' word -> dimension assignments
    (`valuelex.construct.prompt_subsets`)."""

    n_splits: int = Field(0, ge=0)
    n_computed: int = Field(0, ge=0)
    ari_median: float | None = None
    ari_min: float | None = None
    ari_max: float | None = None
    notice: str | None = None


class ValidityInfo(_Model):
    """Does the taxonomy replicate (`valuelex.construct.replication`): verdict, factorability, split halves, CFA."""

    verdict: Literal["replicated", "weak", "not replicated"] | None = None
    reason: str | None = None
    notices: list[str] = Field(default_factory=list)
    kmo: float | None = None
    kmo_low_words: list[str] = Field(default_factory=list)
    bartlett_chi2: float | None = None
    bartlett_df: int | None = None
    bartlett_p: float | None = None
    n_respondents: int = Field(0, ge=0)
    n_splits: int = Field(0, ge=0)
    congruence_min: float | None = None
    congruence_mean: float | None = None
    agreement: float | None = None
    cfa: dict[str, float | None] | None = None
    cfa_within_cutoffs: bool | None = None
    oblique_rotation: str | None = None
    oblique_factor_correlations: list[list[float]] | None = None
    oblique_congruence: list[float] | None = None
    invariance: list[InvarianceInfo] = Field(default_factory=list)
    prompt_subsets: PromptSubsetsInfo | None = None


class Taxonomy(_Model):
    """The whole document; `load_taxonomy` validates a file against it."""

    format_version: Literal[1] = FORMAT_VERSION
    kind: Literal["valuelex.taxonomy"] = "valuelex.taxonomy"
    name: str = Field(min_length=1, description="the value system's name for the evaluation stage")
    description: str = ""
    created: str
    valuelex_version: str
    study: str | None = None
    study_fingerprint: str | None = None
    label: str | None = None
    filter: dict[str, list[str]] = Field(default_factory=dict)
    settings: dict[str, Any]
    corpus: Corpus
    k: KSelection
    correlation: CorrelationInfo
    efa: EFAInfo
    naming: NamingInfo
    embedding_model: str
    dimensions: list[Dimension] = Field(min_length=1)
    subdimension_correlation: SubdimensionCorrelation
    stability: StabilitySummary | None = None
    validity: ValidityInfo | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Taxonomy:
        grouped = self.efa.dimension_factors
        if grouped is None and len(self.dimensions) != self.k.chosen:
            raise ValueError(f"dimensions: {len(self.dimensions)} dimensions but k.chosen is {self.k.chosen}")
        if grouped is not None and (len(grouped) != len(self.dimensions)
                                    or sorted(f for g in grouped for f in g) != list(range(self.k.chosen))):
            raise ValueError(f"efa.dimension_factors: must group the {self.k.chosen} factors into the "
                             f"{len(self.dimensions)} dimensions, each factor once")
        ids = [d.id for d in self.dimensions] + [s.id for d in self.dimensions for s in d.subdimensions]
        names = [name_key(d.name) for d in self.dimensions] + [
            name_key(s.name) for d in self.dimensions for s in d.subdimensions
        ]
        if not all(names):
            raise ValueError("dimensions: every name needs a letter or digit")
        if len(set(ids)) != len(ids):
            raise ValueError("dimensions: ids are not unique")
        if len(set(names)) != len(names):
            raise ValueError("dimensions: names are not unique (compared lower-case, punctuation folded)")
        words = [w.word for d in self.dimensions for s in d.subdimensions for w in s.words]
        if len(set(words)) != len(words):
            raise ValueError("dimensions: a word belongs to more than one subdimension")
        sub_ids = [s.id for d in self.dimensions for s in d.subdimensions]
        corr = self.subdimension_correlation
        if corr.ids != sub_ids:
            raise ValueError("subdimension_correlation.ids: must list the subdimension ids in order")
        if len(corr.matrix) != len(sub_ids) or any(len(row) != len(sub_ids) for row in corr.matrix):
            raise ValueError(f"subdimension_correlation.matrix: must be {len(sub_ids)} x {len(sub_ids)}")
        return self

    def subdimensions(self) -> list[Subdimension]:
        return [s for d in self.dimensions for s in d.subdimensions]

    def word_table(self) -> pa.Table:
        """One row per word: its dimension, subdimension and loading (for reports and joins)."""
        rows: dict[str, list] = {k: [] for k in ("word", "dimension_id", "dimension", "subdimension_id",
                                                 "subdimension", "loading", "n_units", "moved")}
        for dim in self.dimensions:
            for sub in dim.subdimensions:
                for entry in sub.words:
                    for key, value in (("word", entry.word), ("dimension_id", dim.id), ("dimension", dim.name),
                                       ("subdimension_id", sub.id), ("subdimension", sub.name),
                                       ("loading", entry.loading), ("n_units", entry.n_units),
                                       ("moved", entry.moved)):
                        rows[key].append(value)
        return pa.table(rows)


def taxonomy_document(taxonomy: Taxonomy) -> dict[str, Any]:
    """The JSON-ready dict written as taxonomy.json."""
    return taxonomy.model_dump(mode="json")


def classical_mds(dissimilarity: np.ndarray) -> np.ndarray:
    """2-D Torgerson MDS positions (signs fixed: each axis' largest coordinate positive)."""
    d = np.asarray(dissimilarity, dtype=np.float64)
    n = d.shape[0]
    out = np.zeros((n, 2))
    if n < 2:
        return out
    centring = np.eye(n) - np.full((n, n), 1.0 / n)
    b = -0.5 * centring @ (d**2) @ centring
    values, vectors = np.linalg.eigh(b)
    order = np.argsort(values)[::-1][:2]
    coords = vectors[:, order] * np.sqrt(np.clip(values[order], 0, None))
    for axis in range(coords.shape[1]):
        if coords[np.argmax(np.abs(coords[:, axis])), axis] < 0:
            coords[:, axis] *= -1
    out[:, : coords.shape[1]] = coords
    return out


def _resolve(path_or_uri: str) -> str:
    text = str(path_or_uri)
    return text if text.endswith(".json") else text.rstrip("/") + "/" + layout.taxonomy_file()


def parse_taxonomy(document: Any, source: str = "taxonomy.json") -> Taxonomy:
    """Validate a taxonomy document already in memory; errors name `source` and the field."""
    if not isinstance(document, dict):
        raise StudyError(f"{source}: (top level): expected a JSON object")
    version = document.get("format_version")
    if version is None:
        raise StudyError(f"{source}: format_version: missing (this ValueLex reads version {FORMAT_VERSION})")
    if version != FORMAT_VERSION:
        raise StudyError(
            f"{source}: format_version: unsupported version {version!r} (this ValueLex reads version {FORMAT_VERSION})"
        )
    try:
        return Taxonomy.model_validate(document)
    except ValidationError as exc:
        raise invalid_fields(source, exc) from None


def load_taxonomy(path_or_uri: str) -> Taxonomy:
    """Read and validate a taxonomy: a local path or s3:// URI of the file, or of the output root holding it."""
    uri = _resolve(path_or_uri)
    try:
        fs, path = filesystem(uri)
        with fs.open_input_stream(path) as stream:
            raw = stream.read()
    except (OSError, pa.ArrowException) as exc:
        raise StudyError(f"{uri}: cannot read taxonomy: {exc}") from None
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StudyError(f"{uri}: not valid JSON: {exc}") from None
    return parse_taxonomy(document, uri)
