"""Where the work runs: connect to the Ray cluster named by RAY_ADDRESS, or start a local one.

Two runs started at the same moment used to race each other starting the local Ray (one crashed
with a raw traceback): starting or joining is serialised on this host by an flock in the temp
folder, retried a few times, and a failure is an `EngineError` that says what to do.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Iterator

from valuelex import console
from valuelex.errors import EngineError

INIT_ATTEMPTS = 3
INIT_LOCK_TIMEOUT_S = 300.0
log = logging.getLogger("valuelex.runtime")


def ensure_ray() -> None:
    """Initialise Ray once. Under `ray job submit` RAY_ADDRESS points at the cluster; else local."""
    import ray

    if ray.is_initialized():
        return
    kwargs: dict = {"logging_level": logging.WARNING, "log_to_driver": os.environ.get("VALUELEX_RAY_LOGS") == "1"
                                                             or console.capturing()}
    address = os.environ.get("RAY_ADDRESS")
    if not address:
        kwargs["include_dashboard"] = False
    where = f"the Ray cluster at {address}" if address else "a local Ray"
    with ray_init_lock():
        for attempt in range(1, INIT_ATTEMPTS + 1):
            try:
                ray.init(**kwargs)
                break
            except Exception as exc:  # Ray raises many kinds here (ConnectionError, RuntimeError, TimeoutError)
                with contextlib.suppress(Exception):
                    ray.shutdown()
                if attempt == INIT_ATTEMPTS:
                    raise EngineError(f"cannot start {where} ({INIT_ATTEMPTS} attempts): {type(exc).__name__}: "
                                      f"{exc}".rstrip() + "; check `ray status`, or set RAY_ADDRESS") from None
                log.warning("starting %s failed (%s: %s); trying again", where, type(exc).__name__, exc)
                time.sleep(2.0 * attempt)
    quiet_ray_data()


@contextlib.contextmanager
def ray_init_lock(timeout_s: float = INIT_LOCK_TIMEOUT_S) -> Iterator[None]:
    """One `ray.init` at a time on this host (an flock, let go when the process dies)."""
    path = os.path.join(tempfile.gettempdir(), "valuelex-ray-init.lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:  # no usable temp folder: unserialised, as before
        yield
        return
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EngineError(f"Ray: another process on this host has been starting Ray for over "
                                      f"{timeout_s:g} s ({path}); try again when it is up") from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)


def quiet_ray_data() -> None:
    """Our own `rows done / total` line replaces Ray Data's per-operator progress logging."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.enable_operator_progress_bars = False
    context.enable_auto_log_stats = False
    for name in ("ray.data", "ray.llm"):
        logging.getLogger(name).setLevel(logging.WARNING)
