"""Embedding judge throughput against raw sentence-transformers `encode` on the same texts (issue 20.4).

    python bench/judge_throughput.py [--rows 1800] [--pairs 3] [--json bench/results/judge_throughput.json]

Completions: the regression baseline's local-study completions (tests/data/regression), repeated to
`--rows` rows with distinct row ids. A = raw `SentenceTransformer.encode` of every completed sentence
(batch 64, normalised, as the judge encodes); B = `EmbeddingJudge.judge_many` on the three packaged
systems (valuelex, schwartz, mft), judgments built and handed to a sink that keeps them. Run A B A B ...
(`--pairs` pairs) and report completions/s of each and the median ratio B / A. Poles are encoded
before timing (once per judge, not per completion).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd

from valuelex.embeddings import sentence_model
from valuelex.evaluate.embedding import EmbeddingJudge
from valuelex.evaluate.judgments import JudgeTask, completed_sentence, is_blank
from valuelex.evaluate.systems import load_value_system

BASELINE = Path(__file__).resolve().parents[1] / "tests" / "data" / "regression" / "completions.parquet"


def rows(n: int) -> list[dict]:
    base = pd.read_parquet(BASELINE).to_dict("records")
    return [{**base[i % len(base)], "row_id": f"{base[i % len(base)]['row_id']}:{i}"} for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1800)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--json", default="bench/results/judge_throughput.json")
    args = parser.parse_args()
    completions = rows(args.rows)
    texts = [completed_sentence(r.get("stem") or "", r.get("response") or "") for r in completions
             if not is_blank(r.get("response"))]
    systems = [load_value_system(n) for n in ("valuelex", "schwartz", "mft")]
    judge = EmbeddingJudge()
    for system in systems:
        judge.poles(system)
    model = sentence_model(judge.model_path)
    model.encode(texts[:64], batch_size=64, normalize_embeddings=True, show_progress_bar=False)  # warm up

    def raw() -> float:
        started = time.perf_counter()
        model.encode(texts, batch_size=judge.batch_size, normalize_embeddings=True, show_progress_bar=False)
        return time.perf_counter() - started

    def judged() -> float:
        kept: list = []
        started = time.perf_counter()
        judge.judge_many([JudgeTask(s, completions, kept.extend) for s in systems])
        seconds = time.perf_counter() - started
        assert len(kept) == len(completions) * len(systems)
        return seconds

    pairs = []
    for _ in range(args.pairs):
        a, b = raw(), judged()
        pairs.append({"raw_s": a, "judge_s": b, "raw_per_s": len(completions) / a,
                      "judge_per_s": len(completions) / b, "ratio": a / b})
    result = {"rows": len(completions), "encoded_texts": len(texts), "systems": [s.name for s in systems],
              "load_average_start": os.getloadavg()[0], "pairs": pairs,
              "median_ratio": statistics.median(p["ratio"] for p in pairs)}
    for p in pairs:
        print(f"raw {p['raw_per_s']:.1f} completions/s | judge (3 systems) {p['judge_per_s']:.1f} | "
              f"ratio {p['ratio']:.3f}")
    print(f"median ratio judge / raw: {result['median_ratio']:.3f} "
          f"(load average at start {result['load_average_start']:.1f})")
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
