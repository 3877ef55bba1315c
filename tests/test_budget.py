"""Budget caps (issue 18 item 3): a run stops before a block that would cross a cap, keeps its rows,
and a rerun with a higher cap generates exactly the rest. The fake OpenAI server counts the tokens
it bills, so "stops before the cap" is checked against what the provider saw, not our own count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.fault_server import FaultServer
from tests.helpers import evaluate, judged_by_api, study_dict
from valuelex import grid
from valuelex.budget import BudgetReached
from valuelex.cli import app
from valuelex.errors import StudyError
from valuelex.evaluate.judge_prompt import build_prompt, load_examples, prefix_for, rotated_prefixes
from valuelex.evaluate.systems import load_value_system
from valuelex.plan import generation_estimate, judge_estimate
from valuelex.report.facts import facts_section
from valuelex.report.load import load_run
from valuelex.spec import Study, fingerprint_of
from valuelex.store import OutputRoot, RunStore

PRICE = 1000.0  # USD per 1M tokens, in and out: a token costs $0.001


def _study(server: FaultServer, budget: dict | None = None) -> dict:
    model = {
        "name": "api",
        "source": "fake-gpt",
        "engine": "openai",
        "training": "aligned",
        "family": "fake",
        "prompting": "chat",
        "options": {"base_url": server.base_url, "max_retries": 0, "batch_size": 2},
    }
    return study_dict(
        models=[model],
        samples=4,
        shard_rows=2,
        decoding=[{"name": "t0", "temperature": 0.0, "top_p": 1.0, "max_tokens": 24}],
        prompts={"elicitation": ["q01", "q02"], "stems": ["s01"]},
        prices={"fake-gpt": {"input": PRICE, "output": PRICE}},
        budget=budget or {},
    )


def _block_estimates(document: dict) -> list[float]:
    """Estimated tokens of each block of shard_rows requests, in the order the run sends them."""
    study = Study.model_validate(document)
    model = study.models[0]
    estimate = generation_estimate(study, "elicitation", model)
    costs = [sum(estimate(row)) for row in grid.requests(study, "elicitation", model)]
    return [sum(costs[i : i + study.shard_rows]) for i in range(0, len(costs), study.shard_rows)]


def _elicit(tmp_path: Path, document: dict, out: Path) -> object:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return CliRunner().invoke(app, ["elicit", str(path), "--out", str(out)])


@pytest.mark.parametrize("unit", ["max_tokens", "max_usd"])
def test_a_capped_run_stops_before_the_cap_and_a_higher_cap_finishes_the_rest(
    tmp_path: Path, ray_local: None, unit: str
) -> None:
    out = tmp_path / "out"
    with FaultServer() as server:
        blocks = _block_estimates(_study(server))
        assert len(blocks) == 4
        cap_tokens = blocks[0] + blocks[1] + blocks[2] / 2  # two blocks fit, the third does not
        cap = {"max_tokens": int(cap_tokens)} if unit == "max_tokens" else {"max_usd": cap_tokens * PRICE / 1e6}
        first = _elicit(tmp_path, _study(server, cap), out)
        assert first.exit_code == 2, first.output
        assert "budget reached" in first.output and f"budget.{unit}" in first.output
        assert "4 requests not sent" in first.output
        billed = server.tokens
        assert 0 < billed <= cap_tokens
        assert len(server.prompts) == 4  # two blocks of two, nothing of the third
        table = OutputRoot(str(out)).table("elicitation").read()
        assert table.num_rows == 4 and table["error"].null_count == 4  # every finished row kept
        record = RunStore(str(out)).stage_record("elicitation")
        assert record["budget_reached"].startswith(f"budget.{unit}")
        assert record["rows_not_sent"] == 4
        assert record["spent"]["this_run"]["tokens"] == billed
        assert record["spent"]["output"]["usd"] == pytest.approx(billed * PRICE / 1e6)
        kept = set(table["row_id"].to_pylist())
        facts = facts_section(load_run(str(out)))
        (spending,) = [i for i in facts.items if getattr(i, "id", "") == "table-spending"]
        assert spending.rows[0][0] == "elicitation" and spending.rows[0][1] == f"{billed:,}"
        assert spending.rows[0][5].startswith(f"budget.{unit}")

        higher = {unit: cap[unit] * 10}
        second = _elicit(tmp_path, _study(server, higher), out)
        assert second.exit_code == 0, second.output
        assert len(server.prompts) == 8  # exactly the rest: no finished row asked again
        table = OutputRoot(str(out)).table("elicitation").read()
        assert table.num_rows == 8 and len(set(table["row_id"].to_pylist())) == 8
        assert kept < set(table["row_id"].to_pylist())
        record = RunStore(str(out)).stage_record("elicitation")
        assert "budget_reached" not in record and record["rows_generated"] == 4
        assert record["spent"]["this_run"]["tokens"] == server.tokens - billed
        assert record["spent"]["stage"]["tokens"] == server.tokens  # the output's whole spending
        assert server.tokens <= higher[unit] * (1 if unit == "max_tokens" else 1e6 / PRICE)


def test_a_stage_cap_binds_its_stage_and_spent_is_recorded_without_a_budget(tmp_path: Path, ray_local: None) -> None:
    out = tmp_path / "out"
    with FaultServer() as server:
        blocks = _block_estimates(_study(server))
        result = _elicit(tmp_path, _study(server, {"stages": {"elicitation": {"max_tokens": int(blocks[0]) + 1}}}), out)
        assert result.exit_code == 2 and "budget.stages.elicitation.max_tokens" in result.output
        assert len(server.prompts) == 2
        result = _elicit(tmp_path, _study(server), out)  # no budget: the rest, and what it cost
        assert result.exit_code == 0, result.output
        record = json.loads((out / "stages" / "elicitation.json").read_text())
        assert record["spent"]["stage"]["tokens"] == server.tokens and "budget" not in record


def test_a_usd_cap_needs_a_price_and_budget_defaults_keep_fingerprints(tmp_path: Path) -> None:
    from valuelex.spec import check_budget

    with FaultServer() as server:
        document = _study(server, {"max_usd": 1.0})
        document["prices"] = {}
        with pytest.raises(StudyError, match=r"study: budget.max_usd: model api .*has no price"):
            check_budget(Study.model_validate(document))
        path = tmp_path / "unpriced.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        result = CliRunner().invoke(app, ["validate", str(path)])
        assert result.exit_code == 2 and f"{path}: budget.max_usd: model api" in result.output
        plain = Study.model_validate(_study(server))
        dumped = plain.model_dump(mode="json")
        assert plain.fingerprint() == fingerprint_of({k: v for k, v in dumped.items() if k != "budget"})
        assert Study.model_validate(_study(server, {"max_tokens": 5})).fingerprint() != plain.fingerprint()


def _judge_reply(prompt: str) -> str:
    if "Completion:" not in prompt:
        return "I value kindness and honesty."
    keys = load_value_system("mft").leaf_keys()
    return '{"rationale": "kind", "scores": {' + ", ".join(f'"{k}": 1' for k in keys) + "}}"


def test_the_llm_judge_stops_at_its_stage_cap_and_a_rerun_judges_the_rest(tmp_path: Path, ray_local: None) -> None:
    out = str(tmp_path / "out")
    with FaultServer(respond=_judge_reply) as server:
        document = _study(server)
        document["models"][0]["options"]["max_retries"] = 0
        document.update(judged_by_api())

        def run(judging: dict | None) -> Exception | None:
            study = Study.model_validate({**document, "budget": {"stages": {"judging": judging}} if judging else {}})
            try:
                evaluate(study, out)
            except BudgetReached as exc:
                return exc
            return None

        stopped = run({"max_tokens": 1})  # the completions are generated (no cap), no judge request is sent
        assert isinstance(stopped, BudgetReached) and "budget.stages.judging.max_tokens" in str(stopped)
        assert not [p for p in server.prompts if "Completion:" in p]
        study = Study.model_validate(document)
        completions = RunStore(out).completions(study)
        assert len(completions) == 4
        system = load_value_system("mft")
        prefixes = rotated_prefixes(system, load_examples(system))
        estimate = judge_estimate(study.evaluation, study.models[0])
        costs = [
            sum(
                estimate(
                    {
                        "prompt": build_prompt(prefix_for(prefixes, c["row_id"]), c["stem"], c["response"]),
                        "max_tokens": study.evaluation.judge_max_tokens,
                    }
                )
            )
            for c in completions.to_dict("records")
        ]
        stopped = run({"max_tokens": int(sum(costs) * 3 / 4)})  # one block of two fits, the second does not
        assert isinstance(stopped, BudgetReached) and "2 requests not sent" in str(stopped)
        judged = [p for p in server.prompts if "Completion:" in p]
        assert len(judged) == 2
        record = RunStore(out).stage_record("evaluation")
        assert record["budget_reached"].startswith("budget.stages.judging.max_tokens")
        assert record["spent"]["this_run"]["tokens"] > 0
        assert run(None) is None  # no cap: the other two are judged, nothing twice
        judged = [p for p in server.prompts if "Completion:" in p]
        assert len(judged) == 4 and len(set(judged)) == 4
        assert RunStore(out).scores() is not None
