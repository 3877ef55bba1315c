"""Reports (paper section 4): a run's output root -> one self-contained HTML page and its figure files.

Modules: `load` (read whatever the stages wrote, never failing), `figures` (report items and
matplotlib plumbing), one module per figure group -- `construction` (scree, clusters, value system,
correlations, stability), `evaluation` (Fig. 3, groupings, size trend), `systems` (Fig. 4),
`comparison` (what `valuelex compare` wrote), `cases` (Table 1), `facts` (spec, counts, judge, versions,
wall time) -- then `html` (the Jinja2 page) and `stage` (`build_report`).

`build_report` is imported lazily so that importing the package does not load matplotlib.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_report"]


def __getattr__(name: str) -> Any:
    if name == "build_report":
        from valuelex.report.stage import build_report

        return build_report
    raise AttributeError(f"module 'valuelex.report' has no attribute {name!r}")
