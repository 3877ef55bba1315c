"""The paper's full study on paper: H100 GPU-hours from `valuelex plan` and benchmarks 1-4.

    .venv/bin/python bench/paper_gpu_hours.py [--study configs/paper.yaml] [--judge-model llama2-70b-chat]
        [--results bench/results] [--epsilon 0.05] [--json bench/results/paper_gpu_hours.json]

Starts from `valuelex.plan.plan` (exact grid rows and prompt tokens of configs/paper.yaml, completion
tokens from max_tokens x fill fraction, per-GPU throughput from published vLLM H100 figures in
valuelex/data/throughput.yaml) with the paper's judging design: an LLM judge scoring the ValueLex,
Schwartz and MFT systems (the paper used GPT-4 through its API; `--judge-model` names the study
model that stands in for it when the judge is self-hosted). Then applies what this repository
measured, each factor printed with its arithmetic:

1. generation overhead (bench 1): generation GPU-hours / the stage-to-raw-vLLM throughput ratio;
2. judge cost (bench 3): the measured prompt and completion tokens per judged completion and the
   measured prefix-cache hit rate replace the plan's estimates;
3. adaptive M (bench 4): completion and judging scale by the share of completions adaptive M used
   at the given epsilon on the local study (a scenario: the share depends on the models' variance).

Missing benchmark results leave their factor at 1 and say so. Nothing here runs a model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def _load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="configs/paper.yaml")
    parser.add_argument("--judge-model", default="llama2-70b-chat")
    parser.add_argument("--systems", nargs="+", default=["valuelex", "schwartz", "mft"])
    parser.add_argument("--results", type=Path, default=Path("bench/results"))
    parser.add_argument("--epsilon", type=float, default=0.05)
    parser.add_argument("--json", default="bench/results/paper_gpu_hours.json")
    args = parser.parse_args()

    from valuelex.plan import bucket_for, load_throughput, plan
    from valuelex.spec import load_study

    base = load_study(args.study)
    evaluation = base.evaluation.model_copy(update={"judge": "llm", "judge_model": args.judge_model,
                                                    "systems": args.systems})
    study = base.model_copy(update={"evaluation": evaluation})
    p = plan(study)
    figures = load_throughput()
    stages = p["stages"]
    lines: list[str] = []

    def say(text: str) -> None:
        lines.append(text)
        print(text)

    say(f"Plan: {p['shape']['models']} models ({p['shape']['vllm_models']} on vLLM, {p['shape']['api_models']} by API)"
        f" x {p['shape']['decoding_configs']} decoding configs x M={p['samples']}; judge {stages['judging']['judge']}"
        f" on {', '.join(args.systems)}; figures for {figures['reference_gpu']}.")
    for name in ("elicitation", "completion", "judging"):
        s = stages[name]
        say(f"  {name:12} {s['requests']:>9,} vLLM requests, {s['prompt_tokens'] / 1e6:6.2f}M prompt + "
            f"{s['completion_tokens'] / 1e6:6.2f}M completion tokens -> {s['gpu_hours']:6.2f} GPU-h "
            f"(+ {s['start_gpu_hours']:.2f} GPU-h engine starts)")
    say("  per model: GPU-h = (prompt tokens / prefill tok/s + completion tokens / decode tok/s) / 3600, e.g.")
    example = next(r for r in stages["completion"]["per_model"] if r["engine"] == "vllm" and r["gpus_per_replica"] > 1)
    bucket = bucket_for(example["size_b"], figures)
    prefill, decode = bucket["prefill_tokens_per_s_per_gpu"], bucket["decode_tokens_per_s_per_gpu"]
    say(f"    {example['model']} completion: ({example['prompt_tokens']:,.0f} / {prefill:,}"
        f" + {example['completion_tokens']:,.0f} / {decode:,}) / 3600"
        f" = {example['gpu_hours']:.3f} GPU-h")

    generation = stages["elicitation"]["gpu_hours"] + stages["completion"]["gpu_hours"]
    overhead = _load(args.results, "generation_overhead")
    # the median of bench 1's A/B pairs (a single pair's ratio spreads 0.88-1.67 on this machine)
    ratio = overhead.get("ratio_generation_median", overhead["ratio_generation"]) if overhead else 1.0
    ratio = min(ratio, 1.0)  # a stage measured faster than raw vLLM is noise: never plan below raw
    say(f"1. generation overhead: stage/raw throughput ratio {ratio:.3f}"
        f"{'' if overhead else ' (no bench 1 result: 1)'} -> {generation:.2f} / {ratio:.3f}"
        f" = {generation / ratio:.2f} GPU-h of generation")

    judging = stages["judging"]
    judge_row = judging["per_model"][0]
    judge_bucket = bucket_for(judge_row["size_b"], figures)
    cost = _load(args.results, "judge_cost")
    measured = None
    if cost and cost.get("measured"):
        run = cost["measured"]["batched"]
        measured = (run["prompt_tokens_per_completion"], run["completion_tokens_per_completion"],
                    run["prefix_cache_hit_rate"])
    planned_prompt = judge_row["prompt_tokens"] / judge_row["requests"]
    planned_completion = judge_row["completion_tokens"] / judge_row["requests"]
    if measured:
        prompt_tok, completion_tok, hit = measured
        prefill, decode = judge_bucket["prefill_tokens_per_s_per_gpu"], judge_bucket["decode_tokens_per_s_per_gpu"]
        judge_h = judge_row["requests"] * (prompt_tok * (1 - hit) / prefill + completion_tok / decode) / 3600
        say(f"2. judge cost: plan {planned_prompt:,.0f} prompt + {planned_completion:,.0f} completion tokens per"
            f" request -> measured {prompt_tok:,.0f} + {completion_tok:,.0f} at {hit:.1%} prefix-cache hits: "
            f"{judge_row['requests']:,} x ({prompt_tok:,.0f} x {1 - hit:.3f} / {prefill:,}"
            f" + {completion_tok:,.0f} / {decode:,}) / 3600 = {judge_h:.2f} GPU-h"
            f" (plan: {judging['gpu_hours']:.2f})")
    else:
        judge_h = judging["gpu_hours"]
        say(f"2. judge cost: no measured run in bench 3 results: plan's {judge_h:.2f} GPU-h kept")

    adaptive = _load(args.results, "adaptive_m")
    share = 1.0
    if adaptive:
        row = min(adaptive["adaptive"], key=lambda r: abs(r["epsilon"] - args.epsilon))
        share = row["completions"] / adaptive["fixed"]["completions"]
        say(f"3. adaptive M (local study, epsilon {row['epsilon']}): {row['completions']:,} of "
            f"{adaptive['fixed']['completions']:,} completions = {share:.3f} of fixed M")
    else:
        say("3. adaptive M: no bench 4 result: share 1")
    completion_h = stages["completion"]["gpu_hours"] / ratio * share
    elicitation_h = stages["elicitation"]["gpu_hours"] / ratio
    judging_h = judge_h * share
    starts = sum(stages[s]["start_gpu_hours"] for s in ("elicitation", "completion", "judging"))
    total = elicitation_h + completion_h + judging_h
    say(f"Total: elicitation {elicitation_h:.2f} + completion {completion_h:.2f} + judging {judging_h:.2f}"
        f" = {total:.2f} H100 GPU-h, + {starts:.2f} GPU-h of engine starts = {total + starts:.2f} GPU-h"
        f" (plan before measurements: {p['totals']['gpu_hours']:.2f} + {p['totals']['start_gpu_hours']:.2f})")
    api = p["totals"]["api"]
    say(f"API models (no GPU-h): {api['requests']:,} requests, {api['prompt_tokens'] / 1e6:.2f}M prompt + "
        f"{api['completion_tokens'] / 1e6:.2f}M completion tokens")

    result = {"date": time.strftime("%Y-%m-%d"), "study": p["study"], "judge": judging["judge"],
              "systems": args.systems, "factors": {"generation_ratio": ratio, "judge_measured": measured,
                                                   "adaptive_share": share},
              "gpu_hours": {"elicitation": elicitation_h, "completion": completion_h, "judging": judging_h,
                            "engine_starts": starts, "total": total + starts},
              "plan_totals": p["totals"], "arithmetic": lines}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
