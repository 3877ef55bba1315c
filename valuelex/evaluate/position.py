"""Few-shot order of the LLM judge, and the position-bias check.

A small judge copies the example that stands last, right before the completion to rate (with
the all-neutral example last, SmolLM2-135M answered 3 everywhere in ~97% of completions, issue 15).
So no example always stands last: each request sees the examples in a cyclic rotation chosen by
its completion's row id,

    offset(row_id) = int(sha256("order:" + row_id)[:8], 16) mod n,    order = e[offset:] + e[:offset],

so over many completions each of the n examples stands last in about 1/n of the requests, and a
rerun of the same completion sees the same order (judgments stay reproducible). Only n prefixes
exist, so an engine's prefix cache still serves the shared part.

The position check (``evaluation.position_check``) judges a sample of completions again with
another order -- variant 1 shifts the rotation by n // 2, so another example stands last -- and
compares with the stored judgments: the *disagreement rate* is the share of completions whose
scores differ on at least one dimension; per dimension, the share that differ and the mean
absolute difference. An unbiased judge at temperature 0 disagrees only by chance; a judge that
copies the last example disagrees whenever the two last examples differ. Stored as
``RUN/quality/position_check.json`` (`valuelex.store.layout.quality_check`).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

T = TypeVar("T")


def order_offset(row_id: str, n: int, variant: int = 0) -> int:
    """The rotation of `n` examples for a completion; variant 1 is shifted by n // 2 (another one last)."""
    if n <= 1:
        return 0
    base = int(hashlib.sha256(f"order:{row_id}".encode()).hexdigest()[:8], 16) % n
    return (base + variant * (n // 2)) % n


def rotate(items: Sequence[T], offset: int) -> tuple[T, ...]:
    items = tuple(items)
    return items[offset:] + items[:offset] if items else items


def sample_ids(row_ids: Sequence[str], n: int) -> list[str]:
    """A reproducible sample of `n` row ids: those with the smallest SHA-256 of ``"check:" + id``."""
    return sorted(row_ids, key=lambda r: hashlib.sha256(f"check:{r}".encode()).hexdigest())[:n]


def disagreement(first: dict[str, dict[str, int]], second: dict[str, dict[str, int]],
                 keys: Sequence[str]) -> dict[str, Any]:
    """How often two judgments of the same completions (row id -> scores) differ (see the module docstring)."""
    common = sorted(set(first) & set(second))
    out: dict[str, Any] = {"completions": len(common)}
    if not common:
        return out | {"disagreement_rate": None, "per_dimension": {}}
    a = np.array([[first[r][k] for k in keys] for r in common], dtype=float)
    b = np.array([[second[r][k] for k in keys] for r in common], dtype=float)
    differ = a != b
    out["disagreement_rate"] = float(differ.any(axis=1).mean())
    out["all_neutral_first"] = float((a == 3).all(axis=1).mean())
    out["all_neutral_second"] = float((b == 3).all(axis=1).mean())
    out["per_dimension"] = {k: {"disagreement_rate": float(differ[:, i].mean()),
                                "mean_abs_diff": float(np.abs(a[:, i] - b[:, i]).mean())}
                            for i, k in enumerate(keys)}
    return out


def run_position_check(store: Any, study: Any, systems: Sequence[Any], judge: Any, *, samples: int,
                       rows: int) -> dict[str, Any]:
    """Judge up to `rows` stored valid judgments per system again with order variant 1; store and return
    the `disagreement` per system (``RUN/quality/position_check.json``). `judge` needs ``judge_many``."""
    from valuelex.evaluate.judgments import JudgeTask, score_column

    report: dict[str, Any] = {"judge": judge.name, "order_variant": 1, "rows_per_system": rows, "systems": {}}
    firsts: dict[str, dict[str, dict[str, int]]] = {}
    seconds: dict[str, dict[str, dict[str, int]]] = {}
    tasks = []
    for system in systems:
        keys = system.leaf_keys()
        judged = store.judgments(system, judge_key=judge.key(system), study=study, max_samples=samples)
        valid = judged[judged["valid"].astype(bool)] if not judged.empty else judged
        chosen = set(sample_ids(list(valid["row_id"]) if not valid.empty else [], rows))
        picked = valid[valid["row_id"].isin(chosen)] if not valid.empty else valid
        records = picked.to_dict("records")
        firsts[system.name] = {r["row_id"]: {k: int(r[score_column(k)]) for k in keys} for r in records}
        second = seconds.setdefault(system.name, {})

        def sink(out: list[dict[str, Any]], second: dict = second, keys: tuple = keys) -> None:
            for row in out:
                if row["valid"]:
                    second[row["row_id"]] = {k: int(row[score_column(k)]) for k in keys}

        if records:
            tasks.append(JudgeTask(system, records, sink))
    if tasks:
        judge.judge_many(tasks, order_variant=1)
    for system in systems:
        report["systems"][system.name] = disagreement(firsts[system.name], seconds[system.name], system.leaf_keys())
    store.write_quality_check("position_check", report)
    return report
