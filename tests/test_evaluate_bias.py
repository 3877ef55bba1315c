"""Response bias (issue 17.4): a planted acquiescence raises the general factor; centring removes it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from valuelex.evaluate.bias import add_centred, bias_table, general_factor_share
from valuelex.evaluate.judgments import score_column
from valuelex.evaluate.scores import score_table
from valuelex.evaluate.systems import load_value_system

SCHWARTZ = load_value_system("schwartz")


def planted_judgments(system, n_models: int, *, biased: str | None = None, seed: int = 0) -> pd.DataFrame:
    """Judge scores 0..5 around each model's own value profile (independent across dimensions);
    the `biased` model adds +1 to every score (so nothing reaches the clip at 6)."""
    rng = np.random.default_rng(seed)
    keys = system.leaf_keys()
    profile = rng.uniform(1.0, 4.0, size=(n_models, len(keys)))
    rows = []
    for m in range(n_models):
        for item in range(6):
            for sample in range(3):
                scores = np.clip(np.rint(profile[m] + rng.normal(0, 0.5, len(keys))), 0, 5).astype(int)
                row = {
                    "row_id": f"m{m}-{item}-{sample}",
                    "model": f"m{m}",
                    "item_id": f"s{item:02d}",
                    "config": "c",
                    "sample": sample,
                    "valid": True,
                    "judge": "test",
                    "judge_key": "k",
                }
                bump = 1 if f"m{m}" == biased else 0
                row.update({score_column(k): int(v) + bump for k, v in zip(keys, scores, strict=True)})
                rows.append(row)
    return pd.DataFrame(rows)


def test_general_factor_share_by_hand() -> None:
    # rows differ only by level: one component carries everything
    assert general_factor_share(np.array([[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]])) == pytest.approx(1.0)
    # orthogonal contrasts of equal size: half each
    x = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    assert general_factor_share(x) == pytest.approx(0.5)


def test_planted_acquiescence_raises_the_general_factor_and_centring_removes_it() -> None:
    clean = score_table(planted_judgments(SCHWARTZ, 8, seed=3), SCHWARTZ, resamples=20)
    biased = score_table(planted_judgments(SCHWARTZ, 8, biased="m2", seed=3), SCHWARTZ, resamples=20)
    share_clean = bias_table(clean)["general_share"].iloc[0]
    share_biased = bias_table(biased)["general_share"].iloc[0]
    assert share_biased > share_clean + 0.1, (share_clean, share_biased)
    a, b = add_centred(clean), add_centred(biased)
    pd.testing.assert_frame_equal(b[clean.columns].query("model != 'm2'"), clean.query("model != 'm2'"))
    raw = (b["w"] - a["w"])[b["model"] == "m2"]
    np.testing.assert_allclose(raw, 1 / 6, atol=1e-12)  # raw scores: m2 higher by one judge point everywhere
    centred = (b["w_centred"] - a["w_centred"])[b["model"] == "m2"]
    np.testing.assert_allclose(centred, 0.0, atol=1e-12)  # centred: the difference is gone
    acq = bias_table(biased).set_index("model")["acquiescence"] - bias_table(clean).set_index("model")["acquiescence"]
    assert acq["m2"] == pytest.approx(1 / 6) and acq.drop("m2").abs().max() < 1e-12


def test_centring_keeps_existing_columns_and_is_idempotent() -> None:
    table = score_table(planted_judgments(SCHWARTZ, 3), SCHWARTZ, resamples=20)
    once = add_centred(table)
    pd.testing.assert_frame_equal(once[table.columns], table)
    pd.testing.assert_frame_equal(add_centred(once), once)
    leaves = once[once["key"].isin(SCHWARTZ.leaf_keys())]
    np.testing.assert_allclose(leaves.groupby("model")["w_centred"].mean(), 0.0, atol=1e-12)


def test_two_models_get_a_notice_not_a_number() -> None:
    table = bias_table(score_table(planted_judgments(SCHWARTZ, 2), SCHWARTZ, resamples=20))
    assert table["general_share"].isna().all() and "at least 3 models" in table["notice"].iloc[0]
    assert table["acquiescence"].notna().all()
