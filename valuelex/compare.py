"""Compare models and checkpoints: did fine-tuning move the values, and by how much? (issue 9)

    compare("runs/local", "gemma3-270m", "smollm2-135m-instruct")          # one row per (sub)dimension
    compare_groups("runs/paper", "family-training")                         # every base model vs its chat model
    compare_groups("runs/paper", "training:pretrained/aligned")             # all pretrained vs all aligned
    size_trend("runs/paper")                                                # w against log10(size) per training
    power(components, delta=0.05)                                           # how far must I raise M?

Everything is computed from the stored per-completion judgments (``judgments/<system>``) of one
judge on the current version of the value system (judge_key ending in the system's fingerprint),
restricted to the study's grid as the evaluation stage does, so ``w_a`` and ``w_b`` are exactly the
Eq. 4 scores of ``scores.parquet``. Results are published as
``comparisons/<a>__vs__<b>__<system>.parquet`` (``size-trend__<system>.parquet`` for trends) under
the run root, and the report shows them in its "Model comparisons" section.

Paired comparison of two models a, b (``unit="stem"``, the default)
------------------------------------------------------------------
Both models must have been given the same stems and decoding configs (else `StudyError`). For each
(stem s, config c) cell, ȳ_m,sc is the mean φ of model m's valid completions there, and the cell
difference is D_sc = ȳ_b,sc − ȳ_a,sc (cells where a side has no valid completion are left out and
counted in ``cells_dropped``).

- ``diff`` = w_b − w_a, the difference of the Eq. 4 scores (all valid completions).
- Test: statistic T = mean of the K cell differences D_sc (equal to ``diff`` in a balanced design).
  Its null distribution comes from sign flips: every stem's cell differences are flipped together
  (``unit="stem"``): the stem is the sampling unit, so the test generalises over stems and stays
  valid when the models' difference varies from stem to stem (a stem × model interaction).
  ``unit="cell"`` flips each cell on its own (valid only without a between-stem component: it is
  anti-conservative when there is one). When 2^units ≤ ``permutations`` every sign pattern is
  enumerated (an exact test, ``exact=True``); otherwise ``permutations`` random patterns, seeded,
  with p = (1 + #{|T*| ≥ |T|}) / (1 + permutations). Two-sided.
- CI of ``diff``: the cluster bootstrap of `valuelex.evaluate.scores.cluster_bootstrap`, paired:
  each resample draws stems with replacement -- the *same* stems for both models -- and, inside each
  drawn stem, each model's completions with replacement; percentile interval of w_b* − w_a*.
- Effect size: Cohen's d_z = mean(D) / sd(D) over the paired cells, and Hedges' g_z = J·d_z with
  J = 1 − 3 / (4(K − 1) − 1). It is standardised by the spread of *cell* differences, so it grows
  with M (cell means get less noisy): compare effect sizes only at equal M; ``diff`` is on the
  0–1 scale of φ and does not depend on the design.
- Multiple comparisons: Holm (default; family-wise error under any dependence) or
  Benjamini–Hochberg (``correction="bh"``, false discovery rate) across every (sub)dimension of
  the comparison (parents are means of their subdimensions, so the family is positively
  dependent); ``p_adj`` and ``significant`` (p_adj < alpha).

Variance components and power
-----------------------------
Model: D_sc = δ + u_s + v_sc + ē_sc with Var(u_s) = σ_S² (between stems: how much the models'
difference varies by stem), Var(v_sc) = σ_C² (stem × config), and the sampling noise of the cell
means Var(ē_sc) = τ² / M_v (within stems), where τ² = σ²_W,a + σ²_W,b is the sum of the two models'
within-cell completion variances and M_v = f·M the valid completions per cell and model: M counts
the judged ones (the study's ``samples``), f is the observed ratio of the harmonic mean of the valid
counts to the mean judged count (1 when every judgment is valid). Moment estimates (ANOVA of the
cell differences with S stems, C configs):

    τ² = mean_cells s²_a,sc + mean_cells s²_b,sc                       (pooled within-cell variances)
    MS_within = Σ_s Σ_c (D_sc − D̄_s)² / Σ_s (C_s − 1)       E = σ_C² + τ²/M_v
    MS_stems  = var_s(D̄_s)                                   E = σ_S² + (σ_C² + τ²/M_v) / C
    σ_C² = max(0, MS_within − τ²/M_v),   σ_S² = max(0, MS_stems − MS_within / C)

(with C = 1, σ_C² is not identifiable and is folded into σ_S²; for groups compared by stem, a side's
cell mean is the mean of its k models' cell means and its part of τ² is Σ_m s²_m / k²). The
variance of T at a design (S stems, C configs, M samples) is

    Var(T) = σ_S²/S + σ_C²/(S·C) + τ²/(S·C·f·M)     (unit="cell": (σ_S² + σ_C² + τ²/(f·M)) / (S·C))

and the power of the two-sided test at level α to detect a true difference δ is that of a t test
with df = S − 1 (``unit="cell"``: S·C − 1) and noncentrality |δ| / sqrt(Var(T)):
power = P(|t_df(ncp)| > t_{1−α/2, df}). `power` returns the power now, the smallest M that reaches
the target at the current stems (``None`` when σ_S²/S + σ_C²/(S·C) alone is too large: raising M
cannot do it, raise the stems), and the smallest number of stems at the current M. The power is per
test (α uncorrected); pass ``alpha=0.05 / n_dimensions`` for the strictest Holm step.

Groups
------
``compare_groups(run, spec)``:

- ``family-training``: every non-pretrained model is compared, paired as above, with the
  pretrained model of its family of the same size (or the family's only pretrained model); one
  comparison (and file) per pair, each corrected on its own.
- ``FIELD:A/B`` (``training:pretrained/aligned``, ``family:llama2/mistral``; ``+`` joins values,
  ``training:pretrained/instruction-tuned+aligned``): all models with FIELD in A against all in B,
  unpaired. A group's score is the mean of its models' w. ``unit="models"`` (default) permutes the
  group labels over the models (every split when there are at most ``permutations``): the test
  generalises to models like these, so with few models it cannot be significant (2 vs 2 models
  give p ≥ 1/3) -- that is the honest answer. Its CI resamples models within each group, stems and
  completions; the effect size is Hedges' g between the groups' model scores, and the power part is
  the number of models per group needed (two-sample t on the between-model variance).
  ``unit="stem"`` treats the groups' models as fixed and compares the groups' cell means paired by
  stem, exactly like two models (sign flips over stems, stem bootstrap, M and stems needed).
- ``size-trend``: see `size_trend`: OLS of w on log10(size_b) across models, per training method
  and for all models, with a t CI of the slope.
"""

from __future__ import annotations

import io
import itertools
import math
import re
import tempfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from valuelex.errors import StudyError
from valuelex.evaluate import judgments as jt
from valuelex.evaluate.scores import dimension_values, percentile_ci
from valuelex.evaluate.systems import PACKAGED, ValueSystem, load_value_system
from valuelex.store import OutputRoot

COMPARISONS_DIR = "comparisons"
CORRECTIONS = ("holm", "bh", "none")
UNITS = ("stem", "cell", "models")
TRAINING_ORDER = ("pretrained", "instruction-tuned", "aligned")
MIN_PERMUTATIONS = 2000
DEFAULT_PERMUTATIONS = 10_000
_CHUNK_ELEMENTS = 4_000_000

COLUMNS = (
    "comparison", "kind", "a", "b", "models_a", "models_b", "system", "judge", "dimension", "key", "level",
    "parent", "w_a", "w_b", "diff", "ci_low", "ci_high", "statistic", "p", "p_adj", "significant", "d_z",
    "g", "n_a", "n_b", "n_stems", "n_configs", "n_cells", "cells_dropped", "samples", "valid_fraction",
    "var_between_stem", "var_stem_config", "var_within", "var_between_models", "se", "delta", "target_power",
    "power_now", "samples_needed", "stems_needed", "models_needed", "unit", "correction", "alpha", "permutations",
    "exact", "resamples", "ci_level", "seed",
)
TREND_COLUMNS = ("system", "judge", "training", "dimension", "key", "level", "parent", "n_models", "models",
                 "slope", "slope_low", "slope_high", "intercept", "r", "p", "ci_level")


# --- multiple comparisons -------------------------------------------------------------------------


def adjust(p: Sequence[float] | np.ndarray, method: str = "holm") -> np.ndarray:
    """Adjusted p-values: Holm step-down, Benjamini–Hochberg step-up, or none. NaN stays NaN and is
    not counted in the family."""
    if method not in CORRECTIONS:
        raise StudyError(f"correction: {method!r} is not one of {', '.join(CORRECTIONS)}")
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out
    values = p[ok]
    if method == "none":
        out[ok] = values
        return out
    order = np.argsort(values, kind="stable")
    ranked = values[order]
    if method == "holm":
        adjusted = np.maximum.accumulate((m - np.arange(m)) * ranked)
    else:  # bh
        adjusted = np.minimum.accumulate((m / np.arange(m, 0, -1)) * ranked[::-1])[::-1]
    result = np.empty(m)
    result[order] = np.minimum(adjusted, 1.0)
    out[ok] = result
    return out


# --- power ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VarianceComponents:
    """Variance components of the cell differences D_sc of one dimension (see the module docstring)."""

    between_stem: float  # σ_S²
    stem_config: float  # σ_C²
    within: float  # τ² = σ²_W,a + σ²_W,b, per completion
    n_stems: int
    n_configs: float
    samples: float  # M: judged completions per (stem, config) and model
    unit: str = "stem"
    valid_fraction: float = 1.0  # f: M_valid = f·M (harmonic mean of valid counts / mean judged count)

    @classmethod
    def from_row(cls, row: Any) -> VarianceComponents:
        """The components stored in one row of a comparison (a dict, Series or itertuples row)."""
        get = row.get if hasattr(row, "get") else (lambda name: getattr(row, name))
        return cls(between_stem=float(get("var_between_stem")), stem_config=float(get("var_stem_config")),
                   within=float(get("var_within")), n_stems=int(get("n_stems")), n_configs=float(get("n_configs")),
                   samples=float(get("samples")), unit=str(get("unit")), valid_fraction=float(get("valid_fraction")))

    def variance(self, n_stems: float | None = None, samples: float | None = None,
                 n_configs: float | None = None) -> float:
        """Var(T) of the mean cell difference at a design (defaults: the observed one)."""
        s = float(self.n_stems if n_stems is None else n_stems)
        m = float(self.samples if samples is None else samples) * self.valid_fraction
        c = float(self.n_configs if n_configs is None else n_configs)
        if self.unit == "cell":
            return (self.between_stem + self.stem_config + self.within / m) / (s * c)
        return self.between_stem / s + self.stem_config / (s * c) + self.within / (s * c * m)

    def df(self, n_stems: float | None = None, n_configs: float | None = None) -> float:
        s = float(self.n_stems if n_stems is None else n_stems)
        c = float(self.n_configs if n_configs is None else n_configs)
        return s * c - 1 if self.unit == "cell" else s - 1


@dataclass(frozen=True)
class Power:
    delta: float
    alpha: float
    target: float
    power_now: float
    se_now: float
    samples_needed: int | None  # M at the current stems; None: raising M alone cannot reach the target
    stems_needed: int | None  # stems at the current M


def power_at(components: VarianceComponents, delta: float, *, n_stems: float | None = None,
             samples: float | None = None, n_configs: float | None = None, alpha: float = 0.05) -> float:
    """Power of the two-sided test at level `alpha` to detect a true difference `delta` at a design."""
    df = components.df(n_stems, n_configs)
    variance = components.variance(n_stems, samples, n_configs)
    if not (np.isfinite(variance) and np.isfinite(df)) or df < 1:
        return float("nan")
    if variance <= 0:
        return 1.0 if delta != 0 else alpha
    return _t_power(abs(delta) / math.sqrt(variance), df, alpha)


def _t_power(ncp: float, df: float, alpha: float) -> float:
    """P(|t_df(ncp)| > t_{1-alpha/2, df}); scipy's noncentral t returns NaN far in the tail, where the
    normal approximation is exact to many digits."""
    from scipy import stats

    crit = float(stats.t.ppf(1 - alpha / 2, df))
    if ncp - crit > 12:
        return 1.0
    value = float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))
    if not np.isfinite(value):
        value = float(stats.norm.sf(crit - ncp) + stats.norm.cdf(-crit - ncp))
    return min(1.0, value)


def _smallest(ok: Callable[[int], bool], low: int, high: int) -> int | None:
    """The smallest n in [low, high] with ok(n), for a monotone ok; None when ok(high) fails."""
    if not ok(high):
        return None
    while low < high:
        middle = (low + high) // 2
        if ok(middle):
            high = middle
        else:
            low = middle + 1
    return low


def power(components: VarianceComponents, delta: float, *, alpha: float = 0.05, target: float = 0.8,
          n_stems: int | None = None, samples: float | None = None, max_samples: int = 1_000_000,
          max_stems: int = 1_000_000) -> Power:
    """How far must M (or the stems) be raised to detect `delta` at level `alpha` with power `target`?

    `n_stems` / `samples` default to the observed design. See the module docstring for the formula.
    """
    if not 0 < alpha < 1 or not 0 < target < 1:
        raise StudyError(f"power: alpha and target must lie in (0, 1), got {alpha} and {target}")
    if not delta:
        raise StudyError("power: delta must be a non-zero difference on the 0-1 scale of w")
    stems = components.n_stems if n_stems is None else n_stems
    m_now = components.samples if samples is None else samples
    now = power_at(components, delta, n_stems=stems, samples=m_now, alpha=alpha)
    se = math.sqrt(components.variance(stems, m_now)) if stems >= 1 else float("nan")
    if not np.isfinite(now):
        return Power(delta, alpha, target, now, se, None, None)
    samples_needed = _smallest(lambda m: power_at(components, delta, n_stems=stems, samples=m, alpha=alpha) >= target,
                               1, max_samples)
    stems_needed = _smallest(lambda s: power_at(components, delta, n_stems=s, samples=m_now, alpha=alpha) >= target,
                             2, max_stems)
    return Power(delta, alpha, target, now, se, samples_needed, stems_needed)


def models_needed(between_models: float, delta: float, *, alpha: float = 0.05, target: float = 0.8,
                  limit: int = 100_000) -> int | None:
    """Models per group for a two-sample t test of group means with between-model variance σ_M²."""
    if not (np.isfinite(between_models) and delta):
        return None

    def ok(n: int) -> bool:
        if between_models <= 0:
            return True
        return _t_power(abs(delta) / math.sqrt(2 * between_models / n), 2 * n - 2, alpha) >= target

    return _smallest(ok, 2, limit)


# --- loading a run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dim:
    key: str
    name: str
    level: str
    parent: str | None  # the parent's name


@dataclass
class RunValues:
    """Normalised φ per valid completion of one system and judge, with the design and the models' metadata."""

    uri: str
    system: ValueSystem
    judge: str
    judge_key: str
    values: pd.DataFrame  # model, item_id, config, sample, one column per dimension key
    design: pd.DataFrame  # model, item_id, config, valid: every judged completion, invalid ones too
    meta: dict[str, dict[str, Any]]

    @property
    def dims(self) -> list[Dim]:
        return [Dim(d.key, d.name, d.level, self.system.dimension(d.parent).name if d.parent else None)
                for d in self.system.all_dimensions()]

    @property
    def keys(self) -> list[str]:
        return [d.key for d in self.system.all_dimensions()]

    @property
    def models(self) -> list[str]:
        return sorted(self.design["model"].dropna().unique())


def _scores(root: OutputRoot) -> pd.DataFrame | None:
    from valuelex.evaluate.stage import read_scores

    try:
        return read_scores(root)
    except Exception:
        return None


def _judged_systems(root: OutputRoot) -> list[str]:
    found = set()
    scores = _scores(root)
    if scores is not None and "system" in scores.columns:
        found |= {str(s) for s in scores["system"].dropna().unique()}
    infos = root.fs.get_file_info(pafs.FileSelector(f"{root.path}/judgments", allow_not_found=True))
    found |= {i.base_name for i in infos if i.type == pafs.FileType.Directory}
    return sorted(found)


def _taxonomy_system(root: OutputRoot, name: str) -> ValueSystem | None:
    """A constructed taxonomy of the run (taxonomy[-label].json) whose name or label is `name`."""
    infos = root.fs.get_file_info(pafs.FileSelector(root.path, allow_not_found=True))
    for info in sorted(infos, key=lambda i: i.base_name):
        match = re.match(r"^taxonomy(?:-(.+))?\.json$", info.base_name)
        if info.type != pafs.FileType.File or not match:
            continue
        document = root.read_json(info.base_name)
        if not isinstance(document, dict):
            continue
        if name not in (document.get("name") or "constructed", match.group(1)):
            continue
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "taxonomy.json"
            with root.fs.open_input_stream(f"{root.path}/{info.base_name}") as stream:
                path.write_bytes(stream.read())
            return load_value_system(path)
    return None


def resolve_system(root: OutputRoot, system: str | ValueSystem) -> ValueSystem:
    """A ValueSystem, a packaged name, a YAML / taxonomy.json path, or the name of a taxonomy of the run."""
    if isinstance(system, ValueSystem):
        return system
    if system in PACKAGED or Path(system).exists():
        return load_value_system(system)
    found = _taxonomy_system(root, system)
    if found is None:
        scored = ", ".join(_judged_systems(root)) or "none"
        raise StudyError(f"{root.uri}: system {system!r} was not scored in this run: not a packaged system "
                         f"({', '.join(PACKAGED)}), not a file, and no taxonomy*.json of the run has that name "
                         f"(scored systems: {scored})")
    return found


def _choose_judge(root: OutputRoot, system: ValueSystem, judge: str | None) -> tuple[str, str]:
    """(judge, judge_key) of the stored judgments of the current version of `system`."""
    table = root.table(jt.table_name(system)).read_raw(columns=["judge", "judge_key"])
    scored = ", ".join(_judged_systems(root)) or "none"
    if table is None or table.num_rows == 0:
        raise StudyError(f"{root.uri}: system {system.name!r} was not scored in this run: no judgments/"
                         f"{jt.table_name(system).split('/', 1)[1]} (scored systems: {scored})")
    keys = table.to_pandas()
    current = keys[keys["judge_key"].astype(str).str.endswith(f"@{system.fingerprint()}")]
    if current.empty:
        raise StudyError(f"{root.uri}: the judgments of system {system.name!r} were made on another version of it "
                         f"(judge keys {sorted(keys['judge_key'].astype(str).unique())}, current fingerprint "
                         f"{system.fingerprint()}): evaluate the run again or pass the system file it used")
    judges = sorted(current["judge"].astype(str).unique())
    if judge is None:
        scores = _scores(root)
        if scores is not None and {"system", "judge"} <= set(scores.columns):
            stored = scores.loc[scores["system"] == system.name, "judge"].astype(str).unique()
            if len(stored) == 1 and stored[0] in judges:
                judge = str(stored[0])
        if judge is None:
            if len(judges) > 1:
                raise StudyError(f"{root.uri}: system {system.name!r} was judged by several judges "
                                 f"({', '.join(judges)}): choose one with --judge")
            judge = judges[0]
    if judge not in judges:
        raise StudyError(f"{root.uri}: judge {judge!r} did not judge system {system.name!r} "
                         f"(judges: {', '.join(judges)})")
    counts = current.loc[current["judge"] == judge, "judge_key"].value_counts()
    return judge, str(counts.index[0])


def _grid_judgments(root: OutputRoot, system: ValueSystem, judge_key: str) -> pd.DataFrame:
    """The judgments the evaluation stage scores: the study's current grid, its M (evaluation.json)."""
    from valuelex.evaluate.stage import current_judgments
    from valuelex.spec import Study

    study_doc = root.read_json("study.json")
    study = None
    if study_doc is not None:
        try:
            study = Study.model_validate(study_doc)
        except Exception:  # an older spec: compare what is stored
            study = None
    if study is None:
        return jt.read_judgments(root, system, judge_key)
    samples = (root.read_json("evaluation.json") or {}).get("samples")
    return current_judgments(root, study, system, judge_key, max_samples=int(samples) if samples else None)


def _meta(judgments: pd.DataFrame, study: dict | None) -> dict[str, dict[str, Any]]:
    meta: dict[str, dict[str, Any]] = {}
    for row in judgments[["model", "training", "size_b", "family"]].drop_duplicates("model").to_dict("records"):
        meta[str(row["model"])] = {k: row[k] for k in ("training", "size_b", "family")
                                   if row[k] is not None and not (isinstance(row[k], float) and np.isnan(row[k]))}
    for model in (study or {}).get("models", []) or []:
        if isinstance(model, dict) and model.get("name") in meta:
            for key in ("training", "size_b", "family"):
                if model.get(key) is not None:
                    meta[model["name"]].setdefault(key, model[key])
    return meta


def load_values(run_uri: str, system: str | ValueSystem = "valuelex", judge: str | None = None) -> RunValues:
    """The per-completion φ of one system and judge in a run; `StudyError` when the system was not scored."""
    root = OutputRoot(run_uri)
    if not root.exists(""):
        raise StudyError(f"{run_uri}: no such run (the output root does not exist)")
    resolved = resolve_system(root, system)
    judge, judge_key = _choose_judge(root, resolved, judge)
    judgments = _grid_judgments(root, resolved, judge_key)
    if judgments.empty:
        raise StudyError(f"{run_uri}: system {resolved.name!r} has no judgments by {judge} in the study's grid")
    values = dimension_values(judgments, resolved)
    design = judgments[["model", "item_id", "config", "valid"]].reset_index(drop=True)
    return RunValues(uri=root.uri, system=resolved, judge=judge, judge_key=judge_key, values=values, design=design,
                     meta=_meta(judgments, root.read_json("study.json")))


def check_models(run: RunValues, models: Sequence[str], what: str = "model") -> None:
    known = set(run.models)
    for model in models:
        if model not in known:
            raise StudyError(f"{run.uri}: {what} {model!r} is not in the run: no judgments of system "
                             f"{run.system.name!r} by {run.judge} (models: {', '.join(run.models) or 'none'})")


def check_design(run: RunValues, side_a: Sequence[str], side_b: Sequence[str]) -> None:
    """Every compared model must have been given the same stems and decoding configs."""
    check_models(run, [*side_a, *side_b])
    reference = side_a[0]

    def cells(model: str) -> tuple[set[str], set[str]]:
        mine = run.design[run.design["model"] == model]
        return set(mine["item_id"].astype(str)), set(mine["config"].astype(str))

    stems_ref, configs_ref = cells(reference)
    for model in [*side_a[1:], *side_b]:
        stems, configs = cells(model)
        for what, mine, ref in (("stems", stems, stems_ref), ("decoding configs", configs, configs_ref)):
            if mine != ref:
                only_ref = ", ".join(sorted(ref - mine)) or "none"
                only_mine = ", ".join(sorted(mine - ref)) or "none"
                raise StudyError(f"{run.uri}: {reference!r} and {model!r} were not given the same {what} in system "
                                 f"{run.system.name!r}: only {reference}: {only_ref}; only {model}: {only_mine}")


# --- statistics on cells ----------------------------------------------------------------------------


def _rng(seed: int, *labels: str) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(label.encode()) for label in labels)])


@dataclass
class Cells:
    """Per-model cell statistics on a common grid of stems x configs (NaN / 0 where a model has nothing)."""

    models: list[str]
    stems: list[str]
    configs: list[str]
    mean: np.ndarray  # (models, S, C, D)
    var: np.ndarray  # (models, S, C, D), ddof=1, NaN with fewer than 2 completions
    count: np.ndarray  # (models, S, C)


def cell_stats(values: pd.DataFrame, models: Sequence[str], keys: Sequence[str]) -> Cells:
    mine = values[values["model"].isin(models)]
    model_code = pd.Index(list(models)).get_indexer(mine["model"])
    stem_code, stems = pd.factorize(mine["item_id"].astype(str), sort=True)
    config_code, configs = pd.factorize(mine["config"].astype(str), sort=True)
    shape = (len(models), len(stems), len(configs))
    flat = np.ravel_multi_index((model_code, stem_code, config_code), shape) if len(mine) else np.zeros(0, int)
    size = int(np.prod(shape))
    data = mine[list(keys)].to_numpy(dtype=float)
    count = np.bincount(flat, minlength=size)
    sums = np.stack([np.bincount(flat, data[:, d], minlength=size) for d in range(len(keys))], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = sums / count[:, None]
        centred = data - mean[flat]
        squares = np.stack([np.bincount(flat, centred[:, d] ** 2, minlength=size) for d in range(len(keys))], axis=1)
        var = np.where(count[:, None] > 1, squares / (count[:, None] - 1), np.nan)
    mean[count == 0] = np.nan
    width = len(keys)
    return Cells(list(models), [str(x) for x in stems], [str(x) for x in configs], mean.reshape(*shape, width),
                 var.reshape(*shape, width), count.reshape(shape))


def sign_flip_test(units: np.ndarray, n_cells: int, permutations: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, bool]:
    """Two-sided sign-flip test of mean cell difference = 0.

    `units` (U, D): each unit's sum of cell differences (a stem's, or one cell's); T = Σ units / n_cells.
    Returns (T, p, exact): every pattern when 2^U <= permutations, else `permutations` random ones.
    """
    n_units, width = units.shape
    observed = units.sum(axis=0) / n_cells
    tolerance = 1e-12 * np.maximum(1.0, np.abs(observed))
    exact = n_units <= 30 and 2 ** n_units <= permutations
    total = 2 ** n_units if exact else permutations
    hits = np.zeros(width)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, n_units))
    for start in range(0, total, chunk):
        b = min(chunk, total - start)
        if exact:
            codes = np.arange(start, start + b)[:, None]
            signs = 1 - 2 * ((codes >> np.arange(n_units)[None, :]) & 1)
        else:
            signs = 2.0 * rng.integers(0, 2, size=(b, n_units)) - 1
        flipped = np.einsum("bu,ud->bd", signs, units) / n_cells  # einsum: no BLAS threads for a small product
        hits += (np.abs(flipped) >= np.abs(observed) - tolerance).sum(axis=0)
    p = hits / total if exact else (hits + 1) / (permutations + 1)
    return observed, np.minimum(p, 1.0), exact


def label_permutation_test(w: np.ndarray, n_b: int, permutations: int,
                           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, bool]:
    """Two-sided test of mean(w of the last n_b models) − mean(w of the others) = 0 by relabelling models."""
    n = len(w)
    n_a = n - n_b
    observed = w[n_a:].mean(axis=0) - w[:n_a].mean(axis=0)
    tolerance = 1e-12 * np.maximum(1.0, np.abs(observed))
    splits = math.comb(n, n_b)
    exact = splits <= permutations
    if exact:
        members = np.array([[i in chosen for i in range(n)] for chosen in itertools.combinations(range(n), n_b)])
    else:
        order = np.argsort(rng.random((permutations, n)), axis=1)
        members = np.zeros((permutations, n), dtype=bool)
        np.put_along_axis(members, order[:, :n_b], True, axis=1)
    stats_b = np.einsum("bm,md->bd", members.astype(float), w) / n_b
    stats_a = np.einsum("bm,md->bd", (~members).astype(float), w) / n_a
    hits = (np.abs(stats_b - stats_a) >= np.abs(observed) - tolerance).sum(axis=0)
    p = hits / len(members) if exact else (hits + 1) / (permutations + 1)
    return observed, np.minimum(p, 1.0), exact


def paired_bootstrap(groups: Sequence[Sequence[np.ndarray]], side_a: Sequence[int], side_b: Sequence[int],
                     resamples: int, rng: np.random.Generator, resample_models: bool = False) -> np.ndarray:
    """Bootstrap of mean_b(w) − mean_a(w), shape (resamples, D).

    `groups[m][s]` holds model m's (n, D) completions of stem s (every n >= 1). Each resample draws
    the stems with replacement once, shared by every model (the pairing), then each model's
    completions within each drawn stem with replacement, as `valuelex.evaluate.scores.cluster_bootstrap`
    does for one model. With `resample_models`, the models of each side are drawn with replacement too.
    """
    n_stems = len(groups[0])
    width = np.asarray(groups[0][0]).reshape(len(groups[0][0]), -1).shape[1]
    padded, sizes = [], []
    for model_groups in groups:
        arrays = [np.asarray(g, dtype=float).reshape(len(g), -1) for g in model_groups]
        longest = max(len(g) for g in arrays)
        block = np.zeros((n_stems, longest, width))
        for j, g in enumerate(arrays):
            block[j, : len(g)] = g
        padded.append(block)
        sizes.append(np.array([len(g) for g in arrays]))
    longest_all = max(p.shape[1] for p in padded)
    chunk = max(1, _CHUNK_ELEMENTS // (n_stems * longest_all * width))
    out = np.empty((resamples, width))
    side_a, side_b = list(side_a), list(side_b)
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        drawn = rng.integers(0, n_stems, size=(b, n_stems))
        w = np.empty((b, len(groups), width))
        for m, (block, size) in enumerate(zip(padded, sizes, strict=True)):
            longest = block.shape[1]
            drawn_sizes = size[drawn]
            rows = (rng.random((b, n_stems, longest)) * drawn_sizes[..., None]).astype(np.int64)
            mask = np.arange(longest)[None, None, :] < drawn_sizes[..., None]
            sums = (block[drawn[..., None], rows] * mask[..., None]).sum(axis=(1, 2))
            w[:, m] = sums / drawn_sizes.sum(axis=1)[:, None]

        def side(members: list[int], w: np.ndarray = w, b: int = b) -> np.ndarray:
            if resample_models:
                picks = np.asarray(members)[rng.integers(0, len(members), size=(b, len(members)))]
                return w[np.arange(b)[:, None], picks].mean(axis=1)
            return w[:, members].mean(axis=1)

        out[start:start + b] = side(side_b) - side(side_a)
    return out


def components_from_cells(diff: np.ndarray, within: np.ndarray, samples: float, unit: str,
                          valid_fraction: float = 1.0) -> list[VarianceComponents]:
    """Moment estimates of σ_S², σ_C² (from the cell differences `diff` (S, C, D), NaN = no cell) given
    τ² per dimension (`within`), M and f; one `VarianceComponents` per dimension."""
    present = np.isfinite(diff[:, :, 0])
    per_stem = present.sum(axis=1)
    kept = per_stem > 0
    cells = diff[kept]  # (S', C, D)
    n_stems = int(kept.sum())
    n_configs = float(per_stem[kept].mean()) if n_stems else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        stem_means = np.nansum(cells, axis=1) / per_stem[kept][:, None]  # (S', D)
        df_within = int((per_stem[kept] - 1).sum())
        ms_within = (np.nansum((cells - stem_means[:, None, :]) ** 2, axis=(0, 1)) / df_within if df_within
                     else np.full(diff.shape[2], np.nan))
        ms_stems = stem_means.var(axis=0, ddof=1) if n_stems > 1 else np.full(diff.shape[2], np.nan)
    out = []
    for d in range(diff.shape[2]):
        tau2 = float(within[d])
        valid_samples = samples * valid_fraction
        noise = tau2 / valid_samples if np.isfinite(tau2) and valid_samples > 0 else 0.0
        if np.isfinite(ms_within[d]) and n_configs > 1:
            stem_config = max(0.0, float(ms_within[d]) - noise)
            between = max(0.0, float(ms_stems[d] - ms_within[d] / n_configs)) if np.isfinite(ms_stems[d]) else np.nan
        else:
            stem_config = 0.0
            between = max(0.0, float(ms_stems[d]) - noise) if np.isfinite(ms_stems[d]) else np.nan
        out.append(VarianceComponents(between_stem=float(between), stem_config=float(stem_config),
                                      within=tau2 if np.isfinite(tau2) else 0.0, n_stems=n_stems,
                                      n_configs=n_configs, samples=float(samples), unit=unit,
                                      valid_fraction=float(valid_fraction)))
    return out


def _judged_counts(judged: pd.DataFrame, cells: Cells) -> np.ndarray:
    """Judged completions (valid or not) per (model, stem, config) on the grid of `cells`."""
    mine = judged[judged["model"].isin(cells.models)]
    codes = (pd.Index(cells.models).get_indexer(mine["model"]), pd.Index(cells.stems).get_indexer(
        mine["item_id"].astype(str)), pd.Index(cells.configs).get_indexer(mine["config"].astype(str)))
    inside = (codes[1] >= 0) & (codes[2] >= 0)
    shape = cells.count.shape
    flat = np.ravel_multi_index(tuple(c[inside] for c in codes), shape)
    return np.bincount(flat, minlength=int(np.prod(shape))).reshape(shape)


def _hedges(d: np.ndarray, df: float) -> np.ndarray:
    if df <= 1:
        return np.full_like(d, np.nan)
    return d * (1 - 3 / (4 * df - 1))


# --- the comparison of two sides --------------------------------------------------------------------


def _validate(unit: str, correction: str, permutations: int, resamples: int, alpha: float, ci_level: float) -> None:
    if unit not in UNITS:
        raise StudyError(f"unit: {unit!r} is not one of {', '.join(UNITS)}")
    if correction not in CORRECTIONS:
        raise StudyError(f"correction: {correction!r} is not one of {', '.join(CORRECTIONS)}")
    if permutations < MIN_PERMUTATIONS:
        raise StudyError(f"permutations: at least {MIN_PERMUTATIONS} are needed for stable p-values, "
                         f"got {permutations}")
    if resamples < 0:
        raise StudyError(f"resamples: must be >= 0, got {resamples}")
    if not 0 < alpha < 1 or not 0 < ci_level < 1:
        raise StudyError(f"alpha and ci_level must lie in (0, 1), got {alpha} and {ci_level}")


def compare_values(
    values: pd.DataFrame, dims: Sequence[Dim], side_a: Sequence[str], side_b: Sequence[str], *,
    label_a: str | None = None, label_b: str | None = None, system: str = "", judge: str = "",
    unit: str = "stem", correction: str = "holm", alpha: float = 0.05, permutations: int = DEFAULT_PERMUTATIONS,
    resamples: int = 2000, ci_level: float = 0.95, seed: int = 0, delta: float | None = 0.05,
    target_power: float = 0.8, judged: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The comparison of side b against side a (lists of models) on φ per completion (`values`: model,
    item_id, config, one column per dims key). One row per dimension; see the module docstring.
    `judged` (model, item_id, config of every judged completion, invalid ones too) gives M and the
    valid fraction f; without it every completion counts as valid.

    With one model per side this is the paired comparison of two models. ``resamples=0`` skips the CI;
    ``delta=None`` skips the power part.
    """
    _validate(unit, correction, permutations, resamples, alpha, ci_level)
    side_a, side_b = list(side_a), list(side_b)
    if set(side_a) & set(side_b):
        raise StudyError(f"the two sides share models: {', '.join(sorted(set(side_a) & set(side_b)))}")
    if unit == "models" and (len(side_a) < 2 and len(side_b) < 2):
        raise StudyError("unit 'models' permutes models between the groups: it needs more than one model a side")
    label_a = label_a or "+".join(side_a)
    label_b = label_b or "+".join(side_b)
    keys = [d.key for d in dims]
    models = [*side_a, *side_b]
    ia, ib = list(range(len(side_a))), list(range(len(side_a), len(models)))
    rng = _rng(seed, system, label_a, label_b, unit)
    cells = cell_stats(values, models, keys)
    width = len(keys)

    # Eq. 4 per model and per side (all valid completions)
    mine = values[values["model"].isin(models)]
    w_model = mine.groupby("model")[keys].mean().reindex(models).to_numpy(dtype=float)
    n_model = mine.groupby("model").size().reindex(models).fillna(0).to_numpy(dtype=int)
    w_a, w_b = np.nanmean(w_model[ia], axis=0), np.nanmean(w_model[ib], axis=0)

    # paired cells: every model of both sides has a valid completion there
    valid = (cells.count > 0).all(axis=0)  # (S, C)
    n_cells_total = int((cells.count > 0).any(axis=0).sum())
    side_mean_a = cells.mean[ia].mean(axis=0)
    side_mean_b = cells.mean[ib].mean(axis=0)
    diff_cells = np.where(valid[..., None], side_mean_b - side_mean_a, np.nan)  # (S, C, D)
    kept_stems = valid.any(axis=1)
    n_cells = int(valid.sum())
    n_stems = int(kept_stems.sum())
    n_configs = len(cells.configs)
    counts = cells.count[:, valid]
    valid_samples = float(counts.size / np.sum(1.0 / counts)) if counts.size else float("nan")
    samples = _judged_counts(judged, cells)[:, valid].mean() if judged is not None and counts.size else float(
        counts.mean() if counts.size else np.nan)
    valid_fraction = min(1.0, valid_samples / samples) if samples > 0 else float("nan")
    row: dict[str, Any] = {
        "comparison": comparison_name(label_a, label_b), "a": label_a, "b": label_b,
        "models_a": ", ".join(side_a), "models_b": ", ".join(side_b), "system": system, "judge": judge,
        "n_a": int(n_model[ia].sum()), "n_b": int(n_model[ib].sum()), "n_stems": n_stems, "n_configs": n_configs,
        "n_cells": n_cells, "cells_dropped": n_cells_total - n_cells, "samples": samples,
        "valid_fraction": valid_fraction, "unit": unit,
        "correction": correction, "alpha": alpha, "permutations": permutations, "resamples": resamples,
        "ci_level": ci_level, "seed": seed, "delta": delta, "target_power": target_power,
    }
    nan = np.full(width, np.nan)
    columns: dict[str, np.ndarray] = {k: nan.copy() for k in (
        "statistic", "p", "d_z", "g", "ci_low", "ci_high", "var_between_stem", "var_stem_config", "var_within",
        "var_between_models", "se", "power_now", "samples_needed", "stems_needed", "models_needed")}
    exact = False
    if n_cells == 0:
        raise StudyError(f"{label_a} vs {label_b}: no (stem, config) cell has valid judgments on both sides")

    flat = diff_cells[valid]  # (K, D)
    if unit in ("stem", "cell"):
        kind = "paired" if len(models) == 2 else "groups-paired-by-stem"
        # stem: a stem's cell differences are flipped together; cell: each on its own
        units = np.nansum(diff_cells[kept_stems], axis=1) if unit == "stem" else flat
        statistic, p, exact = sign_flip_test(units, n_cells, permutations, rng)
        columns["statistic"], columns["p"] = statistic, p
        sd = flat.std(axis=0, ddof=1) if n_cells > 1 else nan
        with np.errstate(divide="ignore", invalid="ignore"):
            d_z = np.where(sd > 0, flat.mean(axis=0) / sd, np.nan)
        columns["d_z"], columns["g"] = d_z, _hedges(d_z, n_cells - 1)
        # τ²: Σ over the models of a side of their within-cell variances / |side|²
        within_model = np.full((len(models), width), np.nan)
        for m in range(len(models)):
            spread = cells.var[m][valid]  # (K, D), NaN where a cell has one completion
            if np.isfinite(spread).any():
                within_model[m] = np.nanmean(spread, axis=0)
        tau2 = np.nansum(within_model[ia], axis=0) / len(ia) ** 2 + np.nansum(within_model[ib], axis=0) / len(ib) ** 2
        components = components_from_cells(diff_cells, tau2, samples, unit, valid_fraction)
        columns["var_between_stem"] = np.array([c.between_stem for c in components])
        columns["var_stem_config"] = np.array([c.stem_config for c in components])
        columns["var_within"] = tau2
        columns["se"] = np.array([math.sqrt(c.variance()) if c.n_stems >= 1 else np.nan for c in components])
        if delta:
            for d, comp in enumerate(components):
                result = power(comp, delta, alpha=alpha, target=target_power)
                columns["power_now"][d] = result.power_now
                columns["samples_needed"][d] = np.nan if result.samples_needed is None else result.samples_needed
                columns["stems_needed"][d] = np.nan if result.stems_needed is None else result.stems_needed
    else:
        kind = "groups-by-models"
        ok = np.isfinite(w_model).all(axis=1)
        if not ok.all():
            missing = [m for m, good in zip(models, ok, strict=True) if not good]
            raise StudyError(f"{label_a} vs {label_b}: models without a valid judgment: {', '.join(missing)}")
        statistic, p, exact = label_permutation_test(w_model, len(side_b), permutations, rng)
        columns["statistic"], columns["p"] = statistic, p
        df = len(models) - 2
        if df > 0:
            pooled = ((len(ia) - 1) * np.var(w_model[ia], axis=0, ddof=1 if len(ia) > 1 else 0)
                      + (len(ib) - 1) * np.var(w_model[ib], axis=0, ddof=1 if len(ib) > 1 else 0)) / df
            with np.errstate(divide="ignore", invalid="ignore"):
                d = np.where(pooled > 0, statistic / np.sqrt(pooled), np.nan)
            columns["g"] = _hedges(d, df)  # J = 1 − 3 / (4 (n_a + n_b − 2) − 1)
            columns["var_between_models"] = pooled
            columns["se"] = np.sqrt(pooled * (1 / len(ia) + 1 / len(ib)))
            if delta:
                for d_index in range(width):
                    needed = models_needed(float(pooled[d_index]), delta, alpha=alpha, target=target_power)
                    columns["models_needed"][d_index] = np.nan if needed is None else needed

    if resamples:
        stem_idx = np.flatnonzero(kept_stems)
        groups = []
        wanted = {cells.stems[s] for s in stem_idx}
        for model in models:
            frame = mine[(mine["model"] == model) & mine["item_id"].astype(str).isin(wanted)]
            by_stem = frame.groupby(frame["item_id"].astype(str))[keys]
            groups.append([by_stem.get_group(cells.stems[s]).to_numpy(dtype=float) for s in stem_idx])
        boot = paired_bootstrap(groups, ia, ib, resamples, rng, resample_models=unit == "models")
        columns["ci_low"], columns["ci_high"] = percentile_ci(boot, ci_level)

    p_adj = adjust(columns["p"], correction)
    frame = pd.DataFrame({
        **{name: [value] * width for name, value in row.items()}, "kind": [kind] * width,
        "dimension": [d.name for d in dims], "key": keys, "level": [d.level for d in dims],
        "parent": [d.parent for d in dims], "w_a": w_a, "w_b": w_b, "diff": w_b - w_a, **columns,
        "p_adj": p_adj, "significant": p_adj < alpha, "exact": [exact] * width,
    })
    for name in ("samples_needed", "stems_needed", "models_needed"):
        frame[name] = frame[name].astype("Int64")
    return frame[list(COLUMNS)]


# --- entry points -----------------------------------------------------------------------------------


def _file_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "x"


def comparison_name(label_a: str, label_b: str) -> str:
    return f"{label_a}__vs__{label_b}"


def comparison_path(label_a: str, label_b: str, system: str) -> str:
    return f"{COMPARISONS_DIR}/{_file_part(label_a)}__vs__{_file_part(label_b)}__{_file_part(system)}.parquet"


def _publish(run_uri: str, relpath: str, frame: pd.DataFrame) -> str:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink, compression="zstd")
    root = OutputRoot(run_uri)
    root.publish_bytes(relpath, sink.getvalue())
    return f"{root.uri}/{relpath}"


def compare(
    run_uri: str, a: str, b: str, system: str | ValueSystem = "valuelex", *, judge: str | None = None,
    unit: str = "stem", correction: str = "holm", alpha: float = 0.05, permutations: int = DEFAULT_PERMUTATIONS,
    resamples: int = 2000, ci_level: float = 0.95, seed: int = 0, delta: float | None = 0.05,
    target_power: float = 0.8, write: bool = True, run: RunValues | None = None,
) -> pd.DataFrame:
    """Model b against model a in one value system: per (sub)dimension diff = w_b − w_a with its paired
    cluster-bootstrap CI, the sign-flip permutation p (corrected across dimensions), effect size,
    variance components and power. Written to ``comparisons/<a>__vs__<b>__<system>.parquet`` unless
    ``write=False``. Bad requests raise `StudyError`."""
    if unit == "models":
        raise StudyError("unit 'models' is for groups of models (compare_groups); two models are paired by stem")
    _validate(unit, correction, permutations, resamples, alpha, ci_level)
    if a == b:
        raise StudyError(f"--a and --b are the same model {a!r}: nothing to compare")
    run = run or load_values(run_uri, system, judge)
    check_design(run, [a], [b])
    frame = compare_values(run.values, run.dims, [a], [b], system=run.system.name, judge=run.judge, unit=unit,
                           judged=run.design, correction=correction, alpha=alpha, permutations=permutations,
                           resamples=resamples, ci_level=ci_level, seed=seed, delta=delta, target_power=target_power)
    if write:
        _publish(run_uri, comparison_path(a, b, run.system.name), frame)
    return frame


def family_pairs(run: RunValues) -> tuple[list[tuple[str, str]], list[str]]:
    """(base, tuned) pairs by family: each non-pretrained model with its family's pretrained model of the
    same size, or the family's only pretrained model. Returns the pairs and why others were left out."""
    pairs, skipped = [], []
    by_family: dict[str, list[str]] = {}
    for model in run.models:
        by_family.setdefault(str(run.meta.get(model, {}).get("family") or ""), []).append(model)
    for family, members in sorted(by_family.items()):
        bases = [m for m in members if run.meta.get(m, {}).get("training") == "pretrained"]
        tuned = [m for m in members if run.meta.get(m, {}).get("training") not in (None, "pretrained")]
        for model in tuned:
            size = run.meta.get(model, {}).get("size_b")
            same = [m for m in bases if size is not None and run.meta.get(m, {}).get("size_b") == size]
            base = same[0] if len(same) == 1 else (bases[0] if len(bases) == 1 else None)
            if not family:
                skipped.append(f"{model}: no family recorded")
            elif not bases:
                skipped.append(f"{model}: family {family} has no pretrained model")
            elif base is None:
                skipped.append(f"{model}: family {family} has {len(bases)} pretrained models, none of size {size}")
            else:
                pairs.append((base, model))
    return pairs, skipped


def _field_groups(run: RunValues, spec: str) -> tuple[str, list[str], str, list[str]]:
    match = re.fullmatch(r"\s*([A-Za-z_]+)\s*:\s*([^/]+)/([^/]+)\s*", spec)
    if not match:
        raise StudyError(f"--groups {spec!r}: expected family-training, size-trend or FIELD:A/B "
                         "(e.g. training:pretrained/aligned, values joined by +)")
    field, left, right = match.group(1), match.group(2), match.group(3)
    if field not in ("training", "family", "size_b"):
        raise StudyError(f"--groups {spec!r}: unknown field {field!r} (training, family or size_b)")
    sides = []
    for values in (left, right):
        wanted = {v.strip() for v in values.split("+") if v.strip()}
        members = [m for m in run.models if str(run.meta.get(m, {}).get(field)) in wanted
                   or (field == "size_b" and _same_size(run.meta.get(m, {}).get(field), wanted))]
        if not members:
            present = sorted({str(run.meta.get(m, {}).get(field)) for m in run.models})
            raise StudyError(f"--groups {spec!r}: no model of the run has {field} in {sorted(wanted)} "
                             f"({field} values: {', '.join(present)})")
        sides.append((f"{field}={'+'.join(sorted(wanted))}", members))
    if set(sides[0][1]) & set(sides[1][1]):
        raise StudyError(f"--groups {spec!r}: the two groups overlap")
    return sides[0][0], sides[0][1], sides[1][0], sides[1][1]


def _same_size(value: Any, wanted: set[str]) -> bool:
    try:
        return any(float(value) == float(w) for w in wanted)
    except (TypeError, ValueError):
        return False


def compare_groups(
    run_uri: str, spec: str, system: str | ValueSystem = "valuelex", *, judge: str | None = None,
    unit: str | None = None, correction: str = "holm", alpha: float = 0.05, permutations: int = DEFAULT_PERMUTATIONS,
    resamples: int = 2000, ci_level: float = 0.95, seed: int = 0, delta: float | None = 0.05,
    target_power: float = 0.8, write: bool = True,
) -> pd.DataFrame:
    """Comparisons named by a groups spec (``family-training``, ``FIELD:A/B``, ``size-trend``); see the
    module docstring. One file per comparison; returns their rows (or the trend table) concatenated."""
    run = load_values(run_uri, system, judge)
    spec = spec.strip()
    if spec == "size-trend":
        return size_trend(run_uri, run.system, judge=run.judge, ci_level=ci_level, write=write, run=run)
    if spec == "family-training":
        pairs, skipped = family_pairs(run)
        if not pairs:
            raise StudyError(f"--groups family-training: no family of the run has a pretrained model and a tuned one "
                             f"to pair ({'; '.join(skipped) or 'no tuned model'})")
        frames = [compare(run_uri, base, tuned, run.system, unit=unit or "stem", correction=correction, alpha=alpha,
                          permutations=permutations, resamples=resamples, ci_level=ci_level, seed=seed, delta=delta,
                          target_power=target_power, write=write, run=run) for base, tuned in pairs]
        out = pd.concat(frames, ignore_index=True)
        out.attrs["skipped"] = skipped
        return out
    label_a, side_a, label_b, side_b = _field_groups(run, spec)
    unit = unit or "models"
    _validate(unit, correction, permutations, resamples, alpha, ci_level)
    check_design(run, side_a, side_b)
    frame = compare_values(run.values, run.dims, side_a, side_b, label_a=label_a, label_b=label_b,
                           system=run.system.name, judge=run.judge, unit=unit, judged=run.design,
                           correction=correction, alpha=alpha,
                           permutations=permutations, resamples=resamples, ci_level=ci_level, seed=seed, delta=delta,
                           target_power=target_power)
    if write:
        _publish(run_uri, comparison_path(label_a, label_b, run.system.name), frame)
    return frame


# --- size trends ------------------------------------------------------------------------------------


def slope_fit(x: np.ndarray, y: np.ndarray, ci_level: float = 0.95) -> dict[str, float]:
    """OLS of y on x; the t interval of the slope and its p need 3 points (NaN below), the slope 2 of 2 x."""
    from scipy import stats

    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    empty = {"slope": np.nan, "slope_low": np.nan, "slope_high": np.nan, "intercept": np.nan, "r": np.nan,
             "p": np.nan}
    if len(x) < 2 or np.ptp(x) == 0:
        return empty
    fit = stats.linregress(x, y)
    result = {"slope": float(fit.slope), "intercept": float(fit.intercept), "r": float(fit.rvalue),
              "slope_low": np.nan, "slope_high": np.nan, "p": np.nan}
    if len(x) >= 3:
        t = float(stats.t.ppf(0.5 + ci_level / 2, len(x) - 2))
        result.update(slope_low=float(fit.slope - t * fit.stderr), slope_high=float(fit.slope + t * fit.stderr),
                      p=float(fit.pvalue))
    return result


def size_trend(run_uri: str, system: str | ValueSystem = "valuelex", *, judge: str | None = None,
               ci_level: float = 0.95, write: bool = True, run: RunValues | None = None) -> pd.DataFrame:
    """w against log10(size_b) across models, per training method and for all models: the OLS slope
    (per tenfold size) with its t CI (needs 3 models of 2 sizes in a group; NaN otherwise).
    Written to ``comparisons/size-trend__<system>.parquet``."""
    run = run or load_values(run_uri, system, judge)
    keys = run.keys
    w = run.values.groupby("model")[keys].mean()
    sizes = {}
    for model in w.index:
        try:
            size = float(run.meta.get(model, {}).get("size_b"))
        except (TypeError, ValueError):
            continue
        if np.isfinite(size) and size > 0:
            sizes[model] = size
    trainings = sorted({str(run.meta.get(m, {}).get("training")) for m in sizes},
                       key=lambda t: (TRAINING_ORDER.index(t) if t in TRAINING_ORDER else len(TRAINING_ORDER), t))
    rows = []
    for training in [*trainings, "all"]:
        members = [m for m in sizes if training == "all" or str(run.meta.get(m, {}).get("training")) == training]
        x = np.log10(np.array([sizes[m] for m in members], dtype=float))
        for dim in run.dims:
            y = w.loc[members, dim.key].to_numpy(dtype=float) if members else np.array([])
            rows.append({"system": run.system.name, "judge": run.judge, "training": training, "dimension": dim.name,
                         "key": dim.key, "level": dim.level, "parent": dim.parent, "n_models": len(members),
                         "models": ", ".join(members), **slope_fit(x, y, ci_level), "ci_level": ci_level})
    frame = pd.DataFrame(rows, columns=list(TREND_COLUMNS))
    if write:
        _publish(run_uri, f"{COMPARISONS_DIR}/size-trend__{_file_part(run.system.name)}.parquet", frame)
    return frame


# --- text output --------------------------------------------------------------------------------------


def as_finite(value: Any) -> float | None:
    """A finite float, or None for missing, NaN, infinite or non-numeric values (shown as '—')."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _num(value: Any, digits: int = 3, signed: bool = False) -> str:
    number = as_finite(value)
    if number is None:
        return "—"
    return f"{number:+.{digits}f}" if signed else f"{number:.{digits}f}"


def _count(value: Any) -> str:
    return "—" if value is None or pd.isna(value) else f"{int(value):,}"


def format_comparison(frame: pd.DataFrame) -> str:
    """A plain-text summary of comparison rows: the differences, then "how far must I raise M?"."""
    lines: list[str] = []
    for name, rows in frame.groupby("comparison", sort=False):
        first = rows.iloc[0]
        unit = first["unit"]
        test = {"stem": "sign flips over stems", "cell": "sign flips over cells",
                "models": "group labels permuted over models"}[unit]
        lines.append(f"{first['b']} − {first['a']} in {first['system']} (judge {first['judge']}; "
                     f"{first['n_stems']} stems × {first['n_configs']} configs, M={_num(first['samples'], 1)}, "
                     f"{_num(100 * first['valid_fraction'], 0)}% valid; "
                     f"{'exact' if first['exact'] else first['permutations']} {test}; "
                     f"{first['correction']} at α={first['alpha']:g}) [{name}]")
        header = f"  {'dimension':<24} {'w_a':>6} {'w_b':>6} {'diff':>7} {'CI':>17} {'p':>7} {'p_adj':>7} {'g':>6}"
        lines.append(header)
        for r in rows.itertuples():
            name_text = r.dimension if r.level == "dimension" else f"· {r.dimension}"
            ci = f"[{_num(r.ci_low, signed=True)}, {_num(r.ci_high, signed=True)}]"
            mark = " *" if r.significant else ""
            lines.append(f"  {name_text[:24]:<24} {_num(r.w_a):>6} {_num(r.w_b):>6} {_num(r.diff, signed=True):>7} "
                         f"{ci:>17} {_num(r.p, 4):>7} {_num(r.p_adj, 4):>7} {_num(r.g, 2):>6}{mark}")
        if pd.notna(first["delta"]) and first["delta"]:
            lines.append(f"  power to detect |diff| = {first['delta']:g} at α={first['alpha']:g} per test, target "
                         f"{first['target_power']:g}:")
            if unit == "models":
                lines.append(f"  {'dimension':<24} {'models needed per group':>24}")
                for r in rows.itertuples():
                    lines.append(f"  {r.dimension[:24]:<24} {_count(r.models_needed):>24}")
            else:
                lines.append(f"  {'dimension':<24} {'power now':>9} {'M needed':>15} {'stems needed (at this M)':>25}")
                for r in rows.itertuples():
                    m_text = _count(r.samples_needed) if pd.notna(r.samples_needed) else "∞ (raise stems)"
                    lines.append(f"  {r.dimension[:24]:<24} {_num(r.power_now, 2):>9} {m_text:>15} "
                                 f"{_count(r.stems_needed):>25}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def format_trend(frame: pd.DataFrame) -> str:
    lines = [f"size trend in {frame['system'].iloc[0]} (judge {frame['judge'].iloc[0]}): slope of w per tenfold "
             f"size [{int(frame['ci_level'].iloc[0] * 100)}% CI]"]
    for training, rows in frame.groupby("training", sort=False):
        lines.append(f"  {training} ({rows['n_models'].iloc[0]} models)")
        for r in rows.itertuples():
            lines.append(f"    {r.dimension[:24]:<24} {_num(r.slope, signed=True):>7} "
                         f"[{_num(r.slope_low, signed=True)}, {_num(r.slope_high, signed=True)}]")
    return "\n".join(lines) + "\n"


def written_files(run_uri: str, frame: pd.DataFrame) -> list[str]:
    """Where `compare`, `compare_groups` or `size_trend` published these rows."""
    root = OutputRoot(run_uri).uri
    if "slope" in frame.columns:
        return [f"{root}/{COMPARISONS_DIR}/size-trend__{_file_part(str(s))}.parquet" for s in frame["system"].unique()]
    pairs = frame[["a", "b", "system"]].drop_duplicates().itertuples(index=False)
    return [f"{root}/{comparison_path(a, b, system)}" for a, b, system in pairs]


def summary(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows."""
    return [{k: (None if (isinstance(v, float) and not np.isfinite(v)) or v is pd.NA else v)
             for k, v in row.items()} for row in frame.astype(object).to_dict("records")]


__all__ = ["Power", "RunValues", "VarianceComponents", "adjust", "compare", "compare_groups", "compare_values",
           "format_comparison", "format_trend", "load_values", "power", "power_at", "size_trend", "summary",
           "written_files"]
