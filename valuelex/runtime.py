"""Where the work runs: connect to the Ray cluster named by RAY_ADDRESS, or start a local one."""

from __future__ import annotations

import logging
import os


def ensure_ray() -> None:
    """Initialise Ray once. Under `ray job submit` RAY_ADDRESS points at the cluster; else local."""
    import ray

    if ray.is_initialized():
        return
    kwargs: dict = {"logging_level": logging.WARNING, "log_to_driver": os.environ.get("VALUELEX_RAY_LOGS") == "1"}
    if not os.environ.get("RAY_ADDRESS"):
        kwargs["include_dashboard"] = False
    ray.init(**kwargs)
    quiet_ray_data()


def quiet_ray_data() -> None:
    """Our own `rows done / total` line replaces Ray Data's per-operator progress logging."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.enable_operator_progress_bars = False
    context.enable_auto_log_stats = False
    for name in ("ray.data", "ray.llm"):
        logging.getLogger(name).setLevel(logging.WARNING)
