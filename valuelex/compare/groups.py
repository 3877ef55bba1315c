"""Which models are compared, and where the results are published: two models, groups, size trends.

- `compare(run, a, b)`: model b against model a, paired by stem (see `valuelex.compare.sides`).
- `compare_groups(run, spec)`, with a groups spec:

  - ``family-training``: every non-pretrained model is compared, paired as above, with the
    pretrained model of its family of the same size (or the family's only pretrained model); one
    comparison (and file) per pair, each corrected on its own.
  - ``FIELD:A/B`` (``training:pretrained/aligned``, ``family:llama2/mistral``; ``+`` joins values,
    ``training:pretrained/instruction-tuned+aligned``): all models with FIELD in A against all in
    B, unpaired. A group's score is the mean of its models' w. ``unit="models"`` (default) permutes
    the group labels over the models (every split when there are at most ``permutations``): the
    test generalises to models like these, so with few models it cannot be significant (2 vs 2
    models give p ≥ 1/3). Its CI resamples models within each group, stems and completions; the
    effect size is Hedges' g between the groups' model scores, and the power part is the number of
    models per group needed (two-sample t on the between-model variance). ``unit="stem"`` treats the
    groups' models as fixed and compares the groups' cell means paired by stem, exactly like two
    models (sign flips over stems, stem bootstrap, M and stems needed).
  - ``size-trend``: `size_trend`.

- `size_trend(run)`: OLS of w on log10(size_b) across models, per training method and for all
  models, with a t CI of the slope (`valuelex.stats.trend`).

Each comparison is published through the run store (`RunStore.write_comparison`) under the name
``<a>__vs__<b>__<system>`` (``size-trend__<system>`` for trends); `stored_names` gives the names of
a result's rows.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from valuelex.compare.load import RunValues, check_design, load_values
from valuelex.compare.sides import DEFAULT_PERMUTATIONS, compare_values, validate
from valuelex.errors import StudyError
from valuelex.evaluate.systems import ValueSystem
from valuelex.stats import slope_fit
from valuelex.store import RunStore

TRAINING_ORDER = ("pretrained", "instruction-tuned", "aligned")
TREND_COLUMNS = ("system", "judge", "training", "dimension", "key", "level", "parent", "n_models", "models",
                 "slope", "slope_low", "slope_high", "intercept", "r", "p", "ci_level")


def _file_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "x"


def stored_name(label_a: str, label_b: str, system: str) -> str:
    """The name a comparison of b against a in `system` is stored under."""
    return f"{_file_part(label_a)}__vs__{_file_part(label_b)}__{_file_part(system)}"


def trend_name(system: str) -> str:
    """The name the size trend of `system` is stored under."""
    return f"size-trend__{_file_part(system)}"


def stored_names(frame: pd.DataFrame) -> list[str]:
    """The names `compare`, `compare_groups` or `size_trend` stored these rows under."""
    if "slope" in frame.columns:
        return [trend_name(str(s)) for s in frame["system"].unique()]
    pairs = frame[["a", "b", "system"]].drop_duplicates().itertuples(index=False)
    return [stored_name(a, b, system) for a, b, system in pairs]


def compare(
    run_uri: str, a: str, b: str, system: str | ValueSystem = "valuelex", *, judge: str | None = None,
    unit: str = "stem", correction: str = "holm", alpha: float = 0.05, permutations: int = DEFAULT_PERMUTATIONS,
    resamples: int = 2000, ci_level: float = 0.95, seed: int = 0, delta: float | None = 0.05,
    target_power: float = 0.8, write: bool = True, run: RunValues | None = None,
) -> pd.DataFrame:
    """Model b against model a in one value system: per (sub)dimension diff = w_b − w_a with its paired
    cluster-bootstrap CI, the sign-flip permutation p (corrected across dimensions), effect size,
    variance components and power. Stored as comparison ``<a>__vs__<b>__<system>`` unless
    ``write=False``. Bad requests raise `StudyError`."""
    if unit == "models":
        raise StudyError("unit 'models' is for groups of models (compare_groups); two models are paired by stem")
    validate(unit, correction, permutations, resamples, alpha, ci_level)
    if a == b:
        raise StudyError(f"--a and --b are the same model {a!r}: nothing to compare")
    run = run or load_values(run_uri, system, judge)
    check_design(run, [a], [b])
    frame = compare_values(run.values, run.dims, [a], [b], system=run.system.name, judge=run.judge, unit=unit,
                           judged=run.design, correction=correction, alpha=alpha, permutations=permutations,
                           resamples=resamples, ci_level=ci_level, seed=seed, delta=delta, target_power=target_power)
    if write:
        RunStore(run_uri).write_comparison(stored_name(a, b, run.system.name), frame)
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


def field_groups(run: RunValues, spec: str) -> tuple[str, list[str], str, list[str]]:
    """The two sides of a ``FIELD:A/B`` spec: (label_a, models_a, label_b, models_b)."""
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
    label_a, side_a, label_b, side_b = field_groups(run, spec)
    unit = unit or "models"
    validate(unit, correction, permutations, resamples, alpha, ci_level)
    check_design(run, side_a, side_b)
    frame = compare_values(run.values, run.dims, side_a, side_b, label_a=label_a, label_b=label_b,
                           system=run.system.name, judge=run.judge, unit=unit, judged=run.design,
                           correction=correction, alpha=alpha,
                           permutations=permutations, resamples=resamples, ci_level=ci_level, seed=seed, delta=delta,
                           target_power=target_power)
    if write:
        RunStore(run_uri).write_comparison(stored_name(label_a, label_b, run.system.name), frame)
    return frame


def size_trend(run_uri: str, system: str | ValueSystem = "valuelex", *, judge: str | None = None,
               ci_level: float = 0.95, write: bool = True, run: RunValues | None = None) -> pd.DataFrame:
    """w against log10(size_b) across models, per training method and for all models: the OLS slope
    (per tenfold size) with its t CI (needs 3 models of 2 sizes in a group; NaN otherwise).
    Stored as comparison ``size-trend__<system>``."""
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
        RunStore(run_uri).write_comparison(trend_name(run.system.name), frame)
    return frame
