"""The G-study (valuelex.quality.gstudy) on simulated runs with planted variance components.

Each simulated run draws φ from the linear model of the module docstring with known σ² per effect
(model, stem, model x stem, config, residual; the others 0); 200 runs go through the estimator at
once (vectorised). The mean estimate of each planted component must be within 10 % of it, and the
mean G / Phi within 0.03 of the analytic values at the run's design (Brennan 2001, ch. 4).
"""

from __future__ import annotations

import numpy as np
import pytest

from valuelex.quality import gstudy
from valuelex.quality.synthetic import planted_array

PLANTED = {"model": 0.04, "stem": 0.02, "model×stem": 0.01, "config": 0.005, "residual": 0.03}
SHAPE = (8, 10, 3, 4)  # models, stems, configs, samples
RUNS = 200


def analytic(variances: dict[str, float], n_s: float, n_c: float, n_m: float) -> tuple[float, float]:
    """G and Phi from the planted components, written out for this design (not through the module)."""
    v = {k: variances.get(k, 0.0) for k in ("model", "stem", "config", "model×stem", "model×config",
                                            "stem×config", "model×stem×config", "residual")}
    rel = v["model×stem"] / n_s + v["model×config"] / n_c + v["model×stem×config"] / (n_s * n_c) \
        + v["residual"] / (n_s * n_c * n_m)
    absolute = rel + v["stem"] / n_s + v["config"] / n_c + v["stem×config"] / (n_s * n_c)
    return v["model"] / (v["model"] + rel), v["model"] / (v["model"] + absolute)


@pytest.fixture(scope="module")
def simulated() -> np.ndarray:
    return planted_array(SHAPE, PLANTED, np.random.default_rng(20240601), batch=RUNS)


def test_planted_components_are_recovered(simulated: np.ndarray) -> None:
    raw, residual = gstudy.anova_components(simulated, gstudy.FACETS)
    means = {"×".join(effect): float(v.mean()) for effect, v in raw.items()} | {"residual": float(residual.mean())}
    errors = {name: abs(means[name] - var) / var for name, var in PLANTED.items()}
    print({k: round(v, 4) for k, v in errors.items()})
    assert max(errors.values()) < 0.10
    for name in ("model×config", "stem×config", "model×stem×config"):  # planted 0
        assert abs(means[name]) < 0.002


def test_g_and_phi_match_the_analytic_values(simulated: np.ndarray) -> None:
    true_g, true_phi = analytic(PLANTED, SHAPE[1], SHAPE[2], SHAPE[3])
    fits = [gstudy.estimate(run) for run in simulated[:120]]
    g = np.array([f.coefficients() for f in fits])
    print(f"G {g[:, 0].mean():.4f} vs {true_g:.4f}; Phi {g[:, 1].mean():.4f} vs {true_phi:.4f}")
    assert abs(g[:, 0].mean() - true_g) < 0.03
    assert abs(g[:, 1].mean() - true_phi) < 0.03
    assert sum(f.n_negative for f in fits) > 0  # the planted zeros come out negative about half the time
    # the D-study at other designs agrees with the formula too
    fit = gstudy.estimate(simulated[0])
    for n_s, n_c, n_m in ((5, 1, 1), (50, 2, 10), (200, 6, 3)):
        expected = analytic({"×".join(e): v for e, v in fit.components.items()} | {"residual": fit.residual},
                            n_s, n_c, n_m)
        assert np.allclose(fit.coefficients({"stem": n_s, "config": n_c}, n_m), expected)


def test_an_estimator_that_ignores_a_facet_is_caught() -> None:
    """Configs treated as more samples (the config facet ignored): its variance lands in the residual,
    the model x config error is divided by 24 samples instead of 6 configs, and G comes out far too high.
    The full estimator's mean components give the analytic G."""
    planted = {"model": 0.02, "model×config": 0.02, "stem": 0.01, "residual": 0.02}
    runs = planted_array((12, 10, 6, 4), planted, np.random.default_rng(7), batch=100)
    true_g, _ = analytic(planted, 10, 6, 4)
    raw, residual = gstudy.anova_components(runs, gstudy.FACETS)
    means = {"×".join(e): float(v.mean()) for e, v in raw.items()} | {"residual": float(residual.mean())}
    ours, _ = analytic(means, 10, 6, 4)
    raw2, residual2 = gstudy.anova_components(runs.reshape(100, 12, 10, 24), ("model", "stem"))
    blind = {"×".join(e): float(v.mean()) for e, v in raw2.items()} | {"residual": float(residual2.mean())}
    ignoring, _ = analytic(blind, 10, 1, 24)
    print(f"analytic {true_g:.3f}, full estimator {ours:.3f}, config ignored {ignoring:.3f}")
    assert abs(ours - true_g) < 0.03
    assert abs(ignoring - true_g) > 0.1
    assert abs(means["model×config"] - 0.02) / 0.02 < 0.1


def test_d_study_counts_reach_the_target_and_no_fewer() -> None:
    fit = gstudy.estimate(planted_array((6, 20, 2, 3), PLANTED, np.random.default_rng(3)))
    for facet, key in (("stem", "stem"), ("config", "config"), ("sample", None)):
        n = gstudy.needed(fit, facet, "G")
        if n is None:
            continue
        def at(k: int, key: str | None = key) -> float:
            return fit.coefficients({key: k})[0] if key else fit.coefficients(samples=k)[0]

        assert at(n) >= 0.8 and (n == 1 or at(n - 1) < 0.8)
    # samples alone cannot beat the stem and config error: with σ²(model×stem) huge, M never reaches 0.8
    noisy = gstudy.estimate(planted_array((6, 5, 2, 3), {"model": 0.001, "model×stem": 0.05, "residual": 0.01},
                                          np.random.default_rng(4)))
    assert gstudy.needed(noisy, "sample", "G") is None


def test_degenerate_designs_give_notices_not_errors() -> None:
    rng = np.random.default_rng(5)
    one_config = gstudy.estimate(planted_array((4, 10, 1, 3), PLANTED, rng))
    assert one_config.facets == ("model", "stem") and "one config" in one_config.notices[0]
    assert np.isfinite(one_config.coefficients()[0])
    one_sample = gstudy.estimate(planted_array((4, 10, 2, 1), PLANTED, rng))
    assert one_sample.residual is None and "model×stem×config,residual" in list(one_sample.table()["facet"])
    assert gstudy.needed(one_sample, "sample") is None
    one_model = gstudy.estimate(planted_array((1, 10, 2, 3), PLANTED, rng))
    assert np.isnan(one_model.coefficients()[0])
    flat = gstudy.estimate(np.full((3, 4, 2, 2), 0.5))
    assert all(v == 0 for v in flat.components.values()) and np.isnan(flat.coefficients()[0])


JUDGED = {"model": 0.02, "stem": 0.01, "config": 0.002, "model×stem": 0.004, "model×config": 0.001,
          "judge": 0.01, "model×judge": 0.003, "sample:model×stem×config": 0.02,
          "judge×sample:model×stem×config": 0.01}
JUDGED_SHAPE = (20, 10, 2, 3, 4)  # models, stems, configs, samples, judges


def _judged_run(rng: np.random.Generator) -> np.ndarray:
    """Scores of the (m:p×s×c)×j design with the planted components above."""
    axes = {"model": 0, "stem": 1, "config": 2, "judge": 4}
    y = np.zeros(JUDGED_SHAPE)
    for effect, var in JUDGED.items():
        if effect == "sample:model×stem×config":
            size = (*JUDGED_SHAPE[:4], 1)
        elif effect == "judge×sample:model×stem×config":
            size = JUDGED_SHAPE
        else:
            size = [1] * 5
            for facet in effect.split("×"):
                size[axes[facet]] = JUDGED_SHAPE[axes[facet]]
        y = y + rng.normal(0, np.sqrt(var), size)
    return y


def test_judge_facet_components_g_and_phi_are_recovered() -> None:
    """200 planted runs: every component within 15% on average, G and Phi within 0.03 of the analytic
    values (Brennan 2001 ch. 4 with the judge facet), the judge's share as planted."""
    rng = np.random.default_rng(7)
    runs = [gstudy.estimate_with_judges(_judged_run(rng)) for _ in range(200)]
    for label, true in JUDGED.items():
        mean = np.mean([r.components[label] for r in runs])
        assert abs(mean - true) / true < 0.15, (label, mean, true)
    n_s, n_c, n_m = JUDGED_SHAPE[1:4]
    v = JUDGED
    rel = (v["model×stem"] / n_s + v["model×config"] / n_c + v["model×judge"]
           + (v["sample:model×stem×config"] + v["judge×sample:model×stem×config"]) / (n_s * n_c * n_m))
    g_true = v["model"] / (v["model"] + rel)
    phi_true = v["model"] / (v["model"] + rel + v["stem"] / n_s + v["config"] / n_c + v["judge"])
    g, phi = np.mean([r.coefficients(judges=1) for r in runs], axis=0)
    assert abs(g - g_true) < 0.03 and abs(phi - phi_true) < 0.03, (g, g_true, phi, phi_true)
    share_true = (v["judge"] + v["model×judge"] + v["judge×sample:model×stem×config"]) / sum(v.values())
    assert abs(np.mean([r.judge_share() for r in runs]) - share_true) < 0.03
    # more judges per completion raise G; a study that ignores the judge facet overstates it
    assert runs[0].coefficients(judges=4)[0] > runs[0].coefficients(judges=1)[0]
    with pytest.raises(ValueError, match="2 or more"):
        gstudy.estimate_with_judges(np.zeros((3, 4, 2, 1, 2)))
