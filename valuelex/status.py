"""Where a run stands, read-only: what each stage stored, what failed, what a rerun would do.

    valuelex status runs/local          # or s3://bucket/prefix, also while another command writes it

Everything is read through `valuelex.store.RunStore`, which owns which rows count:

- a generation stage (elicitation, completion): ``rows in grid`` = the current grid's row ids
  (`RunStore.grid_ids`, with the last evaluation's M for completions), ``stored`` = its rows that
  count (`RunStore.current_rows`), ``done`` = those without an error, ``failed`` = stored with one
  (by the first line of the error); a rerun generates ``grid - done`` rows (failed ones are retried);
- a judged value system: the judgments that count (`RunStore.judgments`, the default judge), valid
  and invalid by ``invalid_reason``; invalid judgments are kept and not judged again, so a rerun
  judges the completions of the grid that have no judgment yet (``grid - judged``);
- spent tokens: prompt and completion tokens of every stored row, failed attempts and rows of
  earlier grids included (they were paid for), per table.

It never takes the output lock (`valuelex.store.lock`): it only lists and reads whole shards and
files, which writers publish atomically, so a run being written reads as its last published state.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from valuelex.errors import StudyError, ValueLexError
from valuelex.store import RunStore, layout
from valuelex.store.leases import lease_for
from valuelex.store.lock import decode

GENERATION_STAGES = ("elicitation", "completion")
TOKEN_COLUMNS = ["n_prompt_tokens", "n_completion_tokens"]


def run_status(uri: str) -> dict[str, Any]:
    """The status document of a run (see the module docstring); `StudyError` when there is no run."""
    store = RunStore(uri)
    if not store.exists():
        raise StudyError(f"{uri}: no such run (the output root does not exist)")
    store.check_format()
    study = store.study()
    if study is None:
        raise StudyError(f"{uri}/{layout.STUDY}: missing or unreadable: not a ValueLex run, or one still starting")
    samples = (store.evaluation_summary() or {}).get("samples") or study.samples
    stages = {
        stage: _generation(store, study, stage, samples if stage == "completion" else None)
        for stage in GENERATION_STAGES
    }
    completion_grid = stages["completion"]["rows_in_grid"]
    judgments = {name: _judgments(store, study, name, completion_grid, samples) for name in _systems(store, study)}
    return {
        "run": store.uri,
        "study": study.name,
        "writer": _writer(store),
        "stages": stages,
        "judgments": judgments,
        "rerun": {
            "rows_to_generate": {s: v["to_generate"] for s, v in stages.items()},
            "judgments_to_make": {s: v["to_judge"] for s, v in judgments.items()},
        },
        "tokens": {
            **{s: v["tokens"] for s, v in stages.items()},
            **{f"judge:{s}": v["tokens"] for s, v in judgments.items()},
        },
        "records": _records(store),
        "report": _report(store),
    }


def _generation(store: RunStore, study: Any, stage: str, samples: int | None) -> dict[str, Any]:
    grid = len(store.grid_ids(stage, study, samples))
    rows = store.current_rows(stage, study, samples)
    stored = 0 if rows is None else rows.num_rows
    reasons: Counter[str] = Counter()
    per_model: dict[str, dict[str, int]] = {}
    if rows is not None and stored:
        errors = rows.column("error").to_pylist()
        for model, error in zip(rows.column("model").to_pylist(), errors, strict=True):
            counts = per_model.setdefault(model, {"stored": 0, "failed": 0})
            counts["stored"] += 1
            if error is not None:
                counts["failed"] += 1
                reasons[_first_line(error)] += 1
    failed = sum(reasons.values())
    return {
        "rows_in_grid": grid,
        "stored": stored,
        "done": stored - failed,
        "failed": failed,
        "failed_by_reason": dict(reasons.most_common()),
        "per_model": per_model,
        "to_generate": grid - (stored - failed),
        "tokens": _tokens(store.generation(stage).read_raw(TOKEN_COLUMNS)),
    }


def _systems(store: RunStore, study: Any) -> list[str]:
    """The systems a rerun evaluates (the study's) and those judged already, by stored name."""
    from valuelex.evaluate.systems import load_value_system

    names = set(store.judged_systems())
    for system in study.evaluation.systems:
        with contextlib.suppress(ValueLexError, OSError):
            names.add(load_value_system(system).name)
    return sorted(names)


def _judgments(store: RunStore, study: Any, system: str, grid: int, samples: int) -> dict[str, Any]:
    judge, frame = None, None
    with contextlib.suppress(StudyError):
        judge = store.default_judge(system)
        frame = store.judgments(system, judge, max_samples=samples, study=study)
    judged = 0 if frame is None else len(frame)
    invalid = (
        Counter()
        if frame is None or not judged
        else Counter(str(r) for r in frame.loc[~frame["valid"].astype(bool), "invalid_reason"].fillna("(no reason)"))
    )
    tokens = {"n_prompt_tokens": 0, "n_completion_tokens": 0}
    if frame is not None and judged:
        for column in TOKEN_COLUMNS:
            if column in frame.columns:
                tokens[column] = int(frame[column].fillna(0).sum())
    return {
        "judge": judge,
        "judged": judged,
        "valid": judged - sum(invalid.values()),
        "invalid": sum(invalid.values()),
        "invalid_by_reason": dict(invalid.most_common()),
        "to_judge": max(grid - judged, 0),
        "tokens": tokens,
    }


def _tokens(table: pa.Table | None) -> dict[str, int]:
    if table is None:
        return {c: 0 for c in TOKEN_COLUMNS}
    return {c: int(pc.sum(table[c]).as_py() or 0) if c in table.column_names else 0 for c in TOKEN_COLUMNS}


def _first_line(error: str) -> str:
    return error.strip().splitlines()[0] if error.strip() else "(no message)"


def _writer(store: RunStore) -> dict[str, Any] | None:
    """The lock's holder document when a command is writing the run (read, never taken)."""
    found = lease_for(store.uri).read()
    if found is None:
        return None
    holder = decode(found.data)
    return {k: holder.get(k) for k in ("command", "host", "pid", "started")} if holder else {"command": "unknown"}


def _records(store: RunStore) -> dict[str, dict[str, Any]]:
    """Each recorded stage's finish time, wall seconds and failure (``stages/<name>.json``)."""
    found = {}
    for info in store.root.list_dir(layout.STAGES):
        if info.base_name.endswith(".json"):
            name = info.base_name.removesuffix(".json")
            record = store.stage_record(name) or {}
            found[name] = {k: record.get(k) for k in ("finished", "seconds", "failed") if record.get(k) is not None}
    return dict(sorted(found.items()))


def _report(store: RunStore) -> str | None:
    """Where the last report was written (its stage record), when the file is still there."""
    from pathlib import Path

    index = (store.stage_record("report") or {}).get("index")
    if index and Path(index).exists():
        return Path(index).resolve().as_uri()
    return None


def format_status(status: dict[str, Any]) -> str:
    """The status document as a few aligned lines for the terminal."""
    lines = [f"run {status['run']} (study {status['study']})"]
    writer = status["writer"]
    lines.append(
        f"  being written by {writer.get('command')} (pid {writer.get('pid')}, since {writer.get('started')})"
        if writer
        else "  no command is writing it"
    )
    lines.append(
        f"{'stage':<14}{'stored':>8}{'grid':>8}{'done':>8}{'failed':>8}{'to make':>9}  tokens (prompt/completion)"
    )
    for name, s in status["stages"].items():
        tokens = s["tokens"]
        lines.append(
            f"{name:<14}{s['stored']:>8}{s['rows_in_grid']:>8}{s['done']:>8}{s['failed']:>8}"
            f"{s['to_generate']:>9}  {tokens['n_prompt_tokens']}/{tokens['n_completion_tokens']}"
        )
        lines += [f"    failed {n}x: {reason}" for reason, n in s["failed_by_reason"].items()]
    for name, j in status["judgments"].items():
        lines.append(
            f"judgments {name} ({j['judge'] or 'not judged'}): {j['judged']} judged, {j['valid']} valid, "
            f"{j['invalid']} invalid, {j['to_judge']} to judge"
        )
        lines += [f"    invalid {n}x: {reason}" for reason, n in j["invalid_by_reason"].items()]
    rerun = status["rerun"]
    todo = [f"generate {n} {s} rows" for s, n in rerun["rows_to_generate"].items() if n]
    todo += [f"judge {n} completions ({s})" for s, n in rerun["judgments_to_make"].items() if n]
    lines.append("a rerun would " + ("; ".join(todo) if todo else "make nothing new (every row and judgment stored)"))
    for name, r in status["records"].items():
        lines.append(
            f"  stage {name}: {r.get('seconds', '?')} s, finished {r.get('finished', '?')}"
            + (f", FAILED: {r['failed']}" if r.get("failed") else "")
        )
    lines.append(f"report: {status['report'] or 'none yet (valuelex report ' + status['run'] + ')'}")
    return "\n".join(lines) + "\n"
