"""What changed between the study an output was written with (study.json) and the one now run on it.

Rows are identified by what determines their answer (`valuelex.grid.row_identity`), so a changed
seed, study name, decoding config or model source makes new rows, and the old ones stop counting
(the run store serves the current grid only); a changed ``training``, ``family`` or ``size_b``
relabels the stored rows. Either silently reuses an output for a different study, and a study paid
for twice is a surprise: `prepare` refuses such a change unless the user allows it
(``--allow-changes``). Growing a study is not a change: models, decoding configs, stems and
samples may be added (or removed: their rows are kept but do not count), and the settings of
construction, evaluation, output and sharding affect no stored row.
"""

from __future__ import annotations

from typing import Any

MODEL_FIELDS = ("source", "engine", "prompting", "training", "family", "size_b")
"""What a model's stored rows depend on, or are labelled with."""
CONFIG_FIELDS = ("temperature", "top_p", "max_tokens")
STUDY_FIELDS = ("name", "seed")


def study_changes(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Changes of `current` (a study's JSON dump) against `stored` (study.json) that make stored rows
    stale or relabel them, as ``field: old -> new`` lines; empty when the study only grew."""
    changes = [f"{name}: {stored.get(name)!r} -> {current.get(name)!r}"
               for name in STUDY_FIELDS if stored.get(name) != current.get(name)]
    for section, fields in (("models", MODEL_FIELDS), ("decoding", CONFIG_FIELDS)):
        before = _by_name(stored.get(section))
        for name, entry in _by_name(current.get(section)).items():
            if name not in before:
                continue
            changes += [f"{section}[{name}].{field}: {before[name].get(field)!r} -> {entry.get(field)!r}"
                        for field in fields if before[name].get(field) != entry.get(field)]
    return changes


def _by_name(entries: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(entries, list):
        return {}
    return {str(e["name"]): e for e in entries if isinstance(e, dict) and "name" in e}
