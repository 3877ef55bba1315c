"""One run's output root and the one rule for which stored rows and judgments count.

    run = RunStore("runs/local")        # or s3://bucket/prefix
    run.study()                         # the spec the run used (study.json)
    run.table("elicitation").read()     # generation rows, one per row_id
    run.judgments("valuelex")           # the judgments that count, as pandas
    run.scores()                        # scores.parquet

Every stage, `compare` and the report read through this class; paths are spelled in
`valuelex.store.layout` only.

Which judgments count (`judgments`)
-----------------------------------
A judgments table ``judgments/<system>`` may hold rows of several judges, of several settings of a
judge and of several versions of the value system (each row's ``judge_key`` is judge + settings +
the system's fingerprint). For a system and a judge, the rows that count are:

1. those whose ``judge_key`` is the *current key*: the key the caller names (the evaluation stage
   knows its judge's key); else the key ``scores.parquet`` records for (system, judge) -- so what
   is read later is exactly what was scored; else (judged, never scored: a killed run) the key of
   that judge with the most rows;
2. of completions in the study's current grid: their row_id is one of the grid's (its models,
   decoding configs and stems, ``sample`` < M, where M is the caller's ``max_samples``, else the
   ``samples`` of the last evaluation (``evaluation.json``, adaptive M included), else the study's
   ``samples``); rows of an earlier version of the study (another seed, other config values or
   model source) have other row_ids and do not count;
3. one per completion: a valid judgment wins over an invalid one, else the latest stored row;
   ordered by row_id, so that scores (their bootstrap CIs) do not depend on the shards' names.

Generation rows are served the same way (`current`): only rows of the current grid, and with
the current study's model metadata (``training``, ``size_b``, ``family``), which is not part of a
row's identity, so correcting a model's family relabels its rows instead of regenerating them.

The judge, when not named: the last evaluation's judge if it judged the system; else the only
judge whose key is in ``scores.parquet`` or in the table; several and none named is an error.
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from valuelex.errors import StudyError
from valuelex.store import layout
from valuelex.store.shards import OutputRoot, ShardTable, latest_per_row

if TYPE_CHECKING:
    from valuelex.evaluate.systems import ValueSystem
    from valuelex.spec import Study

WORD_SHARD_ROWS = 1_000_000
COMPLETION_COLUMNS = ("row_id", "model", "training", "size_b", "family", "config", "item_id", "sample",
                      "prompt", "response", "error", "reasoning", "paraphrase")


@dataclass(frozen=True)
class TaxonomyFile:
    """A constructed value system stored in the run: ``taxonomy[-<label>].json`` and its tables' folder."""

    label: str | None
    path: str

    @property
    def tables(self) -> str:
        return layout.construction_tables(self.label)


class RunStore:
    """A run's output root (a local path or s3://): its documents, tables, judgments and scores."""

    def __init__(self, uri: str):
        self.root = OutputRoot(uri)
        self.uri = self.root.uri
        self._grid_ids: dict[tuple[str, str, int], set[str]] = {}

    def exists(self) -> bool:
        return self.root.exists("")

    # --- the spec -------------------------------------------------------------------------------

    def study_document(self) -> dict[str, Any] | None:
        return self.root.read_json(layout.STUDY)

    def study(self) -> Study | None:
        """The spec the run used, validated; None when absent or written by an incompatible version."""
        from pydantic import ValidationError

        from valuelex.spec import Study

        document = self.study_document()
        if document is None:
            return None
        try:
            return Study.model_validate(document)
        except ValidationError:
            return None

    def write_study(self, study: Study) -> None:
        """Publish study.json, and store.json first when the root has none (a new run)."""
        if self.root.read_json(layout.STORE) is None:
            self.root.write_json(layout.STORE, {"format": layout.STORE_FORMAT})
        self.root.write_json(layout.STUDY, study.model_dump(mode="json"))

    # --- the store's format -----------------------------------------------------------------------

    def store_format(self) -> int | None:
        """The format of the stored rows: store.json's; 1 for a run written before store.json
        existed (a study.json without it); None for a root with no run in it."""
        document = self.root.read_json(layout.STORE)
        if document is not None:
            value = document.get("format")
            return value if isinstance(value, int) and not isinstance(value, bool) else 0
        return 1 if self.root.exists(layout.STUDY) else None

    def check_format(self) -> None:
        """Refuse a run whose rows this version would not recognise (their row_ids differ)."""
        found = self.store_format()
        if found is None or found == layout.STORE_FORMAT:
            return
        if 0 < found < layout.STORE_FORMAT:
            raise StudyError(
                f"{self.uri}: written by an earlier ValueLex (store format {found}; this version's row ids also "
                f"hash the decoding config's name and the study seed, format {layout.STORE_FORMAT}): convert "
                f"it with `valuelex migrate {self.uri}`, or write to a new --out")
        raise StudyError(f"{self.uri}/{layout.STORE}: format: {found!r} is not a store format this version reads "
                         f"({layout.STORE_FORMAT}); use the ValueLex that wrote it, or a new --out")

    def write_format(self) -> None:
        self.root.write_json(layout.STORE, {"format": layout.STORE_FORMAT})

    # --- tables and files ---------------------------------------------------------------------------

    def table(self, name: str) -> ShardTable:
        return self.root.table(name)

    def generation(self, stage: str) -> ShardTable:
        """The stored rows of a generation stage (``elicitation`` or ``completion``), of every grid."""
        return self.root.table(layout.generation_table(stage))

    def grid_ids(self, stage: str, study: Study, samples: int | None = None) -> set[str]:
        """The row_ids of a stage's current grid (cached per study and M)."""
        from valuelex import grid

        key = (stage, study.fingerprint(), samples or study.samples)
        if key not in self._grid_ids:
            self._grid_ids[key] = grid.row_ids(study, stage, samples)  # type: ignore[arg-type]
        return self._grid_ids[key]

    def current(self, table: pa.Table, stage: str, study: Study | None, samples: int | None = None) -> pa.Table:
        """The rows of `table` (a generation table or judgments of its rows) that belong to the study's
        current grid, with the study's model metadata; `table` unchanged without a study."""
        if study is None or table.num_rows == 0 or "row_id" not in table.column_names:
            return table
        ids = pa.array(sorted(self.grid_ids(stage, study, samples)), pa.string())
        table = table.filter(pc.is_in(table.column("row_id"), value_set=ids))
        if "model" not in table.column_names:
            return table
        models = table.column("model").to_pylist()
        for name, value_of in _METADATA.items():
            if name in table.column_names:
                by_model = {m.name: value_of(m) for m in study.models}
                values = pa.array([by_model.get(m) for m in models], table.schema.field(name).type)
                table = table.set_column(table.schema.get_field_index(name), name, values)
        return table

    def current_rows(self, stage: str, study: Study | None, samples: int | None = None) -> pa.Table | None:
        """A generation stage's rows that count (one per row_id, current grid, current metadata)."""
        table = self.generation(stage).read()
        return None if table is None else self.current(table, stage, study, samples)

    def replace_table(self, name: str, table: pa.Table) -> None:
        """Make `table` the only content of a shard table: new shards first, then the old ones removed."""
        shards = self.root.table(name)
        old = shards.shard_paths()
        for start in range(0, max(table.num_rows, 1), WORD_SHARD_ROWS):
            shards.write(table.slice(start, WORD_SHARD_ROWS))
        for path in old:
            self.root.fs.delete_file(path)

    def write_json(self, relpath: str, document: dict[str, Any]) -> None:
        self.root.write_json(relpath, document)

    def read_json(self, relpath: str) -> dict[str, Any] | None:
        return self.root.read_json(relpath)

    def stage_record(self, stage: str) -> dict[str, Any] | None:
        return self.root.read_json(layout.stage_record(stage))

    def write_stage_record(self, stage: str, record: dict[str, Any]) -> None:
        self.root.write_json(layout.stage_record(stage), record)

    def log_file(self, stage: str) -> tuple[str, Callable[[], None]]:
        """A local file to append a stage's log to, and what publishes it: ``logs/<stage>.log`` itself
        for a local run (readable while it grows); for s3:// a temporary file whose text `publish`
        appends to the stored log."""
        relpath = layout.stage_log(stage)
        if isinstance(self.root.fs, pafs.LocalFileSystem):
            path = os.path.join(self.root.path, relpath)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            return path, lambda: None
        handle, path = tempfile.mkstemp(prefix=f"valuelex-{stage}-", suffix=".log")
        os.close(handle)

        def publish() -> None:
            with open(path, "rb") as new:
                self.root.publish_bytes(relpath, (self.root.read_bytes(relpath) or b"") + new.read())
            os.unlink(path)

        return path, publish

    def batch_journal(self, table: str, model: str) -> BatchJournal:
        """Where the Batch API jobs of one model's requests for `table` are journaled (`layout.batch_journal`)."""
        return BatchJournal(self.root, layout.batch_journal(table, model))

    def evaluation_summary(self) -> dict[str, Any] | None:
        return self.root.read_json(layout.EVALUATION)

    def write_evaluation_summary(self, summary: dict[str, Any]) -> None:
        self.root.write_json(layout.EVALUATION, summary)

    def judge_check(self) -> dict[str, Any] | None:
        return self.root.read_json(layout.JUDGE_CHECK)

    def quality_check(self, check: str) -> dict[str, Any] | None:
        """A stored quality check's document (e.g. ``position_check``), or None."""
        return self.root.read_json(layout.quality_check(check))

    def write_quality_check(self, check: str, document: dict[str, Any]) -> None:
        self.root.write_json(layout.quality_check(check), document)

    # --- completions to judge ---------------------------------------------------------------------

    def completions(self, study: Study | None = None, *, max_samples: int | None = None) -> pd.DataFrame:
        """Successful completions of the study's grid (all stored ones without a study), one per row_id.

        Failed generations (``error`` set) are left out: the generation stage retries them.
        """
        from valuelex.evaluate.judgments import stem_text

        table = self.current_rows("completion", study, max_samples)
        if table is None:
            return pd.DataFrame({name: pd.Series(dtype=object) for name in (*COMPLETION_COLUMNS, "stem")})
        frame = table.select([c for c in COMPLETION_COLUMNS if c in table.column_names]).to_pandas()
        for name in COMPLETION_COLUMNS:
            if name not in frame.columns:
                frame[name] = None
        keep = frame["error"].isna() & _below(frame, max_samples)
        frame = frame[keep].copy()
        frame["paraphrase"] = frame["paraphrase"].fillna(0).astype("int64")  # rows stored before paraphrases: 0
        frame["stem"] = [stem_text(i, p, k) for i, p, k in
                         zip(frame["item_id"], frame["prompt"], frame["paraphrase"], strict=True)]
        return frame.reset_index(drop=True)

    # --- judgments --------------------------------------------------------------------------------

    def judgments_table(self, system: str | ValueSystem) -> ShardTable:
        return self.root.table(layout.judgments_table(_name(system)))

    def judged_systems(self) -> list[str]:
        """Systems with stored judgments or scores."""
        found = {i.base_name for i in self.root.list_dir(layout.JUDGMENTS) if i.type == pafs.FileType.Directory}
        scores = self.scores()
        if scores is not None and "system" in scores.columns:
            found |= {str(s) for s in scores["system"].dropna().unique()}
        return sorted(found)

    def judge_keys(self, system: str | ValueSystem) -> pd.DataFrame:
        """(judge, judge_key, rows) of every judge key stored for a system."""
        raw = self.judgments_table(system).read_raw(columns=["judge", "judge_key"])
        if raw is None or raw.num_rows == 0:
            return pd.DataFrame({"judge": [], "judge_key": [], "rows": []})
        frame = raw.to_pandas().astype(str)
        return frame.value_counts(["judge", "judge_key"], sort=False).rename("rows").reset_index()

    def default_judge(self, system: str | ValueSystem) -> str:
        """The judge read when none is named (see the module docstring)."""
        name = _name(system)
        stored = set(self.judge_keys(system)["judge"])
        scores = self.scores()
        scored = set()
        if scores is not None and {"system", "judge"} <= set(scores.columns):
            scored = {str(j) for j in scores.loc[scores["system"] == name, "judge"].dropna().unique()}
        last = (self.evaluation_summary() or {}).get("judge")
        if last and last in scored | stored:
            return str(last)
        for candidates in (scored, stored):
            if len(candidates) == 1:
                return next(iter(candidates))
            if len(candidates) > 1:
                raise StudyError(f"{self.uri}: system {name!r} was judged by several judges "
                                 f"({', '.join(sorted(candidates))}): choose one with --judge")
        raise StudyError(f"{self.uri}: system {name!r} was not judged in this run "
                         f"(judged systems: {', '.join(self.judged_systems()) or 'none'})")

    def current_key(self, system: str | ValueSystem, judge: str | None = None) -> tuple[str, str]:
        """(judge, judge_key) of the judgments that count for a system (rule 1 of the module docstring)."""
        name = _name(system)
        judge = judge or self.default_judge(system)
        scores = self.scores()
        if scores is not None and {"system", "judge", "judge_key"} <= set(scores.columns):
            mine = scores.loc[(scores["system"] == name) & (scores["judge"] == judge), "judge_key"].dropna()
            if len(mine) and str(mine.iloc[0]):
                return judge, str(mine.iloc[0])
        keys = self.judge_keys(system)
        keys = keys[keys["judge"] == judge]
        if keys.empty:
            raise StudyError(f"{self.uri}: judge {judge!r} did not judge system {name!r}")
        return judge, str(keys.sort_values(["rows", "judge_key"], ascending=[False, True])["judge_key"].iloc[0])

    def judgments(
        self, system: str | ValueSystem, judge: str | None = None, *, judge_key: str | None = None,
        max_samples: int | None = None, study: Study | None = None,
    ) -> pd.DataFrame:
        """The judgments that count (the module docstring's rule), one row per completion, as pandas.

        `judge_key` names the key outright (the evaluation stage); `study` defaults to the run's.
        """
        if judge_key is None:
            judge, judge_key = self.current_key(system, judge)
        raw = self.judgments_table(system).read_raw()
        study = study if study is not None else self.study()
        if max_samples is None and study is not None:
            max_samples = (self.evaluation_summary() or {}).get("samples") or study.samples
        if raw is None:
            frame = pd.DataFrame({"row_id": [], "judge_key": [], "valid": []})
        else:
            raw = raw.filter(pc.equal(raw.column("judge_key"), judge_key))
            frame = self.current(raw, "completion", study, max_samples).to_pandas()
        frame = frame[_below(frame, max_samples)]
        return _one_per_completion(frame)

    def stale_judgments(self, system: str | ValueSystem, counted: pd.DataFrame) -> int:
        """Stored judgment rows of a system that do not count (other judges, keys, grids, repeats)."""
        raw = self.judgments_table(system).read_raw(columns=["row_id"])
        return (raw.num_rows if raw is not None else 0) - len(counted)

    # --- scores -----------------------------------------------------------------------------------

    def scores(self) -> pd.DataFrame | None:
        table = self.root.read_parquet(layout.SCORES)
        return None if table is None else table.to_pandas()

    def current_scores(self) -> pd.DataFrame | None:
        """The scores of each system's default judge: the rows that go with `judgments(system)`."""
        scores = self.scores()
        if scores is None or not {"system", "judge"} <= set(scores.columns) or scores.empty:
            return scores
        keep = []
        for system in scores["system"].dropna().unique():
            try:
                judge = self.default_judge(str(system))
            except StudyError:
                judge = sorted(scores.loc[scores["system"] == system, "judge"].astype(str).unique())[0]
            keep.append((scores["system"] == system) & (scores["judge"] == judge))
        mask = pd.concat(keep, axis=1).any(axis=1) if keep else pd.Series(False, index=scores.index)
        return scores[mask].reset_index(drop=True)

    def write_scores(self, scores: pd.DataFrame) -> pd.DataFrame:
        """Publish scores.parquet: these rows replace the stored ones of the same (system, judge) pairs;
        the scores of other systems or judges evaluated in this output root are kept."""
        previous = self.scores()
        if previous is not None and len(previous):
            fresh = set(zip(scores["system"], scores["judge"], strict=True))
            keep = [pair not in fresh for pair in zip(previous["system"], previous["judge"], strict=True)]
            scores = pd.concat([previous[keep], scores], ignore_index=True) if any(keep) else scores
        self.root.write_parquet(layout.SCORES, pa.Table.from_pandas(scores, preserve_index=False))
        return scores

    # --- taxonomies -------------------------------------------------------------------------------

    def taxonomy_files(self) -> list[TaxonomyFile]:
        """Every ``taxonomy[-<label>].json`` of the run, the unlabelled one first."""
        found = []
        for info in self.root.list_dir():
            match = layout.TAXONOMY_FILE.match(info.base_name)
            if info.type == pafs.FileType.File and match:
                found.append(TaxonomyFile(match.group(1), info.base_name))
        return sorted(found, key=lambda t: (t.label is not None, t.label or ""))

    def write_taxonomy(self, label: str | None, document: dict[str, Any], words: pa.Table,
                       stability: pa.Table) -> str:
        """Publish a taxonomy's tables, then its document (readers see the document last); returns its URI."""
        tables = layout.construction_tables(label)
        self.replace_table(posixpath.join(tables, "words"), words)
        self.replace_table(posixpath.join(tables, "stability"), stability)
        self.root.write_json(layout.taxonomy_file(label), document)
        return f"{self.uri}/{layout.taxonomy_file(label)}"

    def taxonomy_system(self, label: str | None = None) -> ValueSystem | None:
        """The taxonomy ``taxonomy[-<label>].json`` as a value system; None when the run has none."""
        from valuelex.evaluate.systems import system_from_taxonomy

        path = layout.taxonomy_file(label)
        document = self.root.read_json(path)
        return None if document is None else system_from_taxonomy(document, f"{self.uri}/{path}")

    def value_system(self, name: str) -> ValueSystem | None:
        """A constructed taxonomy of the run, by its name or label, as a value system (None: no such one)."""
        for entry in self.taxonomy_files():
            document = self.root.read_json(entry.path)
            if isinstance(document, dict) and name in (document.get("name") or "constructed", entry.label):
                return self.taxonomy_system(entry.label)
        return None

    # --- comparisons ------------------------------------------------------------------------------

    def comparison_names(self) -> list[str]:
        return sorted(i.base_name.removesuffix(".parquet") for i in self.root.list_dir(layout.COMPARISONS)
                      if i.type == pafs.FileType.File and i.base_name.endswith(".parquet"))

    def comparison(self, name: str) -> pd.DataFrame | None:
        table = self.root.read_parquet(layout.comparison_file(name))
        if table is None:
            return None
        frame = table.to_pandas()
        raw_attrs = (table.schema.metadata or {}).get(b"valuelex")
        if raw_attrs:
            frame.attrs.update(json.loads(raw_attrs))
        return frame

    def comparisons(self) -> dict[str, pd.DataFrame]:
        return {name: frame for name in self.comparison_names() if (frame := self.comparison(name)) is not None}

    def write_comparison(self, name: str, frame: pd.DataFrame) -> str:
        """Publish ``comparisons/<name>.parquet`` (the frame's attrs kept as metadata); returns its URI."""
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if frame.attrs:
            metadata = dict(table.schema.metadata or {})
            metadata[b"valuelex"] = json.dumps(frame.attrs, default=str).encode()
            table = table.replace_schema_metadata(metadata)
        self.root.write_parquet(layout.comparison_file(name), table)
        return f"{self.uri}/{layout.comparison_file(name)}"

    # --- reliability (valuelex.quality) -------------------------------------------------------------

    def quality(self, table: str) -> pd.DataFrame | None:
        """A reliability table (``quality/<table>.parquet``, see `layout.QUALITY_TABLES`), None before the stage ran."""
        stored = self.root.read_parquet(layout.quality_file(table))
        return None if stored is None else stored.to_pandas()

    def write_quality(self, table: str, frame: pd.DataFrame) -> str:
        """Publish ``quality/<table>.parquet``; returns its URI."""
        self.root.write_parquet(layout.quality_file(table), pa.Table.from_pandas(frame, preserve_index=False))
        return f"{self.uri}/{layout.quality_file(table)}"


def _name(system: str | ValueSystem) -> str:
    return system if isinstance(system, str) else system.name


_METADATA = {"training": lambda m: m.training.value, "size_b": lambda m: m.size_b, "family": lambda m: m.family}
"""Model metadata that is not part of a row's identity: served as the current study says."""


def _below(frame: pd.DataFrame, max_samples: int | None) -> pd.Series:
    """Rows with sample < max_samples (all rows when there is no M, e.g. a run without a study)."""
    if max_samples is None or not len(frame) or "sample" not in frame.columns:
        return pd.Series(True, index=frame.index)
    return frame["sample"] < max_samples


def _one_per_completion(frame: pd.DataFrame) -> pd.DataFrame:
    """A valid judgment wins over an invalid one; otherwise the latest stored row. Ordered by row_id:
    shards are listed by their random names, and the bootstrap of a CI must not depend on that."""
    frame = frame.reset_index(drop=True)
    frame["_order"] = range(len(frame))
    frame = frame.sort_values(["valid", "_order"], kind="stable").drop_duplicates("row_id", keep="last")
    return frame.sort_values("row_id", kind="stable").drop(columns="_order").reset_index(drop=True)


__all__ = ["RunStore", "TaxonomyFile", "latest_per_row"]


class BatchJournal:
    """One JSON document of submitted Batch API jobs, published whole (a reader never sees half of one)."""

    def __init__(self, root: OutputRoot, relpath: str):
        self.root, self.relpath = root, relpath

    def read(self) -> dict[str, Any]:
        return self.root.read_json(self.relpath) or {"batches": []}

    def write(self, document: dict[str, Any]) -> None:
        self.root.write_json(self.relpath, document)
