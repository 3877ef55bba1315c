"""Generalizability study of the projective test: variance components, G, Phi and a D-study.

Design. A completion's dimension value φ (judge score / 6, see `valuelex.evaluate.scores`) is
indexed by model p (the object of measurement), stem s, decoding config c and sample m. Models,
stems and configs are crossed; the sample index means nothing across cells, so samples are
*nested* in the (p, s, c) cells: the design is (m : p x s x c), all facets random, with the model
x stem x config x sample linear model

    φ_pscm = μ + p + s + c + ps + pc + sc + psc + e_m(psc).

Estimator: the ANOVA / expected-mean-squares (EMS) estimator of a balanced random-effects design
(Cornfield & Tukey 1956; Brennan 2001, *Generalizability Theory*, sec. 3.4). For an effect α (a
set of crossed facets) with effect estimate E_α = Σ_{γ⊆α} (-1)^{|α∖γ|} (mean over the facets not
in γ), SS_α = n_m Π_{f∉α} n_f Σ E_α², df_α = Π_{f∈α} (n_f - 1), MS_α = SS_α / df_α and
MS_e = Σ (φ - cell mean)² / (Π n_f (n_m - 1)). Every EMS is σ²_e + Σ_{β⊇α} n_m Π_{f∉β} n_f σ²_β,
so Möbius inversion over the facet lattice gives

    σ²_α = (Σ_{β ⊇ α} (-1)^{|β∖α|} MS_β - [α = all facets] MS_e) / (n_m Π_{f∉α} n_f).

Negative estimates are set to 0 and counted (Brennan's convention; the zeros are used in G and
Phi). With one sample per cell the top interaction and the residual are confounded (reported as
one component, ``model×stem×config,residual``). A facet with one level (one config) is left out of
the design: its variance cannot be separated and G is then for that level only (said in a notice).

Coefficients at a D-study design (n'_s, n'_c, n'_m) (Brennan 2001, ch. 4):

    δ = Σ_{α ∋ p, α ≠ {p}} σ²_α / Π_{f∈α∖p} n'_f + σ²_e / (Π_{f≠p} n'_f n'_m)      (relative error)
    Δ = δ + Σ_{α ∌ p} σ²_α / Π_{f∈α} n'_f                                         (absolute error)
    G = σ²_p / (σ²_p + δ),   Phi = σ²_p / (σ²_p + Δ).

G answers "are models ranked consistently", Phi "are the absolute scores dependable". The D-study
asks, raising one of stems, configs or samples with the others at the run's design, for the
smallest count reaching 0.8 (None when that facet alone never reaches it).

Pure functions of arrays; `gstudy_frame` turns the judgments of one system into them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import reduce
from itertools import combinations

import numpy as np
import pandas as pd

FACETS = ("model", "stem", "config")
"""The crossed facets, in array order; samples (the replicate) are nested in their cells."""
_COLUMN = {"model": "model", "stem": "item_id", "config": "config"}
TARGET = 0.8
MAX_COUNT = 100_000  # the study's upper bound of samples; D-study counts are searched up to it


@dataclass
class GStudy:
    """Variance components of one balanced design, and what is needed to read them.

    `components` maps an effect (a tuple of facet names, ``()`` excluded) to σ², negatives set to 0;
    ``"residual"`` is the within-cell variance (absent with one sample per cell). `sizes` are the
    levels per facet in the design (facets with one level are left out), `samples` is n_m.
    """

    facets: tuple[str, ...]
    sizes: dict[str, int]
    samples: int
    components: dict[tuple[str, ...], float]
    residual: float | None
    raw: dict[tuple[str, ...], float]
    n_negative: int
    notices: list[str] = field(default_factory=list)

    def label(self, effect: tuple[str, ...]) -> str:
        name = "×".join(effect)
        return f"{name},residual" if self.residual is None and len(effect) == len(self.facets) else name

    def table(self) -> pd.DataFrame:
        """One row per component: facet label, variance, share of the total, truncated or not."""
        rows = [(self.label(e), v, self.raw[e] < 0) for e, v in self.components.items()]
        if self.residual is not None:
            rows.append(("residual", self.residual, False))
        frame = pd.DataFrame(rows, columns=["facet", "variance", "negative"])
        total = frame["variance"].sum()
        frame["share"] = frame["variance"] / total if total > 0 else np.nan
        return frame

    def coefficients(self, n: dict[str, float] | None = None, samples: float | None = None) -> tuple[float, float]:
        """(G, Phi) at a D-study design (defaults: the run's). NaN when σ²_p + error is 0 or no model facet."""
        g, phi = coefficients_at(self, {f: np.asarray(v, dtype=float) for f, v in (n or {}).items()},
                                 None if samples is None else np.asarray(samples, dtype=float))
        return float(g), float(phi)


def anova_components(y: np.ndarray, facets: tuple[str, ...]) -> tuple[dict[tuple[str, ...], np.ndarray],
                                                                       np.ndarray | None]:
    """Raw (untruncated) EMS estimates for y of shape (*batch, n_f1, ..., n_fk, n_m).

    Vectorised over leading batch axes (a simulation passes many runs at once). Returns the
    components per effect and the residual (None when n_m == 1: then confounded with the top one).
    """
    k = len(facets)
    sizes = y.shape[-k - 1:-1]
    n_m = y.shape[-1]
    axes = tuple(range(y.ndim - k - 1, y.ndim - 1))  # the facet axes, the same in y and in `cell`
    cell = y.mean(axis=-1)
    subsets = [s for r in range(k + 1) for s in combinations(range(k), r)]
    margin = {s: cell.mean(axis=tuple(axes[i] for i in range(k) if i not in s), keepdims=True) if len(s) < k
              else cell for s in subsets}
    ms: dict[tuple[int, ...], np.ndarray] = {}
    for alpha in subsets[1:]:
        effect = sum((-1) ** (len(alpha) - len(g)) * margin[g] for g in subsets if set(g) <= set(alpha))
        other = int(np.prod([sizes[i] for i in range(k) if i not in alpha]))
        ss = n_m * other * (effect ** 2).sum(axis=axes)
        df = int(np.prod([sizes[i] - 1 for i in alpha]))
        ms[alpha] = ss / df
    residual = None
    if n_m > 1:
        residual = ((y - cell[..., None]) ** 2).sum(axis=(*axes, y.ndim - 1)) / (int(np.prod(sizes)) * (n_m - 1))
    full = tuple(range(k))
    out: dict[tuple[str, ...], np.ndarray] = {}
    for alpha in subsets[1:]:
        total = sum((-1) ** (len(beta) - len(alpha)) * ms[beta] for beta in subsets[1:] if set(alpha) <= set(beta))
        if alpha == full and residual is not None:
            total = total - residual
        other = int(np.prod([sizes[i] for i in range(k) if i not in alpha]))
        out[tuple(facets[i] for i in alpha)] = total / (n_m * other)
    return out, residual


def estimate(y: np.ndarray, facets: tuple[str, ...] = FACETS) -> GStudy:
    """The G-study of one balanced array (n_f1, ..., n_fk, n_m); facets of one level are left out."""
    keep = [i for i, f in enumerate(facets) if y.shape[i] > 1]
    notices = [f"one {facets[i]}: its variance cannot be separated; G and Phi hold for this {facets[i]} only "
               f"(2 or more {facets[i]}s make it a facet)" for i in range(len(facets)) if i not in keep]
    y = y.mean(axis=tuple(i for i in range(len(facets)) if i not in keep), keepdims=False) if len(keep) < len(
        facets) else y
    kept = tuple(facets[i] for i in keep)
    raw, residual = anova_components(y, kept)
    raw_f = {e: float(v) for e, v in raw.items()}
    comps = {e: max(0.0, v) for e, v in raw_f.items()}
    if y.shape[-1] == 1:
        notices.append("one sample per cell: the top interaction and the residual are confounded; "
                       "the D-study cannot show what more samples buy (M >= 2 separates them)")
    return GStudy(kept, {f: int(y.shape[i]) for i, f in enumerate(kept)}, int(y.shape[-1]), comps,
                  None if residual is None else max(0.0, float(residual)), raw_f,
                  sum(v < 0 for v in raw_f.values()) + int(residual is not None and float(residual) < 0), notices)


def coefficients_at(g: GStudy, n: dict[str, np.ndarray], samples: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """G and Phi at D-study counts `n` (facet -> counts, broadcastable) and `samples`; see the module docstring."""
    if "model" not in g.facets:
        nan = np.full(np.broadcast(*n.values(), samples if samples is not None else 0).shape, np.nan)
        return nan, nan
    count = {f: n.get(f, np.asarray(float(g.sizes[f]))) for f in g.facets}
    n_m = samples if samples is not None else np.asarray(float(g.samples))
    var_p = g.components[("model",)]
    rel = abs_only = 0.0
    for effect, var in g.components.items():
        if effect == ("model",):
            continue
        # with one sample per cell the top effect holds the residual too: more samples are not credited
        divisor = reduce(np.multiply, [count[f] for f in effect if f != "model"], 1.0)
        if "model" in effect:
            rel = rel + var / divisor
        else:
            abs_only = abs_only + var / divisor
    if g.residual is not None:
        rel = rel + g.residual / (reduce(np.multiply, [count[f] for f in g.facets if f != "model"], 1.0) * n_m)
    with np.errstate(divide="ignore", invalid="ignore"):
        big_g = np.where(var_p + rel > 0, var_p / (var_p + rel), np.nan)
        phi = np.where(var_p + rel + abs_only > 0, var_p / (var_p + rel + abs_only), np.nan)
    return big_g, phi


def needed(g: GStudy, facet: str, which: str = "G", target: float = TARGET) -> int | None:
    """The smallest count of `facet` ('stem', 'config' or 'sample') reaching `target`, others at the run's design."""
    grid = np.arange(1, MAX_COUNT + 1, dtype=float)
    if facet == "sample":
        if g.residual is None:
            return None
        big_g, phi = coefficients_at(g, {}, grid)
    elif facet in g.facets:
        big_g, phi = coefficients_at(g, {facet: grid}, None)
    else:
        return None
    values = big_g if which == "G" else phi
    hit = np.flatnonzero(values >= target)
    return int(grid[hit[0]]) if hit.size else None


def curve(g: GStudy, facet: str, counts: np.ndarray) -> pd.DataFrame:
    """G and Phi as `facet` (``sample`` or ``stem``) goes through `counts`, the other facets at the run's design."""
    counts = np.asarray(counts, dtype=float)
    if facet == "sample":
        big_g, phi = coefficients_at(g, {}, counts)
    else:
        big_g, phi = coefficients_at(g, {facet: counts}, None)
    return pd.DataFrame({"facet": facet, "n": counts.astype(int), "G": big_g, "Phi": phi})


def balanced(values: pd.DataFrame, column: str) -> tuple[np.ndarray | None, dict[str, int], list[str]]:
    """A balanced (model, stem, config, sample) array of one dimension column of `dimension_values` rows.

    Keeps stems where every (model, config) cell has at least n_m values, and the first n_m valid
    samples of each cell; n_m is the count that keeps the most values (n_m x stems kept; ties: the
    larger n_m), so one cell with a single valid sample does not cost every other cell its second.
    Returns the array (None when nothing balanced is left), what
    was dropped, and notices.
    """
    frame = values[["model", "item_id", "config", "sample", column]].dropna(subset=[column])
    dropped = {"stems": 0, "values": 0}
    if frame.empty:
        return None, dropped, ["no valid judgment of this dimension"]
    levels = {f: sorted(frame[_COLUMN[f]].astype(str).unique()) for f in FACETS}
    frame = frame.sort_values(["model", "item_id", "config", "sample"])
    frame["rep"] = frame.groupby(["model", "item_id", "config"]).cumcount()
    counts = frame.groupby(["model", "item_id", "config"]).size()
    cells_per_stem = counts.groupby(level="item_id").size()
    full = cells_per_stem[cells_per_stem == len(levels["model"]) * len(levels["config"])].index
    dropped["stems"] = len(levels["stem"]) - len(full)
    frame = frame[frame["item_id"].isin(full)]
    if frame.empty:
        return None, dropped, ["no stem has a valid judgment in every model x config cell"]
    smallest = counts[counts.index.get_level_values("item_id").isin(full)].groupby(level="item_id").min()
    n_m = max(range(1, int(smallest.max()) + 1), key=lambda m: (m * int((smallest >= m).sum()), m))
    full = smallest[smallest >= n_m].index
    dropped["stems"] = len(levels["stem"]) - len(full)
    frame = frame[frame["item_id"].isin(full)]
    dropped["values"] = int((frame["rep"] >= n_m).sum())
    frame = frame[frame["rep"] < n_m]
    stems = sorted(full.astype(str))
    index = [pd.Categorical(frame[_COLUMN["model"]].astype(str), levels["model"]).codes,
             pd.Categorical(frame["item_id"].astype(str), stems).codes,
             pd.Categorical(frame["config"].astype(str), levels["config"]).codes, frame["rep"].to_numpy()]
    y = np.full((len(levels["model"]), len(stems), len(levels["config"]), n_m), np.nan)
    y[tuple(index)] = frame[column].to_numpy(dtype=float)
    notices = []
    if dropped["stems"] or dropped["values"]:
        notices.append(f"balanced design: {dropped['stems']} stem(s) without a value in every cell and "
                       f"{dropped['values']} value(s) beyond {n_m} per cell left out")
    return y, dropped, notices


JUDGED_FACETS = ("model", "stem", "config", "sample", "judge")
"""The design with a judge facet: every completion (sample m of cell p, s, c) scored by every judge j."""


@dataclass
class JudgeGStudy:
    """Variance components of the (m:p×s×c)×j design: samples nested in cells, judges crossed with all.

    `components` maps a label to σ²: the crossed effects of model, stem, config and judge, and the
    two nested ones ``sample:model×stem×config`` and ``judge×sample:model×stem×config`` (the latter
    confounded with the residual: one score per completion and judge).
    """

    sizes: dict[str, int]
    components: dict[str, float]
    n_negative: int

    def judge_share(self) -> float:
        """The share of the total variance in components that involve the judge."""
        total = sum(self.components.values())
        return sum(v for k, v in self.components.items() if "judge" in k) / total if total > 0 else float("nan")

    def coefficients(self, judges: float = 1.0) -> tuple[float, float]:
        """(G, Phi) of a model's mean over the run's stems, configs and samples, scored by `judges` judges."""
        n = {**{f: float(v) for f, v in self.sizes.items()}, "judge": float(judges)}
        var_p = self.components.get("model", 0.0)
        rel = abs_only = 0.0
        for label, var in self.components.items():
            if label == "model":
                continue
            if ":" in label:  # nested in model×stem×config: relative error, over every facet it involves
                facets = ["stem", "config", "sample"] + (["judge"] if label.startswith("judge") else [])
                rel += var / np.prod([n[f] for f in facets])
                continue
            effect = label.split("×")
            divisor = float(np.prod([n[f] for f in effect if f != "model"]))
            if "model" in effect:
                rel += var / divisor
            else:
                abs_only += var / divisor
        if var_p + rel <= 0:
            return float("nan"), float("nan")
        return var_p / (var_p + rel), var_p / (var_p + rel + abs_only)


def estimate_with_judges(y: np.ndarray) -> JudgeGStudy:
    """Components of the (m:p×s×c)×j design from y of shape (models, stems, configs, samples, judges).

    Estimated as the fully crossed p×s×c×m×j design (one score per cell, `anova_components`), then
    the crossed effects that contain the sample index are summed into the nested ones (Brennan 2001,
    sec. 3.4: a nested component is the sum of the crossed components it confounds):
    σ²(m:psc) = Σ σ²_α over α ∋ m, j ∉ α, and σ²(jm:psc) = Σ σ²_α over α ∋ m, j. Sums are taken of
    the raw estimates, then negatives set to 0 and counted.
    """
    if y.ndim != 5 or min(y.shape) < 2:
        raise ValueError(f"a judge G-study needs 2 or more of every facet, got shape {y.shape}")
    raw, _ = anova_components(y[..., None], JUDGED_FACETS)
    grouped: dict[str, float] = {}
    for effect, value in raw.items():
        if "sample" in effect:
            label = "judge×sample:model×stem×config" if "judge" in effect else "sample:model×stem×config"
        else:
            label = "×".join(effect)
        grouped[label] = grouped.get(label, 0.0) + float(value)
    negative = sum(v < 0 for v in grouped.values())
    return JudgeGStudy({f: int(s) for f, s in zip(JUDGED_FACETS, y.shape, strict=True)},
                       {k: max(0.0, v) for k, v in grouped.items()}, negative)
