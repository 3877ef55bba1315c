"""Recovery of planted hierarchies by each variant of construction's semantic step (issue 15.4).

For each generator of `valuelex.construct.synthetic.planted_hierarchy` and seed, build the
incidence, choose K by parallel analysis once, and run `analyse` with each semantic step at that K.
Recovery is the adjusted Rand index (scikit-learn) of the planted words' dimension and
subdimension labels against the truth. Seeds 0-4 chose the default ("tune"); the tests assert on
seeds 100+ ("held out").

    nice -n 10 python bench/semantic_step.py [--seeds 0 1 2 3 4] [--json bench/results/semantic_step.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

from valuelex.construct.build import analyse
from valuelex.construct.clustering import load_embedder
from valuelex.construct.config import ConstructionSpec
from valuelex.construct.cooccurrence import build_incidence, prune
from valuelex.construct.semantic import STEPS
from valuelex.construct.synthetic import GENERATORS, hierarchy_elicitation
from valuelex.errors import ConstructionError

VARIANTS: dict[str, dict[str, object]] = {step: {"semantic_step": step} for step in STEPS}


WEAK = {"n": 150, "strength": 1.2, "p_mention": 0.25, "noise_rate": 0.01}  # loadings like the local study's


def recovery(kind: str, seed: int, variants: dict[str, dict[str, object]], n: int = 360,
             embedder=None, **generator: float) -> dict[str, dict[str, float]]:
    """{variant: {dimension_ari, subdimension_ari, k, dimensions}} for one planted data set."""
    embedder = embedder or load_embedder(None)
    table, planted = hierarchy_elicitation(kind, n, seed=seed, **generator)
    truth = planted.truth()
    spec = ConstructionSpec(seed=seed)
    _, inc = build_incidence(table, spec.unit, parallel=False)
    inc = prune(inc, spec.min_word_respondents)[0]
    emb = embedder(inc.words)
    k = analyse(inc, spec.model_copy(update={"semantic_step": "none"}), emb).k.chosen
    out: dict[str, dict[str, float]] = {}
    for name, update in variants.items():
        try:
            structure = analyse(inc, spec.model_copy(update=update), emb, k_override=k)
        except ConstructionError as exc:  # a variant that leaves a dimension too small fails: data, not a crash
            out[name] = {"dimension_ari": float("nan"), "subdimension_ari": float("nan"), "k": k, "dimensions": 0,
                         "error": str(exc)}
            continue
        got = structure.assignment()
        words = [w for w in got if w in truth]
        out[name] = {
            "dimension_ari": float(adjusted_rand_score([truth[w][0] for w in words], [got[w][0] for w in words])),
            "subdimension_ari": float(adjusted_rand_score([truth[w][1] for w in words], [got[w][1] for w in words])),
            "k": k, "dimensions": len(structure.subdimensions),
        }
    return out


def _mean(rows: list[dict], key: str) -> float:
    return float(np.mean([0.0 if np.isnan(r[key]) else r[key] for r in rows]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--weak", action="store_true", help=f"weak signal: {WEAK}")
    parser.add_argument("--ambiguous", type=float, nargs=2, default=None, metavar=("LOADING", "GAP"),
                        help="ambiguous_loading and ambiguous_gap for the ambiguous and hierarchical variants")
    args = parser.parse_args()
    embedder = load_embedder(None)
    generator = dict(WEAK) if args.weak else {}
    variants = {k: dict(v) for k, v in VARIANTS.items()}
    if args.ambiguous:
        for name in ("ambiguous", "hierarchical"):
            variants[name].update(ambiguous_loading=args.ambiguous[0], ambiguous_gap=args.ambiguous[1])
    rows = []
    start = time.perf_counter()
    for kind in GENERATORS:
        for seed in args.seeds:
            for variant, r in recovery(kind, seed, variants, embedder=embedder, **generator).items():
                rows.append({"generator": kind, "seed": seed, "variant": variant, **r})
    print(f"{len(rows)} runs in {time.perf_counter() - start:.1f} s; mean over seeds {args.seeds}")
    print("ARI means count a failed construction as 0 (failed: its count)")
    print(f"{'generator':<10} {'variant':<13} {'K':>5} {'dims':>5} {'dim ARI':>8} {'sub ARI':>8} {'failed':>6}")
    for kind in GENERATORS:
        for variant in VARIANTS:
            sel = [r for r in rows if r["generator"] == kind and r["variant"] == variant]
            print(f"{kind:<10} {variant:<13} {np.mean([r['k'] for r in sel]):5.1f} "
                  f"{np.mean([r['dimensions'] for r in sel]):5.1f} {_mean(sel, 'dimension_ari'):8.3f} "
                  f"{_mean(sel, 'subdimension_ari'):8.3f} {sum('error' in r for r in sel):6d}")
    for variant in VARIANTS:
        sel = [r for r in rows if r["variant"] == variant]
        print(f"{'all':<10} {variant:<13} {'':5} {'':5} {_mean(sel, 'dimension_ari'):8.3f} "
              f"{_mean(sel, 'subdimension_ari'):8.3f} {sum('error' in r for r in sel):6d}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
