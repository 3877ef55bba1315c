"""Refit the embedding judge's calibration (`valuelex.evaluate.calibration`) on the development set.

`embedding_features` gives each labelled (completion, dimension) of a half its ``d``; `refit` fits
on the calibration half and writes the JSON that `valuelex judge-calibrate` and the judge read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from valuelex.evaluate.calibration import digest, fit, packaged, packaged_path
from valuelex.evaluate.devset import load_devset
from valuelex.evaluate.embedding import differences
from valuelex.evaluate.judgments import completed_sentence

if TYPE_CHECKING:
    from valuelex.evaluate.systems import ValueSystem


def embedding_features(judge: Any, systems: list[ValueSystem], split: str = "calibration") -> pd.DataFrame:
    """The development labels of `split` with the embedding judge's ``d`` on each labelled dimension."""
    frames = []
    for system in systems:
        labels = load_devset(system.name, split)
        if labels.empty:
            continue
        items = labels.drop_duplicates("id")
        texts = [completed_sentence(r.stem, r.response) for r in items.itertuples()]
        d = differences(*judge.similarities(texts, system))
        row = {item: i for i, item in enumerate(items["id"])}
        column = {k: i for i, k in enumerate(system.leaf_keys())}
        labels = labels.copy()
        labels["d"] = [float(d[row[r.id], column[r.dimension]]) for r in labels.itertuples()]
        frames.append(labels)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def refit(judge: Any, systems: list[ValueSystem], out: str | Path | None = None) -> dict[str, Any]:
    """Fit `judge`'s calibration on the calibration half and write it (default: the packaged file)."""
    features = embedding_features(judge, systems, "calibration")
    calibration = fit(features, systems, model=judge.name, fitted_on="devset calibration half")
    path = Path(out) if out else packaged_path(judge.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(calibration, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    packaged.cache_clear()
    return {"file": str(path), "digest": digest(calibration), "labels": len(features),
            "systems": sorted(calibration["systems"])}
