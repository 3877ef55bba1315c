"""Generation overhead: the elicitation stage against raw `vllm.LLM.generate`, same model, prompts,
sampling params (seeds included) and machine, in one run.

    .venv/bin/python bench/generation_overhead.py [--study configs/local.yaml] [--model NAME]
        [--samples M] [--json bench/results/generation_overhead.json]

Engine start is reported separately. Inside ray.data.llm the engine starts in a Ray actor that
the stage cannot time from outside, so the stage's generation time is its end-to-end time minus
the raw engine's start time on the same model (a Ray actor's own spin-up stays in, against us).
Both sides are also compared end to end, engine start included: what a user waits for.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "auto")
os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")


def raw_vllm(model_path: str, rows: list[dict], chat: bool, max_model_len: int) -> dict:
    from vllm import LLM, SamplingParams

    started = time.monotonic()
    llm = LLM(model=model_path, dtype="float32", enforce_eager=True, max_model_len=max_model_len)
    start_s = time.monotonic() - started
    params = [
        SamplingParams(temperature=r["temperature"], top_p=r["top_p"], max_tokens=r["max_tokens"], seed=r["seed"])
        for r in rows
    ]
    t0 = time.monotonic()
    if chat:
        outputs = llm.chat([[{"role": "user", "content": r["prompt"]}] for r in rows], params, use_tqdm=False)
    else:
        outputs = llm.generate([r["prompt"] for r in rows], params, use_tqdm=False)
    seconds = time.monotonic() - t0
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    del llm
    return {"engine_start_s": round(start_s, 2), "generate_s": round(seconds, 2), "tokens": tokens,
            "tokens_per_s": round(tokens / seconds, 1)}


def stage(study, model, rows: list[dict], out: str) -> dict:
    from valuelex.generate import run_model
    from valuelex.runtime import ensure_ray
    from valuelex.store import OutputRoot

    ensure_ray()
    started = time.monotonic()
    counts = run_model(study, "elicitation", model, OutputRoot(out), set(), samples=rows[-1]["sample"] + 1)
    end_to_end = time.monotonic() - started
    return {"end_to_end_s": round(end_to_end, 2), "tokens": counts["tokens"], "rows": counts["generated"],
            "tokens_per_s_end_to_end": round(counts["tokens"] / end_to_end, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="configs/local.yaml")
    parser.add_argument("--model", default=None, help="model name in the study (default: the first)")
    parser.add_argument("--samples", type=int, default=None, help="M override")
    parser.add_argument("--json", default="bench/results/generation_overhead.json")
    args = parser.parse_args()

    from valuelex import grid
    from valuelex.sources import materialize
    from valuelex.spec import load_study

    study = load_study(args.study)
    model = study.model(args.model) if args.model else study.models[0]
    rows = list(grid.requests(study, "elicitation", model, samples=args.samples))
    path = materialize(model.source)
    raw = raw_vllm(path, rows, model.prompting == "chat", model.options.max_model_len or 2048)
    with tempfile.TemporaryDirectory() as out:
        ours = stage(study, model, rows, out)
    raw_e2e = raw["engine_start_s"] + raw["generate_s"]
    ours_generate_s = max(ours["end_to_end_s"] - raw["engine_start_s"], 1e-9)
    ours["generate_s_est"] = round(ours_generate_s, 2)
    ours["tokens_per_s_est"] = round(ours["tokens"] / ours_generate_s, 1)
    result = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores", "python": sys.version.split()[0], "model": model.name, "rows": len(rows),
        "raw_vllm": raw, "valuelex_stage": ours,
        "same_tokens": raw["tokens"] == ours["tokens"],
        "ratio_generation": round(ours["tokens_per_s_est"] / raw["tokens_per_s"], 3),
        "ratio_end_to_end": round(ours["tokens_per_s_end_to_end"] / (raw["tokens"] / raw_e2e), 3),
    }
    print(f"{'':34}{'raw vllm':>12}{'valuelex':>12}")
    print(f"{'rows':34}{len(rows):>12}{ours['rows']:>12}")
    print(f"{'completion tokens':34}{raw['tokens']:>12}{ours['tokens']:>12}")
    print(f"{'end to end, engine start incl. (s)':34}{raw_e2e:>12.1f}{ours['end_to_end_s']:>12.1f}")
    print(f"{'engine start (s)':34}{raw['engine_start_s']:>12.1f}{'(same)':>12}")
    print(f"{'tokens/s, generation':34}{raw['tokens_per_s']:>12}{ours['tokens_per_s_est']:>12}")
    print(f"{'ratio, generation (target >= 0.9)':34}{'':>12}{result['ratio_generation']:>12}")
    print(f"{'ratio, end to end':34}{'':>12}{result['ratio_end_to_end']:>12}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
