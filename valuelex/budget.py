"""Spending caps (the study's ``budget:``), checked before each block of requests is sent.

What an output has spent is what its stored rows record, over every run: for each row written
(failed attempts and superseded rows included: they were paid for) its ``n_prompt_tokens`` and
``n_completion_tokens``; tokens = prompt + completion, and USD = sum over models of
`valuelex.cost.usd` (the model's list price, at the batch discount for an ``options.batch`` model;
a vLLM model runs on the study's own hardware and costs no USD). Before a block of requests goes
to an engine, its cost is estimated as `valuelex.plan` estimates it: prompt tokens = characters /
``chars_per_token`` (+ the chat template's tokens), completion tokens = min(request limit,
max_tokens x fill fraction + ``reasoning_budget``). The block is sent only if, for every cap in
whose scope the stage lies (``budget`` itself: every stage; ``budget.stages.<stage>``: that stage),

    spent before this run + settled this run + estimates of blocks in flight + this block's estimate <= cap;

otherwise no further block is sent and the stage ends with `BudgetReached` (exit code 2), every
finished row stored. The caps bind the whole output, so a rerun with a higher cap finishes the rest.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from valuelex.runner import StageFailed

if TYPE_CHECKING:
    import pyarrow as pa

    from valuelex.respondents import ModelSpec
    from valuelex.spec import Cap, Study
    from valuelex.store import RunStore

Estimate = Callable[[dict[str, Any]], tuple[float, float]]
"""(prompt tokens, completion tokens) a request row is expected to cost."""


class BudgetReached(StageFailed):
    """A stage stopped before a block that would cross a cap; what it finished is stored and recorded."""


def _judge_model(study: Study) -> ModelSpec | None:
    if study.evaluation.judge != "llm" or study.evaluation.judge_model is None:
        return None
    return study.evaluation.judge_model_spec(study)


def _tokens(table: pa.Table | None, key: str, prefix: str = "") -> dict[str, list[int]]:
    """prompt and completion tokens per model of a table's rows (key: the model column)."""
    spent: dict[str, list[int]] = {}
    if table is None:
        return spent
    for name, prompt, completion in zip(
        table[key].to_pylist(),
        table["n_prompt_tokens"].to_pylist(),
        table["n_completion_tokens"].to_pylist(),
        strict=True,
    ):
        entry = spent.setdefault(str(name).removeprefix(prefix), [0, 0])
        entry[0] += int(prompt or 0)
        entry[1] += int(completion or 0)
    return spent


def stored_spending(store: RunStore) -> dict[str, dict[str, list[int]]]:
    """Tokens the output's stored rows record: stage -> model name -> [prompt, completion]."""
    spent = {}
    for stage in ("elicitation", "completion"):
        spent[stage] = _tokens(
            store.generation(stage).read_raw(["model", "n_prompt_tokens", "n_completion_tokens"]), "model"
        )
    judging: dict[str, list[int]] = {}
    from valuelex.store import layout

    for path in sorted({layout.judgments_table(system) for system in store.judged_systems()}):  # each table once
        table = store.table(path).read_raw(["judge", "n_prompt_tokens", "n_completion_tokens"])
        for name, (prompt, completion) in _tokens(table, "judge", "llm:").items():
            entry = judging.setdefault(name, [0, 0])
            entry[0] += prompt
            entry[1] += completion
    spent["judging"] = judging
    return spent


class Ledger:
    """What one stage of one run may still send; shared by the threads of a wave (thread-safe)."""

    def __init__(self, study: Study, stage: str, prior: dict[str, dict[str, list[int]]]):
        from valuelex.cost import load_prices

        self.study, self.stage, self.prior = study, stage, prior
        self.prices = load_prices({k: v.model_dump() for k, v in study.prices.items()})
        models = list(study.models) + ([j] if (j := _judge_model(study)) is not None else [])
        self.models = {m.name: m for m in models}
        self.caps: list[tuple[str, Cap, str | None]] = [("budget", study.budget, None)]
        self.caps += [(f"budget.stages.{name}", cap, name) for name, cap in study.budget.stages.items()]
        self.settled: dict[str, list[int]] = {}  # this run's actual tokens per model
        self.reserved: dict[str, tuple[str, float, float]] = {}  # row id -> (model, prompt, completion) in flight
        self.stopped: str | None = None
        self.estimates: dict[str, Estimate] = {}  # model name -> its requests' estimate, for callers that gate by name
        self.unsent = 0
        self.lock = threading.Lock()

    def usd(self, model: str, prompt: float, completion: float) -> float:
        """USD of these tokens of a model; 0 for own hardware (vLLM) or a model no longer in the study."""
        from valuelex.cost import usd

        spec = self.models.get(model)
        if spec is None or spec.engine == "vllm":
            return 0.0
        return usd(spec.source, prompt, completion, self.prices, batch=spec.options.batch) or 0.0

    def _spent(self, scope: str | None, extra: dict[str, list[float]] | None = None) -> tuple[float, float]:
        """(tokens, USD) in a cap's scope: stored before this run, settled, in flight, plus `extra`."""
        per_model: dict[str, list[float]] = {}

        def add(model: str, prompt: float, completion: float) -> None:
            entry = per_model.setdefault(model, [0.0, 0.0])
            entry[0] += prompt
            entry[1] += completion

        for stage, models in self.prior.items():
            if scope in (None, stage):
                for model, (prompt, completion) in models.items():
                    add(model, prompt, completion)
        if scope in (None, self.stage):
            for model, (prompt, completion) in self.settled.items():
                add(model, prompt, completion)
            for model, prompt, completion in self.reserved.values():
                add(model, prompt, completion)
            for model, (prompt, completion) in (extra or {}).items():
                add(model, prompt, completion)
        tokens = sum(p + c for p, c in per_model.values())
        return tokens, sum(self.usd(m, p, c) for m, (p, c) in per_model.items())

    def _over(self, model: str, prompt: float, completion: float, rows: int) -> str | None:
        """Why a block of `rows` requests with these estimated tokens may not be sent, or None."""
        for label, cap, scope in self.caps:
            tokens, dollars = self._spent(scope, {model: [prompt, completion]})
            spent_tokens, spent_usd = self._spent(scope)
            block_tokens, block_usd = tokens - spent_tokens, dollars - spent_usd
            if cap.max_tokens is not None and tokens > cap.max_tokens:
                return (
                    f"{label}.max_tokens = {cap.max_tokens:,} tokens: {spent_tokens:,.0f} spent or in flight "
                    f"(${spent_usd:.4f}); the next block of {rows} {model} requests (about "
                    f"{block_tokens:,.0f} tokens) would cross it"
                )
            if cap.max_usd is not None and dollars > cap.max_usd:
                return (
                    f"{label}.max_usd = ${cap.max_usd:g}: ${spent_usd:.4f} spent or in flight "
                    f"({spent_tokens:,.0f} tokens); the next block of {rows} {model} requests (about "
                    f"${block_usd:.4f}) would cross it"
                )
        return None

    def gate(
        self, rows: Iterable[dict[str, Any]], model: ModelSpec, estimate: Estimate, block_rows: int
    ) -> Iterator[dict[str, Any]]:
        """The rows, a block of `block_rows` at a time, each block only once its estimate fits every cap.

        Rows after a block that does not fit are never yielded (they are counted in `unsent`)."""
        iterator = iter(rows)
        while block := list(itertools.islice(iterator, block_rows)):
            costs = [estimate(row) for row in block]
            prompt, completion = sum(c[0] for c in costs), sum(c[1] for c in costs)
            with self.lock:
                why = self.stopped or self._over(model.name, prompt, completion, len(block))
                if why is not None:
                    self.stopped = self.stopped or why
                    self.unsent += len(block) + sum(1 for _ in iterator)
                    return
                for row, (p, c) in zip(block, costs, strict=True):
                    self.reserved[str(row["row_id"])] = (model.name, p, c)
            yield from block

    def settle(self, model: str, rows: Iterable[tuple[str, int, int]]) -> None:
        """Replace the estimates of finished rows (row id, prompt tokens, completion tokens) by what they cost."""
        with self.lock:
            entry = self.settled.setdefault(model, [0, 0])
            for row_id, prompt, completion in rows:
                self.reserved.pop(str(row_id), None)
                entry[0] += int(prompt or 0)
                entry[1] += int(completion or 0)

    @property
    def binding(self) -> bool:
        """Whether any cap sets a limit; with none, no block is ever held back and nothing need be gated."""
        return any(cap.max_tokens is not None or cap.max_usd is not None for _, cap, _ in self.caps)

    def settle_totals(self, model: str, prompt: int, completion: int) -> None:
        """Add tokens of finished rows that were never gated (no binding cap: nothing was reserved)."""
        with self.lock:
            entry = self.settled.setdefault(model, [0, 0])
            entry[0] += int(prompt)
            entry[1] += int(completion)

    def settle_table(self, model: str, table: pa.Table) -> None:
        self.settle(
            model,
            zip(
                table["row_id"].to_pylist(),
                table["n_prompt_tokens"].to_pylist(),
                table["n_completion_tokens"].to_pylist(),
                strict=True,
            ),
        )

    def record(self) -> dict[str, Any]:
        """Spent amounts for ``stages/<stage>.json``: this run, this stage over the output, the whole output."""
        with self.lock:

            def amounts(per_model: dict[str, list[int]]) -> dict[str, Any]:
                prompt = sum(p for p, _ in per_model.values())
                completion = sum(c for _, c in per_model.values())
                return {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "tokens": prompt + completion,
                    "usd": round(sum(self.usd(m, p, c) for m, (p, c) in per_model.items()), 6),
                }

            stage = {m: list(v) for m, v in self.prior.get(self.stage, {}).items()}
            for model, (prompt, completion) in self.settled.items():
                entry = stage.setdefault(model, [0, 0])
                entry[0] += prompt
                entry[1] += completion
            everything: dict[tuple[str, str], list[int]] = {}
            for name, models in {**self.prior, self.stage: stage}.items():
                for model, tokens in models.items():
                    everything[(name, model)] = tokens
            prompt = sum(p for p, _ in everything.values())
            completion = sum(c for _, c in everything.values())
            total = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "tokens": prompt + completion,
                "usd": round(sum(self.usd(m, p, c) for (_, m), (p, c) in everything.items()), 6),
            }
            spent = {"this_run": amounts(self.settled), "stage": amounts(stage), "output": total}
            budget = self.study.budget.model_dump(mode="json", exclude_none=True)
            result: dict[str, Any] = {"spent": spent}
            if budget.get("max_usd") or budget.get("max_tokens") or budget.get("stages"):
                result["budget"] = budget
            if self.stopped:
                result["budget_reached"] = self.stopped
                result["rows_not_sent"] = self.unsent
            return result

    def message(self) -> str:
        """The error of a stopped stage: which cap, what was spent, what to do."""
        return (
            f"{self.stage}: budget reached, {self.unsent} requests not sent: {self.stopped}. Every finished "
            "row is kept; raise the cap in the study's budget: and rerun to finish the rest"
        )


def for_stage(study: Study, stage: str, store: RunStore) -> Ledger:
    """The ledger of one stage of this run, with what the output's stored rows have spent so far."""
    return Ledger(study, stage, stored_spending(store))
