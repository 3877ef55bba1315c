"""The report stage: a finished (or partial) run -> one self-contained ``index.html`` plus figure files.

    build_report("runs/local", "runs/local/report")   # or an s3:// run root

Writes ``<out_dir>/index.html`` (figures embedded as data: URIs, CSS inline, no script, opens from
disk with no network), ``<out_dir>/figures/<id>.svg|png`` and ``<out_dir>/.valuelex-report.json``,
the list of files it wrote: a later report removes only stale figures listed there, never a file it
did not write. Sections, in reading order:

- Can these scores be trusted? (``quality/``, `valuelex.report.reliability`): verdicts per model x
  dimension (``table-verdicts-<system>``), variance components (``fig-variance-<system>``), the
  D-study (``fig-dstudy-<system>``), consistency and judge tables; a notice
  (``notice-reliability-missing``) when the reliability stage did not run;
- Does it measure what it claims? (``taxonomy.json`` ``validity``, ``quality/taxonomy_*``, ``quality/response_bias``,
  `valuelex.report.validity`): the taxonomy's replication verdict and the scores' response bias;
- Value construction (§4.1): scree plot + parallel analysis (``fig-scree``), keyword clusters
  (``fig-clusters``, Fig. 2a/c), value system diagram (``fig-system``, Fig. 2b/d), subdimension
  correlations (``fig-subcorr``, Fig. 5), word stability (``fig-stability``); ids get ``-<label>``
  for each labelled taxonomy (e.g. ``fig-scree-plm``);
- Value evaluation (§4.2): per-model scores (``fig-scores``, Fig. 3), by training method
  (``fig-by-training``) and family (``fig-by-family``), size trend (``fig-size-trend``), the value
  systems side by side (``fig-systems``, Fig. 4);
- Model comparisons (only when ``valuelex compare`` wrote ``comparisons/``): difference plots
  (``fig-compare-<a>-vs-<b>-<system>``) and tables, size trends by training method;
- Case study (§4.3): sample answers per model (``table-cases``, Table 1);
- Run facts: stages and wall time, study spec, counts and invalid reasons, judge and agreement,
  software versions.

A missing stage never fails the report: its section carries a visible notice (``notice-construction-missing``,
``notice-evaluation-missing``, ``notice-cases-missing``, ...) and the rest is reported.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from valuelex._version import __version__
from valuelex.errors import StoreError, StudyError
from valuelex.redact import Redactor
from valuelex.report.figures import FigureWriter, Notice, Section
from valuelex.report.load import RunData, load_run
from valuelex.runner import RunContext, StageResult
from valuelex.store import layout

log = logging.getLogger(__name__)

SECTIONS = (("reliability", "Can these scores be trusted?"), ("validity", "Does it measure what it claims?"),
            ("construction", "Value construction"),
            ("evaluation", "Value evaluation"),
            ("comparison", "Model comparisons"), ("cases", "Case study: sample answers"), ("facts", "Run facts"))


def _builders(cases_per_model: int) -> list[tuple[str, str, Callable[[RunData, FigureWriter], Section | None]]]:
    from valuelex.report.cases import cases_section
    from valuelex.report.comparison import comparison_section
    from valuelex.report.construction import construction_section
    from valuelex.report.evaluation import evaluation_section
    from valuelex.report.facts import facts_section
    from valuelex.report.reliability import reliability_section
    from valuelex.report.validity import validity_section

    funcs = {
        "reliability": reliability_section,
        "validity": validity_section,
        "construction": construction_section,
        "evaluation": evaluation_section,
        "comparison": comparison_section,  # None (left out) when the run has no comparisons/
        "cases": lambda data, _writer: cases_section(data, cases_per_model),
        "facts": lambda data, _writer: facts_section(data),
    }
    return [(sid, title, funcs[sid]) for sid, title in SECTIONS]


def _card_text(section: Section) -> str:
    figures = len(section.figure_ids())
    tables = sum(1 for i in section.items if i.kind == "table")
    notices = [n for n in section.notices() if n.level in ("missing", "error")]
    if section.status == "missing":
        return notices[0].text if notices else "missing"
    parts = [f"{figures} figure(s)" if figures else "", f"{tables} table(s)" if tables else ""]
    text = ", ".join(p for p in parts if p) or "no figures"
    if notices:
        text += f"; {len(notices)} part(s) missing or failed"
    return text


def _title(data: RunData) -> str:
    if data.study and data.study.get("name"):
        return str(data.study["name"])
    return data.uri.rstrip("/").rsplit("/", 1)[-1] or data.uri


MANIFEST = ".valuelex-report.json"
"""In the report folder: the files the last report wrote, so the next one removes only its own leftovers."""
EMBEDS = ("svg", "png")


def check_embed(embed: str) -> None:
    """Refuse an unknown ``--embed`` before anything is written."""
    if embed not in EMBEDS:
        raise StudyError(f"--embed: must be svg or png (got {embed!r})")


def _previous_files(out: Path) -> list[str]:
    """The figure files an earlier report listed in its manifest (none when it has no readable one)."""
    try:
        files = json.loads((out / MANIFEST).read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [f for f in files if isinstance(f, str)]


def _clean_figures(writer: FigureWriter, out: Path) -> None:
    """Remove figure files an earlier report wrote that this one did not; never a file of the user's."""
    keep = {f for files in writer.written.values() for f in files}
    for relpath in _previous_files(out):
        parts = PurePosixPath(relpath).parts
        if len(parts) != 2 or parts[0] != "figures" or Path(relpath).suffix not in (".svg", ".png"):
            continue  # a manifest edited by hand must not reach outside figures/
        if relpath not in keep:
            (out / relpath).unlink(missing_ok=True)


def _write_manifest(writer: FigureWriter, out: Path) -> None:
    files = sorted(f for files in writer.written.values() for f in files)
    (out / MANIFEST).write_text(json.dumps({"files": ["index.html", *files]}, indent=2) + "\n", encoding="utf-8")


def default_out(run_uri: str) -> str:
    """RUN/report for a local run; ./report-<run name> for an s3:// one (the report is a local folder)."""
    if run_uri.startswith("s3://"):
        return f"{layout.REPORT}-{run_uri.rstrip('/').rsplit('/', 1)[-1]}"
    return str(Path(run_uri.removeprefix("file://")) / layout.REPORT)


@dataclass(frozen=True)
class ReportStage:
    """The report as a stage of the study: ``index.html`` and figures into `out` (default: `default_out`)."""

    out: str | None = None
    embed: str = "svg"
    cases: int = 2
    name: str = "report"

    def uses_engines(self, study: Any) -> bool:
        return False

    def run(self, ctx: RunContext) -> StageResult:
        try:
            summary = build_report(ctx.store.uri, self.out or default_out(ctx.store.uri), embed=self.embed,
                                   cases_per_model=self.cases)
        except OSError as exc:
            raise StoreError(f"cannot write the report: {exc}") from exc
        return StageResult({k: v for k, v in summary.items() if k != "figures"}
                           | {"figures": sorted(summary["figures"])})


def build_report(run_uri: str, out_dir: str, *, embed: str = "svg", cases_per_model: int = 2,
                 title: str | None = None) -> dict[str, Any]:
    """Write the report of the run at `run_uri` (local path or s3://) into the local folder `out_dir`.

    `embed`: how figures sit in the page, ``"svg"`` (sharp at any zoom) or ``"png"``; both files are
    written either way. `cases_per_model`: sentence completions per model in the case table.
    Returns ``{"index", "figures" (id -> files), "sections" (id -> ok|partial|missing|error),
    "notices" (the missing / failed parts), "problems" (unreadable inputs), "seconds"}``.
    """
    check_embed(embed)
    started = time.monotonic()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = load_run(run_uri)
    writer = FigureWriter(out, embed)
    sections: list[Section] = []
    for sid, section_title, build in _builders(cases_per_model):
        try:
            if (section := build(data, writer)) is not None:
                sections.append(section)
        except Exception as exc:  # one broken section must not hide the others
            log.exception("report: section %s failed", sid)
            sections.append(Section(id=sid, title=section_title, status="error", items=[Notice(
                str(Redactor.from_spec(data.study)(f"This section could not be built: {type(exc).__name__}: {exc}")),
                "error", id=f"notice-{sid}-error")]))
    _clean_figures(writer, out)
    overview_items = [Notice(p, "error", id=f"notice-problem-{i}") for i, p in enumerate(data.problems)]
    overview = [{"id": s.id, "title": s.title, "status": s.status, "text": _card_text(s)} for s in sections]
    seconds = round(time.monotonic() - started, 2)
    from valuelex.report.html import render

    page = render(
        title=title or _title(data), run_uri=data.uri, valuelex_version=__version__,
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), seconds=seconds,
        sections=sections, overview=overview, overview_items=overview_items,
    )
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    _write_manifest(writer, out)
    notices = [{"section": s.id, "id": n.id, "level": n.level, "text": n.text}
               for s in sections for n in s.notices() if n.level in ("missing", "error")]
    summary = {
        "index": str(index), "figures": dict(writer.written), "sections": {s.id: s.status for s in sections},
        "notices": notices, "problems": list(data.problems), "bytes": index.stat().st_size,
        "seconds": round(time.monotonic() - started, 2),
    }
    log.info("report: wrote %s (%d figures, %.1f s)", index, len(writer.written), summary["seconds"])
    return summary
