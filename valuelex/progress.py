"""Progress of a generation stage, per model: rows done / grid, rows/s, completion tokens/s, ETA.

On a terminal each active model has one live tqdm line (the models of a wave run side by side, one
line each); in a pipe or a CI log a plain line is printed every `interval_s` seconds
(``VALUELEX_PROGRESS_S``, default 10) and once at the end. A ticker thread refreshes both while the
engine works, so the elapsed time and the rate keep moving between result batches.

The figures, for a model whose stage started ``t`` seconds ago with ``skipped`` rows already stored:

- rows/s = (done - skipped) / t, the rows this run generated per second;
- tokens/s = completion tokens of those rows / t;
- ETA = (total - done) / (rows/s), unknown ("?") until the first batch has landed.

Lines go to `valuelex.console.terminal()`: the real terminal even while a stage's output is
redirected into its log file.
"""

from __future__ import annotations

import os
import threading
import time

from tqdm import tqdm

from valuelex import console

DEFAULT_INTERVAL_S = 10.0
TTY_REFRESH_S = 1.0
MIN_COLUMNS, FALLBACK_COLUMNS, FALLBACK_ROWS = 40, 120, 40
_positions: set[int] = set()
_lock = threading.Lock()


def _columns(stream: object) -> int:
    try:
        size = os.get_terminal_size(stream.fileno())  # type: ignore[attr-defined]
        return size.columns if size.lines else 0
    except (AttributeError, OSError, ValueError):
        return 0


def interval_from_env() -> float:
    try:
        return max(0.1, float(os.environ.get("VALUELEX_PROGRESS_S", DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    whole = round(seconds)
    if whole >= 3600:
        return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
    return f"{whole // 60}:{whole % 60:02d}"


class Progress:
    """One model's progress in one stage; `advance` after each stored batch, `close` at the end."""

    def __init__(self, label: str, total: int, done: int = 0, *, interval_s: float | None = None):
        self.label, self.total, self.done, self.skipped = label, total, done, done
        self.tokens = 0
        self.start = time.monotonic()
        self.stream = console.terminal()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s = interval_s if interval_s is not None else interval_from_env()
        self._stop = threading.Event()
        self._bar: tqdm | None = None
        self._position = -1
        if self.tty:
            with _lock:
                self._position = min(set(range(len(_positions) + 1)) - _positions)
                _positions.add(self._position)
            sized = _columns(self.stream) >= MIN_COLUMNS  # a pty of unknown size reports 0 columns
            self._bar = tqdm(
                total=total,
                initial=done,
                desc=label,
                unit="row",
                file=self.stream,
                position=self._position,
                leave=True,
                dynamic_ncols=sized,
                ncols=None if sized else FALLBACK_COLUMNS,
                nrows=None if sized else FALLBACK_ROWS,
                mininterval=0.2,
                bar_format="{desc} {bar} {n_fmt}/{total_fmt} rows{postfix}",
            )
        self.show()
        self._ticker = threading.Thread(target=self._tick, name=f"progress {label}", daemon=True)
        self._ticker.start()

    # --- the figures -------------------------------------------------------------------------------

    def rates(self) -> tuple[float, float, float | None]:
        """(rows/s, completion tokens/s, ETA seconds or None) of this run so far (module docstring)."""
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rows_s = (self.done - self.skipped) / elapsed
        eta = (self.total - self.done) / rows_s if rows_s > 0 else None
        return rows_s, self.tokens / elapsed, eta

    def line(self) -> str:
        rows_s, tokens_s, eta = self.rates()
        elapsed = time.monotonic() - self.start
        return (
            f"[{self.label}] {self.done}/{self.total} rows, {rows_s:.2f} rows/s, {tokens_s:.1f} tok/s, "
            f"ETA {format_eta(eta)} ({elapsed:.0f}s)"
        )

    # --- updates -----------------------------------------------------------------------------------

    def advance(self, rows: int, tokens: int = 0) -> None:
        self.done += rows
        self.tokens += tokens
        if self._bar is not None:  # a pipe gets its line on the next tick, not one per batch
            self._bar.update(rows)
            self.show()

    def show(self) -> None:
        if self._bar is not None:
            rows_s, tokens_s, eta = self.rates()
            self._bar.set_postfix_str(f"{rows_s:.2f} rows/s, {tokens_s:.1f} tok/s, ETA {format_eta(eta)}", refresh=True)
        else:
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def _tick(self) -> None:
        wait = TTY_REFRESH_S if self.tty else self.interval_s
        while not self._stop.wait(wait):
            self.show()

    def close(self) -> None:
        self._stop.set()
        self._ticker.join(timeout=5)
        if self._bar is not None:
            self.show()
            self._bar.close()
            with _lock:
                _positions.discard(self._position)
        else:
            self.show()
