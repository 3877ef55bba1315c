"""Does the taxonomy depend on which prompts were asked? Construction on disjoint prompt subsets.

The elicitation prompts are split at random into two disjoint halves (seeded, repeated over
`splits` splits); the analysis of construction (`valuelex.construct.build.analyse`: correlations,
K, EFA, refinement) runs on each half's answers alone, and the word -> dimension assignments of the
two halves are compared on the words both kept by the adjusted Rand index (Hubert & Arabie 1985):
ARI = (RI - E[RI]) / (max RI - E[RI]), 1 for the same partition up to relabelling, about 0 for
unrelated ones. Dimension numbers need no matching, since the ARI compares partitions. A taxonomy that
prompts of one wording make and prompts of another do not has a low ARI.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.metrics import adjusted_rand_score

from valuelex.construct.build import analyse
from valuelex.construct.config import ConstructionSpec
from valuelex.construct.cooccurrence import build_incidence, prune
from valuelex.errors import ConstructionError

Embedder = Callable[[Sequence[str]], np.ndarray]
MIN_PROMPTS = 4  # two per half
SPLITS = 3


def _assignment(rows: pa.Table, spec: ConstructionSpec, embedder: Embedder) -> tuple[dict[str, int], int]:
    """word -> dimension (dropped words left out) of one subset's answers, and its K."""
    _, incidence = build_incidence(rows, spec.unit, spec.chunk_rows, parallel=False)
    pruned, _ = prune(incidence, spec.min_word_respondents)
    structure = analyse(pruned, spec, embedder(pruned.words))
    labels = {w: int(d) for w, d in zip(structure.words, structure.labels, strict=True) if d >= 0}
    return labels, int(structure.k.chosen)


def prompt_subset_agreement(answered: pa.Table, spec: ConstructionSpec, embedder: Embedder, *, splits: int = 5,
                            seed: int = 0) -> pd.DataFrame:
    """One row per split: the two halves' prompt ids, K of each, the words both kept and their ARI.

    `answered` holds the elicitation rows construction uses (answered, no error). A half whose
    analysis fails (too few words or units) gives a row with NaN ARI and the reason.
    """
    items = sorted({str(i) for i in answered.column("item_id").to_pylist()})
    if len(items) < 2:
        raise ConstructionError(f"prompt subsets: {len(items)} elicitation prompt(s); two or more make two halves")
    rng = np.random.default_rng([seed, 17])
    rows = []
    for split in range(splits):
        order = [items[i] for i in rng.permutation(len(items))]
        halves = (sorted(order[: len(items) // 2]), sorted(order[len(items) // 2:]))
        row: dict = {"split": split, "items_a": ",".join(halves[0]), "items_b": ",".join(halves[1])}
        try:
            (a, k_a), (b, k_b) = (_assignment(answered.filter(pc.is_in(answered.column("item_id"),
                                                                       value_set=pa.array(h))), spec, embedder)
                                  for h in halves)
        except ConstructionError as exc:
            rows.append({**row, "k_a": None, "k_b": None, "n_words": 0, "ari": np.nan, "notice": str(exc)})
            continue
        common = sorted(set(a) & set(b))
        ari = float(adjusted_rand_score([a[w] for w in common], [b[w] for w in common])) if len(common) > 1 else np.nan
        rows.append({**row, "k_a": k_a, "k_b": k_b, "n_words": len(common), "ari": ari,
                     "notice": None if len(common) > 1 else "fewer than two words kept by both halves"})
    return pd.DataFrame(rows)


def summarize(frame: pd.DataFrame) -> dict[str, Any]:
    """Median, smallest and largest ARI over the splits that could be analysed, and their notices."""
    ari = frame["ari"].dropna() if len(frame) else pd.Series(dtype=float)
    notes = sorted({str(n) for n in frame["notice"].dropna()}) if len(frame) else []
    return {
        "n_splits": len(frame),
        "n_computed": len(ari),
        "ari_median": float(ari.median()) if len(ari) else None,
        "ari_min": float(ari.min()) if len(ari) else None,
        "ari_max": float(ari.max()) if len(ari) else None,
        "notice": "; ".join(notes) or (None if len(ari) else "no split could be analysed"),
    }


def prompt_subset_check(answered: pa.Table, spec: ConstructionSpec, embedder: Embedder, *, splits: int = SPLITS,
                        label: str = "") -> tuple[dict[str, Any], pd.DataFrame]:
    """`prompt_subset_agreement` when there are `MIN_PROMPTS` prompts, else a notice: (summary, rows)."""
    n_items = len({str(i) for i in answered.column("item_id").to_pylist()}) if answered.num_rows else 0
    if n_items < MIN_PROMPTS:
        notice = (f"prompt-subset agreement needs at least {MIN_PROMPTS} elicitation prompts (two per half); "
                  f"this run has {n_items}")
        return {"n_splits": 0, "n_computed": 0, "ari_median": None, "ari_min": None, "ari_max": None,
                "notice": notice}, pd.DataFrame(columns=["taxonomy", "split", "items_a", "items_b", "k_a", "k_b",
                                                         "n_words", "ari", "notice"])
    frame = prompt_subset_agreement(answered, spec, embedder, splits=splits, seed=spec.seed)
    return summarize(frame), frame.assign(taxonomy=label)[["taxonomy", *frame.columns]]
