"""API cost in the plan: the price table times the planned tokens, per model and stage."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import study_dict
from valuelex.cost import load_prices, usd
from valuelex.errors import StudyError
from valuelex.plan import format_plan, plan
from valuelex.spec import Study, fingerprint_of, load_study

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_usd_is_tokens_times_the_list_price() -> None:
    prices = load_prices()
    # gpt-4: $30 in, $60 out per 1M tokens
    assert usd("gpt-4", 1e6, 5e5, prices) == pytest.approx(30 + 30)
    assert usd("gpt-4", 1e6, 5e5, prices, batch=True) == pytest.approx(30)
    # gpt-4o: cached input at $1.25 instead of $2.5
    assert usd("gpt-4o", 1e6, 0, prices, cached=4e5) == pytest.approx(0.6 * 2.5 + 0.4 * 1.25)
    assert usd("unknown-model", 1e6, 1e6, prices) is None  # unpriced, not free
    with pytest.raises(StudyError, match="prices: x: input"):
        load_prices({"x": {"input": -1, "output": 1}})


def _api_study(**extra) -> Study:
    model = {
        "name": "g4",
        "source": "gpt-4",
        "engine": "openai",
        "training": "aligned",
        "family": "gpt",
        "prompting": "chat",
        "options": {"base_url": "http://127.0.0.1:1/v1"},
    }
    return Study.model_validate(study_dict(models=[model], samples=2, **extra))


def test_plan_prices_every_api_model_and_stage_and_the_study_overrides() -> None:
    planned = plan(_api_study())
    elicitation = planned["stages"]["elicitation"]
    row = elicitation["per_model"][0]
    assert row["usd"] == pytest.approx((row["prompt_tokens"] * 30 + row["completion_tokens"] * 60) / 1e6)
    assert elicitation["usd"] == pytest.approx(row["usd"])
    assert planned["totals"]["usd"] == pytest.approx(sum(s["usd"] for s in planned["stages"].values()))
    cheaper = plan(_api_study(prices={"gpt-4": {"input": 3.0, "output": 6.0}}))
    assert cheaper["totals"]["usd"] == pytest.approx(planned["totals"]["usd"] / 10)
    dump = _api_study().model_dump(mode="json")
    assert _api_study().fingerprint() == fingerprint_of({k: v for k, v in dump.items() if k != "prices"})
    assert cheaper is not None and _api_study(prices={"gpt-4": {"input": 3.0, "output": 6.0}}).fingerprint() != (
        _api_study().fingerprint()
    )


def test_paper_plan_prints_dollars_per_api_model_and_stage() -> None:
    text = format_plan(plan(load_study(CONFIGS / "paper.yaml")))
    line = next(x for x in text.splitlines() if x.startswith("API cost (USD"))
    assert "elicitation $" in line and "completion $" in line and "total $" in line
    gpt4 = next(x for x in text.splitlines() if x.startswith("gpt-4 "))
    assert gpt4.split()[-1].startswith("$")
