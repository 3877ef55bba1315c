"""Placement (which models a cluster can hold, and in which waves) and the cost plan of a study.

Placement is a pure function of the study and a node list, so GPU clusters are node lists here;
one test runs the check against the real local Ray's nodes (CPU only).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from tests.helpers import SMOLLM_MODEL, study_dict
from valuelex import grid
from valuelex.errors import EngineError, StudyError
from valuelex.placement import (
    Node,
    as_nodes,
    check_placement,
    cluster_nodes,
    launchable_nodes,
    schedule,
)
from valuelex.plan import format_plan, load_throughput, plan, prompt_tokens
from valuelex.spec import Study, load_study

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "configs" / "paper.yaml"

CPU_HEAD = Node("head", gpus=0, cpus=16)


def gpu_node(name: str, gpus: int, kind: str = "H100", cpus: float = 96) -> Node:
    return Node(name, gpus=gpus, cpus=cpus, accelerator_types=frozenset({kind}))


def vllm_model(name: str, tp: int = 1, pp: int = 1, size_b: float = 7, **options) -> dict:
    return {"name": name, "source": f"org/{name}", "size_b": size_b, "training": "aligned", "family": "x",
            "prompting": "chat", "options": {"tensor_parallel_size": tp, "pipeline_parallel_size": pp, **options}}


def api_model(name: str) -> dict:
    return {"name": name, "source": name, "engine": "openai", "training": "aligned", "family": "api",
            "prompting": "chat", "options": {"base_url": "http://127.0.0.1:1/v1"}}


def study_of(*models: dict, **overrides) -> Study:
    return Study.model_validate(study_dict(models=list(models), **overrides))


# --- check_placement: refusals -------------------------------------------------------------------


def test_tp8_model_refused_without_an_8_gpu_node() -> None:
    study = load_study(PAPER)
    nodes = [CPU_HEAD, gpu_node("a", 4, "L4"), gpu_node("b", 4, "L4")]  # 8 GPUs in all, but 4 per node
    with pytest.raises(EngineError) as err:
        check_placement(study, nodes)
    message = str(err.value)
    assert "llama2-70b-chat" in message and "8 GPU(s) on one node" in message
    assert "largest node has 4 GPU(s)" in message and "tensor_parallel_size 8" in message
    assert "3 node(s): 1 x 16 CPU, 2 x 4 GPU L4" in message
    assert "mistral-small" not in message  # TP=4 fits a 4-GPU node: only the impossible model is named


def test_absent_accelerator_type_refused() -> None:
    study = study_of(vllm_model("small"), vllm_model("needs-h100", accelerator_type="H100"))
    with pytest.raises(EngineError, match=r"needs-h100 needs 1 H100 GPU\(s\) on one node, but no node has "
                                          r"accelerator type H100 \(the cluster has: A10G, L4\)"):
        check_placement(study, [CPU_HEAD, gpu_node("a", 1, "A10G"), gpu_node("b", 4, "L4")])


def test_pipeline_stages_may_span_nodes_tensor_parallel_may_not() -> None:
    two_nodes = [CPU_HEAD, gpu_node("a", 4), gpu_node("b", 4)]
    check_placement(study_of(vllm_model("tp4pp2", tp=4, pp=2)), two_nodes)  # 2 stages, one per node
    with pytest.raises(EngineError, match=r"tp8 needs 8 GPU\(s\) on one node, but the largest node has 4"):
        check_placement(study_of(vllm_model("tp8", tp=8)), two_nodes)
    with pytest.raises(EngineError, match=r"2 pipeline stages of 4 GPU\(s\) on one node each = 8 GPU\(s\), but "
                                          r"the cluster holds only 1 group"):
        check_placement(study_of(vllm_model("tp4pp2", tp=4, pp=2)), [CPU_HEAD, gpu_node("a", 6), gpu_node("b", 2)])


def test_concurrency_counts_every_replica_and_cpus_count_too() -> None:
    with pytest.raises(EngineError, match=r"2 replicas x 8 GPU\(s\) on one node = 16 GPU\(s\)"):
        check_placement(study_of(vllm_model("big", tp=8, concurrency=2)), [CPU_HEAD, gpu_node("a", 8)])
    check_placement(study_of(vllm_model("big", tp=8, concurrency=2)), [gpu_node("a", 8), gpu_node("b", 8)])
    with pytest.raises(EngineError, match="lack CPUs"):  # ray.data.llm's bundle is {GPU: 1, CPU: 1}
        check_placement(study_of(vllm_model("tp4", tp=4)), [gpu_node("a", 4, cpus=2)])


def test_every_impossible_model_is_named_in_one_error() -> None:
    study = study_of(vllm_model("tp8", tp=8), vllm_model("ok"), vllm_model("a100", accelerator_type="A100"))
    with pytest.raises(EngineError) as err:
        check_placement(study, [gpu_node("a", 4)])
    lines = str(err.value).splitlines()
    assert "cannot place 2 model(s)" in lines[0]
    assert [line.split()[1] for line in lines[1:3]] == ["tp8", "a100"]


# --- check_placement: CPU-only clusters and API models ------------------------------------------


def test_cpu_only_cluster_runs_vllm_on_cpu_unless_gpus_are_demanded() -> None:
    study = study_of(vllm_model("m1", tp=8), api_model("api"))
    placement = check_placement(study, [CPU_HEAD])
    assert placement.use_gpu is False and placement.needs == {}  # the laptop / CI path: a CPU bundle each
    with pytest.raises(EngineError) as err:
        check_placement(study, [CPU_HEAD], require_gpu=True)
    assert ("model m1 needs 8 GPU(s) on one node (GPUs are required: --require-gpu or VALUELEX_REQUIRE_GPU), "
            "but the cluster has no GPU") in str(err.value)
    assert "api" not in str(err.value).split("\n", 1)[1]  # API models need no GPU
    with pytest.raises(EngineError, match="accelerator_type asks for a GPU type"):
        check_placement(study_of(vllm_model("typed", accelerator_type="H100")), [CPU_HEAD])


def test_require_gpu_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from valuelex.placement import require_gpu_from_env

    monkeypatch.delenv("VALUELEX_REQUIRE_GPU", raising=False)
    assert require_gpu_from_env() is False
    monkeypatch.setenv("VALUELEX_REQUIRE_GPU", "1")
    assert require_gpu_from_env() is True


def test_api_only_study_needs_nothing() -> None:
    assert check_placement(study_of(api_model("a")), [CPU_HEAD], require_gpu=True).use_gpu is False


def test_llm_judge_outside_the_study_is_placed_too() -> None:
    judge = vllm_model("judge-70b", tp=8, size_b=70)
    study = study_of(vllm_model("m"), evaluation={"judge": "llm", "judge_model": judge})
    with pytest.raises(EngineError, match="judge-70b"):
        check_placement(study, [gpu_node("a", 4)])


def test_ray_nodes_entries_are_read_as_ray_reports_them() -> None:
    raw = [
        {"NodeID": "h", "Alive": True, "Resources": {"CPU": 8.0, "memory": 1e9}, "Labels": {}},
        {"NodeID": "g", "Alive": True, "Resources": {"CPU": 96.0, "GPU": 8.0, "accelerator_type:H100": 1.0}},
        {"NodeID": "l", "Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0},
         "Labels": {"ray.io/accelerator-type": "L4"}},
        {"NodeID": "dead", "Alive": False, "Resources": {"CPU": 96.0, "GPU": 8.0}},
    ]
    nodes = as_nodes(raw)
    assert [(n.node_id, n.gpus, set(n.accelerator_types)) for n in nodes] == [
        ("h", 0, set()), ("g", 8, {"H100"}), ("l", 1, {"L4"})]
    study = study_of(vllm_model("big", tp=8, accelerator_type="H100"), vllm_model("l4", accelerator_type="L4"))
    assert check_placement(study, raw).use_gpu
    with pytest.raises(EngineError, match="big needs 8 H100"):
        check_placement(study, raw[:1] + raw[2:])  # the dead 8-GPU node does not count


def test_refused_on_the_real_local_ray_before_any_work(ray_local: None, tmp_path: Path) -> None:
    """The check over the live cluster's own node list (this machine's Ray: CPUs only)."""
    nodes = cluster_nodes()
    assert nodes and sum(n.gpus for n in nodes) == 0
    study = load_study(PAPER)
    assert check_placement(study, nodes).use_gpu is False  # CPU-only: the laptop path, nothing refused
    with pytest.raises(EngineError, match="llama2-70b-chat needs 8 GPU"):
        check_placement(study, nodes, require_gpu=True)
    typed = study_of(dict(SMOLLM_MODEL, options={**SMOLLM_MODEL["options"], "accelerator_type": "H100"}),
                     output=str(tmp_path / "out"))
    with pytest.raises(EngineError, match="smollm2 needs 1 H100 GPU"):
        check_placement(typed, cluster_nodes())
    assert not (tmp_path / "out").exists()


# --- schedule ------------------------------------------------------------------------------------


def names(waves: list[list]) -> list[list[str]]:
    return [[m.name for m in wave] for wave in waves]


def test_schedule_runs_large_models_alone_and_packs_small_ones() -> None:
    study = study_of(vllm_model("s1"), vllm_model("big", tp=8, size_b=70), vllm_model("s2"), api_model("api"),
                     vllm_model("mid", tp=4, size_b=56), vllm_model("s3"), vllm_model("s4"), vllm_model("s5"))
    waves = schedule(study, [CPU_HEAD, gpu_node("a", 8)])
    assert names(waves) == [["api", "big"], ["s1", "s2", "mid", "s3", "s4"], ["s5"]]
    # a second 8-GPU node: 16 of the 17 GPUs needed at once; API models lead the first wave
    assert names(schedule(study, [CPU_HEAD, gpu_node("a", 8), gpu_node("b", 8)])) == [
        ["api", "s1", "big", "s2", "mid", "s3", "s4"], ["s5"]]


def test_schedule_respects_accelerator_types() -> None:
    study = study_of(vllm_model("h1", accelerator_type="H100"), vllm_model("h2", accelerator_type="H100"),
                     vllm_model("any"))
    waves = schedule(study, [gpu_node("h", 1, "H100"), gpu_node("l", 1, "L4")])
    assert names(waves) == [["h1", "any"], ["h2"]]


def test_schedule_on_cpu_is_one_engine_at_a_time() -> None:
    study = study_of(vllm_model("a"), api_model("api"), vllm_model("b"))
    assert names(schedule(study, [CPU_HEAD])) == [["api", "a"], ["b"]]
    assert names(schedule(study_of(api_model("x")), [CPU_HEAD])) == [["x"]]


def test_schedule_refuses_what_check_placement_refuses() -> None:
    with pytest.raises(EngineError, match="big needs 8"):
        schedule(study_of(vllm_model("big", tp=8)), [gpu_node("a", 4)])


def test_paper_study_fits_the_cluster_configs_in_waves() -> None:
    """The shipped cluster configs can hold every model of configs/paper.yaml."""
    study = load_study(PAPER)
    for config in ("cluster/aws-gpu.yaml", "cluster/kuberay-rayjob.yaml"):
        nodes = [CPU_HEAD, *launchable_nodes(ROOT / config)]
        assert check_placement(study, nodes).use_gpu
        waves = schedule(study, nodes)
        flat = [m.name for wave in waves for m in wave]
        assert sorted(flat) == sorted(m.name for m in study.models), config
        assert len(waves) >= 2  # the 70B (TP=8) and Mixtral (TP=4) cannot share the 8-GPU nodes with everything
        for wave in waves:
            gpus = sum(m.options.tensor_parallel_size * m.options.pipeline_parallel_size
                       for m in wave if m.engine == "vllm")
            assert gpus <= sum(n.gpus for n in nodes)


def test_launchable_nodes_reads_both_cluster_configs() -> None:
    aws = launchable_nodes(ROOT / "cluster" / "aws-gpu.yaml")
    kuberay = launchable_nodes(ROOT / "cluster" / "kuberay-rayjob.yaml")
    for nodes in (aws, kuberay):
        assert all(n.launchable for n in nodes)
        assert {(n.gpus, tuple(n.accelerator_types)) for n in nodes} == {(8, ("H100",)), (1, ("L40S",))}
        assert all(n.cpus >= n.gpus for n in nodes)
    with pytest.raises(StudyError, match="cannot read the cluster config"):
        launchable_nodes(ROOT / "cluster" / "missing.yaml")


# --- plan ----------------------------------------------------------------------------------------


def test_plan_grid_sizes_equal_the_grid() -> None:
    study = load_study(PAPER)
    result = plan(study)
    stages = result["stages"]
    for stage in ("elicitation", "completion"):
        assert stages[stage]["grid_rows"] == grid.count(study, stage)
        assert stages[stage]["requests"] + stages[stage]["api"]["requests"] == grid.count(study, stage)
        for row in stages[stage]["per_model"]:
            assert row["requests"] == grid.count(study, stage, study.model(row["model"]))
    assert stages["judging"]["grid_rows"] == grid.count(study, "completion") * len(study.evaluation.systems)
    # judged like the paper: an API LLM judge, one request per completion, system and expected attempt
    assert stages["judging"]["judge"] == "llm:judge-gpt-4o" and stages["judging"]["gpu_hours"] == 0
    assert stages["judging"]["api"]["requests"] == round(stages["judging"]["grid_rows"] * 1.05)
    assert result["shape"] == {"models": 28, "vllm_models": 18, "api_models": 10, "decoding_configs": 16,
                               "elicitation_prompts": 15, "completion_stems": 50}


def test_plan_api_models_have_tokens_but_no_gpu_hours() -> None:
    result = plan(load_study(PAPER))
    per_model = {m["model"]: m for m in result["per_model"]}
    assert per_model["gpt-4"]["gpu_hours"] is None and per_model["gpt-4"]["completion_tokens"] > 0
    assert per_model["llama2-70b-chat"]["gpus_per_replica"] == 8 and per_model["llama2-70b-chat"]["gpu_hours"] > 0
    assert result["totals"]["api"]["requests"] - result["stages"]["judging"]["api"]["requests"] == sum(
        grid.count(load_study(PAPER), s, m) for s in ("elicitation", "completion")
        for m in load_study(PAPER).models if m.engine == "openai")
    # same tokens, bigger model: more GPU-hours
    assert per_model["llama2-70b-chat"]["gpu_hours"] > per_model["llama2-13b-chat"]["gpu_hours"] > \
        per_model["llama2-7b-chat"]["gpu_hours"]


@pytest.mark.parametrize("factor", [2, 3, 10])
def test_plan_gpu_hours_scale_linearly_with_m(factor: int) -> None:
    judge = vllm_model("judge", size_b=8)
    raw = study_dict(models=[vllm_model("a"), vllm_model("b", tp=8, size_b=70), api_model("api")],
                     evaluation={"judge": "llm", "judge_model": judge, "systems": ["valuelex", "mft"]})
    one = plan(Study.model_validate({**raw, "samples": 2}))
    many = plan(Study.model_validate({**raw, "samples": 2 * factor}))
    for stage in ("elicitation", "completion", "judging", None):
        a = one["stages"][stage] if stage else one["totals"]
        b = many["stages"][stage] if stage else many["totals"]
        assert b["grid_rows"] == factor * a["grid_rows"]
        assert b["gpu_hours"] > 0 and math.isclose(b["gpu_hours"], factor * a["gpu_hours"], rel_tol=1e-6)
        assert math.isclose(b["completion_tokens"], factor * a["completion_tokens"], rel_tol=1e-9)
        assert math.isclose(b["start_gpu_hours"], a["start_gpu_hours"])  # engine starts do not grow with M


def test_plan_tokens_follow_the_documented_rules() -> None:
    figures = load_throughput()
    study = study_of(vllm_model("chat"), dict(vllm_model("base"), prompting="completion"),
                     prompts={"elicitation": ["q01"], "stems": ["s01"]}, samples=1,
                     decoding=[{"name": "d", "temperature": 1.0, "top_p": 1.0, "max_tokens": 100}])
    rows = {r["model"]: r for r in plan(study)["stages"]["elicitation"]["per_model"]}
    item = grid.items(study, "elicitation")[0]
    assert rows["chat"]["prompt_tokens"] == math.ceil(len(item.chat_text) / 4) + figures["chat_overhead_tokens"]
    assert rows["base"]["prompt_tokens"] == math.ceil(len(item.completion_text) / 4)
    assert rows["chat"]["completion_tokens"] == round(100 * figures["fill_fraction"]["chat"]["elicitation"])
    assert rows["base"]["completion_tokens"] == 100  # base models write until max_tokens
    assert prompt_tokens("x" * 9, figures, chat=False) == 3


def test_plan_throughput_overrides(tmp_path: Path) -> None:
    study = study_of(vllm_model("seven", size_b=7), vllm_model("seventy", tp=8, size_b=70))
    base = {m["model"]: m["gpu_hours"] for m in plan(study)["per_model"]}
    override = tmp_path / "h200.yaml"
    override.write_text(yaml.safe_dump({
        "reference_gpu": "H200 141GB",
        "buckets": [{"name": "3-10B", "decode_tokens_per_s_per_gpu": 12000, "prefill_tokens_per_s_per_gpu": 120000}],
    }))
    faster = plan(study, throughput_overrides=override)
    changed = {m["model"]: m["gpu_hours"] for m in faster["per_model"]}
    assert math.isclose(changed["seven"], base["seven"] / 2) and changed["seventy"] == base["seventy"]
    assert faster["assumptions"]["reference_gpu"] == "H200 141GB"
    assert plan(study, throughput_overrides={"chars_per_token": 2})["totals"]["prompt_tokens"] > \
        plan(study)["totals"]["prompt_tokens"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"buckets": [{"name": "3-10B", "decode_tokens_per_s_per_gpu": 0}]}))
    with pytest.raises(StudyError, match="decode_tokens_per_s_per_gpu: must be > 0"):
        plan(study, throughput_overrides=bad)


def test_plan_llm_judge_counts_requests_per_completion_and_system() -> None:
    judge = vllm_model("judge", size_b=8)
    study = study_of(vllm_model("a"), evaluation={"judge": "llm", "judge_model": judge,
                                                  "systems": ["valuelex", "schwartz"]})
    judging = plan(study)["stages"]["judging"]
    completions = grid.count(study, "completion")
    assert judging["judge"] == "llm:judge" and judging["grid_rows"] == 2 * completions
    attempts = load_throughput()["judge_expected_attempts"]
    assert judging["requests"] == round(2 * completions * attempts)
    assert judging["prompt_tokens"] > 2 * completions * 300  # the few-shot instructions dominate the prompt
    assert judging["gpu_hours"] > 0


def test_format_plan_for_the_paper_study() -> None:
    text = format_plan(plan(load_study(PAPER)))
    lines = text.splitlines()
    assert lines[0].startswith("Plan for study paper: 28 models (18 vLLM, 10 API) x 16 decoding configs x M=10")
    for word in ("elicitation", "completion", "judging (llm:judge-gpt-4o)", "total", "llama2-70b-chat", "gpt-4",
                 "H100 GPU-h", "+ starts", "characters / 4"):
        assert word in text, word


def test_plan_counts_one_engine_start_per_model_for_both_grids() -> None:
    """Completion rows go through the engine elicitation started (`valuelex.plan.shares_engines`);
    with a budget cap or adaptive M each grid starts its own, so the starts double."""
    paper = load_study(Path(__file__).resolve().parent.parent / "configs" / "paper.yaml")
    shared = plan(paper)
    vllm_models = sum(m.engine == "vllm" for m in paper.models)
    assert shared["stages"]["elicitation"]["engine_starts"] == vllm_models
    assert shared["stages"]["completion"]["engine_starts"] == 0
    assert shared["stages"]["completion"]["start_gpu_hours"] == 0
    capped = plan(paper.model_copy(update={"budget": paper.budget.model_copy(update={"max_tokens": 10**12})}))
    assert capped["stages"]["completion"]["engine_starts"] == vllm_models
    assert math.isclose(capped["totals"]["start_gpu_hours"], 2 * shared["totals"]["start_gpu_hours"])
    assert "once per model for both grids" in format_plan(shared)
    assert "once per model per grid" in format_plan(capped)


def test_plan_counts_one_start_for_a_served_judge() -> None:
    """A vLLM judge of one replica stays up across its retry rounds; with two replicas it is an
    offline pipeline again and every round (1 + max_judge_retries) starts it."""
    def judging(**options) -> dict:
        judge = vllm_model("judge", size_b=8, **options)
        study = study_of(vllm_model("m"), evaluation={"judge": "llm", "judge_model": judge, "max_judge_retries": 2})
        return plan(study)["stages"]["judging"]

    served, pipelines = judging(), judging(concurrency=2)
    assert served["engine_starts"] == 1
    assert pipelines["engine_starts"] == 2 * 3  # replicas x rounds
    assert math.isclose(pipelines["start_gpu_hours"], 6 * served["start_gpu_hours"])
