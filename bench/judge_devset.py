"""Measure judges on the judge development set (valuelex/data/judge/devset/), by default its test half.

    python bench/judge_devset.py                                   # embedding judge: fixed rule, isotonic, stance
    python bench/judge_devset.py --judge study --study configs/local-llm-judge.yaml   # e.g. SmolLM2 as LLM judge

Prints, per judge and system: QWK, Krippendorff's alpha (ordinal), AUC (high vs conflicting) and balanced
accuracy (see `valuelex.evaluate.devset`), pooled, and split by how the completion states its value
(``endorse``: "I like being honest"; ``reject``: "I hate lying", where the value is held by rejecting its
opposite; ``none``: neutral items), plus the share of completions an LLM judge scores 3 everywhere.
Writes everything to bench/results/judge_devset.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from valuelex.evaluate.devset import judge_labels, load_devset, metrics, named_judge, summarize
from valuelex.evaluate.systems import load_value_system
from valuelex.spec import load_study

SYSTEMS = ("valuelex", "schwartz", "mft")
SHOWN = ("qwk", "alpha", "auc", "balanced_accuracy", "share_high", "share_labelled_high")


def measure(judge: object, split: str) -> dict:
    out = {"judge": getattr(judge, "name", str(judge)), "split": split, "systems": {}}
    for name in SYSTEMS:
        system = load_value_system(name)
        labels = load_devset(name, split)
        judged = judge_labels(judge, system, labels)
        part = summarize(judged)
        valid = judged[judged["score"].notna()]
        part["by_frame"] = {f: metrics(g["y"], g["score"]) for f, g in valid.groupby("frame")}
        per_item = judged.drop_duplicates("id")
        part["judge_key"] = judge.key(system)  # type: ignore[attr-defined]
        part["items"] = len(per_item)
        part["share_all_neutral"] = float(per_item["all_neutral"].mean())
        out["systems"][name] = part
    return out


def _fmt(m: dict) -> str:
    return "  ".join(f"{k}={'-' if m.get(k) is None else f'{m[k]:.3f}'}" for k in SHOWN)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--judge", action="append",
                        help="embedding-uncalibrated, embedding-calibrated, embedding-stance, study")
    parser.add_argument("--study", type=Path, help="the study whose judge --judge study is")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "judge_devset.json")
    args = parser.parse_args()
    study = load_study(args.study) if args.study else None
    results = []
    for name in args.judge or ["embedding-uncalibrated", "embedding-calibrated", "embedding-stance"]:
        started = time.monotonic()
        result = measure(named_judge(name, study), args.split)
        result["seconds"] = round(time.monotonic() - started, 1)
        results.append(result)
        for system, part in result["systems"].items():
            print(f"{name:<24} {system:<9} n={part['overall']['n']:<4} {_fmt(part['overall'])}  "
                  f"all-3={part['share_all_neutral']:.3f}")
            for frame, m in part["by_frame"].items():
                print(f"{'':<24} {frame:<9} n={m['n']:<4} {_fmt(m)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
