"""Generation overhead: the elicitation stage against raw `vllm.LLM`, same model, prompts,
sampling params (seeds included), engine settings and machine, in one run.

    .venv/bin/python bench/generation_overhead.py [--study configs/local.yaml] [--model NAME]
        [--samples M] [--pairs 3] [--json bench/results/generation_overhead.json]

Runs alternate, A B A B ... (`--pairs` pairs): A = raw vLLM in a fresh subprocess (its own import
and engine start), B = the stage (a calibration run, then the grid). One engine exists at a time.
The result is the median of the pairs' ratios: a single pair cannot tell 0.9 from 1.1 on a
machine whose raw vLLM alone varies by 20% from run to run.

Engine start is measured separately on both sides. Raw: `import vllm` and `LLM(...)` are timed
apart from `LLM.chat/generate`. Stage: the engine starts inside a Ray actor the stage cannot time
from outside, so its fixed cost is measured by a calibration run of the same stage on one row
with max_tokens=1 (Ray actors, vLLM import and engine start, pipeline start and drain, store
writes); the stage's generation time is its end-to-end time on the grid minus that fixed cost.
The raw engine gets the exact engine arguments the stage gives vLLM (chunked prefill off on CPU,
same batched-token limit), so the ratio measures the pipeline, not a different engine setup.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "auto")
os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")


def raw_vllm(model_path: str, engine_kwargs: dict, rows: list[dict], chat: bool) -> dict:
    started = time.monotonic()
    from vllm import LLM, SamplingParams

    import_s = time.monotonic() - started
    from dataclasses import fields

    from vllm.engine.arg_utils import EngineArgs

    accepted = {f.name for f in fields(EngineArgs)}  # ray.data.llm adds its own keys (task_type)
    started = time.monotonic()
    llm = LLM(model=model_path, **{k: v for k, v in engine_kwargs.items() if k in accepted})
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
    return {"import_s": round(import_s, 2), "engine_start_s": round(start_s, 2), "generate_s": round(seconds, 2),
            "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1)}


def stage(study, model, samples: int, out: str) -> dict:
    from valuelex.generate import run_model
    from valuelex.store import RunStore

    started = time.monotonic()
    counts = run_model(study, "elicitation", model, RunStore(out), set(), samples=samples)
    end_to_end = time.monotonic() - started
    return {"end_to_end_s": round(end_to_end, 2), "tokens": counts["tokens"], "rows": counts["generated"]}


def calibration_study(study, model):
    """The same study cut to one row that generates one token: what the stage costs besides generating."""
    from valuelex.instruments import select

    first = select("elicitation", study.prompts.elicitation)[0]
    decoding = [study.decoding[0].model_copy(update={"max_tokens": 1})]
    return study.model_copy(update={"decoding": decoding, "samples": 1, "models": [model],
                                    "prompts": study.prompts.model_copy(update={"elicitation": [first.id]})})


def _pair(raw: dict, ours: dict, fixed: dict) -> dict:
    ours = {**ours, "fixed_s": fixed["end_to_end_s"]}
    generate_s = max(ours["end_to_end_s"] - fixed["end_to_end_s"], 1e-9)
    ours.update(generate_s=round(generate_s, 2), tokens_per_s=round(ours["tokens"] / generate_s, 1),
                tokens_per_s_end_to_end=round(ours["tokens"] / ours["end_to_end_s"], 1))
    raw_e2e = raw["import_s"] + raw["engine_start_s"] + raw["generate_s"]
    return {"raw_vllm": raw, "valuelex_stage": ours, "same_tokens": raw["tokens"] == ours["tokens"],
            "ratio_generation": round(ours["tokens_per_s"] / raw["tokens_per_s"], 3),
            "ratio_end_to_end": round(ours["tokens_per_s_end_to_end"] / (raw["tokens"] / raw_e2e), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="configs/local.yaml")
    parser.add_argument("--model", default=None, help="model name in the study (default: the first)")
    parser.add_argument("--samples", type=int, default=None, help="M override")
    parser.add_argument("--pairs", type=int, default=3, help="A B pairs (raw vLLM, then the stage)")
    parser.add_argument("--raw-only", default=None, help=argparse.SUPPRESS)  # the A side writes its JSON here
    parser.add_argument("--json", default="bench/results/generation_overhead.json")
    args = parser.parse_args()

    from valuelex import grid
    from valuelex.engines.vllm import VLLMEngine
    from valuelex.runtime import ensure_ray
    from valuelex.sources import materialize
    from valuelex.spec import load_study

    study = load_study(args.study)
    model = study.model(args.model) if args.model else study.models[0]
    samples = args.samples or study.samples
    rows = list(grid.requests(study, "elicitation", model, samples=samples))
    path = materialize(model.source)
    engine_kwargs = VLLMEngine(model).processor_config(path, use_gpu=False).engine_kwargs
    if args.raw_only:  # the A side, in its own process
        Path(args.raw_only).write_text(json.dumps(raw_vllm(path, engine_kwargs, rows, model.prompting == "chat")))
        return
    pairs = []
    load_start = os.getloadavg()[0]
    for index in range(args.pairs):
        with tempfile.TemporaryDirectory() as out:
            command = [sys.executable, __file__, "--study", args.study, "--raw-only", out + "/raw.json"]
            command += ["--model", model.name] + (["--samples", str(samples)] if args.samples else [])
            subprocess.run(command, check=True)
            raw = json.loads(Path(out + "/raw.json").read_text())
            ensure_ray()
            fixed = stage(calibration_study(study, model), model, 1, out + "/calibration")
            ours = stage(study, model, samples, out + "/grid")
        pairs.append(_pair(raw, ours, fixed))
        print(f"pair {index + 1}: raw {raw['tokens_per_s']} tok/s, stage {pairs[-1]['valuelex_stage']['tokens_per_s']}"
              f" tok/s, ratio {pairs[-1]['ratio_generation']}", flush=True)
    ratios = sorted(p["ratio_generation"] for p in pairs)
    raw, ours = pairs[-1]["raw_vllm"], pairs[-1]["valuelex_stage"]
    result = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores", "python": sys.version.split()[0], "model": model.name, "rows": len(rows),
        "load_average_start": load_start, "pairs": pairs, "engine_kwargs": engine_kwargs,
        "ratio_generation_median": statistics.median(ratios), "ratios_generation": ratios,
        "ratio_end_to_end_median": statistics.median(p["ratio_end_to_end"] for p in pairs),
        "same_tokens": all(p["same_tokens"] for p in pairs),
        "ratio_generation": pairs[-1]["ratio_generation"], "ratio_end_to_end": pairs[-1]["ratio_end_to_end"],
    }
    raw_e2e = raw["import_s"] + raw["engine_start_s"] + raw["generate_s"]
    print(f"{'':34}{'raw vllm':>12}{'valuelex':>12}")
    print(f"{'rows':34}{len(rows):>12}{ours['rows']:>12}")
    print(f"{'completion tokens':34}{raw['tokens']:>12}{ours['tokens']:>12}")
    print(f"{'end to end, engine start incl. (s)':34}{raw_e2e:>12.1f}{ours['end_to_end_s']:>12.1f}")
    print(f"{'fixed: import + engine start (s)':34}{raw['import_s'] + raw['engine_start_s']:>12.1f}"
          f"{ours['fixed_s']:>12.1f}")
    print(f"{'generation (s)':34}{raw['generate_s']:>12.1f}{ours['generate_s']:>12.1f}")
    print(f"{'tokens/s, generation':34}{raw['tokens_per_s']:>12}{ours['tokens_per_s']:>12}")
    print(f"{'ratio, generation (target >= 0.9)':34}{'':>12}{result['ratio_generation']:>12}")
    print(f"{'ratio, end to end':34}{'':>12}{result['ratio_end_to_end']:>12}")
    print(f"(the table is the last pair) median generation ratio over {len(pairs)} pairs: "
          f"{result['ratio_generation_median']:.3f} {ratios}; load average at start {load_start:.1f}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
