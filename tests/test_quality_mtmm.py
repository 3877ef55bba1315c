"""MTMM across value systems (issue 17.3): a planted trait correlation structure's gap is recovered."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from valuelex.evaluate.systems import load_value_system
from valuelex.quality.mtmm import MIN_RESPONDENTS, mtmm, related_pairs

SYSTEMS = {name: load_value_system(name) for name in ("valuelex", "mft")}
LEAVES = {name: [(leaf.key, leaf.name) for leaf in s.leaves()] for name, s in SYSTEMS.items()}
CONVERGENT = {("Social", "Care"): 0.7, ("Ethical", "Fairness"): 0.6}
OTHER = 0.1


def planted(n_respondents: int, seed: int, stems: int = 2) -> tuple[dict[str, pd.DataFrame], float]:
    """Respondent-level scores ~ N(0, C): cross-system r 0.7 / 0.6 on the expected pairs, 0.1 elsewhere,
    0 within a system; each completion is its respondent's score plus small noise. Returns the true gap."""
    names = [("valuelex", n) for _, n in LEAVES["valuelex"]] + [("mft", n) for _, n in LEAVES["mft"]]
    c = np.eye(len(names))
    for i, (si, ni) in enumerate(names):
        for j, (sj, nj) in enumerate(names):
            if si == "valuelex" and sj == "mft":
                c[i, j] = c[j, i] = CONVERGENT.get((ni, nj), OTHER)
    assert np.linalg.eigvalsh(c).min() > 0
    rng = np.random.default_rng(seed)
    latent = rng.multivariate_normal(np.zeros(len(names)), c, size=n_respondents)
    values: dict[str, pd.DataFrame] = {}
    for system in ("valuelex", "mft"):
        cols = [i for i, (s, _) in enumerate(names) if s == system]
        rows = []
        for r in range(n_respondents):
            for stem in range(stems):
                noise = rng.normal(0, 0.05, len(cols))
                rows.append(
                    {
                        "model": f"m{r // 2}",
                        "config": f"c{r % 2}",
                        "item_id": f"s{stem}",
                        "sample": 0,
                        **{k: latent[r, i] + e for (k, _), i, e in zip(LEAVES[system], cols, noise, strict=True)},
                    }
                )
        values[system] = pd.DataFrame(rows)
    n_conv = len(CONVERGENT)
    n_disc = len(LEAVES["valuelex"]) * len(LEAVES["mft"]) - n_conv
    return values, float(np.mean(list(CONVERGENT.values()))) - OTHER * n_disc / n_disc


def test_packaged_pairs_name_real_dimensions_with_reasons() -> None:
    names = {s: {d.name for d in load_value_system(s).leaves()} for s in ("valuelex", "schwartz", "mft")}
    pairs = related_pairs()
    assert len(pairs) >= 8
    for sa, da, sb, db, reason in pairs:
        assert da in names[sa] and db in names[sb] and sa != sb and len(reason) > 20


def test_planted_gap_is_recovered_within_005() -> None:
    values, truth = planted(1000, seed=1)
    summary, table = mtmm(values, LEAVES)
    assert summary["unit"] == "respondent" and summary["n_units"] == 1000
    assert summary["n_convergent"] == 2 and summary["n_discriminant"] == 6 * 5 - 2
    assert summary["gap"] == pytest.approx(truth, abs=0.05) and truth == pytest.approx(0.55)
    assert summary["convergent"] == pytest.approx(0.65, abs=0.05)
    reasons = table.loc[table["kind"] == "convergent", "reason"]
    assert reasons.notna().all()


def test_no_structure_gives_no_gap() -> None:
    values, _ = planted(1000, seed=2)
    rng = np.random.default_rng(0)
    shuffled = values["mft"].copy()
    keys = [k for k, _ in LEAVES["mft"]]
    # the mft scores of another respondent: every cross-system r is about 0
    order = rng.permutation(len(shuffled) // 2)
    shuffled[keys] = shuffled[keys].to_numpy().reshape(-1, 2, len(keys))[order].reshape(-1, len(keys))
    summary, _ = mtmm({"valuelex": values["valuelex"], "mft": shuffled}, LEAVES)
    assert abs(summary["gap"]) < 0.05


def test_few_respondents_use_cells_and_say_so() -> None:
    values, _ = planted(MIN_RESPONDENTS - 6, seed=3, stems=5)
    summary, _ = mtmm(values, LEAVES)
    assert summary["unit"] == "cell" and summary["n_units"] == 4 * 5 and "cells" in summary["notice"]
    tiny, _ = planted(1, seed=4, stems=2)
    summary, _ = mtmm(tiny, LEAVES)
    assert summary["gap"] is None and "at least 3" in summary["notice"]


def test_across_judges_the_planted_gap_is_recovered_within_005() -> None:
    """Trait scores T ~ N(0, C) per respondent (C: 1 on the diagonal, rho = 0.2 between every two of mft's
    leaves); judge j scores each of 2 stems T + N(0, s_j^2), s = 0.5 and 0.8. A respondent's mean over its
    stems has error variance s_j^2 / 2, so the same leaf by the two judges correlates a = 1 / sqrt((1 + s_1^2/2)
    (1 + s_2^2/2)), two leaves by two judges rho a: convergent a, discriminant 0.2 a, gap 0.8 a."""
    from valuelex.quality.mtmm import mtmm_judges

    leaves = LEAVES["mft"]
    k, rho, sds, n, stems = len(leaves), 0.2, {"embedding:minilm": 0.5, "llm:judge": 0.8}, 1500, 2
    c = np.full((k, k), rho) + (1 - rho) * np.eye(k)
    rng = np.random.default_rng(7)
    traits = rng.multivariate_normal(np.zeros(k), c, size=n)
    values = {}
    for judge, sd in sds.items():
        rows = [{"model": f"m{r // 2}", "config": f"c{r % 2}", "item_id": f"s{stem}", "sample": 0,
                 **{key: traits[r, i] + rng.normal(0, sd) for i, (key, _) in enumerate(leaves)}}
                for r in range(n) for stem in range(stems)]
        values[judge] = pd.DataFrame(rows)
    a = 1 / np.sqrt(np.prod([1 + sd**2 / stems for sd in sds.values()]))
    summary, table = mtmm_judges(values, leaves, system="mft")
    assert summary["across"] == "judges" and summary["system"] == "mft" and summary["unit"] == "respondent"
    assert summary["n_convergent"] == k and summary["n_discriminant"] == k * (k - 1)
    assert summary["convergent"] == pytest.approx(a, abs=0.05)
    assert summary["discriminant"] == pytest.approx(rho * a, abs=0.05)
    assert summary["gap"] == pytest.approx((1 - rho) * a, abs=0.05)
    conv = table[table["kind"] == "convergent"]
    assert all(x.split(": ")[1] == y.split(": ")[1] for x, y in zip(conv["a"], conv["b"], strict=True))
    assert (table["across"] == "judges").all()
