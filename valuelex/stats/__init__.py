"""Statistics of value comparisons, one small module per method, each with its maths in its docstring.

- `permutation`: sign-flip tests (paired) and label permutations (groups of models);
- `bootstrap`: the paired cluster bootstrap of a difference (the one-model bootstrap and the
  percentile interval are `valuelex.evaluate.scores.cluster_bootstrap` / `percentile_ci`);
- `effects`: Cohen's d_z, Hedges' g_z and g;
- `multiple`: Holm and Benjamini–Hochberg adjusted p-values;
- `power_analysis`: variance components of paired cell differences, the power of the test, M / stems /
  models needed;
- `krippendorff`: Krippendorff's alpha (nominal, ordinal, interval), missing values allowed;
- `trend`: the OLS slope of w on log10(size) with its t interval.

Pure functions of arrays: no store, no files. `valuelex.compare` applies them to a run's judgments.
"""

from valuelex.stats.bootstrap import paired_bootstrap
from valuelex.stats.effects import cohen_dz, hedges_correction, hedges_g, pooled_variance
from valuelex.stats.multiple import CORRECTIONS, adjust
from valuelex.stats.permutation import label_permutation_test, sign_flip_test
from valuelex.stats.power_analysis import (
    Power,
    VarianceComponents,
    components_from_cells,
    models_needed,
    power,
    power_at,
    t_power,
)
from valuelex.stats.trend import slope_fit

__all__ = ["CORRECTIONS", "Power", "VarianceComponents", "adjust", "cohen_dz", "components_from_cells",
           "hedges_correction", "hedges_g", "label_permutation_test", "models_needed", "paired_bootstrap",
           "pooled_variance", "power", "power_at", "sign_flip_test", "slope_fit", "t_power"]
