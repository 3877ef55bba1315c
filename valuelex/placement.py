"""Where each model's engine can run: refuse impossible placements before any work starts, and
schedule the models of a study in waves that fit the cluster's GPUs together.

Pure functions over a list of nodes (`Node`, or the dicts `ray.nodes()` returns), so they are tested
without a GPU; `cluster_nodes()` reads the live cluster.

The rule (what one vLLM replica needs)
--------------------------------------
A vLLM model with ``tensor_parallel_size`` TP and ``pipeline_parallel_size`` PP needs TP x PP GPUs
per replica, laid out as PP *stages* of TP GPUs each:

- the TP GPUs of a stage are on one node (tensor parallelism all-reduces every layer: it needs
  NVLink/PCIe inside a node, never the network);
- the PP stages may be on different nodes (pipeline parallelism sends activations once per stage
  boundary, which a network carries fine): a 70B model at TP=4, PP=2 runs on two 4-GPU nodes;
- every GPU comes with one CPU (ray.data.llm's default bundle is ``{"GPU": 1, "CPU": 1}``);
- with ``options.accelerator_type`` set (``H100``, ``A100-80G``, ``L4``...: Ray's names), every
  stage is on a node of that type (Ray's ``accelerator_type:<TYPE>`` node resource);
- ``options.concurrency`` replicas run at once (a fixed-size Ray Data actor pool asks for all of
  them; one that cannot be placed stays pending for the whole stage), so the model needs room for
  concurrency x PP stages.

When the check applies
----------------------
- The cluster has GPUs: every vLLM model runs on GPUs (see `valuelex.engines.vllm`) and is checked.
- The cluster has no GPU at all: vLLM models run with one CPU bundle each (the laptop/CI path) and
  nothing is checked, unless GPUs are *demanded*: by ``require_gpu=True`` (the CLI's
  ``--require-gpu``, or ``VALUELEX_REQUIRE_GPU=1``), or by a vLLM model that names an
  ``accelerator_type`` (which no CPU can honour). Then every such model is refused.
- API models (``engine: openai``) need no GPU and are never refused.

On an autoscaling cluster the GPU nodes may not exist yet when the job starts: the node types the
autoscaler may launch are added with `launchable_nodes` (from ``cluster/aws-gpu.yaml`` or the
KubeRay manifest), which `cluster_nodes` reads from ``VALUELEX_CLUSTER_CONFIG`` when it is set.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from valuelex.errors import EngineError, StudyError

if TYPE_CHECKING:
    from valuelex.spec import ModelSpec, Study

ACCELERATOR_RESOURCE = "accelerator_type:"
ACCELERATOR_LABEL = "ray.io/accelerator-type"
REQUIRE_GPU_ENV = "VALUELEX_REQUIRE_GPU"
CLUSTER_CONFIG_ENV = "VALUELEX_CLUSTER_CONFIG"


@dataclass(frozen=True)
class Node:
    """One Ray node as placement sees it: GPUs, CPUs and accelerator types."""

    node_id: str
    gpus: int = 0
    cpus: float = 0.0
    accelerator_types: frozenset[str] = frozenset()
    launchable: bool = False  # a node the autoscaler may start, not (yet) a live node

    def describe(self) -> str:
        kind = "/".join(sorted(self.accelerator_types)) or ("GPU" if self.gpus else "CPU")
        return f"{self.gpus} GPU {kind}" if self.gpus else f"{self.cpus:g} CPU"


@dataclass(frozen=True)
class Need:
    """What one model needs: `replicas` x `stages` groups of `gpus_per_stage` GPUs on one node each."""

    model: str
    gpus_per_stage: int
    stages: int
    replicas: int
    accelerator_type: str | None = None

    @property
    def gpus(self) -> int:
        return self.gpus_per_stage * self.stages * self.replicas

    def describe(self) -> str:
        kind = f" {self.accelerator_type}" if self.accelerator_type else ""
        layout = f"{self.gpus_per_stage}{kind} GPU(s) on one node"
        if self.stages > 1:
            layout = f"{self.stages} pipeline stages of {layout} each"
        if self.replicas > 1:
            layout = f"{self.replicas} replicas x {layout}"
        return layout if self.gpus == self.gpus_per_stage else f"{layout} = {self.gpus} GPU(s)"


@dataclass(frozen=True)
class Placement:
    """The outcome of a successful check: how vLLM models will run, and what each needs."""

    use_gpu: bool
    needs: dict[str, Need] = field(default_factory=dict)  # vLLM models placed on GPUs, by name


# --- nodes ---------------------------------------------------------------------------------------


def as_node(raw: Node | Mapping[str, Any]) -> Node:
    """A `Node` from itself or from one entry of `ray.nodes()` (``NodeID``, ``Resources``, ``Labels``)."""
    if isinstance(raw, Node):
        return raw
    resources = raw.get("Resources") or {}
    labels = raw.get("Labels") or {}
    types = {k.removeprefix(ACCELERATOR_RESOURCE) for k in resources if k.startswith(ACCELERATOR_RESOURCE)}
    if labels.get(ACCELERATOR_LABEL):
        types.add(str(labels[ACCELERATOR_LABEL]))
    return Node(
        node_id=str(raw.get("NodeID") or raw.get("node_id") or "?"),
        gpus=int(resources.get("GPU", 0)),
        cpus=float(resources.get("CPU", 0)),
        accelerator_types=frozenset(types),
        launchable=bool(raw.get("launchable", False)),
    )


def as_nodes(nodes: Iterable[Node | Mapping[str, Any]]) -> list[Node]:
    """Alive nodes only (entries of `ray.nodes()` with ``Alive: false`` are dropped)."""
    return [as_node(n) for n in nodes if isinstance(n, Node) or n.get("Alive", n.get("alive", True))]


def cluster_nodes(config_path: str | None = None) -> list[Node]:
    """The live nodes of the connected Ray cluster, plus the node types its autoscaler may launch.

    `config_path` (default: ``$VALUELEX_CLUSTER_CONFIG``) names a cluster-launcher YAML or a KubeRay
    manifest; see `launchable_nodes`. Ray must already be initialised (`valuelex.runtime.ensure_ray`).
    """
    import ray

    nodes = as_nodes(ray.nodes())
    config_path = config_path or os.environ.get(CLUSTER_CONFIG_ENV)
    if config_path:
        nodes += launchable_nodes(config_path)
    return nodes


def launchable_nodes(path: str | Path) -> list[Node]:
    """Nodes an autoscaler may start: every GPU worker type x its max workers (max replicas).

    Reads a Ray cluster-launcher YAML (``available_node_types``) or a KubeRay RayJob/RayCluster
    manifest (``workerGroupSpecs``, GPUs from ``nvidia.com/gpu`` limits, the accelerator type from
    ``rayStartParams.resources`` ``accelerator_type:<TYPE>`` or the ``ray.io/accelerator-type`` label).
    """
    import yaml

    try:
        documents = [d for d in yaml.safe_load_all(Path(path).read_text(encoding="utf-8")) if isinstance(d, dict)]
    except (OSError, yaml.YAMLError) as exc:
        raise StudyError(f"{path}: cannot read the cluster config: {exc}") from None
    nodes: list[Node] = []
    for doc in documents:
        if "available_node_types" in doc:
            nodes += _launcher_nodes(doc)
        spec = doc.get("spec") or {}
        cluster = spec.get("rayClusterSpec", spec)
        if isinstance(cluster, dict) and "workerGroupSpecs" in cluster:
            nodes += _kuberay_nodes(cluster)
    return nodes


def _launcher_nodes(doc: dict[str, Any]) -> list[Node]:
    nodes = []
    for name, node_type in (doc.get("available_node_types") or {}).items():
        resources = node_type.get("resources") or {}
        if name == doc.get("head_node_type"):
            continue
        count = int(node_type.get("max_workers", doc.get("max_workers", 0)) or 0)
        nodes += [as_node({"NodeID": f"{name}#{i}", "Resources": resources, "launchable": True}) for i in range(count)]
    return nodes


def _kuberay_nodes(cluster: dict[str, Any]) -> list[Node]:
    nodes = []
    for group in cluster.get("workerGroupSpecs") or []:
        pod = (group.get("template") or {}).get("spec") or {}
        containers = pod.get("containers") or [{}]
        limits = (containers[0].get("resources") or {}).get("limits") or {}
        params = group.get("rayStartParams") or {}
        resources: dict[str, Any] = {"GPU": int(limits.get("nvidia.com/gpu", 0)), "CPU": _cpus(limits.get("cpu"))}
        if params.get("resources"):
            resources.update(_json_resources(params["resources"]))
        labels = {**(group.get("labels") or {}), **((group.get("template") or {}).get("metadata") or {}).get(
            "labels", {})}
        count = int(group.get("maxReplicas", group.get("replicas", 0)) or 0)
        nodes += [as_node({"NodeID": f"{group.get('groupName', 'workers')}#{i}", "Resources": resources,
                           "Labels": labels, "launchable": True}) for i in range(count)]
    return nodes


def _json_resources(value: Any) -> dict[str, Any]:
    """KubeRay's ``rayStartParams.resources``: JSON, usually quoted once more (``'"{\\"GPU\\": 1}"'``)."""
    import json

    for _ in range(3):
        if not isinstance(value, str):
            break
        value = json.loads(value.strip().strip("'"))
    return value if isinstance(value, dict) else {}


def _cpus(value: Any) -> float:
    if value is None:
        return 0.0
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


# --- the check -----------------------------------------------------------------------------------


def models_to_place(study: Study) -> list[ModelSpec]:
    """The study's models plus an LLM judge that is not one of them (it runs in the judging stage)."""
    models = list(study.models)
    spec = study.evaluation
    if spec.judge == "llm" and spec.judge_model is not None and not isinstance(spec.judge_model, str):
        judge = spec.judge_model_spec(study)
        if judge.name not in {m.name for m in models}:
            models.append(judge)
    return models


def need(model: ModelSpec) -> Need:
    """The GPUs a vLLM model needs (see the module docstring for the rule)."""
    opts = model.options
    return Need(model.name, opts.tensor_parallel_size, opts.pipeline_parallel_size, opts.concurrency,
                opts.accelerator_type)


def require_gpu_from_env() -> bool:
    return os.environ.get(REQUIRE_GPU_ENV, "").strip().lower() in {"1", "true", "yes"}


def check_placement(
    study: Study, nodes: Iterable[Node | Mapping[str, Any]], *, require_gpu: bool = False,
    models: Sequence[ModelSpec] | None = None,
) -> Placement:
    """Refuse, with one `EngineError` naming every model that cannot be placed, before work starts.

    `nodes`: the cluster's nodes (`cluster_nodes()`, or `ray.nodes()` entries, or `Node`s).
    `models`: what to check (default: `models_to_place(study)`). Returns the `Placement`.
    """
    nodes = as_nodes(nodes)
    models = list(models) if models is not None else models_to_place(study)
    vllm = [m for m in models if m.engine == "vllm"]
    cluster_gpus = sum(n.gpus for n in nodes)
    if cluster_gpus == 0:
        demanded = vllm if require_gpu else [m for m in vllm if m.options.accelerator_type]
        if demanded:
            why = ("GPUs are required: --require-gpu or VALUELEX_REQUIRE_GPU" if require_gpu
                   else "options.accelerator_type asks for a GPU type")
            lines = [f"model {m.name} needs {need(m).describe()} ({why}), but the cluster has no GPU "
                     f"({_cluster_summary(nodes)})" for m in demanded]
            raise EngineError(f"study {study.name}: cannot place {len(demanded)} model(s):\n" + "\n".join(lines))
        return Placement(use_gpu=False)
    problems = [p for m in vllm if (p := _problem(need(m), nodes))]
    if problems:
        raise EngineError(
            f"study {study.name}: cannot place {len(problems)} model(s) on this cluster "
            f"({_cluster_summary(nodes)}):\n" + "\n".join(problems)
            + "\n(rule: tensor-parallel GPUs share one node; pipeline stages may span nodes; "
              "see valuelex/placement.py)"
        )
    return Placement(use_gpu=True, needs={m.name: need(m) for m in vllm})


def _eligible(n: Need, nodes: Sequence[Node]) -> list[Node]:
    return [x for x in nodes if n.accelerator_type is None or n.accelerator_type in x.accelerator_types]


def _problem(n: Need, nodes: Sequence[Node]) -> str | None:
    eligible = _eligible(n, nodes)
    head = f"model {n.model} needs {n.describe()}"
    if not eligible:
        have = sorted({t for x in nodes for t in x.accelerator_types}) or ["none labelled"]
        return f"{head}, but no node has accelerator type {n.accelerator_type} (the cluster has: {', '.join(have)})"
    largest = max(x.gpus for x in eligible)
    if largest < n.gpus_per_stage:
        kind = f" {n.accelerator_type}" if n.accelerator_type else ""
        return (f"{head}, but the largest{kind} node has {largest} GPU(s): tensor_parallel_size "
                f"{n.gpus_per_stage} must fit in one node (lower it, or raise pipeline_parallel_size)")
    if _fit(n, _capacity(eligible)) is not None:
        return None
    if _fit(n, {x.node_id: (x.gpus, math.inf) for x in eligible}) is not None:
        return f"{head}, but the nodes with room for it lack CPUs: each GPU of a replica needs one CPU beside it"
    slots = sum(x.gpus // n.gpus_per_stage for x in eligible)
    return (f"{head}, but the cluster holds only {slots} group(s) of {n.gpus_per_stage} GPU(s) on one node "
            f"({sum(x.gpus for x in eligible)} eligible GPU(s) in all)")


def _capacity(nodes: Iterable[Node]) -> dict[str, tuple[int, float]]:
    """Free (GPUs, CPUs) per node; a GPU node that reports no CPUs is not CPU-bound (unknown)."""
    return {x.node_id: (x.gpus, x.cpus if x.cpus > 0 else math.inf) for x in nodes}


def _fit(n: Need, free: dict[str, tuple[int, float]]) -> dict[str, tuple[int, float]] | None:
    """Free capacity after placing all of `n` (best fit per stage), or None when it does not fit."""
    free = dict(free)
    for _ in range(n.stages * n.replicas):
        fits = [(g, -c, k) for k, (g, c) in free.items() if g >= n.gpus_per_stage and c >= n.gpus_per_stage]
        if not fits:
            return None
        _, _, key = min(fits)
        gpus, cpus = free[key]
        free[key] = (gpus - n.gpus_per_stage, cpus - n.gpus_per_stage)
    return free


# --- the schedule --------------------------------------------------------------------------------


def schedule(
    study: Study, nodes: Iterable[Node | Mapping[str, Any]], *, require_gpu: bool = False,
) -> list[list[ModelSpec]]:
    """The study's models in waves: the models of a wave fit on the cluster's GPUs at the same time.

    Checks the placement first (raises `EngineError` like `check_placement`). Then, on a GPU
    cluster, packs the vLLM models first-fit-decreasing by GPU need: the largest models go first,
    each wave is filled with whatever smaller models still fit beside them, and a model that needs
    the whole cluster gets a wave of its own. On a CPU-only cluster each vLLM model has a wave of
    its own (one CPU engine at a time). API models need no GPU and join the first wave. Within a
    wave, models keep the study's order. Every model appears exactly once.
    """
    nodes = as_nodes(nodes)
    placement = check_placement(study, nodes, require_gpu=require_gpu, models=study.models)
    api = [m for m in study.models if m.engine != "vllm"]
    vllm = [m for m in study.models if m.engine == "vllm"]
    if not placement.use_gpu:
        waves = [[m] for m in vllm]
    else:
        order = sorted(vllm, key=lambda m: -need(m).gpus)  # stable: ties keep the study's order
        capacity = _capacity(nodes)
        packed: list[tuple[dict[str, tuple[int, float]], list[ModelSpec]]] = []
        for model in order:
            n = need(model)
            eligible = {x.node_id for x in _eligible(n, nodes)}
            for wave_free, members in packed:
                left = _fit(n, {k: v for k, v in wave_free.items() if k in eligible})
                if left is not None:
                    wave_free.update(left)
                    members.append(model)
                    break
            else:
                left = _fit(n, {k: v for k, v in capacity.items() if k in eligible})
                assert left is not None, "check_placement accepted a model that fits no empty cluster"
                packed.append(({**capacity, **left}, [model]))
        position = {m.name: i for i, m in enumerate(study.models)}
        waves = [sorted(members, key=lambda m: position[m.name]) for _, members in packed]
    if api:
        waves = [api + waves[0], *waves[1:]] if waves else [api]
    return waves


def _cluster_summary(nodes: Sequence[Node]) -> str:
    if not nodes:
        return "no nodes"
    counts: dict[str, int] = {}
    for x in nodes:
        label = x.describe() + (" (launchable)" if x.launchable else "")
        counts[label] = counts.get(label, 0) + 1
    parts = [f"{c} x {label}" for label, c in sorted(counts.items())]
    return f"{len(nodes)} node(s): " + ", ".join(parts)
