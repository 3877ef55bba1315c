"""Where the work runs: connect to the Ray cluster named by RAY_ADDRESS, or start a local one."""

from __future__ import annotations

import logging
import os


def ensure_ray() -> None:
    """Initialise Ray once. Under `ray job submit` RAY_ADDRESS points at the cluster; else local."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")  # our own progress line is enough
    kwargs: dict = {"logging_level": logging.WARNING, "log_to_driver": os.environ.get("VALUELEX_RAY_LOGS") == "1"}
    if not os.environ.get("RAY_ADDRESS"):
        kwargs["include_dashboard"] = False
    ray.init(**kwargs)
