"""Convert a run written in an earlier store format to this one (`valuelex migrate OUT`).

Format 1 (ValueLex before ``store.json``) hashed a row's identity without the decoding config's
name and the study seed; format 2 hashes both (`valuelex.grid.row_identity`). Migration recomputes
each stored row's id from its own columns and the run's study.json: generation rows get their
format-2 id and judgments follow their completion. Answers, seeds (the seed that generated the
answer), errors and timings are kept as stored, so nothing is generated or judged again.

A row whose id is not the format-1 id of its own columns (a row of an earlier version of the
study) keeps its id: it counted for no current grid before and counts for none after. The
conversion can be rerun after an interruption: a row already carrying its format-2 id stays as it
is, each table is replaced whole (new shards first), and ``store.json`` is written last.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs as pafs

from valuelex import grid
from valuelex.errors import StudyError
from valuelex.store import layout
from valuelex.store.run import RunStore

if TYPE_CHECKING:
    from valuelex.spec import Study

ID_COLUMNS = ["row_id", "model", "config", "item_id", "prompt", "sample"]


def format1_row_id(study: Study, stage: str, model: Any, config: Any, item_id: str, prompt: str, sample: int) -> str:
    """The row id of store format 1, frozen here: study, stage, model, decoding values, item, sample."""
    payload = {
        "study": study.name, "stage": stage, "model": model.name, "source": model.source,
        "prompting": model.prompting, "temperature": config.temperature, "top_p": config.top_p,
        "max_tokens": config.max_tokens, "item": item_id, "prompt": prompt, "sample": sample,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).digest().hex()[:24]


def migrate(uri: str) -> dict[str, Any]:
    """Convert the run at `uri` to the current store format; a summary of what was converted."""
    store = RunStore(uri)
    found = store.store_format()
    if found is None:
        raise StudyError(f"{uri}: no run to migrate (no {layout.STUDY})")
    if found == layout.STORE_FORMAT:
        return {"run": store.uri, "format": found, "migrated": False}
    if found != 1:
        store.check_format()  # a format this version does not know: its message
    study = store.study()
    if study is None:
        raise StudyError(f"{store.uri}/{layout.STUDY}: does not validate as a study of this version: "
                         "fix it (valuelex validate) before migrating")
    summary: dict[str, Any] = {"run": store.uri, "format": layout.STORE_FORMAT, "migrated": True, "tables": {}}
    completion_ids: dict[str, str] = {}
    for stage in ("elicitation", "completion"):
        name = layout.generation_table(stage)
        ids, kept = _convert(store, name, lambda row, stage=stage: _grid_ids(study, stage, row))
        summary["tables"][name] = {"row_ids_converted": len(ids), "rows_kept": kept}
        if stage == "completion":
            completion_ids = ids
    for info in store.root.list_dir(layout.JUDGMENTS):
        if info.type == pafs.FileType.Directory:
            name = f"{layout.JUDGMENTS}/{info.base_name}"
            ids, kept = _convert(store, name, lambda row: completion_ids)
            summary["tables"][name] = {"rows_kept": kept}
    store.write_format()
    return summary


def _grid_ids(study: Study, stage: str, row: dict[str, Any]) -> tuple[str, str] | None:
    """(format-1 id, format-2 id) of a stored row's grid cell; None when its model or config is gone."""
    try:
        model = study.model(str(row["model"]))
    except StudyError:
        return None
    config = next((c for c in study.decoding if c.name == row["config"]), None)
    if config is None or row.get("sample") is None or row.get("prompt") is None:
        return None
    args = (study, stage, model, config, str(row["item_id"]), str(row["prompt"]), int(row["sample"]))
    return format1_row_id(*args), grid.row_identity(*args)[0]  # type: ignore[arg-type]


def _convert(store: RunStore, name: str, ids_of: Any) -> tuple[dict[str, str], int]:
    """Give each row of a table the format-2 id `ids_of(row)` names for it: ``(old, new)`` when the
    row carries the old id (or already the new one), a dict of old -> new ids otherwise. Returns
    the old -> new ids of the table and the number of rows kept as they were."""
    table = store.table(name).read_raw()
    if table is None or table.num_rows == 0:
        return {}, 0
    columns = [c for c in ID_COLUMNS if c in table.column_names]
    mapping: dict[str, str] = {}
    ids, kept = [], 0
    for row in table.select(columns).to_pylist():
        found = ids_of(row)
        if isinstance(found, dict):
            new = found.get(row["row_id"])
        elif found is not None and row["row_id"] in found:
            mapping[found[0]] = new = found[1]
        else:
            new = None
        kept += new is None or new == row["row_id"]
        ids.append(new or row["row_id"])
    index = table.schema.get_field_index("row_id")
    store.replace_table(name, table.set_column(index, "row_id", pa.array(ids, pa.string())))
    return mapping, kept
