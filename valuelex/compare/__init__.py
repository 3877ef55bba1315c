"""Compare models and checkpoints: did fine-tuning move the values, and by how much? (issue 9)

    compare("runs/local", "gemma3-270m", "smollm2-135m-instruct")          # one row per (sub)dimension
    compare_groups("runs/paper", "family-training")                         # every base model vs its chat model
    compare_groups("runs/paper", "training:pretrained/aligned")             # all pretrained vs all aligned
    size_trend("runs/paper")                                                # w against log10(size) per training
    power(components, delta=0.05)                                           # how far must I raise M?

Everything is computed from the per-completion judgments the run store counts
(`valuelex.store.RunStore.judgments`: one judge, the current version of the value system, the study's
grid and M), so ``w_a`` and ``w_b`` are exactly the Eq. 4 scores of ``scores.parquet``. Results are
published through the store as comparisons ``<a>__vs__<b>__<system>`` (``size-trend__<system>`` for
trends), and the report shows them in its "Model comparisons" section.

In the order data flows:

- `load`: `load_values` -- a run's φ per completion of one system and judge (`RunValues`), and the
  check that compared models were given the same stems and configs;
- `sides`: `compare_values` -- one comparison of side b against side a, one row per dimension;
- `groups`: `compare`, `compare_groups` (the ``family-training`` / ``FIELD:A/B`` spec), `size_trend`,
  `family_pairs`, and the names results are stored under.

The statistics, each with its maths, are in `valuelex.stats` (permutation tests, the paired
bootstrap, effect sizes, multiple comparisons, power analysis, trends); text output is in
`valuelex.cli_format`.
"""

from valuelex.compare.groups import (
    compare,
    compare_groups,
    family_pairs,
    field_groups,
    size_trend,
    stored_name,
    stored_names,
    trend_name,
)
from valuelex.compare.load import Dim, RunValues, check_design, check_models, load_values, resolve_system
from valuelex.compare.sides import COLUMNS, DEFAULT_PERMUTATIONS, UNITS, Cells, cell_stats, compare_values
from valuelex.stats import Power, VarianceComponents, adjust, power, power_at

__all__ = ["COLUMNS", "DEFAULT_PERMUTATIONS", "UNITS", "Cells", "Dim", "Power", "RunValues", "VarianceComponents",
           "adjust", "cell_stats", "check_design", "check_models", "compare", "compare_groups", "compare_values",
           "family_pairs", "field_groups", "load_values", "power", "power_at", "resolve_system", "size_trend",
           "stored_name", "stored_names", "trend_name"]
