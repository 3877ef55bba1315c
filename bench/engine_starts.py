"""Engine starts per run, before and after issue 20.1: `valuelex run` of a study with two checkouts
side by side (B A B A ... with `--pairs`), one engine at a time.

    .venv/bin/python bench/engine_starts.py --before /path/to/old/checkout [--study configs/local.yaml]
        [--pairs 1] [--json bench/results/engine_starts.json]

A = the `--before` checkout (each model's engine started for elicitation and again for the
completions inside evaluation), B = this one (both grids through one engine pass per model). Both
run the same study into a fresh output with this virtual environment (PYTHONPATH = the checkout).
Reported per run: wall seconds of the whole `valuelex run`, the stage records' seconds, and the
engine starts counted in `stages/*.json` (this checkout only: the old records did not count them;
its starts are models x grids by construction).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(checkout: Path, study: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        env = {**os.environ, "PYTHONPATH": str(checkout), "HF_HUB_OFFLINE": "1"}
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "valuelex.cli", "run", str(study), "--out", str(out), "--json"],
                              env=env, cwd=checkout, capture_output=True, text=True, check=False)
        wall = time.monotonic() - started
        if proc.returncode != 0:
            raise SystemExit(f"{checkout}: valuelex run failed:\n{proc.stderr[-3000:]}")
        records = {p.stem: json.loads(p.read_text()) for p in (out / "stages").glob("*.json")}
    return {
        "checkout": str(checkout), "wall_s": round(wall, 1),
        "stage_seconds": {name: r.get("seconds") for name, r in sorted(records.items())},
        "engine_starts": {name: r["engine_starts"] for name, r in sorted(records.items()) if "engine_starts" in r},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout of the code before (e.g. a git worktree)")
    parser.add_argument("--study", type=Path, default=REPO / "configs" / "local.yaml")
    parser.add_argument("--pairs", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    runs: list[dict] = []
    for _ in range(args.pairs):
        for label, checkout in (("after", REPO), ("before", args.before.resolve())):
            result = {"side": label, **run(checkout, args.study.resolve())}
            print(json.dumps(result), flush=True)
            runs.append(result)
    saved = [b["wall_s"] - a["wall_s"] for a, b in zip(runs[::2], runs[1::2], strict=True)]
    summary = {"study": str(args.study), "load_average_start": round(load, 2), "pairs": args.pairs,
               "wall_saved_s": saved, "wall_saved_median_s": statistics.median(saved), "runs": runs}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}))


if __name__ == "__main__":
    main()
