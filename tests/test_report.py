"""The report on synthetic runs written by the real stages: opened in headless Chromium, escaped, partial runs.

The run is made the way production makes it: elicitation and completion rows are the study's real
grid rows (`grid.requests` + `generate.conform`) with written answers; the construction stage builds the
taxonomy (with a deterministic planted embedder instead of MiniLM) and the evaluation stage judges and
scores three value systems (with a deterministic keyword judge, and no engine: the completions are
already stored). Model text carries HTML and a script, which must reach the page as text.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tests import helpers
from valuelex import grid
from valuelex.construct.synthetic import PLANTED, planted_truth, synthetic_elicitation
from valuelex.evaluate import judgments as jt
from valuelex.generate import conform
from valuelex.spec import Study
from valuelex.store import OutputRoot, RunStore

CHROMIUM = "/usr/bin/chromium"
PAYLOAD = '<script>alert(1)</script><b>bold</b> & <img src=x onerror="alert(2)">'
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;"
CONSTRUCTION_FIGURES = ["fig-scree", "fig-clusters", "fig-system", "fig-subcorr", "fig-stability"]
EVALUATION_FIGURES = ["fig-scores", "fig-by-training", "fig-by-family", "fig-size-trend", "fig-systems"]
PLM_FIGURES = [f"{f}-plm" for f in CONSTRUCTION_FIGURES]
MODELS = [  # name, size_b, training, family, prompting
    ("llama2-7b", 7, "pretrained", "llama2", "completion"),
    ("llama2-13b", 13, "pretrained", "llama2", "completion"),
    ("tulu2-7b", 7, "instruction-tuned", "tulu2", "chat"),
    ("tulu2-13b", 13, "instruction-tuned", "tulu2", "chat"),
    ("llama2-70b-chat", 70, "aligned", "llama2", "chat"),
    ("baichuan2-13b-chat", 13, "aligned", "baichuan2", "chat"),
]
STUDY = {
    "name": "synthetic", "description": "report test <b>study</b>",
    "models": [{"name": n, "source": f"org/{n}", "size_b": s, "training": t, "family": f, "prompting": p}
               for n, s, t, f, p in MODELS],
    "decoding": [{"name": "t0.7", "temperature": 0.7, "top_p": 0.9, "max_tokens": 64},
                 {"name": "t1.0", "temperature": 1.0, "top_p": 1.0, "max_tokens": 64}],
    "samples": 2, "seed": 1, "prompts": {"stems": ["s01", "s13", "s38", "s39"]},
    "construction": {"unit": "answer", "k_rule": "fixed", "k": 3, "bootstrap": 5, "parallel_iterations": 10},
    "evaluation": {"systems": ["valuelex", "schwartz", "mft"], "bootstrap_resamples": 200},
}
COMPLETIONS = ["to help people find accurate answers.", "being kind and patient with everyone.",
               "nothing at all, really.", "to be fair and honest with every user.",
               "the weather in Paris is nice in spring.", "knowledge and precision matter most to me."]
TRUTH = planted_truth(PLANTED)
FACTORS = sorted(set(TRUTH.values()))


def planted_embedder(words: list[str]) -> np.ndarray:
    """Unit vectors: the planted factor's axis plus word-seeded noise (a stand-in for MiniLM)."""
    out = []
    for word in words:
        rng = np.random.default_rng(int(hashlib.md5(word.encode()).hexdigest()[:8], 16))
        vector = rng.normal(0, 0.35, 16)
        if word in TRUTH:
            vector[FACTORS.index(TRUTH[word])] += 1
        out.append(vector / np.linalg.norm(vector))
    return np.asarray(out, dtype=np.float32).reshape(len(words), 16)


class KeywordJudge:
    """A deterministic judge: scores rise with training; 'weather' answers are unparseable."""

    kind = "test"
    name = "test:keyword"

    def key(self, system: Any) -> str:
        return f"{self.name}@{system.fingerprint()}"

    def judge(self, completions: list[dict], system: Any, sink: Any) -> None:
        rows = []
        for row in completions:
            text = (row.get("response") or "").strip()
            common = {"judge": self.name, "judge_key": self.key(system)}
            if not text:
                rows.append(jt.judgment(row, system, scores=None, reason="empty response", **common))
            elif "weather" in text:
                rows.append(jt.judgment(row, system, scores=None, reason="unparseable judge answer: <no JSON>",
                                        **common))
            else:
                bias = {"pretrained": 0, "instruction-tuned": 1, "aligned": 2}[row["training"]]
                scores = {}
                for key in system.leaf_keys():
                    noise = int(hashlib.md5(f"{key}|{text}|{row['model']}".encode()).hexdigest()[:4], 16) % 3
                    scores[key] = min(6, max(0, 1 + bias + noise))
                rows.append(jt.judgment(row, system, scores=scores, **common))
        sink(rows)


def _rows(study: Study, stage: str, answer: Any) -> pa.Table:
    rows = []
    for index, model in enumerate(study.models):
        for request in grid.requests(study, stage, model):
            response, error = answer(index, request)
            rows.append({**request, "response": response, "error": error, "engine": "test",
                         "n_prompt_tokens": len(request["prompt"].split()),
                         "n_completion_tokens": len((response or "").split()),
                         "finish_reason": None if error else ("length" if len(response or "") > 120 else "stop")})
    return conform(pa.Table.from_pylist(rows))


def write_elicitation(out: str) -> Study:
    study = Study.model_validate(STUDY)
    root = OutputRoot(out)
    RunStore(out).write_study(study)
    answers = synthetic_elicitation(12, items=15, samples=2, configs=("t0.7", "t1.0"), strength=2.0,
                                    p_mention=0.5, seed=3)
    lookup = {(r["model"], r["config"], r["item_id"], r["sample"]): (r["response"], r["error"])
              for r in answers.to_pylist()}

    def elicited(index: int, row: dict) -> tuple[str | None, str | None]:
        if index == 2 and row["item_id"] == "q01" and row["sample"] == 0:
            return f"Accuracy, fairness and {PAYLOAD}", None
        return lookup[(f"m{index:05d}", row["config"], row["item_id"], row["sample"])]

    root.table("elicitation").write(_rows(study, "elicitation", elicited))
    return study


def write_completions(out: str, study: Study) -> None:
    def completed(index: int, row: dict) -> tuple[str | None, str | None]:
        if index == 2 and row["sample"] == 0 and row["config"] == "t0.7":
            return f"{PAYLOAD} is what I like", None
        if index == 1 and row["item_id"] == "s39" and row["sample"] == 1:
            return None, "EngineError: <b>out of memory</b>"
        k = (index + row["sample"] + 3 * (row["config"] == "t1.0") + int(row["item_id"][1:])) % (len(COMPLETIONS) + 1)
        return (COMPLETIONS[k] if k < len(COMPLETIONS) else ""), None

    OutputRoot(out).table("completions").write(_rows(study, "completion", completed))


def construct(out: str, study: Study, **overrides: Any) -> None:
    if overrides:
        study = Study.model_validate({**STUDY, "construction": {**STUDY["construction"], **overrides}})
    helpers.construct(study, out, embedder=planted_embedder, parallel=False)


def evaluate(out: str, study: Study) -> None:
    helpers.evaluate_stored(study, out, KeywordJudge())  # completions are stored: no engine, no Ray


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = str(tmp_path_factory.mktemp("run") / "full")
    study = write_elicitation(out)
    construct(out, study)
    construct(out, study, label="plm", filter={"training": ["pretrained", "instruction-tuned"]})
    write_completions(out, study)
    evaluate(out, study)
    return out


@pytest.fixture(scope="module")
def full_report(full_run: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, float]:
    from valuelex.report.stage import build_report

    out = tmp_path_factory.mktemp("report")
    started = time.monotonic()
    summary = build_report(full_run, str(out))
    seconds = time.monotonic() - started
    return summary, Path(summary["index"]).read_text(encoding="utf-8"), seconds


class Elements(HTMLParser):
    """Start tags of a page: (tag, attributes)."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def ids(self, tag: str) -> list[str]:
        return [a["id"] for t, a in self.tags if t == tag and a.get("id")]

    def count(self, tag: str) -> int:
        return sum(1 for t, _ in self.tags if t == tag)


def _copy_run(source: str, target: Path, skip: set[str]) -> str:
    shutil.copytree(source, target, ignore=lambda _d, names: [n for n in names if n in skip])
    return str(target)


# --- the full report ----------------------------------------------------------------------------


def test_full_report_has_every_figure_and_section(full_report: tuple[dict, str, float]) -> None:
    summary, html, seconds = full_report
    assert summary["sections"] == {"reliability": "missing", "validity": "partial", "construction": "ok",
                                   "evaluation": "ok", "cases": "ok", "facts": "ok"}
    # 12 respondents: split-half replication needs 20, which the validity section says instead of a number
    assert summary["problems"] == [] and [n["id"] for n in summary["notices"]] == [
        "notice-reliability-missing", "notice-validity-taxonomy-0", "notice-validity-plm-0", "notice-mtmm-missing"]
    page = Elements(html)
    validity = html.split('id="validity"', 1)[1].split('id="construction"', 1)[0]
    assert "needs at least 20 respondents" in validity and "this run has 12" in validity
    assert not re.search(r"\bnan\b", validity.lower()) and "table-centred-valuelex" in page.ids("table")
    assert "table-validity-taxonomy" in page.ids("table") and "explains" in validity
    # answers are the units: invariance across training is computed, with its sentence and fits
    assert "table-invariance-taxonomy-training" in page.ids("table")
    assert "Measurement invariance across training" in validity
    expected = CONSTRUCTION_FIGURES + PLM_FIGURES + EVALUATION_FIGURES
    assert sorted(page.ids("img")) == sorted(expected)
    assert page.count("img") == len(expected)  # the payload's <img> is text, not an element
    out = Path(summary["index"]).parent
    for fig_id in expected:
        assert summary["figures"][fig_id] == [f"figures/{fig_id}.svg", f"figures/{fig_id}.png"]
        assert (out / "figures" / f"{fig_id}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        ET.fromstring((out / "figures" / f"{fig_id}.svg").read_bytes())  # well-formed SVG
    for _, attrs in (t for t in page.tags if t[0] == "img"):
        src = attrs["src"] or ""
        assert src.startswith("data:image/svg+xml;base64,")  # self-contained: no file or network reference
        ET.fromstring(base64.b64decode(src.split(",", 1)[1]))
    for table in ("table-cases", "table-scores-valuelex", "table-size-trend", "table-stages", "table-versions",
                  "table-invalid", "table-taxonomy", "table-taxonomy-plm", "table-models"):
        assert table in page.ids("table"), table
    assert "ValueLex report: synthetic" in html
    assert "unparseable judge answer: &lt;no JSON&gt;" in html  # invalid judge rows and why
    assert "not recorded" in html  # construction and elicitation wall time are not recorded by the stages
    print(f"report built in {seconds:.1f} s")  # a speed figure, not an assertion: bench/ holds those


def test_model_text_is_escaped_everywhere(full_report: tuple[dict, str, float]) -> None:
    _, html, _ = full_report
    assert ESCAPED in html  # completion and elicitation answer, shown as text
    assert html.count(ESCAPED) >= 2
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in html
    assert "EngineError: &lt;b&gt;out of memory&lt;/b&gt;" in html  # error messages too
    assert "report test &lt;b&gt;study&lt;/b&gt;" in html  # and the spec
    lowered = html.lower()
    for raw in ("<script", "<img src=x", 'onerror="', "<b>bold", "<b>out of memory", "<b>study", "<i>"):
        assert raw not in lowered, raw
    assert "script-src" not in lowered and "default-src 'none'" in lowered  # CSP: no script, no network


# --- Chromium -----------------------------------------------------------------------------------


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed (apt-get install -y chromium)")
def test_report_opens_in_headless_chromium(full_report: tuple[dict, str, float], tmp_path: Path) -> None:
    summary, _, _ = full_report
    url = Path(summary["index"]).resolve().as_uri()
    dom = _chromium(tmp_path / "profile", "--enable-logging=stderr", "--v=0", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console  # no JavaScript at all, so no console message and no error
    assert "Refused to" not in dom.stderr  # nothing tried to run or load against the CSP
    page = Elements(dom.stdout)
    assert page.count("script") == 0
    expected = CONSTRUCTION_FIGURES + PLM_FIGURES + EVALUATION_FIGURES
    assert sorted(page.ids("img")) == sorted(expected)
    assert ESCAPED in dom.stdout  # the payload is a text node in the live DOM
    assert "notice-construction-missing" not in page.ids("div")

    shot = tmp_path / "report.png"
    result = _chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,4000",
                       "--hide-scrollbars", url)
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1280, 4000)
        colours = image.convert("L").resize((64, 200)).getextrema()
        assert colours[1] - colours[0] > 100  # not a blank page
    if keep := os.environ.get("VALUELEX_REPORT_ARTIFACTS"):
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "report.png")
        shutil.copytree(Path(summary["index"]).parent, Path(keep) / "report", dirs_exist_ok=True)


# --- partial runs -------------------------------------------------------------------------------


def test_run_without_construction_reports_the_evaluation(full_run: str, tmp_path: Path) -> None:
    from valuelex.report.stage import build_report

    run = _copy_run(full_run, tmp_path / "run", {"taxonomy.json", "taxonomy-plm.json", "construction",
                                                  "construction-plm"})
    summary = build_report(run, str(tmp_path / "report"))
    html = Path(summary["index"]).read_text(encoding="utf-8")
    page = Elements(html)
    assert summary["sections"]["construction"] == "missing"
    assert summary["sections"]["evaluation"] == "ok"
    assert "notice-construction-missing" in page.ids("div")
    assert "Construction outputs are missing" in html
    assert sorted(page.ids("img")) == sorted(EVALUATION_FIGURES)
    assert ESCAPED in html and "<script" not in html.lower()
    assert sorted(p.name for p in (tmp_path / "report" / "figures").iterdir()) == sorted(
        f"{f}.{ext}" for f in EVALUATION_FIGURES for ext in ("png", "svg"))


def test_run_with_only_elicitation(tmp_path: Path) -> None:
    from valuelex.report.stage import build_report

    run = str(tmp_path / "run")
    write_elicitation(run)
    summary = build_report(run, str(tmp_path / "report"))
    html = Path(summary["index"]).read_text(encoding="utf-8")
    page = Elements(html)
    assert summary["sections"] == {"reliability": "missing", "validity": "missing", "construction": "missing",
                                   "evaluation": "missing", "cases": "ok", "facts": "ok"}
    for notice in ("notice-construction-missing", "notice-evaluation-missing", "notice-cases-completions",
                   "notice-judge-missing"):
        assert notice in page.ids("div"), notice
    assert page.count("img") == 0 and "table-cases" in page.ids("table")
    assert ESCAPED in html and "<script" not in html.lower()
    assert "360 rows of 360 in the grid" in html


def test_empty_and_broken_runs_still_report(tmp_path: Path) -> None:
    from valuelex.report.stage import build_report

    empty = build_report(str(tmp_path / "nothing-here"), str(tmp_path / "r1"))
    assert set(empty["sections"].values()) <= {"missing", "ok"}
    html = Path(empty["index"]).read_text(encoding="utf-8")
    assert "notice-study-missing" in Elements(html).ids("div") and "notice-cases-missing" in Elements(html).ids("div")

    broken = tmp_path / "broken"
    root = OutputRoot(str(broken))
    root.write_json("taxonomy.json", {"format_version": 99, "dimensions": []})
    root.publish_bytes("scores.parquet", b"not parquet")
    root.write_json("evaluation.json", {"judge": "<i>x</i>", "seconds": 12.5})
    summary = build_report(str(broken), str(tmp_path / "r2"))
    html = Path(summary["index"]).read_text(encoding="utf-8")
    assert summary["sections"]["construction"] == "partial"
    assert summary["sections"]["evaluation"] == "missing"
    assert any("scores.parquet" in p for p in summary["problems"])
    assert "notice-taxonomy-invalid" in Elements(html).ids("div")
    assert "unsupported version 99" in html and "&lt;i&gt;x&lt;/i&gt;" in html and "12.5 s" in html


def test_report_reads_a_run_on_s3(s3_endpoint: str, full_run: str, tmp_path: Path) -> None:
    from valuelex.report.stage import build_report

    uri = "s3://valuelex/report-test/run"
    local, remote = OutputRoot(full_run), OutputRoot(uri)
    for name in ("study.json", "evaluation.json", "scores.parquet", "taxonomy.json"):
        with local.fs.open_input_stream(f"{local.path}/{name}") as stream:
            remote.publish_bytes(name, stream.read())
    for table in ("elicitation", "completions", "judgments/valuelex", "construction/stability"):
        remote.table(table).write(local.table(table).read_raw())
    summary = build_report(uri, str(tmp_path / "report"))
    assert summary["problems"] == []
    assert summary["sections"] == {"reliability": "missing", "validity": "partial", "construction": "ok",
                                   "evaluation": "ok", "cases": "ok", "facts": "ok"}
    page = Elements(Path(summary["index"]).read_text(encoding="utf-8"))
    assert set(CONSTRUCTION_FIGURES + EVALUATION_FIGURES) == set(page.ids("img"))
