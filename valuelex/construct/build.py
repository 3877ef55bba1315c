"""Step 2 of Algorithm 1 on a pruned incidence matrix: correlations -> K -> EFA -> semantic clusters -> names.

`analyse` is the statistical and semantic part (no names), reused by the bootstrap; `assemble`
turns its result into the `Taxonomy` document with names, anchors, scores and positions.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from valuelex._version import __version__
from valuelex.construct.clustering import pca_2d, split_subdimensions
from valuelex.construct.config import ConstructionSpec
from valuelex.construct.cooccurrence import Incidence, correlation_matrix
from valuelex.construct.efa import (
    EFAResult,
    KChoice,
    Smoothing,
    choose_k,
    eigenvalues,
    ledermann_bound,
    parallel_thresholds,
    run_efa,
    smooth_correlation,
)
from valuelex.construct.naming import ClusterNamer, Namer, central_order, definition
from valuelex.construct.semantic import factor_distance, factor_scores, group_factors, semantic_step
from valuelex.construct.taxonomy import (
    Corpus,
    CorrelationInfo,
    Dimension,
    EFAInfo,
    KSelection,
    NamingInfo,
    Subdimension,
    SubdimensionCorrelation,
    Taxonomy,
    WordEntry,
    classical_mds,
)
from valuelex.errors import ConstructionError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Structure:
    """Everything `analyse` found; word indices refer to `words`."""

    words: list[str]
    corr: np.ndarray
    smoothing: Smoothing
    k: KChoice
    efa: EFAResult
    efa_labels: np.ndarray  # factor of the highest |loading|, per word
    labels: np.ndarray  # dimension per word after refinement; -1 = dropped by min_loading
    passes: int
    subdimensions: list[list[list[int]]]  # per dimension, per subdimension: word indices
    dimension_factors: list[list[int]] | None = None  # per dimension: its EFA factors (None: dimension d = factor d)

    def factors_of(self, dim: int) -> list[int]:
        """The EFA factor columns of a dimension (one, unless the semantic step is hierarchical)."""
        return [dim] if self.dimension_factors is None else self.dimension_factors[dim]

    def column(self, word: int, dim: int) -> int:
        """The loading column that stands for `dim` for this word: its strongest factor of the dimension."""
        factors = self.factors_of(dim)
        return factors[int(np.argmax(np.abs(self.efa.loadings[word, factors])))]

    def assignment(self) -> dict[str, tuple[int, int]]:
        """word -> (dimension, global subdimension index)."""
        out: dict[str, tuple[int, int]] = {}
        flat = 0
        for dim, subs in enumerate(self.subdimensions):
            for sub in subs:
                for index in sub:
                    out[self.words[index]] = (dim, flat)
                flat += 1
        return out


def analyse(incidence: Incidence, spec: ConstructionSpec, embeddings: np.ndarray,
            k_override: int | None = None, with_parallel: bool = True) -> Structure:
    """Correlations, K, EFA and semantic clustering of a pruned incidence; raises ConstructionError."""
    n, p = incidence.n_units, len(incidence.words)
    if p < 3:
        raise ConstructionError(
            f"only {p} words are used by at least {spec.min_word_respondents} {spec.unit}s (min_word_respondents); "
            "a factor analysis needs at least 3: collect more respondents or lower min_word_respondents"
        )
    if n < spec.min_observations:
        raise ConstructionError(
            f"only {n} {spec.unit}s have value words (min_observations: {spec.min_observations}); collect more "
            "respondents, lower min_observations, or use unit: answer"
        )
    corr, smoothing = smooth_correlation(
        correlation_matrix(incidence.binary, spec.correlation, spec.tetrachoric_correction), spec.smooth_singular
    )
    if smoothing.smoothed:
        log.warning("correlation matrix of %d words is singular (%d zero eigenvalues): smoothed with ridge %.4g",
                    p, smoothing.n_singular, smoothing.ridge)
    eigs = eigenvalues(corr)
    thresholds = None
    if k_override is None and with_parallel:
        thresholds = parallel_thresholds(incidence.units_per_word(), n, spec.correlation, spec.parallel_iterations,
                                         spec.parallel_threshold, spec.seed, spec.tetrachoric_correction)
    if k_override is not None:
        k_choice = choose_k(eigs, "fixed", k_override, thresholds)
    else:
        k_choice = choose_k(eigs, spec.k_rule, spec.k, thresholds)
    k = k_choice.chosen
    needed = k * spec.subdimensions
    if p < needed or k > ledermann_bound(p):
        raise ConstructionError(
            f"K={k} ({k_choice.rule}) needs at least {max(needed, 2 * k + 1)} words for {spec.subdimensions} "
            f"subdimensions each, but only {p} words are kept; choose a smaller k (k_rule: fixed) or lower "
            "min_word_respondents"
        )
    efa = run_efa(corr, k, spec.rotation, spec.fa_method)
    efa_labels = np.argmax(np.abs(efa.loadings), axis=1)
    kept = np.max(np.abs(efa.loadings), axis=1) >= spec.min_loading
    labels = np.full(p, -1, dtype=np.int64)
    kept_index = np.flatnonzero(kept)
    binary = incidence.binary[:, kept_index]
    step = semantic_step(spec.semantic_step, embeddings[kept_index], efa.loadings[kept_index], binary,
                         margin=spec.semantic_margin, min_primary=spec.ambiguous_loading, min_gap=spec.ambiguous_gap,
                         dimensions=spec.dimensions, subdimensions=spec.subdimensions)
    labels[kept_index] = step.labels
    factor_of = np.full(p, -1, dtype=np.int64)
    factor_of[kept_index] = step.factor_labels
    hierarchical = any(len(f) > 1 for f in step.dimension_factors)
    distance = (factor_distance(factor_scores(binary, step.factor_labels, k), embeddings[kept_index],
                                step.factor_labels, k) if hierarchical else None)
    subdimensions: list[list[list[int]]] = []
    for dim, factors in enumerate(step.dimension_factors):
        members = np.flatnonzero(labels == dim)
        if len(members) < spec.subdimensions:
            raise ConstructionError(
                f"factor {dim + 1} of K={k} ({k_choice.rule}) holds {len(members)} word(s), fewer than the "
                f"{spec.subdimensions} subdimensions asked; choose a smaller k (k_rule: fixed), lower min_loading, "
                "or keep more words"
            )
        if distance is not None and len(factors) >= spec.subdimensions:
            # bass-ackwards: the dimension's factors are its subdimensions (grouped when there are more)
            sub_of = group_factors(distance[np.ix_(factors, factors)], spec.subdimensions)
            parts = [[int(i) for i in members if sub_of[factors.index(int(factor_of[i]))] == g]
                     for g in range(spec.subdimensions)]
            if all(parts):
                subdimensions.append(sorted((sorted(g, key=lambda i: incidence.words[i]) for g in parts),
                                            key=lambda g: (-len(g), incidence.words[g[0]])))
                continue
        groups = split_subdimensions(embeddings[members], [incidence.words[i] for i in members],
                                     spec.subdimensions, seed=spec.seed)
        subdimensions.append([[int(members[i]) for i in group] for group in groups])
    return Structure(list(incidence.words), corr, smoothing, k_choice, efa, efa_labels, labels, step.passes,
                     subdimensions, step.dimension_factors if hierarchical else None)


def _round(x: float, digits: int = 6) -> float:
    return float(round(float(x), digits))


def _corr_columns(scores: np.ndarray) -> tuple[np.ndarray, list[str]]:
    notes = []
    sd = scores.std(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.corrcoef(scores, rowvar=False) if scores.shape[1] > 1 else np.ones((1, 1))
    corr = np.atleast_2d(corr)
    if np.any(sd == 0):
        notes.append("a subdimension score is constant across units; its correlations are set to 0")
    corr = np.nan_to_num(corr, nan=0.0)
    np.fill_diagonal(corr, 1.0)
    return corr, notes


def assemble(structure: Structure, incidence: Incidence, spec: ConstructionSpec, embeddings: np.ndarray,
             corpus: Corpus, *, namer: Namer | None = None, embedding_model: str, study: str | None = None,
             study_fingerprint: str | None = None, naming_notes: Sequence[str] = ()) -> Taxonomy:
    """Name the clusters and write the structure down as a `Taxonomy`."""
    words, loadings = structure.words, structure.efa.loadings
    used = incidence.units_per_word()
    kept_index = np.flatnonzero(structure.labels >= 0)
    positions = np.zeros((len(words), 2))
    positions[kept_index] = pca_2d(embeddings[kept_index])
    cluster_namer = ClusterNamer(namer)

    def ranked(indices: Sequence[int], dim: int) -> list[int]:
        return sorted(indices, key=lambda i: (-loadings[i, structure.column(i, dim)], words[i]))

    # subdimension scores: the fraction of a subdimension's words each unit used
    binary = incidence.binary
    flat_subs = [sub for subs in structure.subdimensions for sub in subs]
    scores = np.column_stack([np.asarray(binary[:, sub].mean(axis=1)).ravel() for sub in flat_subs])
    sub_corr, corr_notes = _corr_columns(scores)
    sub_positions = classical_mds(1.0 - sub_corr)

    dimensions: list[Dimension] = []
    methods: set[str] = set()
    flat = 0
    for dim, subs in enumerate(structure.subdimensions):
        members = [i for sub in subs for i in sub]
        order = ranked(members, dim)
        dim_naming = cluster_namer.name([words[i] for i in order],
                                        central_order([words[i] for i in members], embeddings[members]))
        methods.add(dim_naming.method)
        sub_models: list[Subdimension] = []
        for sub in subs:
            sub_order = ranked(sub, dim)
            naming = cluster_namer.name([words[i] for i in sub_order],
                                        central_order([words[i] for i in sub], embeddings[sub]))
            methods.add(naming.method)
            anchors = [words[i] for i in sub_order[: spec.anchors]]
            entries = [
                WordEntry(
                    word=words[i], loading=_round(loadings[i, structure.column(i, dim)]),
                    loadings=[_round(v) for v in loadings[i]],
                    communality=_round(structure.efa.communalities[i]), n_units=int(used[i]),
                    efa_dimension=f"D{int(structure.efa_labels[i]) + 1}",
                    moved=int(structure.efa_labels[i]) not in structure.factors_of(dim),
                    position=(_round(positions[i, 0]), _round(positions[i, 1])),
                )
                for i in sub_order
            ]
            sub_models.append(Subdimension(
                id=f"D{dim + 1}.S{len(sub_models) + 1}", name=naming.name, definition=definition(anchors),
                anchors=anchors, name_method=naming.method,
                position=(_round(sub_positions[flat, 0]), _round(sub_positions[flat, 1])), words=entries,
            ))
            flat += 1
        anchors = [words[i] for i in order[: spec.anchors]]
        centre = np.mean([s.position for s in sub_models], axis=0)
        dimensions.append(Dimension(
            id=f"D{dim + 1}", name=dim_naming.name, definition=definition(anchors), anchors=anchors,
            name_method=dim_naming.method, factor=structure.factors_of(dim)[0],
            variance_explained=_round(sum(structure.efa.variance_explained[f] for f in structure.factors_of(dim))),
            position=(_round(centre[0]), _round(centre[1])), subdimensions=sub_models,
        ))

    k = structure.k
    notes = list(naming_notes) + [f"naming call failed: {f}" for f in cluster_namer.failures]
    system_name = "-".join(part for part in (study or "constructed", spec.label) if part)
    return Taxonomy(
        name=system_name,
        description=f"Value system constructed by ValueLex from {incidence.n_units} {spec.unit}s and "
        f"{len(kept_index)} value words (K={structure.k.chosen} by {structure.k.rule}).",
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        valuelex_version=__version__,
        study=study, study_fingerprint=study_fingerprint, label=spec.label,
        filter={key: list(values) for key, values in spec.filter.items()},
        settings=spec.model_dump(mode="json"), corpus=corpus,
        k=KSelection(
            chosen=k.chosen, rule=k.rule, kaiser=k.kaiser, parallel=k.parallel,
            parallel_statistic=spec.parallel_threshold if k.parallel_thresholds is not None else None,
            parallel_iterations=spec.parallel_iterations if k.parallel_thresholds is not None else None,
            fixed=k.fixed, eigenvalues=[_round(v) for v in k.eigenvalues],
            parallel_thresholds=None if k.parallel_thresholds is None else [_round(v) for v in k.parallel_thresholds],
        ),
        correlation=CorrelationInfo(
            method=spec.correlation, n_words=len(words), n_units=incidence.n_units,
            smoothed=structure.smoothing.smoothed, ridge=_round(structure.smoothing.ridge, 9),
            min_eigenvalue=_round(structure.smoothing.min_eigenvalue, 9), n_singular=structure.smoothing.n_singular,
        ),
        efa=EFAInfo(
            method=structure.efa.method, rotation=structure.efa.rotation,
            variance_explained=[_round(v) for v in structure.efa.variance_explained],
            factor_correlations=None if structure.efa.factor_correlations is None
            else [[_round(v) for v in row] for row in structure.efa.factor_correlations],
            converged=structure.efa.converged, notes=list(structure.efa.notes) + corr_notes,
            semantic_margin=spec.semantic_margin, refinement_passes=structure.passes,
            semantic_step=spec.semantic_step, dimension_factors=structure.dimension_factors,
            n_moved=sum(int(structure.efa_labels[i]) not in structure.factors_of(int(structure.labels[i]))
                        for i in np.flatnonzero(structure.labels >= 0)),
            n_below_min_loading=int(np.sum(structure.labels < 0)),
        ),
        naming=NamingInfo(method="mixed" if len(methods) > 1 else methods.pop(), requested_model=spec.naming,
                          notes=notes),
        embedding_model=embedding_model,
        dimensions=dimensions,
        subdimension_correlation=SubdimensionCorrelation(
            ids=[s.id for d in dimensions for s in d.subdimensions],
            matrix=[[_round(v) for v in row] for row in sub_corr],
        ),
    )


def settings_summary(taxonomy: Taxonomy) -> dict[str, Any]:
    """A short dict for logs and the stage's return value."""
    return {
        "k": taxonomy.k.chosen, "k_rule": taxonomy.k.rule, "kaiser_k": taxonomy.k.kaiser,
        "parallel_k": taxonomy.k.parallel, "n_units": taxonomy.correlation.n_units,
        "n_words": sum(len(s.words) for s in taxonomy.subdimensions()),
        "dimensions": {d.name: [s.name for s in d.subdimensions] for d in taxonomy.dimensions},
    }
