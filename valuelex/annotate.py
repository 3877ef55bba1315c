"""Human labels for the judge: a seeded stratified sample of a run's completions and one labelling page.

    valuelex annotate runs/local --n 200 --system valuelex --out labels/
    # open labels/index.html, score, download labels.csv, then:
    valuelex judge-check labels/labels.csv

The sample: the judgments that count for the system (`RunStore.judgments`, the default judge),
valid ones only (an invalid judgment has no score to check), grouped into strata by (model, stem,
judge score), the judge score being the row's mean leaf score rounded to an integer 0..6. Strata
are visited in a seeded random order and each gives its next seeded-random row in turn, so every
stratum is represented before any gives a second row (as even a coverage as n allows) and the
same run, n and seed give the same sample.

The page (``index.html``) is self-contained: no network (its Content-Security-Policy allows no
connection and no source but its own inline script and style, each by its SHA-256 hash), model text
inserted as text (never as HTML). A person scores each completion 0..6 on every leaf dimension with
its definition beside it; progress is kept in the browser's localStorage (under the sample's id),
and a button downloads ``labels.csv`` with the columns `valuelex judge-check` reads: ``row_id``,
``dimension`` (key), ``human``, ``judge`` (one row per labelled completion x dimension).
``sample.csv`` beside it lists the sample with the judge's scores.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import random
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from valuelex.errors import StudyError
from valuelex.evaluate.judgments import score_column
from valuelex.evaluate.systems import ValueSystem, load_value_system
from valuelex.store import RunStore


def sample_completions(store: RunStore, system: ValueSystem, n: int, seed: int = 0) -> pd.DataFrame:
    """The seeded stratified sample (module docstring): row_id, model, item_id, stem, response, stratum
    columns and each leaf's judge score."""
    frame = store.judgments(system.name)
    frame = frame[frame["valid"].astype(bool)].copy() if len(frame) else frame
    if frame.empty:
        raise StudyError(f"{store.uri}: system {system.name!r} has no valid judgments to sample")
    leaves = [score_column(k) for k in system.leaf_keys()]
    frame["judge_score"] = frame[leaves].astype(float).mean(axis=1).round().astype(int)
    rng = random.Random(seed)
    strata = {key: list(group.index) for key, group in frame.groupby(["model", "item_id", "judge_score"], sort=True)}
    order = list(strata)
    rng.shuffle(order)
    for key in order:
        rng.shuffle(strata[key])
    chosen: list[int] = []
    while len(chosen) < n and any(strata.values()):
        for key in order:
            if strata[key] and len(chosen) < n:
                chosen.append(strata[key].pop())
    return frame.loc[chosen].reset_index(drop=True)


def _asset(name: str) -> str:
    return resources.files("valuelex.data").joinpath("annotate", name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()


def page(sample: pd.DataFrame, system: ValueSystem, run_uri: str) -> str:
    """The labelling page: data as JSON (``<`` escaped, so no text can close its element), script and
    style inline and allowed by their hashes only."""
    items = [
        {
            "row_id": str(r["row_id"]),
            "model": str(r["model"]),
            "stem": str(r.get("stem") or ""),
            "response": str(r.get("response") or ""),
            "judge": {k: int(r[score_column(k)]) for k in system.leaf_keys()},
        }
        for _, r in sample.iterrows()
    ]
    dimensions = [{"key": d.key, "name": d.name, "definition": d.definition} for d in system.leaves()]
    sample_id = hashlib.sha256(json.dumps([i["row_id"] for i in items]).encode()).hexdigest()[:16]
    data = json.dumps(
        {
            "id": f"valuelex-labels-{system.name}-{sample_id}",
            "system": system.name,
            "dimensions": dimensions,
            "items": items,
        },
        ensure_ascii=True,
    )
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    script, style = _asset("label.js"), _asset("label.css")
    csp = (
        f"default-src 'none'; script-src '{_sha256(script)}'; style-src '{_sha256(style)}'; "
        "img-src 'none'; connect-src 'none'; form-action 'none'; base-uri 'none'"
    )
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{html.escape(csp)}">\n'
        f"<title>Label {html.escape(system.name)} judgments: {html.escape(run_uri)}</title>\n"
        f"<style>{style}</style></head><body>\n"
        f"<header><h1>Label completions: {html.escape(system.title or system.name)}</h1>"
        f'<p id="progress"></p><button id="download" type="button">Download labels.csv</button></header>\n'
        f'<main id="items"></main>\n'
        f'<script type="application/json" id="data">{data}</script>\n'
        f"<script>{script}</script></body></html>\n"
    )


def annotate(run_uri: str, out_dir: str, *, n: int = 200, system: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Write ``index.html`` and ``sample.csv`` into `out_dir`; returns their paths and the sample's size."""
    store = RunStore(run_uri)
    if not store.exists():
        raise StudyError(f"{run_uri}: no such run (the output root does not exist)")
    if n < 1:
        raise StudyError(f"--n: {n} must be at least 1")
    judged = store.judged_systems()
    name = system or ("valuelex" if "valuelex" in judged else (judged[0] if judged else None))
    if name is None or name not in judged:
        raise StudyError(f"--system: {name!r} was not judged in {run_uri} (judged: {', '.join(judged) or 'none'})")
    value_system = store.value_system(name) or load_value_system(name)
    sample = sample_completions(store, value_system, n, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index = out / "index.html"
    index.write_text(page(sample, value_system, store.uri), encoding="utf-8")
    keep = [
        "row_id",
        "model",
        "config",
        "item_id",
        "sample",
        "stem",
        "response",
        "judge_score",
        *[score_column(k) for k in value_system.leaf_keys()],
    ]
    sample[[c for c in keep if c in sample.columns]].to_csv(out / "sample.csv", index=False)
    return {
        "index": index.resolve().as_uri(),
        "sample": str(out / "sample.csv"),
        "n": len(sample),
        "strata": int(sample.groupby(["model", "item_id", "judge_score"]).ngroups),
        "system": name,
    }
