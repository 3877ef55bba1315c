"""Settings of the construction stage, as they appear under `construction:` in a study file.

Every knob of Algorithm 1 that changes the resulting taxonomy lives here, so a taxonomy.json can
record exactly what produced it. Defaults follow common psychometric practice: Horn's parallel
analysis for K (Kaiser's eigenvalue > 1 rule over-extracts with many binary items), varimax,
and frequency pruning of rare words before the correlation matrix.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FilterColumn = Literal["model", "config", "training", "family"]


class ConstructionSpec(BaseModel):
    """How answers become the value taxonomy (paper section 3.2, Algorithm 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # like `respondents.Strict`

    label: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
        description="names a variant (e.g. 'plm'): writes taxonomy-LABEL.json and construction-LABEL/ "
        "instead of taxonomy.json and construction/, so several systems share one output root",
    )
    filter: dict[FilterColumn, list[str]] = Field(
        default_factory=dict,
        description="keep only answers whose column is one of the listed values, e.g. "
        "{training: [pretrained]} builds the PLM value system of Fig. 2c/d",
    )
    unit: Literal["respondent", "answer"] = Field(
        "respondent",
        description="rows of the incidence matrix: a respondent (model x decoding config, as in the paper) "
        "or a single answer (co-occurrence within answers; for studies with very few respondents)",
    )
    min_observations: int = Field(10, ge=3, description="fewest units (respondents or answers) with value words")
    min_word_respondents: int = Field(
        5, ge=1, description="frequency pruning: a word is kept only if at least this many units used it"
    )
    correlation: Literal["phi", "tetrachoric"] = "phi"
    tetrachoric_correction: float = Field(
        0.5, ge=0, le=1, description="added to empty cells of a 2x2 table before the tetrachoric estimate"
    )
    smooth_singular: bool = Field(
        True, description="repair a (near-)singular correlation matrix by eigenvalue smoothing instead of failing"
    )
    k_rule: Literal["kaiser", "parallel", "fixed"] = "parallel"
    k: int | None = Field(None, ge=1, le=50, description="number of dimensions; only with k_rule: fixed")
    parallel_iterations: int = Field(20, ge=5, le=1000, description="random data sets of parallel analysis")
    parallel_threshold: Literal["p95", "mean"] = Field(
        "p95", description="a factor is kept if its eigenvalue beats the 95th percentile (or the mean) of random ones"
    )
    fa_method: Literal["minres", "ml"] = "minres"
    rotation: Literal["varimax", "oblimin", "promax", "quartimax"] | None = "varimax"
    min_loading: float = Field(
        0.0, ge=0, lt=1, description="drop words whose highest |loading| is below this (0 keeps every word)"
    )
    word_filter: Literal["none", "embedding"] = Field(
        "none",
        description="drop candidate words that do not name a value: embedding (similarity to a packaged value "
        "prototype against a non-value one, valuelex/construct/wordfilter.py) or none",
    )
    word_filter_threshold: float = Field(
        -0.03, ge=-1, le=1,
        description="word_filter embedding: keep a word whose value score exceeds this (tuned: docs/benchmarks.md)",
    )
    word_judge: str | None = Field(
        None, description="a study model that judges which extracted words name a value (an LLM judgement of "
        "extraction, valuelex/construct/wordjudge.py); null = off"
    )
    embedding_model: str | None = Field(None, description="sentence-transformers path or id; null = packaged MiniLM")
    semantic_margin: float = Field(
        0.1,
        ge=0,
        le=2,
        description="semantic_step margin: a word leaves its EFA factor for another dimension only if its "
        "embedding is closer to that dimension's centroid by more than this cosine margin (0 = plain KMeans "
        "from the EFA start)",
    )
    semantic_step: Literal["none", "margin", "ambiguous", "hierarchical"] = Field(
        "hierarchical",
        description="how meaning adjusts the EFA grouping (valuelex/construct/semantic.py): none; margin (move "
        "any word closer in meaning to another cluster by semantic_margin); ambiguous (move only words with "
        "a low or unclear primary loading); hierarchical (factors as subdimensions, grouped into dimensions "
        "by factor correlation and meaning when there are more factors than dimensions, else ambiguous); the "
        "default was chosen by recovery of planted structures (docs/benchmarks.md, bench/semantic_step.py)",
    )
    ambiguous_loading: float = Field(
        0.3, ge=0, lt=1, description="ambiguous/hierarchical: a word whose highest |loading| is below this may move"
    )
    ambiguous_gap: float = Field(
        0.05, ge=0, lt=1,
        description="ambiguous/hierarchical: a word whose two highest |loadings| differ by less than this may move",
    )
    dimensions: int | None = Field(
        None, ge=2, le=50,
        description="hierarchical: dimensions to group the K factors into; null = K // subdimensions",
    )
    subdimensions: int = Field(2, ge=1, le=10, description="KMeans clusters within each dimension")
    anchors: int = Field(5, ge=1, le=50, description="top words kept as anchors of each (sub)dimension")
    naming: str | None = Field(None, description="engine model that names clusters; null = deterministic fallback")
    bootstrap: int = Field(10, ge=0, le=1000, description="bootstrap resamples of units for the stability report")
    chunk_rows: int = Field(50_000, ge=1, description="answers per extraction / co-occurrence task")
    seed: int = Field(0, ge=0)

    @field_validator("filter")
    @classmethod
    def _filter_lists_not_empty(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for column, allowed in value.items():
            if not allowed:
                raise ValueError(f"filter.{column}: must list at least one value")
        return value

    @model_validator(mode="after")
    def _k_matches_rule(self) -> ConstructionSpec:
        if self.k_rule == "fixed" and self.k is None:
            raise ValueError("k: required when k_rule is 'fixed'")
        if self.k_rule != "fixed" and self.k is not None:
            raise ValueError(f"k: only used with k_rule 'fixed' (k_rule is {self.k_rule!r})")
        return self
