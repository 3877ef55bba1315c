"""What reaches the terminal: ValueLex's lines, progress, warnings and errors; everything else to log files.

Quiet (the CLI's default, `configure(verbose=False)`): while a stage runs (`capture`), the process's
stdout and stderr file descriptors point at the stage's log file, ``OUT/logs/<stage>.log`` (the run
store names it, `RunStore.log_file`), so Ray's, vLLM's, transformers' and tqdm's own output and
Python warnings land there, including what child processes started meanwhile print; Ray is then
started with its workers' output forwarded to this process (and so into the log). ValueLex's own
log records (INFO and up from the ``valuelex`` loggers) and progress lines are written to a
duplicate of the original stderr, `terminal()`; the log records go into the log file too.
Verbose (``-v``): nothing is redirected.

Library use (no `configure`) changes nothing: output goes where the caller's process sends it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from valuelex.store import RunStore

_quiet = False
_terminal: TextIO | None = None


class _Deferred:
    """A stand-in store whose log file is one given temporary path (see `capture`)."""

    def __init__(self, path: str):
        self.path = path

    def log_file(self, name: str) -> tuple[str, Callable[[], None]]:
        return self.path, lambda: None


class _TerminalHandler(logging.StreamHandler):
    """A handler whose stream is the terminal of the moment (`terminal()`), also while captured."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = terminal()
        super().emit(record)


class _LogFileHandler(logging.StreamHandler):
    """While a stage is captured, ValueLex's records also go to its log file (fd 2 then points there)."""

    def emit(self, record: logging.LogRecord) -> None:
        if _terminal is not None:
            self.stream = sys.stderr
            super().emit(record)


def configure(*, verbose: bool) -> None:
    """The CLI's choice: quiet stages (output to their log files) unless `verbose`; ValueLex's log
    records on the terminal (INFO and up; DEBUG too when verbose)."""
    global _quiet
    _quiet = not verbose
    logger = logging.getLogger("valuelex")
    if not any(isinstance(h, _TerminalHandler) for h in logger.handlers):
        handler = _TerminalHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s" if verbose else "%(message)s"))
        logger.addHandler(handler)
        in_log = _LogFileHandler()
        in_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(in_log)
        logger.propagate = False
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    if verbose:
        os.environ.setdefault("VALUELEX_RAY_LOGS", "1")


def capturing() -> bool:
    """Whether a stage's output is being redirected into its log file now."""
    return _terminal is not None


@contextlib.contextmanager
def results_only_on_stdout() -> Iterator[None]:
    """Quiet mode: while a command runs its stages, fd 1 points at fd 2, so that only the command's
    result (its summary or ``--json``) reaches stdout: library and worker output that arrives between
    two stages' captures (Ray forwards workers' lines to the driver's stdout) goes to stderr."""
    if not _quiet:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def terminal() -> TextIO:
    """The stream for lines meant for the person at the terminal."""
    return _terminal if _terminal is not None else sys.stderr


@contextlib.contextmanager
def capture(store: RunStore | Any, name: str, *, only_on_success: bool = False) -> Iterator[str | None]:
    """Redirect fds 1 and 2 into ``logs/<name>.log`` of the run while the block runs (quiet mode only;
    nested captures keep the outer file). Yields the local log path, or None when not redirecting.

    `only_on_success`: the output goes to a temporary file, added to the run's log only when the
    block succeeds (the checks before a run must write nothing into a run they refuse).
    """
    global _terminal
    if not _quiet or _terminal is not None:
        yield None
        return
    if only_on_success:
        handle, path = tempfile.mkstemp(prefix=f"valuelex-{name}-", suffix=".log")
        os.close(handle)
        try:
            with capture(_Deferred(path), name) as inner:
                yield inner
        except BaseException:
            os.unlink(path)
            raise
        final, publish = store.log_file(name)
        with open(path, "rb") as new, open(final, "ab") as log:
            log.write(new.read())
        os.unlink(path)
        publish()
        return
    path, publish = store.log_file(name)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = os.dup(1), os.dup(2)
    _terminal = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(target, 1)
    os.dup2(target, 2)
    os.close(target)
    try:
        yield path
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        _terminal.close()
        _terminal = None
        publish()
