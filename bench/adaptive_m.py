"""Adaptive M against fixed M on the local study: samples used and CI width.

    .venv/bin/python bench/adaptive_m.py [--study configs/local.yaml] [--out runs/local]
        [--max-samples 3] [--start 1] [--step 1] [--epsilons 0.03 0.04 0.05 ...]
        [--json bench/results/adaptive_m.json]

The completions of the study's grid are generated up to ``--max-samples`` (M_max) through the
real completion stage (vLLM on CPU here); a store that already holds them (the README's local run
writes ``runs/local``) is reused, since a sample has the same row id and seed whatever M is. Every
completion is judged once by the study's judge. Then the fixed design (M = M_max) and the adaptive
rule (`valuelex.evaluate.adaptive`: rounds M = start, start+step, ... until every model x system x
dimension CI half-width <= epsilon) are scored from the same judgments, one run of the rule per
epsilon. Reported: M and completions used, the widest and the mean CI half-width, and the
generation time saved at the measured seconds per completion.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="configs/local.yaml")
    parser.add_argument("--out", default=None, help="output root (default: the study's own, runs/local)")
    parser.add_argument("--max-samples", type=int, default=None, help="M_max (default: the study's M)")
    parser.add_argument("--start", type=int, default=1)
    parser.add_argument("--step", type=int, default=1)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.03, 0.04, 0.05, 0.055, 0.06, 0.065, 0.07])
    parser.add_argument("--json", default="bench/results/adaptive_m.json")
    args = parser.parse_args()

    import pandas as pd

    from valuelex import grid
    from valuelex.api import run_study
    from valuelex.evaluate.adaptive import half_widths, run_adaptive
    from valuelex.evaluate.config import AdaptiveSpec
    from valuelex.evaluate.stage import build_judge, judge_pending, score_systems
    from valuelex.evaluate.systems import load_value_system
    from valuelex.generate import GenerationStage
    from valuelex.spec import load_study
    from valuelex.store import RunStore

    study = load_study(args.study)
    out = args.out or study.output_uri
    m_max = args.max_samples or study.samples
    spec = study.evaluation
    root = RunStore(out)

    started = time.monotonic()
    generated = run_study(study, out, [GenerationStage("completion", samples=m_max)]).summary()["completion"]
    generation_s = time.monotonic() - started
    judge = build_judge(study)
    systems = [load_value_system(s) for s in spec.systems]
    started = time.monotonic()
    judge_pending(root, study, systems, judge, max_samples=m_max)
    judging_s = time.monotonic() - started

    def scores(samples: int) -> pd.DataFrame:
        return score_systems(root, study, systems, judge, samples)

    def widths(table: pd.DataFrame) -> dict[str, float]:
        w = half_widths(table)
        return {"max_half_width": round(float(w.max()), 4), "mean_half_width": round(float(w.mean()), 4)}

    per_completion_s = generation_s / generated["rows_generated"] if generated["rows_generated"] else None
    fixed_rows = grid.count(study, "completion", samples=m_max)
    fixed = {"samples": m_max, "completions": fixed_rows, **widths(scores(m_max))}
    by_m = {m: widths(scores(m)) for m in range(1, m_max + 1)}
    adaptive = []
    for epsilon in args.epsilons:
        rule = AdaptiveSpec(enabled=True, epsilon=epsilon, start_samples=min(args.start, m_max), step=args.step,
                            max_samples=m_max)
        report = run_adaptive(lambda m: None, scores, rule, fixed_samples=m_max)
        rows = grid.count(study, "completion", samples=report.samples_used)
        adaptive.append({
            "epsilon": epsilon, "samples": report.samples_used, "completions": rows, "stopped": report.stopped,
            "rounds": len(report.rounds), **widths(report.scores),
            "completions_saved": fixed_rows - rows,
            "generation_s_saved": round((fixed_rows - rows) * per_completion_s, 1) if per_completion_s else None,
        })

    result = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "study": study.name, "out": out, "judge": judge.name, "systems": [s.name for s in systems],
        "score_rows": len(scores(m_max)), "generated_now": generated["rows_generated"],
        "generation_s": round(generation_s, 1),
        "seconds_per_completion": per_completion_s and round(per_completion_s, 3),
        "judging_s": round(judging_s, 1), "fixed": fixed, "half_width_by_m": by_m, "adaptive": adaptive,
    }
    generated_now = generated["rows_generated"]
    print(f"completions generated now: {generated_now} in {generation_s:.1f} s; judged in {judging_s:.1f} s")
    print(f"{'design':24}{'M':>4}{'completions':>13}{'max CI half-width':>19}{'mean':>8}{'saved':>8}")
    print(f"{'fixed M':24}{m_max:>4}{fixed_rows:>13}{fixed['max_half_width']:>19}{fixed['mean_half_width']:>8}{'':>8}")
    for row in adaptive:
        print(f"{'adaptive eps=' + str(row['epsilon']):24}{row['samples']:>4}{row['completions']:>13}"
              f"{row['max_half_width']:>19}{row['mean_half_width']:>8}{row['completions_saved']:>8}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
