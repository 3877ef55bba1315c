"""Make the judge development set (valuelex/data/judge/devset/devset.csv) from its written source.

    python bench/make_devset.py            # rewrites devset.csv; deterministic (seeded)

The source (``valuelex/data/judge/devset/source.yaml``) is what we wrote by hand: sentence frames
on packaged stems that endorse or reject a phrase, value phrases per scored dimension (expressing it
or going against it), response styles and neutral completions. A targeted item is one frame, one
phrase and one style; its label on the phrase's dimension follows from the frame's and the phrase's
polarity (see the source's header), and its reason says so in one line. A neutral item is neutral on
every dimension of its system. The split into calibration and test halves is by *phrase* (and by
neutral text): a phrase's items are all in one half, so the test half holds phrases the calibration
never saw. Within each (system, dimension, phrase polarity) the phrases, ordered by the SHA-256 of
their text, alternate between the halves; neutral texts alternate the same way within their kind.
"""

from __future__ import annotations

import csv
import hashlib
import random
from pathlib import Path

import yaml

from valuelex.evaluate.systems import load_value_system
from valuelex.instruments import completion_stems

ROOT = Path(__file__).resolve().parents[1] / "valuelex" / "data" / "judge" / "devset"
SEED = 15
PER_LABEL = {"valuelex": 25, "schwartz": 5, "mft": 10}  # targeted items per (dimension, high|conflicting)
NEUTRAL = {"valuelex": 60, "schwartz": 20, "mft": 20}  # neutral completions per system
ENDORSE_SHARE = 0.7
COLUMNS = ("id", "system", "split", "stem_id", "stem", "response", "dimension", "label", "reason", "style", "kind",
           "frame")


def _h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _halves(texts: list[str]) -> dict[str, str]:
    ordered = sorted(texts, key=_h)
    return {t: ("calibration" if i % 2 == 0 else "test") for i, t in enumerate(ordered)}


def _styled(style: str, template: str, stem: str, response: str) -> str:
    return template.format(stem=stem, r=response, r_lower=response.lower().rstrip("."))


def _response(frame: dict, phrase: str) -> str:
    return frame["text"].format(g=phrase)


def make(source: dict) -> list[dict[str, str]]:
    rng = random.Random(SEED)
    stem_ids = {s.completion_text: s.id for s in completion_stems()}
    styles = list(source["styles"].items())
    rows: list[dict[str, str]] = []
    neutral = source["neutral"]
    neutral_half: dict[str, str] = {}
    for kind in sorted({n["kind"] for n in neutral}):
        neutral_half.update(_halves([n["text"] for n in neutral if n["kind"] == kind]))
    for system_name, dims in source["phrases"].items():
        system = load_value_system(system_name)
        names = {d.key: d.name for d in system.leaves()}
        assert set(dims) == set(names), (system_name, set(dims) ^ set(names))
        count = 0
        seen: set[str] = set()

        def add(stem: str, response: str, labels: list[tuple[str, str, str]], style: str, kind: str, split: str,
                frame: str = "none", system_name: str = system_name) -> None:
            nonlocal count
            count += 1
            item = f"{system_name[:2]}-{count:04d}"
            for dim, label, reason in labels:
                rows.append({"id": item, "system": system_name, "split": split, "stem_id": stem_ids[stem],
                             "stem": stem, "response": response, "dimension": dim, "label": label,
                             "reason": reason, "style": style, "kind": kind, "frame": frame})

        for dim, poles in dims.items():
            half = {pole: _halves(poles[pole]) for pole in ("high", "conflict")}
            for label in ("high", "conflicting"):
                made = 0
                while made < PER_LABEL[system_name]:
                    endorse = rng.random() < ENDORSE_SHARE
                    pole = ("high" if label == "high" else "conflict") if endorse else (
                        "conflict" if label == "high" else "high")
                    frames = [f for f in source["frames"] if f["polarity"] == (1 if endorse else -1)
                              and f.get("only", pole) == pole]
                    split = "calibration" if made % 2 == 0 else "test"  # equal halves, phrases kept apart
                    frame = rng.choice(frames)
                    phrase = rng.choice([p for p in poles[pole] if half[pole][p] == split])
                    style, template = rng.choice(styles)
                    response = _styled(style, template, frame["stem"], _response(frame, phrase))
                    if response in seen:
                        continue
                    seen.add(response)
                    verb = "endorses" if endorse else "rejects"
                    what = "an expression of" if pole == "high" else "the opposite of"
                    so = "" if endorse and pole == "high" else (
                        ", so it upholds the value" if label == "high" else ", so it conflicts with the value")
                    reason = f"{verb} '{phrase}', {what} {names[dim]}{so}"
                    add(frame["stem"], response, [(dim, label, reason)], style, "targeted", split,
                        "endorse" if endorse else "reject")
                    made += 1
        made = index = 0
        while made < NEUTRAL[system_name]:
            item = neutral[index % len(neutral)]
            style, template = ("plain", "{r}") if index < len(neutral) else rng.choice(styles[1:])
            index += 1
            response = _styled(style, template, item["stem"], item["text"])
            if response in seen:
                continue
            seen.add(response)
            reason = f"{item['kind']}: expresses no value, attitude or preference"
            add(item["stem"], response, [(d, "neutral", reason) for d in names], style, item["kind"],
                neutral_half[item["text"]])
            made += 1
    return rows


def main() -> None:
    source = yaml.safe_load((ROOT / "source.yaml").read_text(encoding="utf-8"))
    rows = make(source)
    with (ROOT / "devset.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    items = {(r["system"], r["id"]) for r in rows}
    for system in PER_LABEL:
        n = sum(1 for s, _ in items if s == system)
        print(f"{system}: {n} completions, {sum(r['system'] == system for r in rows)} labels")


if __name__ == "__main__":
    main()
