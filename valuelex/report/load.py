"""Read everything a finished (or half-finished) run left in its output root, never failing.

Everything is read through `valuelex.store.RunStore`, so the report counts exactly the judgments and
scores that `scores.parquet` and `compare` count. Each part is read on its own; a part that is
absent is ``None`` (the report says it is missing), a part that is present but unreadable is
``None`` plus a message in `RunData.problems` (the report shows it). What is read:

- the study (study.json), the generation tables (deduplicated per row_id like every reader);
- every constructed taxonomy with its stability and words tables;
- the scores of each system's current judge, the last evaluation's summary, and the judgments
  that count per system (with the number of stored rows that do not);
- `valuelex compare` results (name -> rows, in `RunData.comparisons`);
- optional records: the judge check (the dict of `valuelex.evaluate.agreement.judge_check`) and the
  stage records (``seconds``, ``started``, ``finished``, ``versions``, ...), shown when present and
  reported as "not recorded" otherwise.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pandas as pd

from valuelex.redact import ERROR_COLUMNS, Redactor
from valuelex.store import RunStore, latest_per_row, layout

log = logging.getLogger(__name__)
T = TypeVar("T")

STAGES = ("elicitation", "completion", "construction", "evaluation", "reliability")


@dataclass
class TaxonomyRun:
    """One constructed value system: the document, its validated model, and its tables."""

    label: str | None
    path: str
    document: dict[str, Any] | None = None
    taxonomy: Any = None  # valuelex.construct.taxonomy.Taxonomy when it validates
    error: str | None = None
    stability: pd.DataFrame | None = None
    words: pd.DataFrame | None = None

    @property
    def suffix(self) -> str:
        return f"-{self.label}" if self.label else ""

    @property
    def tables_prefix(self) -> str:
        return layout.construction_tables(self.label)


@dataclass
class RunData:
    uri: str
    study: dict[str, Any] | None = None
    elicitation: pd.DataFrame | None = None
    elicitation_attempts: int = 0
    completions: pd.DataFrame | None = None
    completion_attempts: int = 0
    taxonomies: list[TaxonomyRun] = field(default_factory=list)
    scores: pd.DataFrame | None = None
    evaluation: dict[str, Any] | None = None
    judgments: dict[str, pd.DataFrame] = field(default_factory=dict)
    stale_judgments: dict[str, int] = field(default_factory=dict)
    judge_check: dict[str, Any] | None = None
    stage_records: dict[str, dict[str, Any]] = field(default_factory=dict)
    comparisons: dict[str, pd.DataFrame] = field(default_factory=dict)
    quality: dict[str, pd.DataFrame] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def study_fingerprint(self) -> str | None:
        """The same hash as `Study.fingerprint` (study.json is the spec's JSON dump)."""
        from valuelex.spec import fingerprint_of

        return fingerprint_of(self.study) if self.study else None

    def model_meta(self) -> dict[str, dict[str, Any]]:
        """model -> training, size_b, family (study.json first, then any table that carries them)."""
        meta: dict[str, dict[str, Any]] = {}
        frames = [self.elicitation, self.completions, *self.judgments.values()]
        for frame in frames:
            if frame is None or frame.empty or "model" not in frame.columns:
                continue
            cols = [c for c in ("training", "size_b", "family") if c in frame.columns]
            for row in frame[["model", *cols]].drop_duplicates("model").to_dict("records"):
                info = meta.setdefault(str(row["model"]), {})
                for col in cols:
                    value = row[col]
                    missing = value is None or (isinstance(value, float) and value != value)
                    if info.get(col) is None and not missing:
                        info[col] = value
        for model in (self.study or {}).get("models", []) or []:
            if isinstance(model, dict) and model.get("name"):
                info = meta.setdefault(str(model["name"]), {})
                for col in ("training", "size_b", "family", "prompting", "engine", "source"):
                    if model.get(col) is not None:
                        info[col] = model[col]
        if self.scores is not None and "model" in self.scores.columns:
            for model in self.scores["model"].dropna().unique():
                meta.setdefault(str(model), {})
        return meta


def _part(data: RunData, what: str, read: Callable[[], T]) -> T | None:
    """Read one part of the run; a part that cannot be read is None plus a problem, never an exception."""
    try:
        return read()
    except Exception as exc:
        data.problems.append(f"{what}: cannot be read: {exc}")
        return None


def _generation(store: RunStore, stage: str, data: RunData) -> tuple[pd.DataFrame | None, int]:
    """(rows of the current grid deduplicated per row_id as pandas, their stored attempts); (None, 0)
    when nothing is stored."""
    raw = _part(data, f"table {layout.generation_table(stage)}", store.generation(stage).read_raw)
    if raw is None:
        return None, 0
    samples = (store.evaluation_summary() or {}).get("samples") if stage == "completion" else None
    raw = store.current(raw, stage, store.study(), samples if isinstance(samples, int) else None)
    return latest_per_row(raw).to_pandas(), raw.num_rows


def _tables(store: RunStore, name: str, data: RunData) -> pd.DataFrame | None:
    raw = _part(data, f"table {name}", store.table(name).read_raw)
    return None if raw is None else raw.to_pandas()


def _taxonomies(store: RunStore, data: RunData) -> list[TaxonomyRun]:
    from valuelex.construct.taxonomy import parse_taxonomy

    runs = []
    for entry in store.taxonomy_files():
        run = TaxonomyRun(label=entry.label, path=entry.path)
        run.document = _part(data, entry.path, lambda path=entry.path: _object(store.read_json(path), path))
        if run.document is None:
            run.error = "the file could not be read"
        else:
            try:
                run.taxonomy = parse_taxonomy(run.document, f"{store.uri}/{entry.path}")
            except Exception as exc:
                run.error = str(exc)
        run.stability = _tables(store, posixpath.join(entry.tables, "stability"), data)
        run.words = _tables(store, posixpath.join(entry.tables, "words"), data)
        runs.append(run)
    return runs


def _object(document: Any, relpath: str) -> dict[str, Any] | None:
    if document is not None and not isinstance(document, dict):
        raise ValueError(f"{relpath}: expected a JSON object")
    return document


def _judgments(store: RunStore, data: RunData) -> None:
    """The judgments that count per system (`RunStore.judgments`'s rule), and how many stored rows do not."""
    for system in store.judged_systems():
        if not store.judgments_table(system).shard_paths():
            continue
        frame = _part(data, layout.judgments_table(system), lambda system=system: store.judgments(system))
        if frame is None:
            continue
        data.judgments[system] = frame
        data.stale_judgments[system] = store.stale_judgments(system, frame)


def load_run(run_uri: str) -> RunData:
    """Everything readable under `run_uri` (local path or s3://); problems are collected, not raised."""
    data = RunData(uri=run_uri)
    try:
        store = RunStore(run_uri)
        store.root.list_dir()
    except Exception as exc:
        data.problems.append(f"{run_uri}: the output root cannot be opened: {exc}")
        return data
    data.study = _part(data, layout.STUDY, lambda: _object(store.study_document(), layout.STUDY))
    data.elicitation, data.elicitation_attempts = _generation(store, "elicitation", data)
    data.completions, data.completion_attempts = _generation(store, "completion", data)
    data.taxonomies = _part(data, "taxonomy files", lambda: _taxonomies(store, data)) or []
    data.scores = _part(data, layout.SCORES, store.current_scores)
    data.evaluation = _part(data, layout.EVALUATION, lambda: _object(store.evaluation_summary(), layout.EVALUATION))
    _part(data, "judgments", lambda: _judgments(store, data))
    data.comparisons = _part(data, layout.COMPARISONS, store.comparisons) or {}
    for table in layout.QUALITY_TABLES:
        frame = _part(data, layout.quality_file(table), lambda table=table: store.quality(table))
        if frame is not None:
            data.quality[table] = frame
    data.judge_check = _part(data, layout.JUDGE_CHECK, lambda: _object(store.judge_check(), layout.JUDGE_CHECK))
    for stage in STAGES:
        record = _part(data, layout.stage_record(stage),
                       lambda stage=stage: _object(store.stage_record(stage), layout.stage_record(stage)))
        if record is not None:
            data.stage_records[stage] = record
    _redact(data, Redactor.from_spec(data.study))
    return data


def _redact(data: RunData, redact: Redactor) -> None:
    """Error text as the report shows it: a run written before redaction (or by hand) may hold a key."""
    for frame in (data.elicitation, data.completions, *data.judgments.values()):
        for column in ERROR_COLUMNS:
            if frame is not None and column in frame.columns:
                frame[column] = frame[column].map(lambda v: redact(v) if isinstance(v, str) else v)
    data.problems = [str(redact(p)) for p in data.problems]
    data.stage_records = {k: redact.document(v) for k, v in data.stage_records.items()}
