"""The evaluation stage (Algorithm 2): generate completions, judge them, score them by Eq. 4.

Output, under the study's output root (or `out_uri`):

- ``completions/``: the sentence completions (written by `valuelex.generate.run_stage`);
- ``judgments/<system>/``: per-completion judgments, shards (see `valuelex.evaluate.judgments`);
- ``scores.parquet``: model x dimension scores (see `valuelex.evaluate.scores`) of every (system,
  judge) pair evaluated in this output root; a run replaces the rows of its own pairs;
- ``evaluation.json``: the summary `run_evaluation` returns.

Resumable: a completion already judged by the same judge on the same version of a system
(same ``judge_key``) is not judged again, whether its judgment was valid or not.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from valuelex.evaluate import judgments as jt
from valuelex.evaluate.adaptive import run_adaptive
from valuelex.evaluate.scores import score_table
from valuelex.evaluate.systems import ValueSystem, load_value_system
from valuelex.records import record_stage
from valuelex.store import OutputRoot, ShardTable

if TYPE_CHECKING:
    from collections.abc import Callable

    from valuelex.evaluate.config import EvaluationSpec
    from valuelex.spec import Study

log = logging.getLogger(__name__)
SCORES_FILE = "scores.parquet"
SUMMARY_FILE = "evaluation.json"


def build_judge(study: Study, spec: EvaluationSpec) -> Any:
    """The judge a study asks for: `EmbeddingJudge` or `LLMJudge`.

    The LLM judge stores its judgments in shards of ``study.shard_rows`` as the engine finishes them
    (the unit of resume, as for generation): a killed run loses only what was still in flight.
    """
    if spec.judge == "llm":
        from valuelex.evaluate.llm_judge import LLMJudge

        return LLMJudge(spec.judge_model_spec(study), spec, batch_rows=study.shard_rows)
    from valuelex.evaluate.embedding import EmbeddingJudge

    return EmbeddingJudge(spec.embedding_model)


def judge_pending(
    root: OutputRoot, study: Study, systems: list[ValueSystem], judge: Any, *, max_samples: int | None = None,
) -> dict[str, dict[str, int]]:
    """Judge every completion of the study's grid not yet judged for each system by this judge.

    All systems go to the judge at once (`judge_many` when it has one: the LLM judge then starts
    its engine once per attempt, not once per system). Returns counts per system name.
    """
    completions = jt.completions_to_judge(
        root, models={m.name for m in study.models}, configs={c.name for c in study.decoding},
        stems=None if study.prompts.stems == "all" else set(study.prompts.stems), max_samples=max_samples,
    )
    tasks: list[jt.JudgeTask] = []
    counts: dict[str, dict[str, int]] = {}
    for system in systems:
        done = set(jt.read_judgments(root, system, judge.key(system))["row_id"])
        pending = completions[~completions["row_id"].isin(done)]
        counts[system.name] = {"completions": len(completions), "already_judged": int(len(completions) - len(pending)),
                               "judged": 0, "invalid": 0}
        if not pending.empty:
            sink = _storing(root.table(jt.table_name(system)), system, counts[system.name])
            tasks.append(jt.JudgeTask(system, pending.to_dict("records"), sink))
    if not tasks:
        return counts
    if getattr(judge, "kind", "") == "llm":
        from valuelex.runtime import ensure_ray

        ensure_ray()
    if hasattr(judge, "judge_many"):
        judge.judge_many(tasks)
    else:
        for task in tasks:
            judge.judge(task.completions, task.system, task.sink)
    return counts


def _storing(table: ShardTable, system: ValueSystem, counts: dict[str, int]) -> Callable[[list[dict[str, Any]]], None]:
    """A sink that stores a batch of judgments as one shard and counts it."""

    def sink(rows: list[dict[str, Any]]) -> None:
        table.write(jt.to_table(rows, system))
        counts["judged"] += len(rows)
        counts["invalid"] += sum(not r["valid"] for r in rows)

    return sink


def current_judgments(
    root: OutputRoot, study: Study, system: ValueSystem, judge_key: str, *, max_samples: int | None = None,
) -> pd.DataFrame:
    """The stored judgments of this judge for the completions of the study's current grid."""
    frame = jt.read_judgments(root, system, judge_key)
    models, configs = {m.name for m in study.models}, {c.name for c in study.decoding}
    frame = frame[frame["model"].isin(models) & frame["config"].isin(configs)]
    if study.prompts.stems != "all":
        frame = frame[frame["item_id"].isin(set(study.prompts.stems))]
    limit = study.samples if max_samples is None else max_samples
    return frame[frame["sample"] < limit].reset_index(drop=True)


def score_systems(root: OutputRoot, study: Study, systems: list[ValueSystem], judge: Any, samples: int) -> pd.DataFrame:
    """Eq. 4 scores with bootstrap CIs of every system, from this judge's stored judgments with sample < samples."""
    spec = study.evaluation
    tables = [
        score_table(current_judgments(root, study, system, judge.key(system), max_samples=samples), system,
                    resamples=spec.bootstrap_resamples, ci_level=spec.ci_level, seed=spec.seed, judge=judge.name)
        for system in systems
    ]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def read_scores(root: OutputRoot) -> pd.DataFrame | None:
    if not root.exists(SCORES_FILE):
        return None
    with root.fs.open_input_file(f"{root.path}/{SCORES_FILE}") as source:
        return pq.read_table(source).to_pandas()


def write_scores(root: OutputRoot, scores: pd.DataFrame) -> pd.DataFrame:
    """Publish scores.parquet: these rows replace the stored ones of the same (system, judge) pairs;
    the scores of other systems or judges evaluated in this output root are kept."""
    previous = read_scores(root)
    if previous is not None and len(previous):
        fresh = set(zip(scores["system"], scores["judge"], strict=True))
        keep = [pair not in fresh for pair in zip(previous["system"], previous["judge"], strict=True)]
        scores = pd.concat([previous[keep], scores], ignore_index=True) if any(keep) else scores
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(scores, preserve_index=False), sink, compression="zstd")
    root.publish_bytes(SCORES_FILE, sink.getvalue().to_pybytes())
    return scores


def run_evaluation(study: Study, systems: list[str] | None = None, out_uri: str | None = None) -> dict[str, Any]:
    """Generate the sentence completions, judge every unjudged one, write judgments and scores.

    `systems` overrides ``study.evaluation.systems`` (names or paths). With ``evaluation.adaptive``
    enabled, M grows in rounds until the CIs are narrow (see `valuelex.evaluate.adaptive`) instead
    of using ``study.samples``. Returns a summary (also written to ``evaluation.json``).
    """
    from valuelex.generate import run_stage

    spec = study.evaluation
    out = out_uri or study.output_uri
    root = OutputRoot(out)
    loaded = [load_value_system(s) for s in (systems or spec.systems)]
    names = [s.name for s in loaded]
    if len(set(names)) != len(names):
        from valuelex.errors import StudyError

        raise StudyError(f"evaluation.systems: two value systems share a name: {names}")
    judge = build_judge(study, spec)
    started, started_at = time.monotonic(), time.time()
    per_system: dict[str, dict[str, int]] = {s.name: {} for s in loaded}

    def generate(samples: int | None) -> None:
        report = run_stage(study, "completion", out, samples=samples)
        log.info("completion stage: %s rows generated, %s failed", report.generated_rows, report.failed_rows)

    def judge_all(samples: int) -> pd.DataFrame:
        for name, counts in judge_pending(root, study, loaded, judge, max_samples=samples).items():
            for k, v in counts.items():
                per_system[name][k] = per_system[name].get(k, 0) + v if k in ("judged", "invalid") else v
        return score_systems(root, study, loaded, judge, samples)

    adaptive = None
    if spec.adaptive.enabled:
        report = run_adaptive(generate, judge_all, spec.adaptive, fixed_samples=study.samples)
        scores, samples, adaptive = report.scores, report.samples_used, report.summary()
    else:
        generate(None)
        samples = study.samples
        scores = judge_all(samples)
    write_scores(root, scores)
    summary = {
        "study": study.name, "out": out, "judge": judge.name, "samples": samples, "adaptive": adaptive,
        "systems": per_system, "scores_file": f"{root.uri}/{SCORES_FILE}",
        "invalid": {s.name: int(scores.loc[scores["system"] == s.name, "n_invalid"].groupby(
            scores["model"]).first().sum()) for s in loaded},
        "seconds": round(time.monotonic() - started, 2),
    }
    root.write_json(SUMMARY_FILE, summary)
    record_stage(root, "evaluation", started_at, summary)
    return summary
