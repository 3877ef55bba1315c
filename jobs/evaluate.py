"""Projective evaluation job: generate completions, judge them, write judgments and scores.parquet.

    python jobs/evaluate.py STUDY.yaml [--system NAME_OR_PATH]... [--out URI]

On a Ray cluster submit it as a job (``ray job submit -- python jobs/evaluate.py ...``); locally it
runs as is. Prints the run summary as JSON; exits 2 on a study or store error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from valuelex.errors import ValueLexError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", help="study YAML file")
    parser.add_argument("--system", action="append", default=None, metavar="NAME",
                        help="value system to score (valuelex, schwartz, mft or a path); repeatable; "
                             "default: the study's evaluation.systems")
    parser.add_argument("--out", default=None, help="output root (default: the study's output)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        from valuelex.evaluate.stage import run_evaluation
        from valuelex.spec import load_study

        summary = run_evaluation(load_study(args.study), systems=args.system, out_uri=args.out)
    except ValueLexError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
