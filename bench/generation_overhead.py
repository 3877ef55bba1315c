"""Generation overhead: the elicitation stage against raw `vllm.LLM.generate`, same model, prompts,
sampling params (seeds included) and machine, in one run.

    .venv/bin/python bench/generation_overhead.py [--study configs/local.yaml] [--model NAME]
        [--samples M] [--json bench/results/generation_overhead.json]

Engine start is reported separately. Steady-state throughput of the stage is measured between the
arrival of its first and last result batch (so the engine's start is excluded), and end to end.
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
    import pyarrow.compute as pc
    import ray.data

    from valuelex.engines.base import build_engine
    from valuelex.generate import conform
    from valuelex.runtime import ensure_ray
    from valuelex.store import OutputRoot

    ensure_ray()
    table = OutputRoot(out).table("elicitation")
    started = time.monotonic()
    arrivals: list[tuple[float, int]] = []
    results = build_engine(model).generate(ray.data.from_items(rows))
    for batch in results.iter_batches(batch_size=study.shard_rows, batch_format="pyarrow"):
        shard = conform(batch)
        table.write(shard)
        arrivals.append((time.monotonic(), int(pc.sum(shard["n_completion_tokens"]).as_py() or 0)))
    end_to_end = time.monotonic() - started
    tokens = sum(t for _, t in arrivals)
    steady_tokens = sum(t for _, t in arrivals[1:])
    steady_s = arrivals[-1][0] - arrivals[0][0] if len(arrivals) > 1 else float("nan")
    return {"end_to_end_s": round(end_to_end, 2), "tokens": tokens, "batches": len(arrivals),
            "tokens_per_s_end_to_end": round(tokens / end_to_end, 1),
            "tokens_per_s_steady": round(steady_tokens / steady_s, 1) if steady_s == steady_s else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="configs/local.yaml")
    parser.add_argument("--model", default=None, help="model name in the study (default: the first)")
    parser.add_argument("--samples", type=int, default=None, help="M override")
    parser.add_argument("--shard-rows", type=int, default=32)
    parser.add_argument("--json", default="bench/results/generation_overhead.json")
    args = parser.parse_args()

    from valuelex import grid
    from valuelex.sources import materialize
    from valuelex.spec import load_study

    study = load_study(args.study)
    study = study.model_copy(update={"shard_rows": args.shard_rows})
    model = study.model(args.model) if args.model else study.models[0]
    rows = list(grid.requests(study, "elicitation", model, samples=args.samples))
    path = materialize(model.source)
    raw = raw_vllm(path, rows, model.prompting == "chat", model.options.max_model_len or 2048)
    with tempfile.TemporaryDirectory() as out:
        ours = stage(study, model, rows, out)
    result = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores", "python": sys.version.split()[0], "model": model.name, "rows": len(rows),
        "raw_vllm": raw, "valuelex_stage": ours,
        "ratio_steady": round(ours["tokens_per_s_steady"] / raw["tokens_per_s"], 3) if ours["tokens_per_s_steady"]
        else None,
        "ratio_end_to_end_vs_raw_with_start": round(
            ours["tokens_per_s_end_to_end"] / (raw["tokens"] / (raw["generate_s"] + raw["engine_start_s"])), 3),
    }
    print(f"{'':28}{'raw vllm':>12}{'valuelex':>12}")
    print(f"{'rows':28}{len(rows):>12}{len(rows):>12}")
    print(f"{'completion tokens':28}{raw['tokens']:>12}{ours['tokens']:>12}")
    print(f"{'tokens/s (no engine start)':28}{raw['tokens_per_s']:>12}{ours['tokens_per_s_steady']!s:>12}")
    print(f"{'ratio (target >= 0.9)':28}{'':>12}{result['ratio_steady']!s:>12}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
