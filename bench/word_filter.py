"""Precision and recall of the offline value-word filter on planted noise in comma lists (issue 15.5).

Answers are comma lists mixing a planted set's value words with non-value nouns
(`valuelex.construct.synthetic.noisy_lists`); the rules extract the distinct candidates and the
filter (`valuelex.construct.wordfilter`) keeps some. Precision = kept value words / kept words,
recall = kept value words / value words among the candidates (words the stop-list already drops
are not counted). The threshold is chosen on set "a" (best F1 over a grid) and reported on set "b".

    nice -n 10 python bench/word_filter.py [--json bench/results/word_filter.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from valuelex.construct.clustering import load_embedder
from valuelex.construct.lexicon import extract_words, normalize_word
from valuelex.construct.synthetic import FILTER_SETS, noisy_lists
from valuelex.construct.wordfilter import prototype_words, value_scores

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
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
