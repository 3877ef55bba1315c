"""How stable the taxonomy is: rerun construction on bootstrap resamples of units.

Each resample draws N units with replacement, keeps the full-data vocabulary (minus words that
become constant in the resample) and K (so clusters are comparable), and reruns correlation,
EFA, semantic refinement and the subdimension split. Its clusters are matched to the full-data
ones by maximum word overlap (Hungarian assignment: dimensions to dimensions, subdimensions to
subdimensions), and each word is scored by how often it lands in its own (matched) dimension and
subdimension. A resample that fails (e.g. a factor left with too few words) is counted, not fatal.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score

from valuelex.construct.build import Structure, analyse
from valuelex.construct.config import ConstructionSpec
from valuelex.construct.cooccurrence import Incidence, prune
from valuelex.construct.taxonomy import StabilitySummary, Taxonomy
from valuelex.errors import ConstructionError

STABILITY_SCHEMA = pa.schema([
    pa.field("word", pa.string()), pa.field("dimension_id", pa.string()), pa.field("subdimension_id", pa.string()),
    pa.field("resamples", pa.int64()), pa.field("same_dimension", pa.float64()),
    pa.field("same_subdimension", pa.float64()),
])


def match_clusters(reference: dict[str, int], other: dict[str, int]) -> dict[int, int]:
    """Map each cluster of `other` to a reference cluster, maximising total word overlap."""
    ref_ids = sorted(set(reference.values()))
    other_ids = sorted(set(other.values()))
    overlap = np.zeros((len(other_ids), len(ref_ids)))
    ref_pos = {c: i for i, c in enumerate(ref_ids)}
    other_pos = {c: i for i, c in enumerate(other_ids)}
    for word, cluster in other.items():
        if word in reference:
            overlap[other_pos[cluster], ref_pos[reference[word]]] += 1
    rows, cols = linear_sum_assignment(-overlap)
    return {other_ids[r]: ref_ids[c] for r, c in zip(rows, cols, strict=True)}


def bootstrap_stability(incidence: Incidence, structure: Structure, taxonomy: Taxonomy, spec: ConstructionSpec,
                        embeddings: np.ndarray, resamples: int | None = None) -> tuple[pa.Table, StabilitySummary]:
    """Per-word stability over bootstrap resamples (module docstring) and its summary."""
    resamples = spec.bootstrap if resamples is None else resamples
    reference = structure.assignment()
    ref_dim = {w: d for w, (d, _) in reference.items()}
    ref_sub = {w: s for w, (_, s) in reference.items()}
    word_row = {w: i for i, w in enumerate(incidence.words)}
    rng = np.random.default_rng(spec.seed + 1)
    present: Counter[str] = Counter()
    same_dim: Counter[str] = Counter()
    same_sub: Counter[str] = Counter()
    failures: list[str] = []
    aris: list[float] = []
    for _ in range(resamples):
        sample = incidence.take_units(rng.integers(0, incidence.n_units, incidence.n_units))
        try:
            sample, _ = prune(sample, 1)
            rows = np.array([word_row[w] for w in sample.words], dtype=np.int64)
            result = analyse(sample, spec, embeddings[rows], k_override=structure.k.chosen)
        except ConstructionError as exc:
            failures.append(str(exc))
            continue
        assigned = result.assignment()
        boot_dim = {w: d for w, (d, _) in assigned.items()}
        boot_sub = {w: s for w, (_, s) in assigned.items()}
        dim_map, sub_map = match_clusters(ref_dim, boot_dim), match_clusters(ref_sub, boot_sub)
        common = [w for w in boot_dim if w in ref_dim]
        if common:
            aris.append(float(adjusted_rand_score([ref_dim[w] for w in common], [boot_dim[w] for w in common])))
        for word in ref_dim:
            if word not in boot_dim:
                continue
            present[word] += 1
            same_dim[word] += int(dim_map.get(boot_dim[word]) == ref_dim[word])
            same_sub[word] += int(sub_map.get(boot_sub[word]) == ref_sub[word])
    rows_out: dict[str, list] = {name: [] for name in STABILITY_SCHEMA.names}
    for dim in taxonomy.dimensions:
        for sub in dim.subdimensions:
            for entry in sub.words:
                n = present[entry.word]
                rows_out["word"].append(entry.word)
                rows_out["dimension_id"].append(dim.id)
                rows_out["subdimension_id"].append(sub.id)
                rows_out["resamples"].append(n)
                rows_out["same_dimension"].append(same_dim[entry.word] / n if n else None)
                rows_out["same_subdimension"].append(same_sub[entry.word] / n if n else None)
    table = pa.table(rows_out, schema=STABILITY_SCHEMA)
    succeeded = resamples - len(failures)

    def mean(column: str) -> float | None:
        values = [v for v in rows_out[column] if v is not None]
        return float(np.mean(values)) if values else None

    summary = StabilitySummary(
        resamples=resamples, succeeded=succeeded, failures=sorted(set(failures)),
        mean_same_dimension=mean("same_dimension"), mean_same_subdimension=mean("same_subdimension"),
        mean_dimension_ari=float(np.mean(aris)) if aris else None,
    )
    return table, summary
