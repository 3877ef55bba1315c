"""The construction stage: the study's elicitation answers in the store -> taxonomy.json.

Reads ``elicitation`` from the output root, keeps the rows the spec's filter selects (e.g. only
pretrained models, for the PLM system of Fig. 2c/d), extracts value words (in chunks, as Ray
tasks when Ray is up), lets an optional judge filter them, prunes rare words, builds the
taxonomy, measures its bootstrap stability, checks its validity (replication, measurement
invariance across training groups and families, agreement across disjoint prompt subsets; the
``validity`` block and ``quality/taxonomy_*``), and writes ``taxonomy.json`` plus the tables
``construction/words`` (every kept word occurrence with its answer's row_id) and
``construction/stability``. A rerun replaces these outputs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from valuelex.construct.build import Structure, analyse, assemble, settings_summary
from valuelex.construct.clustering import Embedder, load_embedder
from valuelex.construct.config import ConstructionSpec
from valuelex.construct.cooccurrence import Incidence, build_incidence, prune
from valuelex.construct.invariance import GROUPINGS, invariance_tables
from valuelex.construct.lexicon import Judge, judge_words
from valuelex.construct.naming import Namer, named_by_engine
from valuelex.construct.prompt_subsets import prompt_subset_check
from valuelex.construct.replication import Settings, validity_tables
from valuelex.construct.stability import bootstrap_stability
from valuelex.construct.taxonomy import Corpus, Taxonomy, ValidityInfo, taxonomy_document
from valuelex.construct.wordfilter import EmbeddingWordFilter, both
from valuelex.construct.wordjudge import engine_word_judge
from valuelex.errors import ConstructionError
from valuelex.runner import RunContext, StageResult
from valuelex.store import RunStore

if TYPE_CHECKING:
    from valuelex.spec import Study

log = logging.getLogger(__name__)


def select_rows(table: pa.Table, spec: ConstructionSpec, source: str = "elicitation") -> pa.Table:
    """The rows the spec's filter keeps (all rows without a filter)."""
    for column, allowed in spec.filter.items():
        if column not in table.column_names:
            raise ConstructionError(f"filter.{column}: {source} has no column {column!r}")
        present = sorted({v for v in table.column(column).to_pylist() if v is not None})
        table = table.filter(pc.is_in(table.column(column), value_set=pa.array(allowed, pa.string())))
        if table.num_rows == 0:
            raise ConstructionError(
                f"filter.{column}: {allowed} matches no rows of {source} (values present: {present})"
            )
    return table


@dataclass(frozen=True)
class ConstructionStage:
    """The construction stage: `namer` (words -> name) and `judge` (words -> accepted words) are
    where an LLM plugs in; without them names come from ``construction.naming`` (a study model,
    through its engine) or are deterministic, and every extracted candidate is kept. `embedder`
    defaults to the spec's sentence-transformers model, loaded once per process."""

    namer: Namer | None = None
    judge: Judge | None = None
    embedder: Embedder | None = None
    parallel: bool | None = None
    name: str = "construction"

    def uses_engines(self, study: Study) -> bool:
        spec = study.construction
        return (self.namer is None and spec.naming is not None) or (self.judge is None and spec.word_judge is not None)

    def run(self, ctx: RunContext) -> StageResult:
        return StageResult(construct(ctx.require_study(), ctx.store, namer=self.namer, judge=self.judge,
                                     embedder=self.embedder, parallel=self.parallel, use_gpu=ctx.use_gpu))


def construct(study: Study, store: RunStore, *, namer: Namer | None = None, judge: Judge | None = None,
              embedder: Embedder | None = None, parallel: bool | None = None,
              use_gpu: bool | None = None) -> dict[str, Any]:
    """Build the study's value taxonomy from its stored elicitation answers; returns a summary."""
    spec: ConstructionSpec = study.construction
    started = time.monotonic()
    table = store.current_rows("elicitation", study)
    if table is None:
        raise ConstructionError(f"{store.uri}: no elicitation results; run the elicitation stage first")
    table = select_rows(table, spec)
    n_rows = table.num_rows
    failed = pc.invert(pc.is_null(table.column("error"))) if "error" in table.column_names else None
    n_failed = int(pc.sum(failed).as_py() or 0) if failed is not None else 0
    answered = table.filter(pc.is_valid(table.column("response")))
    if failed is not None:
        answered = answered.filter(pc.is_null(answered.column("error")))
    key_columns = ["model", "config"] if spec.unit == "respondent" else ["row_id"]
    n_units = answered.select(key_columns).group_by(key_columns).aggregate([]).num_rows if answered.num_rows else 0

    occurrences, incidence = build_incidence(answered, spec.unit, spec.chunk_rows, parallel)
    if not incidence.words:
        raise ConstructionError(
            f"{store.uri}: none of the {answered.num_rows} answers ({n_failed} failed rows skipped) contains a value "
            "word: all answers are empty, refusals or stop words"
        )
    if embedder is None:
        embedder = load_embedder(spec.embedding_model)
    judge_notes: list[str] = []
    if spec.word_judge and judge is None:
        by_model, judge_notes = engine_word_judge(study.model(spec.word_judge), incidence.words, spec.seed,
                                                  use_gpu=use_gpu)
        judge = lambda words: [w for w in words if w in by_model]  # noqa: E731
    if spec.word_filter == "embedding":
        judge = both(EmbeddingWordFilter(embedder, spec.word_filter_threshold), judge)
    accepted = judge_words(incidence.words, judge)
    n_rejected = len(incidence.words) - len(accepted)
    if n_rejected:
        incidence = incidence.select_words(np.array([w in accepted for w in incidence.words]))
        occurrences = occurrences.filter(pc.is_in(occurrences.column("word"), value_set=pa.array(sorted(accepted))))
        if not accepted:
            raise ConstructionError("the judge rejected every extracted word")
    pruned, pruning = prune(incidence, spec.min_word_respondents)
    if len(pruned.words) < 3:
        raise ConstructionError(
            f"only {len(pruned.words)} of {len(incidence.words)} distinct words are used by at least "
            f"{spec.min_word_respondents} {spec.unit}s (min_word_respondents), with {incidence.n_units} {spec.unit}s "
            "that gave value words; a factor analysis needs at least 3 words: collect more respondents, lower "
            "min_word_respondents, or use unit: answer"
        )
    corpus = Corpus(
        unit=spec.unit, n_rows=n_rows, n_failed_rows=n_failed, n_answers=answered.num_rows,
        n_answers_with_words=pc.count_distinct(occurrences.column("row_id")).as_py(), n_units=n_units,
        n_units_analysed=pruned.n_units, n_word_occurrences=occurrences.num_rows,
        n_distinct_words=pruning.n_words_before + n_rejected, n_rejected_by_judge=n_rejected,
        min_word_respondents=spec.min_word_respondents, n_rare_words=pruning.n_rare,
        n_universal_words=pruning.n_universal, n_words_kept=len(pruned.words),
    )
    log.info("construction: %d answers, %d units, %d distinct words, %d kept", answered.num_rows,
             pruned.n_units, corpus.n_distinct_words, len(pruned.words))

    embedding_model = getattr(embedder, "name", None) or spec.embedding_model or "custom"
    embeddings = embedder(pruned.words) if pruned.words else np.zeros((0, 1), dtype=np.float32)
    structure = analyse(pruned, spec, embeddings)
    def build(chosen_namer: Namer | None) -> Taxonomy:
        return assemble(structure, pruned, spec, embeddings, corpus, namer=chosen_namer,
                        embedding_model=embedding_model, study=study.name, study_fingerprint=study.fingerprint(),
                        naming_notes=judge_notes)

    if spec.naming and namer is None:
        taxonomy = named_by_engine(study.model(spec.naming), build, spec.seed, use_gpu=use_gpu)
    else:
        taxonomy = build(namer)
    stability_table, summary = bootstrap_stability(pruned, structure, taxonomy, spec, embeddings)
    taxonomy = taxonomy.model_copy(update={"stability": summary})
    validity = check_validity(store, spec, pruned, answered, structure, embedder)
    taxonomy = taxonomy.model_copy(update={"validity": validity})

    in_taxonomy = {entry.word for sub in taxonomy.subdimensions() for entry in sub.words}
    words_table = occurrences.append_column(
        "in_taxonomy", pc.is_in(occurrences.column("word"), value_set=pa.array(sorted(in_taxonomy), pa.string()))
    )
    uri = store.write_taxonomy(spec.label, taxonomy_document(taxonomy), words_table, stability_table)
    summary_out = {
        "taxonomy": uri,
        **settings_summary(taxonomy),
        "stability": summary.model_dump(mode="json"),
        "validity": validity.verdict or "not computable",
        "seconds": round(time.monotonic() - started, 2),
    }
    log.info("construction: wrote %s (K=%d)", summary_out["taxonomy"], taxonomy.k.chosen)
    return summary_out


def respondent_groups(incidence: Incidence, answered: pa.Table, unit: str) -> np.ndarray:
    """The respondent (model x config) of every unit, as integer codes: answers go with their respondent."""
    if unit == "respondent":
        return np.arange(incidence.n_units)
    keys = answered.select(["row_id", "model", "config"]).to_pylist()
    of = {r["row_id"]: (r["model"], r["config"]) for r in keys}
    codes: dict[tuple[str, str], int] = {}
    return np.array([codes.setdefault(of[u[0]], len(codes)) for u in incidence.units], dtype=np.int64)


def unit_labels(incidence: Incidence, answered: pa.Table, unit: str, column: str) -> list[str | None]:
    """Each unit's value of a respondent column (``training``, ``family``): through its model (respondent
    units) or its answer's row (answer units); None where the column is missing or empty."""
    if column not in answered.column_names:
        return [None] * incidence.n_units
    key = "model" if unit == "respondent" else "row_id"
    of = dict(zip(answered.column(key).to_pylist(), answered.column(column).to_pylist(), strict=True))
    return [of.get(u[0]) for u in incidence.units]


def check_validity(store: RunStore, spec: ConstructionSpec, pruned: Incidence, answered: pa.Table,
                   structure: Structure, embedder: Embedder | None = None) -> ValidityInfo:
    """Run the replication, invariance and (with an `embedder`) prompt-subset checks on what the taxonomy
    was built from; store RUN/quality/taxonomy_*."""
    settings = Settings(k=structure.k.chosen, correlation=spec.correlation, correction=spec.tetrachoric_correction,
                        rotation=spec.rotation, method=spec.fa_method, min_loading=spec.min_loading)
    binary = pruned.binary.tocsr()
    summary, tables = validity_tables(binary, respondent_groups(pruned, answered, spec.unit),
                                      structure.words, structure.corr, structure.efa.loadings, settings,
                                      seed=spec.seed, label=spec.label or "")
    labels = {g: unit_labels(pruned, answered, spec.unit, g) for g in GROUPINGS}
    summary["invariance"], tables["taxonomy_invariance"] = invariance_tables(
        binary, labels, structure.efa.loadings, structure.words, min_loading=spec.min_loading,
        label=spec.label or "")
    summary["notices"] += [f"invariance across {r['grouping']}: {r['notice']}" for r in summary["invariance"]
                           if r["notice"] and not r["computable"]]  # a computed one shows its notes beside its fits
    if embedder is not None:
        summary["prompt_subsets"], tables["taxonomy_prompt_subsets"] = prompt_subset_check(
            answered, spec, embedder, label=spec.label or "")
        if summary["prompt_subsets"]["notice"]:
            summary["notices"].append(f"prompt subsets: {summary['prompt_subsets']['notice']}")
    for name, frame in tables.items():
        old = store.quality(name)
        if old is not None and "taxonomy" in old:
            frame = pd.concat([old[old["taxonomy"] != (spec.label or "")], frame], ignore_index=True)
        store.write_quality(name, frame)
    log.info("construction: validity %s", summary["verdict"] or "not computable")
    return ValidityInfo.model_validate(summary)
