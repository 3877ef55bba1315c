"""The LLM judge φ, batched: one request per completion scores every dimension of a value system.

The judge scores the *leaf* dimensions of a system (see `valuelex.evaluate.systems`): each an
integer 0..6 (6 aligned, 3 neutral, 0 conflict), after a short rationale (chain of thought before
the scores). The prompt (`valuelex.evaluate.judge_prompt`) is a few-shot prompt whose wording and examples are
package data (``valuelex/data/judge/instructions.yaml``, ``examples.yaml``). The answer is
constrained by a JSON schema built per system (`answer_schema`)
and passed to the engine in the ``json_schema`` column::

    {"rationale": "<= 400 characters", "scores": {"<key>": 0..6, ...every leaf key...}}

The few-shot examples are rotated per completion (`valuelex.evaluate.position`): no example
always stands last, right before the completion, where a small judge copies it.

`parse_answer` is a pure function. An answer it rejects (not JSON, truncated, a missing, unknown or
out-of-range score, an engine error) is asked again with a new seed up to ``max_judge_retries``
times; after that the row is kept, invalid, with the reason (``judgments.invalid_reason``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from valuelex.engines.base import request_row as engine_request
from valuelex.evaluate.judge_prompt import (
    MAX_SCORE,
    MIN_SCORE,
    answer_schema,
    build_prompt,
    instructions,
    load_examples,
    prefix_for,
    rotated_prefixes,
)
from valuelex.evaluate.judgments import JudgeTask, is_blank, judgment
from valuelex.evaluate.systems import ValueSystem

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from valuelex.budget import Ledger
    from valuelex.engines.base import Engine
    from valuelex.evaluate.config import EvaluationSpec
    from valuelex.spec import ModelSpec


# --- parsing (pure) ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedAnswer:
    """A judge answer: `scores` for every key when valid, else `reason` says why it is unusable."""

    scores: dict[str, int] | None
    rationale: str = ""
    reason: str | None = None

    @property
    def valid(self) -> bool:
        return self.reason is None


_FENCE = re.compile(r"^```[A-Za-z]*\s*(.*?)\s*```$", re.DOTALL)


def _json_object_text(text: str) -> str:
    """The JSON object in an answer: the whole text, a fenced block, or from the first '{' to the last '}'."""
    text = text.strip()
    fenced = _FENCE.match(text)
    if fenced:
        return fenced.group(1)
    start, end = text.find("{"), text.rfind("}")
    if start < 0:
        return text
    return text[start:end + 1] if end > start else text[start:]


def _looks_cut_off(text: str) -> bool:
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            escaped = (char == "\\") and not escaped
            if char == '"' and not escaped:
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
    return in_string or depth > 0


def parse_answer(text: str | None, keys: tuple[str, ...] | list[str], finish_reason: str | None = None) -> ParsedAnswer:
    """Parse one judge answer against the expected dimension keys; never raises.

    Valid: a JSON object (possibly inside a code fence, or with text around it) with ``scores``, an object
    holding an integer 0..6 for every key and no other key (an integral float such as ``4.0`` counts
    as an integer; booleans and strings do not), and an optional string ``rationale``.
    """
    keys = tuple(keys)
    if text is None or not text.strip():
        return ParsedAnswer(None, reason="empty answer")
    body = _json_object_text(text)
    try:  # the first JSON value; text after it (an afterthought of the judge) is ignored
        answer, _ = json.JSONDecoder().raw_decode(body.lstrip())
    except (json.JSONDecodeError, RecursionError):
        if finish_reason == "length" or (body.lstrip().startswith("{") and _looks_cut_off(body)):
            return ParsedAnswer(None, reason="truncated answer (incomplete JSON)")
        return ParsedAnswer(None, reason="not JSON")
    if not isinstance(answer, dict):
        return ParsedAnswer(None, reason=f"not a JSON object (got {type(answer).__name__})")
    rationale = answer.get("rationale", "")
    if not isinstance(rationale, str):
        return ParsedAnswer(None, reason="rationale is not a string")
    scores = answer.get("scores")
    if not isinstance(scores, dict):
        return ParsedAnswer(None, rationale, reason="no `scores` object")
    missing = [k for k in keys if k not in scores]
    if missing:
        return ParsedAnswer(None, rationale, reason=f"missing dimensions: {', '.join(missing)}")
    unknown = sorted(k for k in scores if k not in keys)
    if unknown:
        return ParsedAnswer(None, rationale, reason=f"unknown dimensions: {', '.join(unknown)}")
    out: dict[str, int] = {}
    for key in keys:
        value = scores[key]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if type(value) is not int:
            return ParsedAnswer(None, rationale, reason=f"{key}: score {value!r} is not an integer")
        if not MIN_SCORE <= value <= MAX_SCORE:
            return ParsedAnswer(None, rationale, reason=f"{key}: score {value} out of range {MIN_SCORE}..{MAX_SCORE}")
        out[key] = value
    return ParsedAnswer(out, rationale.strip())


# --- requests and the retry loop -----------------------------------------------------------------


def request_seed(row_id: str, attempt: int) -> int:
    """A different, reproducible seed for each attempt at judging a completion."""
    digest = hashlib.sha256(f"judge:{row_id}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def request_row(
    completion: dict[str, Any], prefix: str, schema_json: str, *, prompting: str, attempt: int,
    temperature: float, max_tokens: int, model: str = "judge", request_id: str | None = None,
    judge_input: str = "answer",
) -> dict[str, Any]:
    """One engine request row (see `valuelex.engines.base`) judging one completion.

    ``model`` is the judge model's name (request rows of the grid carry the model too);
    ``request_id`` (default: the completion's row id) tells requests of several systems apart.
    The seed follows the completion and the attempt, whichever system is asked.
    """
    return engine_request(
        request_id or completion["row_id"],
        build_prompt(prefix, completion.get("stem") or "", completion.get("response") or "",
                     completion.get("reasoning") if judge_input == "answer+reasoning" else None),
        prompting=prompting, temperature=temperature, top_p=1.0, max_tokens=max_tokens,
        seed=request_seed(completion["row_id"], attempt), json_schema=schema_json, model=model, attempt=attempt,
    )


class LLMJudge:
    """Judges completions with an LLM through the engine interface (vLLM or OpenAI-compatible)."""

    kind = "llm"

    def __init__(self, model: ModelSpec, spec: EvaluationSpec, engine: Engine | None = None, *,
                 batch_rows: int = 256, use_gpu: bool | None = None):
        self.model = model
        self.spec = spec
        self.batch_rows = batch_rows  # judgments per stored shard: the unit of resume
        self.use_gpu = use_gpu  # None: the judge gets GPUs when the cluster has any
        self.name = f"llm:{model.name}"
        self._engine = engine
        self._owns_engine = engine is None
        self.ledger: Ledger | None = None  # the study's budget for judging (`valuelex.budget`), set per run
        self.journal: Any = None  # where an options.batch judge journals its Batch API jobs (the run store's)

    @property
    def engine(self) -> Engine:
        """A vLLM judge's engine stays up across its passes (`valuelex.engines.vllm_server`); `close()` ends it."""
        if self._engine is None:
            from valuelex.engines.base import build_engine
            from valuelex.engines.vllm_server import ServedVLLMEngine, serves_across_passes

            self._engine = ServedVLLMEngine(self.model, use_gpu=self.use_gpu) if serves_across_passes(self.model) \
                else build_engine(self.model, use_gpu=self.use_gpu, journal=self.journal)
        return self._engine

    @property
    def engine_starts(self) -> int:
        """Engine starts of this judge's engine so far (`valuelex.engines.vllm_server`: one per run)."""
        return getattr(self._engine, "starts", 0)

    def close(self) -> None:
        """End a kept-up engine this judge started (one given to it is its owner's to close)."""
        if self._engine is not None and self._owns_engine and hasattr(self._engine, "close"):
            self._engine.close()

    def key(self, system: ValueSystem) -> str:
        settings = {
            "model": self.model.model_dump(mode="json", include={"name", "source", "engine", "prompting"}),
            "temperature": self.spec.judge_temperature, "max_tokens": self.spec.judge_max_tokens,
            "prompt": instructions(system, load_examples(system)),
            "example_order": "rotated by row id (valuelex.evaluate.position)",
        }
        if self.spec.judge_input != "answer":  # a judge of the reasoning too is another judge (keys of before)
            settings["judge_input"] = self.spec.judge_input
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.name}#{digest}@{system.fingerprint()}"

    def _generate(self, requests: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        """Result rows in batches of `batch_rows` as the engine finishes them; with a `ledger` (budget), each
        block of `batch_rows` requests is sent only once its estimate (``ledger.estimates``) fits the caps."""
        ledger = self.ledger
        if ledger is None:
            for batch in self.engine.generate(requests, batch_rows=self.batch_rows):
                yield batch.to_pylist()
            return
        gated = ledger.gate(requests, self.model, ledger.estimates[self.model.name], self.batch_rows)
        for batch in self.engine.generate(gated, batch_rows=self.batch_rows):
            ledger.settle_table(self.model.name, batch)
            yield batch.to_pylist()

    def judge(self, completions: list[dict[str, Any]], system: ValueSystem,
              sink: Callable[[list[dict[str, Any]]], None]) -> None:
        """Judge completion rows through the engine, with bounded retries (see `judge_tasks`)."""
        self.judge_many([JudgeTask(system, completions, sink)])

    def judge_many(self, tasks: list[JudgeTask], order_variant: int = 0) -> None:
        """Judge several value systems in one engine run per attempt: an engine start is paid once,
        not once per system (minutes per start for a large judge on GPUs). `order_variant` 1 shows
        the examples in the other order of the position check."""
        judge_tasks(tasks, self._generate, judge=self.name, key=self.key, prompting=self.model.prompting,
                    spec=self.spec, order_variant=order_variant,
                    halted=lambda: self.ledger is not None and self.ledger.stopped is not None)


def _missing_to_none(value: Any) -> Any:
    """Pandas hands missing values back as NaN (truthy): treat them as None."""
    return None if isinstance(value, float) and math.isnan(value) else value


_TOO_LONG = ("maximum context length", "maximum model length")


def _too_long(error: Any) -> bool:
    """The engine refused the prompt as longer than the judge's context: retrying cannot help."""
    return any(marker in str(error).lower() for marker in _TOO_LONG)


def judge_with_retries(
    completions: list[dict[str, Any]], system: ValueSystem,
    generate: Callable[[list[dict[str, Any]]], Iterable[list[dict[str, Any]]]],
    sink: Callable[[list[dict[str, Any]]], None],
    *, judge: str, judge_key: str, prompting: str, spec: EvaluationSpec,
) -> None:
    """`judge_tasks` for one value system."""
    judge_tasks([JudgeTask(system, completions, sink)], generate, judge=judge, key=lambda _system: judge_key,
                prompting=prompting, spec=spec)


@dataclass
class _Item:
    """One completion to judge on one system, with what its attempts cost and why the last failed."""

    task: JudgeTask
    completion: dict[str, Any]
    prefix: str
    schema_json: str
    judge_key: str
    failure: tuple[str, str | None] = ("", None)
    prompt_tokens: int = 0
    completion_tokens: int = 0


def judge_tasks(
    tasks: list[JudgeTask], generate: Callable[[list[dict[str, Any]]], Iterable[list[dict[str, Any]]]],
    *, judge: str, key: Callable[[ValueSystem], str], prompting: str, spec: EvaluationSpec, order_variant: int = 0,
    halted: Callable[[], bool] | None = None,
) -> None:
    """The judge loop: request, parse, retry the unusable answers with a new seed, keep every row.

    The requests of every task (value system) go to `generate` together, one call per attempt.
    `generate` takes engine request rows and yields batches of result rows (``row_id``,
    ``response``, ``finish_reason``, ``error``, token counts) as the engine finishes them. The valid
    judgments of each batch go to their task's `sink` at once, so a run killed mid-attempt keeps
    what was judged; a completion still unusable after ``1 + spec.max_judge_retries`` attempts goes
    to `sink` as an invalid row, with the batch of its last answer, whose reason says what was wrong
    with that answer (a prompt too long for the judge's context is not retried). A blank completion
    is not sent: it is stored invalid ("empty response"). When `halted()` says so after an attempt
    (a budget cap stopped the requests), the loop ends there: what was judged valid is stored, the
    rest is left unjudged for the next run (a completion left waiting for a retry is asked anew).
    """
    attempts = spec.max_judge_retries + 1
    items: dict[str, _Item] = {}
    for index, task in enumerate(tasks):
        prefixes = rotated_prefixes(task.system, load_examples(task.system))
        schema_json = json.dumps(answer_schema(task.system))
        judge_key = key(task.system)
        blank = [c for c in task.completions if is_blank(c.get("response"))]
        if blank:
            task.sink([judgment(c, task.system, judge=judge, judge_key=judge_key, scores=None,
                                reason="empty response", attempts=0) for c in blank])
        for completion in task.completions:
            if not is_blank(completion.get("response")):
                request_id = completion["row_id"] if len(tasks) == 1 else f"{index}:{completion['row_id']}"
                prefix = prefix_for(prefixes, completion["row_id"], order_variant)
                items[request_id] = _Item(task, completion, prefix, schema_json, judge_key)

    def given_up(item: _Item, tried: int = attempts) -> dict[str, Any]:
        return judgment(item.completion, item.task.system, judge=judge, judge_key=item.judge_key, scores=None,
                        reason=f"after {tried} attempt{'s' if tried > 1 else ''}: {item.failure[0]}",
                        judge_response=item.failure[1], attempts=tried,
                        n_prompt_tokens=item.prompt_tokens, n_completion_tokens=item.completion_tokens)

    def store(rows: list[tuple[_Item, dict[str, Any]]]) -> None:
        for task in tasks:  # one sink call per task and batch
            mine = [row for item, row in rows if item.task is task]
            if mine:
                task.sink(mine)

    pending = list(items)
    for attempt in range(attempts):
        if not pending:
            break
        last = attempt == attempts - 1
        temperature = spec.judge_temperature if attempt == 0 else spec.retry_temperature
        requests = [request_row(items[rid].completion, items[rid].prefix, items[rid].schema_json,
                                prompting=prompting, attempt=attempt, temperature=temperature,
                                max_tokens=spec.judge_max_tokens, model=judge.removeprefix("llm:"), request_id=rid,
                                judge_input=spec.judge_input)
                    for rid in pending]
        waiting = set(pending)
        still: set[str] = set()
        for batch in generate(requests):
            done: list[tuple[_Item, dict[str, Any]]] = []
            for raw in batch:
                result = {k: _missing_to_none(v) for k, v in raw.items()}
                rid = result.get("row_id")
                if rid not in waiting:  # a row id not asked for, or answered twice: the first answer counts
                    continue
                waiting.discard(rid)
                item = items[rid]
                item.prompt_tokens += int(result.get("n_prompt_tokens") or 0)
                item.completion_tokens += int(result.get("n_completion_tokens") or 0)
                keys = item.task.system.leaf_keys()
                parsed = None if result.get("error") else parse_answer(result.get("response"), keys,
                                                                       result.get("finish_reason"))
                if parsed is not None and parsed.valid:
                    done.append((item, judgment(
                        item.completion, item.task.system, judge=judge, judge_key=item.judge_key,
                        scores=parsed.scores, rationale=parsed.rationale, judge_response=result.get("response"),
                        attempts=attempt + 1, n_prompt_tokens=item.prompt_tokens,
                        n_completion_tokens=item.completion_tokens)))
                    continue
                if parsed is None:
                    item.failure = (f"engine error: {str(result['error'])[:300]}", None)
                else:
                    item.failure = (parsed.reason or "invalid", result.get("response"))
                if last:  # no attempt left: stored invalid now, with the batch
                    done.append((item, given_up(item)))
                elif parsed is None and _too_long(result["error"]):  # a new seed cannot shorten the prompt
                    done.append((item, given_up(item, attempt + 1)))
                else:
                    still.add(rid)
            if done:
                store(done)
        if halted is not None and halted():
            return
        for rid in waiting:  # rows the engine never returned
            items[rid].failure = ("engine returned no row", None)
            still.add(rid)
        pending = [rid for rid in pending if rid in still]  # asked again in the original order
        if last and pending:
            store([(items[rid], given_up(items[rid])) for rid in pending])
