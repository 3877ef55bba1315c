"""Reliability cost: the reliability stage on a synthetic run of the local study's size.

    python bench/reliability_cost.py [--study configs/local.yaml] [--controls] [--json OUT.json]

Writes a run the way production does (the study's real completion grid, judged and scored by the
evaluation stage with a synthetic judge whose 0..6 scores follow planted variance components), then
times `ReliabilityStage` on it: G-study, D-study, alpha / omega with their bootstrap, split-half,
Kendall's W and verdicts for every system the study evaluates. ``--controls`` adds the packaged
embedding judge's control completions (model load included). The re-judge is left out: for the
embedding judge it is not run (deterministic), for an LLM judge its cost is the engine's.
Prints a table and writes JSON (default ``bench/results/reliability_cost.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np
import pyarrow as pa

from valuelex import grid
from valuelex.evaluate import judgments as jt
from valuelex.evaluate.stage import EvaluationStage
from valuelex.evaluate.systems import ValueSystem
from valuelex.generate import conform
from valuelex.quality.stage import ReliabilityStage
from valuelex.runner import RunContext, run_stages
from valuelex.spec import load_study
from valuelex.store import RunStore

PLANTED = {"model": 0.02, "stem": 0.02, "model×stem": 0.01, "config": 0.002, "residual": 0.03}


def _effect(seed: str, sd: float) -> float:
    return float(np.random.default_rng(zlib.crc32(seed.encode())).normal(0, sd))


class PlantedJudge:
    """Scores round(6 φ), φ = 0.5 + the planted effects of the row's model, stem, config (and noise)."""

    name = "planted"
    kind = "embedding"

    def key(self, system: ValueSystem) -> str:
        return f"planted@{system.fingerprint()}"

    def judge(self, completions: list[dict[str, Any]], system: ValueSystem, sink: Any) -> None:
        out = []
        for row in completions:
            scores = {}
            for leaf in system.leaf_keys():
                m, s, c = row["model"], row["item_id"], row["config"]
                phi = 0.5 + sum(_effect(f"{leaf}|{facet}|{label}", np.sqrt(PLANTED[facet])) for facet, label in
                                (("model", m), ("stem", s), ("config", c), ("model×stem", f"{m}|{s}")))
                phi += _effect(f"{leaf}|e|{row['row_id']}", np.sqrt(PLANTED["residual"]))
                scores[leaf] = int(np.clip(round(6 * phi), 0, 6))
            out.append(jt.judgment(row, system, judge=self.name, judge_key=self.key(system), scores=scores))
        sink(out)


def write_run(study_path: str, out: str) -> Any:
    study = load_study(study_path)
    store = RunStore(out)
    store.write_study(study)
    rows = [{**r, "response": "to be helpful and honest.", "error": None, "engine": "bench", "n_prompt_tokens": 8,
             "n_completion_tokens": 6, "finish_reason": "stop"}
            for model in study.models for r in grid.requests(study, "completion", model)]
    store.generation("completion").write(conform(pa.Table.from_pylist(rows)))
    run_stages(RunContext(study, store), [EvaluationStage(judge=PlantedJudge(), generate=False)])
    return study, len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="configs/local.yaml")
    parser.add_argument("--controls", action="store_true", help="also score the control completions (MiniLM)")
    parser.add_argument("--json", default="bench/results/reliability_cost.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "run")
        started = time.perf_counter()
        study, completions = write_run(args.study, out)
        setup = time.perf_counter() - started
        store = RunStore(out)
        started = time.perf_counter()
        result = run_stages(RunContext(study, store), [ReliabilityStage(build_judges=False)])["reliability"]
        seconds = time.perf_counter() - started
        coef = store.quality("coefficients")
        controls = None
        if args.controls:
            from valuelex.evaluate.embedding import EmbeddingJudge

            started = time.perf_counter()
            run_stages(RunContext(study, store), [ReliabilityStage()])
            controls = time.perf_counter() - started
    doc = {"study": args.study, "completions": completions, "systems": result.summary["systems"],
           "dimensions": len(coef), "setup_seconds": round(setup, 2), "reliability_seconds": round(seconds, 2),
           "with_controls_seconds": None if controls is None else round(controls, 2),
           "verdicts": result.summary["verdicts"], "load_average": os.getloadavg(),
           "median_G": float(coef["G"].median()), "cpus": os.cpu_count()}
    if controls is not None:
        doc["embedding_judge"] = EmbeddingJudge().name
    print(f"{completions} completions, {len(coef)} dimensions in {len(doc['systems'])} systems: "
          f"reliability {seconds:.1f} s (setup {setup:.1f} s)"
          + ("" if controls is None else f"; with the embedding judge's controls {controls:.1f} s"))
    print(json.dumps(doc, indent=1, default=str))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
