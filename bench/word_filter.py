"""Precision and recall of the offline value-word filter on planted noise in comma lists (issue 15.5).

Answers are comma lists mixing a planted set's value words with non-value nouns
(`valuelex.construct.synthetic.noisy_lists`); the rules extract the distinct candidates and the
filter (`valuelex.construct.wordfilter`) keeps some. Precision = kept value words / kept words,
recall = kept value words / value words among the candidates (words the stop-list already drops
are not counted). The threshold is chosen on set "a" (best F1 over a grid) and reported on set "b".

With `--word-judge MODEL ...` (models of `--study`), the LLM word judge
(`valuelex.construct.wordjudge`, `construction.word_judge`) judges the same candidates on a real
engine (vLLM for the local study's models: one engine at a time). It has no threshold, so both
sets report; its prompt's example words must be in neither set (checked).

    nice -n 10 python bench/word_filter.py [--json bench/results/word_filter.json]
    python bench/word_filter.py --word-judge smollm2-135m-instruct gemma3-270m --json bench/results/word_judge.json
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np

from valuelex.construct.clustering import load_embedder
from valuelex.construct.lexicon import extract_words, normalize_word
from valuelex.construct.synthetic import FILTER_SETS, noisy_lists
from valuelex.construct.wordfilter import prototype_words, value_scores
from valuelex.construct.wordjudge import engine_word_judge, word_judge_prompts
from valuelex.spec import load_study

GRID = np.round(np.arange(-0.10, 0.151, 0.01), 2)


def candidates(which: str) -> tuple[list[str], set[str]]:
    """Distinct extracted candidates of a set's answers, and which of them are planted values."""
    words = sorted({w for answer in noisy_lists(which) for w in extract_words(answer)})
    values = {normalize_word(w) for w in FILTER_SETS[which]["values"]}
    return words, values


def scores_at(words: list[str], values: set[str], scores: np.ndarray, threshold: float) -> dict[str, float]:
    kept = {w for w, s in zip(words, scores, strict=True) if s > threshold}
    true_kept = len(kept & values)
    n_values = len(set(words) & values)
    precision = true_kept / len(kept) if kept else 1.0
    recall = true_kept / n_values if n_values else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"threshold": float(threshold), "precision": precision, "recall": recall, "f1": f1,
            "candidates": len(words), "values": n_values, "kept": len(kept)}


def prompt_examples() -> set[str]:
    """The example words the word-judge prompts name ("like a, b, c"): they must not be planted words."""
    found = set()
    for template in word_judge_prompts().values():
        for group in re.findall(r"\(like ([^)]*)\)", template):
            found |= {normalize_word(w.strip()) for w in group.split(",")}
    return found


def llm_word_judge(study_path: Path, names: list[str]) -> dict:
    """Precision/recall of each named study model as the LLM word judge, on both planted sets."""
    study = load_study(study_path)
    examples = prompt_examples()
    results = {}
    for name in names:
        model = study.model(name)
        results[name] = {}
        for which in FILTER_SETS:
            words, values = candidates(which)
            overlap = examples & set(words)
            assert not overlap, f"set {which} shares words with the word-judge prompt: {sorted(overlap)}"
            started = time.perf_counter()
            accepted, notes = engine_word_judge(model, words, study.seed)
            seconds = time.perf_counter() - started
            kept = np.array([1.0 if w in accepted else -1.0 for w in words])
            row = {**scores_at(words, values, kept, 0.0), "seconds": round(seconds, 1), "notes": notes}
            row.pop("threshold")
            results[name][which] = row
            print(f"word judge {name} set {which}: precision {row['precision']:.3f} recall {row['recall']:.3f} "
                  f"F1 {row['f1']:.3f} ({row['kept']}/{row['candidates']} kept, {row['values']} values; "
                  f"{seconds:.0f} s incl. engine start){'; ' + '; '.join(notes) if notes else ''}")
            print(f"  values dropped: {sorted(values & set(words) - accepted)}\n"
                  f"  noise kept: {sorted(accepted - values)}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--word-judge", nargs="+", default=None, metavar="MODEL",
                        help="measure these study models as the LLM word judge instead of the embedding filter")
    parser.add_argument("--study", type=Path, default=Path("configs/local.yaml"))
    args = parser.parse_args()
    if args.word_judge:
        results = llm_word_judge(args.study, args.word_judge)
        if args.json:
            args.json.write_text(json.dumps({"study": str(args.study), "word_judge": results}, indent=1))
        return
    proto = {normalize_word(w) for ws in prototype_words() for w in ws}
    embedder = load_embedder(None)
    out = {}
    for which in FILTER_SETS:
        words, values = candidates(which)
        overlap = proto & set(words)
        assert not overlap, f"set {which} shares words with the prototype: {sorted(overlap)}"
        out[which] = (words, values, value_scores(embedder, words))
    tuned = max(GRID, key=lambda t: (scores_at(*out["a"], t)["f1"], -abs(t)))
    rows = {}
    for which, (words, values, scores) in out.items():
        rows[which] = {"none": scores_at(words, values, scores, -np.inf),
                       "filter": scores_at(words, values, scores, tuned)}
        for name, r in rows[which].items():
            print(f"set {which} ({'tune' if which == 'a' else 'report'}) {name:<6} threshold {tuned:+.2f}: "
                  f"precision {r['precision']:.3f} recall {r['recall']:.3f} F1 {r['f1']:.3f} "
                  f"({r['kept']}/{r['candidates']} kept, {r['values']} values)")
        missed = [w for w, s in zip(words, scores, strict=True) if w in values and s <= tuned]
        passed = [w for w, s in zip(words, scores, strict=True) if w not in values and s > tuned]
        print(f"  values dropped: {missed}\n  noise kept: {passed}")
    if args.json:
        args.json.write_text(json.dumps({"threshold": float(tuned), "sets": rows}, indent=1))


if __name__ == "__main__":
    main()
