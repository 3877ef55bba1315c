"""What a study will cost, before anything runs: rows, requests, tokens and GPU-hours per stage.

`plan(study)` walks the same grid the run will (`valuelex.grid`), so row counts are exact; tokens
and GPU-hours are estimates from documented figures in ``valuelex/data/throughput.yaml``:

- prompt tokens: the characters of every prompt the grid will send / ``chars_per_token`` (4, the
  usual rule of thumb for English BPE tokenizers), plus ``chat_overhead_tokens`` per chat request;
- completion tokens: ``max_tokens`` x an expected fill fraction (chat models stop on their own;
  pretrained models usually write until ``max_tokens``: fill 1.0);
- reasoning tokens: a reasoning model's ``options.reasoning_budget`` per request on top of its
  answer, the sum capped at the request's token limit (`grid.token_limit`); counted in the
  completion tokens and shown apart as ``reasoning_tokens``. The judge reads answers only (unless
  ``evaluation.judge_input`` says answer+reasoning), so judge prompts leave the reasoning out;
- GPU-hours (vLLM models only): prompt tokens / prefill throughput + completion tokens / decode
  throughput, per GPU, for the model's size bucket on the reference GPU (H100), / 3600. Engine
  starts (weights load, profiling, CUDA graphs: ``engine_start_minutes`` x the GPUs of every
  replica, once per model for both generation grids (the completion rows go through the engine
  elicitation started, `shares_engines`; once per grid with adaptive M or a
  budget cap), once per run for a vLLM judge of one replica (`valuelex.engines.vllm_server`; else
  once per attempt round)) are reported apart as
  ``start_gpu_hours``: they do not grow with M. The judge's shared instructions are counted as
  prompt tokens but, served from vLLM's prefix cache, mostly cost no prefill
  (``judge_prefix_cached``);
- API models (``engine: openai``) are counted apart: requests and tokens, no GPU-hours.

Stages: ``elicitation`` and ``completion`` (one request per grid row), and ``judging``: with the
``llm`` judge one request per completion per value system (x expected attempts), the judge's prompt
being its packaged instructions + the stem + the expected completion; with the ``embedding`` judge
the completions are embedded on CPU (rows counted, no GPU-hours). With adaptive sampling enabled,
completion and judging are planned at ``adaptive.max_samples`` (an upper bound).

Everything scales linearly with M (``samples``): double M, double the rows, tokens and GPU-hours.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from valuelex import grid
from valuelex.errors import StudyError

if TYPE_CHECKING:
    from valuelex.instruments import Stage
    from valuelex.spec import ModelSpec, Study

STAGES = ("elicitation", "completion", "judging")


# --- the figures ---------------------------------------------------------------------------------


@cache
def _packaged() -> dict[str, Any]:
    text = resources.files("valuelex.data").joinpath("throughput.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def load_throughput(overrides: str | Path | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The packaged planning figures, with `overrides` (a YAML path or a mapping) laid over them.

    Top-level keys replace the packaged ones, except ``buckets`` (merged by bucket ``name``: an
    override bucket replaces the packaged bucket of that name or adds a new one) and
    ``fill_fraction`` (merged per prompting style).
    """
    figures = copy.deepcopy(_packaged())
    if overrides is None:
        return _validated(figures, "valuelex/data/throughput.yaml")
    where = str(overrides) if not isinstance(overrides, Mapping) else "throughput overrides"
    if not isinstance(overrides, Mapping):
        try:
            overrides = yaml.safe_load(Path(overrides).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise StudyError(f"{where}: cannot read throughput overrides: {exc}") from None
        if not isinstance(overrides, Mapping):
            raise StudyError(f"{where}: expected a mapping of planning figures")
    for key, value in overrides.items():
        if key == "buckets":
            by_name = {b["name"]: b for b in figures["buckets"]}
            for bucket in value or []:
                if not isinstance(bucket, Mapping) or "name" not in bucket:
                    raise StudyError(f"{where}: buckets: every bucket needs a name")
                by_name[bucket["name"]] = {**by_name.get(bucket["name"], {}), **bucket}
            figures["buckets"] = list(by_name.values())
        elif key == "fill_fraction" and isinstance(value, Mapping):
            for style, fractions in value.items():
                figures["fill_fraction"][style] = {**figures["fill_fraction"].get(style, {}), **fractions}
        else:
            figures[key] = value
    return _validated(figures, where)


def _validated(figures: dict[str, Any], where: str) -> dict[str, Any]:
    try:
        figures["buckets"] = sorted(figures["buckets"], key=lambda b: float(b["max_size_b"]))
        for bucket in figures["buckets"]:
            bucket.setdefault("engine_start_minutes", 0)
            if float(bucket["engine_start_minutes"]) < 0:
                raise StudyError(f"{where}: buckets.{bucket['name']}.engine_start_minutes: must be >= 0")
            for key in ("decode_tokens_per_s_per_gpu", "prefill_tokens_per_s_per_gpu"):
                if not float(bucket[key]) > 0:
                    raise StudyError(f"{where}: buckets.{bucket['name']}.{key}: must be > 0")
        if not float(figures["chars_per_token"]) > 0:
            raise StudyError(f"{where}: chars_per_token: must be > 0")
        names = {b["name"] for b in figures["buckets"]}
        if figures["unknown_size_bucket"] not in names:
            raise StudyError(f"{where}: unknown_size_bucket: {figures['unknown_size_bucket']!r} is not a bucket")
    except (KeyError, TypeError, ValueError) as exc:
        raise StudyError(f"{where}: malformed planning figures: {exc!r}") from None
    return figures


def bucket_for(size_b: float | None, figures: Mapping[str, Any]) -> dict[str, Any]:
    """The throughput bucket of a model size (the ``unknown_size_bucket`` for an unknown size)."""
    if size_b is None:
        return next(b for b in figures["buckets"] if b["name"] == figures["unknown_size_bucket"])
    for bucket in figures["buckets"]:
        if size_b <= float(bucket["max_size_b"]):
            return bucket
    return figures["buckets"][-1]


def prompt_tokens(text: str, figures: Mapping[str, Any], chat: bool) -> int:
    """Estimated tokens of one prompt: characters / chars_per_token, plus the chat template's few."""
    return math.ceil(len(text) / float(figures["chars_per_token"])) + (
        int(figures["chat_overhead_tokens"]) if chat else 0)


def gpu_hours(prompt: float, completion: float, bucket: Mapping[str, Any]) -> float:
    """GPU-hours on the reference GPU for these token counts in a size bucket."""
    seconds = prompt / float(bucket["prefill_tokens_per_s_per_gpu"]) + completion / float(
        bucket["decode_tokens_per_s_per_gpu"])
    return seconds / 3600


# --- the plan ------------------------------------------------------------------------------------


def plan(study: Study, throughput_overrides: str | Path | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Rows, requests, tokens and GPU-hours of every stage of a study (see the module docstring).

    Returns a JSON-ready dict: ``study``, ``samples``, ``shape`` (model and config counts),
    ``stages`` (``elicitation``, ``completion``, ``judging``: each with ``grid_rows``, ``requests``,
    ``prompt_tokens``, ``completion_tokens``, ``gpu_hours`` (generation: linear in M),
    ``start_gpu_hours`` and ``engine_starts`` (engine starts: replicas x starts), ``api`` and ``per_model``),
    ``totals``, ``per_model`` (GPU-hours and tokens over all stages) and ``assumptions``.
    Token counts are expected values (floats); row and request counts are exact integers.
    """
    figures = load_throughput(throughput_overrides)
    notes: list[str] = []
    adaptive = study.evaluation.adaptive
    eval_samples = max(adaptive.max_samples, study.samples) if adaptive.enabled else study.samples
    if adaptive.enabled:
        notes.append(f"adaptive sampling: completion and judging planned at M <= {eval_samples} (an upper bound)")
    unknown = [m.name for m in study.models if m.engine == "vllm" and m.size_b is None]
    if unknown:
        notes.append(f"size_b unknown, planned as {figures['unknown_size_bucket']}: {', '.join(unknown)}")

    stages: dict[str, dict[str, Any]] = {}
    shared = shares_engines(study)
    stages["elicitation"] = _generation(study, "elicitation", study.samples, figures)
    stages["completion"] = _generation(study, "completion", eval_samples, figures, starts=0 if shared else 1)
    stages["judging"] = _judging(study, stages["completion"], figures, notes)

    per_model: dict[str, dict[str, Any]] = {}
    for stage in stages.values():
        for row in stage["per_model"]:
            total = per_model.setdefault(row["model"], {
                "model": row["model"], "engine": row["engine"], "size_b": row["size_b"], "bucket": row["bucket"],
                "gpus_per_replica": row["gpus_per_replica"], "requests": 0, "prompt_tokens": 0,
                "completion_tokens": 0, "gpu_hours": None if row["gpu_hours"] is None else 0.0,
                "start_gpu_hours": None if row["start_gpu_hours"] is None else 0.0, "reasoning_tokens": 0,
                "engine_starts": 0,
            })
            total["engine_starts"] += row["engine_starts"]
            total["reasoning_tokens"] += row.get("reasoning_tokens", 0)
            for key in ("requests", "prompt_tokens", "completion_tokens"):
                total[key] += row[key]
            for key in ("gpu_hours", "start_gpu_hours"):
                if row[key] is not None:
                    total[key] = (total[key] or 0.0) + row[key]
    totals = {key: sum(s[key] for s in stages.values()) for key in (
        "grid_rows", "requests", "prompt_tokens", "completion_tokens", "gpu_hours", "start_gpu_hours",
        "engine_starts")}
    totals["api"] = {key: sum(s["api"][key] for s in stages.values())
                     for key in ("requests", "prompt_tokens", "completion_tokens")}
    totals["reasoning_tokens"] = sum(s.get("reasoning_tokens", 0) for s in stages.values())
    totals["usd"] = _price(study, stages, per_model)
    return {
        "study": study.name,
        "samples": study.samples,
        "shape": {
            "models": len(study.models), "vllm_models": sum(m.engine == "vllm" for m in study.models),
            "api_models": sum(m.engine != "vllm" for m in study.models), "decoding_configs": len(study.decoding),
            "elicitation_prompts": len(grid.items(study, "elicitation")),
            "completion_stems": len(grid.items(study, "completion")),
        },
        "stages": stages,
        "totals": totals,
        "per_model": list(per_model.values()),
        "assumptions": {
            "reference_gpu": figures["reference_gpu"], "source": figures["source"],
            "chars_per_token": figures["chars_per_token"], "chat_overhead_tokens": figures["chat_overhead_tokens"],
            "fill_fraction": figures["fill_fraction"], "judge_fill_fraction": figures["judge_fill_fraction"],
            "judge_expected_attempts": figures["judge_expected_attempts"],
            "judge_prefix_cached": figures["judge_prefix_cached"],
            "buckets": figures["buckets"], "notes": notes,
        },
    }


def shares_engines(study: Study) -> bool:
    """Whether elicitation and completion go through one engine pass per model (`GenerationStage.also`):
    not with adaptive M (its rounds decide M as they go) nor under a spending cap (a stage's ledger
    reserves for its own requests only; two stages in one stream could cross a cap)."""
    caps = [study.budget, *study.budget.stages.values()]
    uncapped = all(cap.max_usd is None and cap.max_tokens is None for cap in caps)
    return uncapped and not study.evaluation.adaptive.enabled


def _price(study: Study, stages: dict[str, dict[str, Any]], per_model: dict[str, dict[str, Any]]) -> float | None:
    """USD of every API model row, stage and model (`valuelex.cost`); the whole run's, None if any is unpriced."""
    from valuelex.cost import load_prices, usd

    prices = load_prices({k: v.model_dump() for k, v in study.prices.items()})
    sources = {m.name: m.source for m in study.models}
    batched = {m.name: m.options.batch for m in study.models}  # Batch API requests: at batch_discount
    judge = study.evaluation.judge_model_spec(study) if study.evaluation.judge == "llm" else None
    if judge is not None:
        sources.setdefault(judge.name, judge.source)
        batched.setdefault(judge.name, judge.options.batch)
    for total in per_model.values():
        total["usd"] = 0.0 if total["engine"] != "vllm" else None
    for stage in stages.values():
        stage["usd"] = 0.0
        for row in stage["per_model"]:
            if row["engine"] == "vllm":
                row["usd"] = None
                continue
            row["usd"] = usd(sources[row["model"]], row["prompt_tokens"], row["completion_tokens"], prices,
                             batch=batched[row["model"]])
            row["batch"] = batched[row["model"]]
            total = per_model[row["model"]]
            stage["usd"] = None if row["usd"] is None or stage["usd"] is None else stage["usd"] + row["usd"]
            total["usd"] = None if row["usd"] is None or total["usd"] is None else total["usd"] + row["usd"]
    spent = [s["usd"] for s in stages.values()]
    return None if any(v is None for v in spent) else sum(spent)


def _model_row(model: ModelSpec, figures: Mapping[str, Any], requests: int, prompt: float,
               completion: float, starts: int = 1) -> dict[str, Any]:
    vllm = model.engine == "vllm"
    bucket = bucket_for(model.size_b, figures) if vllm else None
    opts = model.options
    gpus = opts.tensor_parallel_size * opts.pipeline_parallel_size if vllm else 0
    start = starts * float(bucket["engine_start_minutes"]) / 60 * gpus * opts.concurrency if bucket else None
    return {
        "model": model.name, "engine": model.engine, "size_b": model.size_b,
        "bucket": bucket["name"] if bucket else None, "gpus_per_replica": gpus,
        "requests": requests, "prompt_tokens": prompt, "completion_tokens": completion,
        "gpu_hours": gpu_hours(prompt, completion, bucket) if bucket else None,
        "start_gpu_hours": start if requests else (0.0 if bucket else None),
        "engine_starts": starts * opts.concurrency if vllm and requests else 0,
    }


def _summed(rows: list[dict[str, Any]], grid_rows: int, **extra: Any) -> dict[str, Any]:
    gpu = [r for r in rows if r["engine"] == "vllm"]
    api = [r for r in rows if r["engine"] != "vllm"]
    return {
        "grid_rows": grid_rows,
        "requests": sum(r["requests"] for r in gpu),
        "prompt_tokens": sum(r["prompt_tokens"] for r in gpu),
        "completion_tokens": sum(r["completion_tokens"] for r in gpu),
        "gpu_hours": sum(r["gpu_hours"] for r in gpu),
        "start_gpu_hours": sum(r["start_gpu_hours"] for r in gpu),
        "engine_starts": sum(r["engine_starts"] for r in gpu),
        "api": {key: sum(r[key] for r in api) for key in ("requests", "prompt_tokens", "completion_tokens")},
        "reasoning_tokens": sum(r.get("reasoning_tokens", 0) for r in rows),
        "per_model": rows,
        **extra,
    }


def _generation(study: Study, stage: Stage, samples: int, figures: Mapping[str, Any],
                starts: int = 1) -> dict[str, Any]:
    """One request per grid row; tokens from the exact prompts the grid will send (every wording).
    `starts`: engine starts per model (0 where another grid's engine pass carries these rows)."""
    items = [wording for _, wording in grid.wordings(study, stage)]
    rows = []
    for model in study.models:
        chat = model.prompting == "chat"
        fill = float(figures["fill_fraction"][model.prompting][stage])
        per_config_prompt = sum(prompt_tokens(item.framed(model.prompting), figures, chat) for item in items)
        prompt = per_config_prompt * len(study.decoding) * samples
        budget = model.options.reasoning_budget or 0
        per_item = [(min(grid.token_limit(model, c), c.max_tokens * fill + budget),
                     min(grid.token_limit(model, c), budget)) for c in study.decoding]
        completion = sum(total for total, _ in per_item) * len(items) * samples
        row = _model_row(model, figures, grid.count(study, stage, model, samples=samples), prompt, completion,
                         starts=starts)
        row["reasoning_tokens"] = sum(thought for _, thought in per_item) * len(items) * samples
        rows.append(row)
    return _summed(rows, grid.count(study, stage, samples=samples), samples=samples, shared_engine=not starts)


def generation_estimate(study: Study, stage: Stage, model: ModelSpec,
                        figures: Mapping[str, Any] | None = None) -> Callable[[dict[str, Any]], tuple[float, float]]:
    """(prompt, completion) tokens one request row of a generation stage is expected to cost, as the
    plan counts them (`valuelex.budget` checks caps with it): the prompt's own tokens, and
    min(request limit, config max_tokens x fill + reasoning_budget)."""
    figures = figures or load_throughput()
    chat = model.prompting == "chat"
    fill = float(figures["fill_fraction"][model.prompting][stage])
    configs = {c.name: c.max_tokens for c in study.decoding}
    budget = model.options.reasoning_budget or 0

    def estimate(row: dict[str, Any]) -> tuple[float, float]:
        limit = int(row["max_tokens"])
        return (float(prompt_tokens(row["prompt"], figures, chat)),
                float(min(limit, configs.get(row["config"], limit) * fill + budget)))

    return estimate


def judge_estimate(spec: Any, judge: ModelSpec,
                   figures: Mapping[str, Any] | None = None) -> Callable[[dict[str, Any]], tuple[float, float]]:
    """(prompt, completion) tokens of one judge request row, as `_judging` counts them."""
    figures = figures or load_throughput()
    chat = judge.prompting == "chat"
    expected = spec.judge_max_tokens * float(figures["judge_fill_fraction"]) + (judge.options.reasoning_budget or 0)

    def estimate(row: dict[str, Any]) -> tuple[float, float]:
        return float(prompt_tokens(row["prompt"], figures, chat)), float(min(int(row["max_tokens"]), expected))

    return estimate


def _judging(study: Study, completion: dict[str, Any], figures: Mapping[str, Any], notes: list[str]) -> dict[str, Any]:
    spec = study.evaluation
    completions = completion["grid_rows"]
    systems = list(spec.systems)
    if spec.judge != "llm":
        return {**_summed([], completions * len(systems)), "judge": "embedding", "systems": systems,
                "embedded_completions": completions}
    judge = spec.judge_model_spec(study)
    attempts = float(figures["judge_expected_attempts"])
    requests = completions * len(systems) * attempts
    completion_tokens_total = completion["completion_tokens"] + completion["api"]["completion_tokens"]
    if spec.judge_input == "answer":  # the judge reads answers: the respondents' reasoning is not in its prompt
        completion_tokens_total -= sum(r.get("reasoning_tokens", 0) for r in completion["per_model"])
    mean_completion = completion_tokens_total / completions if completions else 0.0
    stems = grid.items(study, "completion")
    mean_stem = sum(prompt_tokens(s.completion_text, figures, False) for s in stems) / len(stems)
    prompt = cached = 0.0
    for name in systems:
        prefix = _judge_prefix_tokens(name, figures, notes)
        per_request = prefix + mean_stem + mean_completion + (
            int(figures["chat_overhead_tokens"]) if judge.prompting == "chat" else 0)
        prompt += per_request * completions * attempts
        cached += prefix * completions * attempts * float(figures["judge_prefix_cached"])
    completion_tokens = requests * min(
        grid.token_limit(judge, _judge_config(spec)),
        spec.judge_max_tokens * float(figures["judge_fill_fraction"]) + (judge.options.reasoning_budget or 0))
    # every system is judged in one engine pass per attempt round; a served judge stays up across the
    # rounds (one start); else a large study always has some answer to retry, so every round starts one
    from valuelex.engines.vllm_server import serves_across_passes

    starts = 1 if serves_across_passes(judge) else spec.max_judge_retries + 1
    row = _model_row(judge, figures, round(requests), prompt, completion_tokens, starts=starts)
    if row["gpu_hours"] is not None:  # the shared instructions come from vLLM's prefix cache: no prefill
        row["gpu_hours"] = gpu_hours(prompt - cached, completion_tokens, bucket_for(judge.size_b, figures))
    return {**_summed([row], completions * len(systems)), "judge": f"llm:{judge.name}", "systems": systems}


def _judge_config(spec: Any) -> Any:
    from valuelex.respondents import DecodingConfig

    return DecodingConfig(name="judge", temperature=spec.judge_temperature, top_p=1.0,
                          max_tokens=spec.judge_max_tokens)


def _judge_prefix_tokens(system_name: str, figures: Mapping[str, Any], notes: list[str]) -> float:
    """Tokens of the judge's shared instructions for a value system (few-shot examples included)."""
    from valuelex.evaluate.judge_prompt import instructions, load_examples
    from valuelex.evaluate.systems import load_value_system

    try:
        system = load_value_system(system_name)
    except Exception:  # a taxonomy.json that construction has not written yet: size it like ours
        notes.append(f"value system {system_name!r} not readable yet: judge prompt sized like 'valuelex'")
        system = load_value_system("valuelex")
    return prompt_tokens(instructions(system, load_examples(system)), figures, False)


# --- the table -----------------------------------------------------------------------------------


def _n(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1e9:
        return f"{value / 1e9:.2f}B"
    if value >= 1e6:
        return f"{value / 1e6:.1f}M"
    if value >= 1e4:
        return f"{value / 1e3:.0f}k"
    return f"{value:,.0f}"


def _usd(value: float | None) -> str:
    return "unpriced" if value is None else f"${value:,.2f}"


def _h(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded)

    return [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def format_plan(p: Mapping[str, Any]) -> str:
    """`plan()`'s result as text tables: stages, then models, then the assumptions."""
    shape, assumptions = p["shape"], p["assumptions"]
    gpu = assumptions["reference_gpu"].split()[0]
    lines = [
        f"Plan for study {p['study']}: {shape['models']} models ({shape['vllm_models']} vLLM, "
        f"{shape['api_models']} API) x {shape['decoding_configs']} decoding configs x M={p['samples']}; "
        f"{shape['elicitation_prompts']} elicitation prompts, {shape['completion_stems']} completion stems",
        "",
    ]
    header = ["stage", "grid rows", "vLLM requests", "prompt tok", "completion tok", f"{gpu} GPU-h",
              "+ starts", "starts", "API requests", "API prompt tok", "API completion tok"]
    rows = []
    for name, s in [*p["stages"].items(), ("total", p["totals"])]:
        label = name if name != "judging" else f"judging ({s.get('judge', '')})"
        rows.append([label, _n(s["grid_rows"]), _n(s["requests"]), _n(s["prompt_tokens"]), _n(s["completion_tokens"]),
                     _h(s["gpu_hours"]), _h(s["start_gpu_hours"]), str(s["engine_starts"]), _n(s["api"]["requests"]),
                     _n(s["api"]["prompt_tokens"]), _n(s["api"]["completion_tokens"])])
    lines += _table(header, rows)
    judging = p["stages"]["judging"]
    if judging.get("judge") == "embedding":
        lines.append(f"judging: embedding judge, {_n(judging['embedded_completions'])} completions embedded on CPU "
                     f"and scored on {len(judging['systems'])} value system(s); no GPU-hours")
    if p["totals"].get("reasoning_tokens"):
        thinkers = ", ".join(f"{m['model']} {_n(m['reasoning_tokens'])}"
                             for m in p["per_model"] if m["reasoning_tokens"])
        lines.append(f"reasoning: {_n(p['totals']['reasoning_tokens'])} of the completion tokens are thinking "
                     f"(options.reasoning_budget per request: {thinkers})")
    if any(m.get("batch") for s in p["stages"].values() for m in s["per_model"]):
        lines.append("batch: models with options.batch are priced at the Batch API's discount "
                     "(batch_discount in valuelex/data/prices.yaml)")
    lines.append("API cost (USD, list prices: valuelex/data/prices.yaml or the study's prices:): " + ", ".join(
        f"{name} {_usd(s.get('usd'))}" for name, s in [*p["stages"].items(), ("total", p["totals"])]))
    lines.append("")
    header = ["model", "engine", "size", "bucket", "GPUs/replica", "requests", "prompt tok", "completion tok",
              f"{gpu} GPU-h", "+ starts", "USD"]
    rows = [[m["model"], m["engine"], "?" if m["size_b"] is None else f"{m['size_b']:g}B", m["bucket"] or "-",
             str(m["gpus_per_replica"] or "-"), _n(m["requests"]), _n(m["prompt_tokens"]),
             _n(m["completion_tokens"]), _h(m["gpu_hours"]), _h(m["start_gpu_hours"]),
             "-" if m["engine"] == "vllm" else _usd(m.get("usd"))] for m in p["per_model"]]
    lines += _table(header, rows)
    fills = "; ".join(
        f"{style}-prompted " + ", ".join(f"{stage} {f:g}" for stage, f in by_stage.items())
        for style, by_stage in assumptions["fill_fraction"].items())
    lines += [
        "",
        f"GPU-h: generation on {assumptions['reference_gpu']} (grows linearly with M); '+ starts': engine starts "
        "(load, profile, CUDA graphs): " + ("once per model for both grids (completion shares elicitation's)"
                                           if p["stages"]["completion"].get("shared_engine") else
                                           "once per model per grid (adaptive M or a budget cap)")
        + "; a vLLM judge once per run (one replica, no pipeline parallelism; else once per attempt round).",
        f"Throughput figures: {assumptions['source']}.",
        f"Tokens: prompt = characters / {assumptions['chars_per_token']} (+{assumptions['chat_overhead_tokens']} "
        f"per chat turn); completion = max_tokens x fill ({fills}); judge fill {assumptions['judge_fill_fraction']:g}, "
        f"{assumptions['judge_expected_attempts']:g} attempts per judgment.",
        *(f"note: {n}" for n in assumptions["notes"]),
    ]
    return "\n".join(lines)
