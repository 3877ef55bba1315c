"""Read everything a finished (or half-finished) run left in its output root, never failing.

Each part is read on its own; a part that is absent is ``None`` (the report says it is missing), a
part that is present but unreadable is ``None`` plus a message in `RunData.problems` (the report
shows it). What is read, relative to the output root:

- ``study.json`` (the spec dump written by the generation stage);
- tables ``elicitation`` and ``completions`` (deduplicated per row_id like every reader of the store);
- ``taxonomy.json`` and ``taxonomy-<label>.json`` with their tables ``construction[-<label>]/stability``
  and ``construction[-<label>]/words``;
- ``scores.parquet``, ``evaluation.json`` and the tables ``judgments/<system>``;
- ``comparisons/*.parquet`` written by `valuelex compare` (file stem -> rows, in `RunData.comparisons`);
- optional records no stage writes yet: ``judge_check.json`` (the dict of
  `valuelex.evaluate.agreement.judge_check`) and ``stages/<stage>.json`` (``seconds``, ``started``,
  ``finished``, ``versions``, ...). They are shown when present and reported as "not recorded" otherwise.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from valuelex.store import OutputRoot, join, latest_per_row

log = logging.getLogger(__name__)

STAGES = ("elicitation", "completion", "construction", "evaluation")
TAXONOMY_FILE = re.compile(r"^taxonomy(?:-([A-Za-z0-9][A-Za-z0-9_.\-]*))?\.json$")
GENERATION_COLUMNS = ("row_id", "model", "training", "size_b", "family", "config", "item_id", "sample", "prompt",
                      "response", "n_prompt_tokens", "n_completion_tokens", "finish_reason", "error")


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
        return f"construction{self.suffix}"


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
    problems: list[str] = field(default_factory=list)

    @property
    def study_fingerprint(self) -> str | None:
        """The same hash as `Study.fingerprint` (study.json is the spec's JSON dump)."""
        if not self.study:
            return None
        blob = json.dumps(self.study, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

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


def _read_json(root: OutputRoot, relpath: str, data: RunData) -> dict[str, Any] | None:
    try:
        document = root.read_json(relpath)
    except Exception as exc:
        data.problems.append(f"{relpath}: cannot be read: {exc}")
        return None
    if document is not None and not isinstance(document, dict):
        data.problems.append(f"{relpath}: expected a JSON object")
        return None
    return document


def _read_table(root: OutputRoot, name: str, data: RunData, dedupe: bool = True) -> tuple[pd.DataFrame | None, int]:
    """(deduplicated rows as pandas, stored attempts); (None, 0) when the table has no shards."""
    try:
        raw = root.table(name).read_raw()
    except Exception as exc:
        data.problems.append(f"table {name}: cannot be read: {exc}")
        return None, 0
    if raw is None:
        return None, 0
    attempts = raw.num_rows
    if dedupe and "row_id" in raw.column_names:
        raw = latest_per_row(raw)
    return raw.to_pandas(), attempts


def _list_dir(root: OutputRoot, relpath: str = "") -> list[pafs.FileInfo]:
    path = join(root.path, relpath) if relpath else root.path
    return root.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))


def _read_parquet_file(root: OutputRoot, relpath: str, data: RunData) -> pd.DataFrame | None:
    path = join(root.path, relpath)
    try:
        if root.fs.get_file_info(path).type == pafs.FileType.NotFound:
            return None
        with root.fs.open_input_file(path) as handle:
            return pq.read_table(io.BytesIO(handle.read())).to_pandas()
    except Exception as exc:
        data.problems.append(f"{relpath}: cannot be read: {exc}")
        return None


def _taxonomies(root: OutputRoot, data: RunData) -> list[TaxonomyRun]:
    from valuelex.construct.taxonomy import parse_taxonomy

    runs = []
    for info in _list_dir(root):
        match = TAXONOMY_FILE.match(info.base_name)
        if info.type != pafs.FileType.File or not match:
            continue
        run = TaxonomyRun(label=match.group(1), path=info.base_name)
        run.document = _read_json(root, info.base_name, data)
        if run.document is None:
            run.error = "the file could not be read"
        else:
            try:
                run.taxonomy = parse_taxonomy(run.document, f"{root.uri}/{info.base_name}")
            except Exception as exc:
                run.error = str(exc)
        run.stability, _ = _read_table(root, posixpath.join(run.tables_prefix, "stability"), data, dedupe=False)
        run.words, _ = _read_table(root, posixpath.join(run.tables_prefix, "words"), data, dedupe=False)
        runs.append(run)
    runs.sort(key=lambda r: (r.label is not None, r.label or ""))
    return runs


def _judgments(root: OutputRoot, data: RunData) -> None:
    """Current judgments per system: the scores' judge, its most frequent judge_key, one row per completion."""
    judges: dict[str, str] = {}
    if data.scores is not None and {"system", "judge"} <= set(data.scores.columns):
        for system, group in data.scores.groupby("system"):
            judges[str(system)] = str(group["judge"].iloc[0])
    for info in _list_dir(root, "judgments"):
        if info.type != pafs.FileType.Directory:
            continue
        system = info.base_name
        frame, _ = _read_table(root, f"judgments/{system}", data, dedupe=False)
        if frame is None or frame.empty:
            continue
        stale = 0
        if system in judges and "judge" in frame.columns:
            keep = frame["judge"] == judges[system]
            stale += int((~keep).sum())
            frame = frame[keep]
        if "judge_key" in frame.columns and frame["judge_key"].nunique() > 1:
            key = frame["judge_key"].value_counts().index[0]
            stale += int((frame["judge_key"] != key).sum())
            frame = frame[frame["judge_key"] == key]
        if {"row_id", "valid"} <= set(frame.columns):
            frame = frame.reset_index(drop=True)
            frame["_order"] = range(len(frame))
            frame = (frame.sort_values(["valid", "_order"], kind="stable").drop_duplicates("row_id", keep="last")
                     .sort_values("_order").drop(columns="_order"))
        data.judgments[system] = frame.reset_index(drop=True)
        data.stale_judgments[system] = stale


def _comparisons(root: OutputRoot, data: RunData) -> None:
    for info in _list_dir(root, "comparisons"):
        if info.type == pafs.FileType.File and info.base_name.endswith(".parquet"):
            frame = _read_parquet_file(root, f"comparisons/{info.base_name}", data)
            if frame is not None:
                data.comparisons[info.base_name.removesuffix(".parquet")] = frame


def load_run(run_uri: str) -> RunData:
    """Everything readable under `run_uri` (local path or s3://); problems are collected, not raised."""
    data = RunData(uri=run_uri)
    try:
        root = OutputRoot(run_uri)
        _list_dir(root)
    except Exception as exc:
        data.problems.append(f"{run_uri}: the output root cannot be opened: {exc}")
        return data
    data.study = _read_json(root, "study.json", data)
    data.elicitation, data.elicitation_attempts = _read_table(root, "elicitation", data)
    data.completions, data.completion_attempts = _read_table(root, "completions", data)
    try:
        data.taxonomies = _taxonomies(root, data)
    except Exception as exc:
        data.problems.append(f"taxonomy files: cannot be listed: {exc}")
    data.scores = _read_parquet_file(root, "scores.parquet", data)
    data.evaluation = _read_json(root, "evaluation.json", data)
    try:
        _judgments(root, data)
    except Exception as exc:
        data.problems.append(f"judgments: cannot be read: {exc}")
    try:
        _comparisons(root, data)
    except Exception as exc:
        data.problems.append(f"comparisons: cannot be read: {exc}")
    data.judge_check = _read_json(root, "judge_check.json", data)
    for stage in STAGES:
        record = _read_json(root, f"stages/{stage}.json", data)
        if record is not None:
            data.stage_records[stage] = record
    return data
