"""Where everything of a run lives under its output root: the one module that spells a file name.

    store.json                          the store's format (row identity version; see `migrate`)
    study.json                          the spec the run used
    elicitation/ completions/           generation tables (shards; see `valuelex.store.shards`)
    taxonomy[-<label>].json             constructed value systems
    construction[-<label>]/words|stability
    judgments/<system>/                 per-completion judgments (shards)
    scores.parquet  evaluation.json     Eq. 4 scores; the last evaluation's summary
    comparisons/<name>.parquet          `valuelex compare` results
    judge_check.json                    judge agreement with human labels
    quality/<check>.json                quality checks of the measurement (e.g. the judge's position bias)
    quality/<table>.parquet             reliability: components, coefficients, dstudy, consistency, judge,
                                        verdicts, devset, paraphrase[_components] (`valuelex.quality`)
    stages/<stage>.json                 what each stage did (written by the runner)
    logs/<stage>.log                    the stage's own and its libraries' output (`valuelex.console`)
    batches/<table>/<model>.json        submitted Batch API jobs and their request ids (`engines.openai_batch`)
    report/                             the default report folder
    .valuelex.lock                      held while a command writes the run (`valuelex.store.lock`)
"""

from __future__ import annotations

import re

STORE = "store.json"
STORE_FORMAT = 2
"""Format 2: row ids hash the decoding config's name and the study seed (format 1 did not)."""
STUDY = "study.json"
SCORES = "scores.parquet"
EVALUATION = "evaluation.json"
JUDGE_CHECK = "judge_check.json"
STAGES = "stages"
LOGS = "logs"
REPORT = "report"
JUDGMENTS = "judgments"
COMPARISONS = "comparisons"
QUALITY = "quality"
RELIABILITY_TABLES = ("components", "coefficients", "dstudy", "consistency", "judge", "verdicts", "devset", "mtmm",
                      "mtmm_summary", "paraphrase", "paraphrase_components")
"""quality/ tables of the reliability stage; construction adds taxonomy_*, evaluation response_bias."""
QUALITY_TABLES = (*RELIABILITY_TABLES, "taxonomy_validity", "taxonomy_kmo", "taxonomy_replication",
                  "taxonomy_invariance", "taxonomy_prompt_subsets", "response_bias")
LOCK = ".valuelex.lock"
GENERATION_TABLES = {"elicitation": "elicitation", "completion": "completions"}
TAXONOMY_FILE = re.compile(r"^taxonomy(?:-([A-Za-z0-9][A-Za-z0-9_.\-]*))?\.json$")


def generation_table(stage: str) -> str:
    """The shard table of a generation stage (`elicitation` or `completion`)."""
    return GENERATION_TABLES[stage]


def stage_record(stage: str) -> str:
    return f"{STAGES}/{stage}.json"


def stage_log(stage: str) -> str:
    """``logs/<stage>.log``, the name made safe as one path part."""
    return f"{LOGS}/" + (re.sub(r"[^A-Za-z0-9_.-]+", "_", stage).strip("._") or "stage") + ".log"

def batch_journal(table: str, model: str) -> str:
    """``batches/<table>/<model>.json``: the Batch API jobs a model's requests for one table went out in."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", model).strip("._") or "model"
    return f"batches/{re.sub(r'[^A-Za-z0-9_.-]+', '_', table).strip('._')}/{safe}.json"


def judgments_table(system_name: str) -> str:
    """``judgments/<system>``, the name made safe as one path part."""
    return f"{JUDGMENTS}/" + (re.sub(r"[^A-Za-z0-9_.-]+", "_", system_name).strip("._") or "system")


def taxonomy_file(label: str | None = None) -> str:
    return f"taxonomy-{label}.json" if label else "taxonomy.json"


def construction_tables(label: str | None = None) -> str:
    """The folder of a taxonomy's tables (``words``, ``stability``)."""
    return f"construction-{label}" if label else "construction"


def comparison_file(name: str) -> str:
    return f"{COMPARISONS}/{name}.parquet"


def quality_check(check: str) -> str:
    """``quality/<check>.json``: a check's document (e.g. ``position_check``)."""
    return f"{QUALITY}/{check}.json"


def quality_file(table: str) -> str:
    """``quality/<table>.parquet``, one of `QUALITY_TABLES` (the reliability stage's outputs)."""
    if table not in QUALITY_TABLES:
        raise ValueError(f"quality table: {table!r} is not one of {', '.join(QUALITY_TABLES)}")
    return f"{QUALITY}/{table}.parquet"
