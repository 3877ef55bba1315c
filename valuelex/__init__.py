"""ValueLex: what values do LLMs hold, measured the way psychologists measure people.

The package follows the study's data flow: spec -> grid -> engines -> store -> construct ->
evaluate -> report. The public API (`valuelex.api`, imported on first use so that reading a
study file stays light):

- `run_study(study_or_path, out=None, stages=...)`: run a study's stages in order;
- `open_run(uri)`: a run's `RunStore` -- scores, judgments, taxonomies, comparisons as pandas/Arrow;
- `load_study(path)`, `Study`: the validated study file;
- `compare_models` (`valuelex.compare.compare`: the submodule keeps its own name), `compare_groups`,
  `size_trend`, `power`: did fine-tuning move the values, and how far must M be raised.
"""

from __future__ import annotations

import importlib
from typing import Any

from valuelex._version import __version__

_EXPORTS = {  # public name -> (module, attribute)
    **{name: ("valuelex.api", name) for name in ("run_study", "open_run", "report", "STAGES", "RunResult")},
    "RunStore": ("valuelex.store", "RunStore"), "load_study": ("valuelex.spec", "load_study"),
    "Study": ("valuelex.spec", "Study"), "compare_models": ("valuelex.compare", "compare"),
    **{name: ("valuelex.compare", name) for name in ("compare_groups", "size_trend", "power")},
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attribute = _EXPORTS[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'valuelex' has no attribute {name!r}")
