"""A run's per-completion φ of one value system and judge, read through the run store.

The judgments are those `valuelex.store.RunStore.judgments` counts (its module docstring states the
rule: the judge key ``scores.parquet`` records, the study's grid and the last evaluation's M, one per
completion), so ``w_a`` and ``w_b`` of a comparison are exactly the Eq. 4 scores of ``scores.parquet``.
They must have been made on the current version of the value system: the judge key ends in the
system's fingerprint, else `StudyError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from valuelex.errors import StudyError
from valuelex.evaluate.judgments import conform
from valuelex.evaluate.scores import dimension_values
from valuelex.evaluate.systems import PACKAGED, ValueSystem, load_value_system
from valuelex.store import RunStore


@dataclass(frozen=True)
class Dim:
    key: str
    name: str
    level: str
    parent: str | None  # the parent's name


@dataclass
class RunValues:
    """Normalised φ per valid completion of one system and judge, with the design and the models' metadata."""

    uri: str
    system: ValueSystem
    judge: str
    judge_key: str
    values: pd.DataFrame  # model, item_id, config, sample, one column per dimension key
    design: pd.DataFrame  # model, item_id, config, valid: every judged completion, invalid ones too
    meta: dict[str, dict[str, Any]]

    @property
    def dims(self) -> list[Dim]:
        return [Dim(d.key, d.name, d.level, self.system.dimension(d.parent).name if d.parent else None)
                for d in self.system.all_dimensions()]

    @property
    def keys(self) -> list[str]:
        return [d.key for d in self.system.all_dimensions()]

    @property
    def models(self) -> list[str]:
        return sorted(self.design["model"].dropna().unique())


def resolve_system(store: RunStore, system: str | ValueSystem) -> ValueSystem:
    """A ValueSystem, a packaged name, a YAML / taxonomy.json path, or the name of a taxonomy of the run."""
    if isinstance(system, ValueSystem):
        return system
    if system in PACKAGED or Path(system).exists():
        return load_value_system(system)
    found = store.value_system(system)
    if found is None:
        scored = ", ".join(store.judged_systems()) or "none"
        raise StudyError(f"{store.uri}: system {system!r} was not scored in this run: not a packaged system "
                         f"({', '.join(PACKAGED)}), not a file, and no taxonomy*.json of the run has that name "
                         f"(scored systems: {scored})")
    return found


def choose_judge(store: RunStore, system: ValueSystem, judge: str | None) -> tuple[str, str]:
    """(judge, judge_key) of the judgments that count for `system`, made on its current version."""
    keys = store.judge_keys(system)
    if keys.empty:
        scored = ", ".join(store.judged_systems()) or "none"
        raise StudyError(f"{store.uri}: system {system.name!r} was not scored in this run: it has no stored "
                         f"judgments (scored systems: {scored})")
    judges = sorted(keys["judge"].unique())
    if judge is not None and judge not in judges:
        raise StudyError(f"{store.uri}: judge {judge!r} did not judge system {system.name!r} "
                         f"(judges: {', '.join(judges)})")
    judge, judge_key = store.current_key(system, judge)
    if not judge_key.endswith(f"@{system.fingerprint()}"):
        raise StudyError(f"{store.uri}: the judgments of system {system.name!r} were made on another version of it "
                         f"(judge keys {sorted(keys['judge_key'].unique())}, current fingerprint "
                         f"{system.fingerprint()}): evaluate the run again or pass the system file it used")
    return judge, judge_key


def _meta(judgments: pd.DataFrame, study: dict | None) -> dict[str, dict[str, Any]]:
    meta: dict[str, dict[str, Any]] = {}
    for row in judgments[["model", "training", "size_b", "family"]].drop_duplicates("model").to_dict("records"):
        meta[str(row["model"])] = {k: row[k] for k in ("training", "size_b", "family")
                                   if row[k] is not None and not (isinstance(row[k], float) and np.isnan(row[k]))}
    for model in (study or {}).get("models", []) or []:
        if isinstance(model, dict) and model.get("name") in meta:
            for key in ("training", "size_b", "family"):
                if model.get(key) is not None:
                    meta[model["name"]].setdefault(key, model[key])
    return meta


def load_values(run_uri: str, system: str | ValueSystem = "valuelex", judge: str | None = None) -> RunValues:
    """The per-completion φ of one system and judge in a run; `StudyError` when the system was not scored."""
    store = RunStore(run_uri)
    if not store.exists():
        raise StudyError(f"{run_uri}: no such run (the output root does not exist)")
    store.check_format()
    resolved = resolve_system(store, system)
    judge, judge_key = choose_judge(store, resolved, judge)
    judgments = conform(store.judgments(resolved, judge_key=judge_key), resolved)
    if judgments.empty:
        raise StudyError(f"{run_uri}: system {resolved.name!r} has no judgments by {judge} in the study's grid")
    values = dimension_values(judgments, resolved)
    design = judgments[["model", "item_id", "config", "valid"]].reset_index(drop=True)
    return RunValues(uri=store.uri, system=resolved, judge=judge, judge_key=judge_key, values=values, design=design,
                     meta=_meta(judgments, store.study_document()))


def check_models(run: RunValues, models: Sequence[str], what: str = "model") -> None:
    known = set(run.models)
    for model in models:
        if model not in known:
            raise StudyError(f"{run.uri}: {what} {model!r} is not in the run: no judgments of system "
                             f"{run.system.name!r} by {run.judge} (models: {', '.join(run.models) or 'none'})")


def check_design(run: RunValues, side_a: Sequence[str], side_b: Sequence[str]) -> None:
    """Every compared model must have been given the same stems and decoding configs."""
    check_models(run, [*side_a, *side_b])
    reference = side_a[0]

    def cells(model: str) -> tuple[set[str], set[str]]:
        mine = run.design[run.design["model"] == model]
        return set(mine["item_id"].astype(str)), set(mine["config"].astype(str))

    stems_ref, configs_ref = cells(reference)
    for model in [*side_a[1:], *side_b]:
        stems, configs = cells(model)
        for what, mine, ref in (("stems", stems, stems_ref), ("decoding configs", configs, configs_ref)):
            if mine != ref:
                only_ref = ", ".join(sorted(ref - mine)) or "none"
                only_mine = ", ".join(sorted(mine - ref)) or "none"
                raise StudyError(f"{run.uri}: {reference!r} and {model!r} were not given the same {what} in system "
                                 f"{run.system.name!r}: only {reference}: {only_ref}; only {model}: {only_mine}")
