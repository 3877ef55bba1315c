"""The reliability stage (``reliability``): how far a run's scores can be trusted.

Runs after evaluation. For every judged value system it reads the judgments that count
(`RunStore.judgments(system)`) and writes, under ``RUN/quality/`` (`layout.quality_file`):

- ``components``, ``coefficients``, ``dstudy``, ``consistency``: `valuelex.quality.assess`;
- ``mtmm``, ``mtmm_summary``: convergent and discriminant validity across the judged systems and,
  for a system two judges scored, across the judges (`valuelex.quality.mtmm`; column ``across``);
- ``verdicts``: reliable / doubtful / unreliable per model x dimension (`valuelex.quality.verdict`);
- ``judge``: the judge's reliability (`valuelex.quality.judge`): a second pass over a seeded random
  subset of ``reliability.rejudge`` completions (the LLM judge at the retry temperature with another
  seed; the embedding judge is deterministic, which the row says instead), and the judge's mean error
  on the packaged control completions; and, when the run holds another judge's judgments of the same
  system version, the two judges' agreement and the self-preference of a judge of a model family
  (`valuelex.quality.two_judges`);
- ``paraphrase``, ``paraphrase_components``: the spread of each score across the stems' wordings and
  the wording's variance components (`valuelex.quality.paraphrase`), when the study asked paraphrases
  (``prompts.paraphrases``);
- ``devset``: the run's judge on the development set's test half (`valuelex.evaluate.devset`), pooled
  and per dimension, for every judged packaged system (``reliability.devset``; a constructed taxonomy
  has no labels, which the row says).

The judge's engine (LLM judge) is started only for the re-judge, the controls and the development
set; `rejudge`, `score_controls` and `devset_judge` inject them (tests, other judges).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from valuelex.evaluate import judgments as jt
from valuelex.evaluate.scores import dimension_values, seeded_rng
from valuelex.evaluate.systems import ValueSystem
from valuelex.quality.assess import assess
from valuelex.quality.config import ReliabilitySpec
from valuelex.quality.judge import agreement, control_errors
from valuelex.quality.mtmm import mtmm
from valuelex.quality.paraphrase import paraphrase_components, spread, with_paraphrase
from valuelex.quality.verdict import verdicts
from valuelex.runner import RunContext, StageResult

if TYPE_CHECKING:
    from valuelex.spec import Study

log = logging.getLogger(__name__)
Rejudge = Callable[[list[dict[str, Any]], ValueSystem], list[dict[str, Any]]]
ScoreTexts = Callable[[list[str], ValueSystem], np.ndarray]


def rejudge_subset(judgments: pd.DataFrame, n: int, seed: int, system: str) -> pd.DataFrame:
    """A seeded random subset of `n` valid judgments (all when fewer), the same for the same run and seed."""
    valid = judgments[judgments["valid"].astype(bool)].sort_values("row_id")
    if len(valid) <= n:
        return valid
    rng = seeded_rng(seed, system, "rejudge")
    return valid.iloc[np.sort(rng.choice(len(valid), size=n, replace=False))]


def llm_second_pass(judge: Any) -> Rejudge:
    """A second pass of an `LLMJudge`: every request at the retry temperature with another seed.

    The seed of a judge request follows the completion's row id (`llm_judge.request_seed`), so the
    second pass asks under a derived id (``<row_id>:rejudge``) and maps the answers back.
    """
    from valuelex.evaluate.llm_judge import judge_tasks

    spec = judge.spec.model_copy(update={"judge_temperature": judge.spec.retry_temperature})

    def run(rows: list[dict[str, Any]], system: ValueSystem) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        asked = [{**r, "row_id": f"{r['row_id']}:rejudge"} for r in rows]
        judge_tasks([jt.JudgeTask(system, asked, out.extend)], judge._generate, judge=judge.name,
                    key=lambda _s: "rejudge", prompting=judge.model.prompting, spec=spec)
        return [{**r, "row_id": str(r["row_id"]).removesuffix(":rejudge")} for r in out]

    return run


def llm_control_scorer(judge: Any) -> ScoreTexts:
    """Control sentences through the LLM judge as completions of an empty stem."""
    def score(texts: list[str], system: ValueSystem) -> np.ndarray:
        rows = [{"row_id": f"control:{i}", "item_id": "", "stem": "", "response": t} for i, t in enumerate(texts)]
        done = {r["row_id"]: r for r in llm_second_pass(judge)(rows, system)}
        keys = system.leaf_keys()
        return np.array([[done.get(r["row_id"], {}).get(jt.score_column(k)) if done.get(r["row_id"], {}).get("valid")
                          else np.nan for k in keys] for r in rows], dtype=float)

    return score


def _judge_rows(judged: pd.DataFrame, system: ValueSystem, spec: ReliabilitySpec, kind: str,
                rejudge: Rejudge | None, score_controls: ScoreTexts | None) -> list[dict[str, Any]]:
    judge_name = str(judged["judge"].iloc[0]) if len(judged) else ""
    base = {"system": system.name, "judge": judge_name}
    rows = []
    keys = system.leaf_keys()
    if kind == "embedding" and rejudge is None:
        rows.append({**base, "check": "rejudge", "n": 0, "krippendorff_alpha": np.nan, "qwk": np.nan,
                     "exact": np.nan, "notice": "the embedding judge is deterministic: a second pass gives the same "
                                                "scores (agreement 1 by construction)"})
    elif spec.rejudge == 0 or rejudge is None:
        rows.append({**base, "check": "rejudge", "n": 0, "krippendorff_alpha": np.nan, "qwk": np.nan, "exact": np.nan,
                     "notice": "no second judge pass (reliability.rejudge: 0, or no judge to run)"})
    else:
        subset = rejudge_subset(judged, spec.rejudge, spec.seed, system.name)
        second = pd.DataFrame(rejudge(subset.to_dict("records"), system))
        if second.empty:
            merged = subset.iloc[:0]
        else:
            merged = subset.merge(second[second["valid"].astype(bool)], on="row_id", suffixes=("", "_2"))
        first = merged[[jt.score_column(k) for k in keys]].to_numpy(dtype=float)
        again = merged[[jt.score_column(k) + "_2" for k in keys]].to_numpy(dtype=float)
        result = agreement(first, again)
        note = result.pop("notice")
        lost = len(subset) - len(merged)
        if lost:
            note = "; ".join(filter(None, [note, f"{lost} re-judged completion(s) without a valid second answer"]))
        rows.append({**base, "check": "rejudge", **result, "notice": note})
    if score_controls is not None:
        errors = control_errors(score_controls, system)
        rows.append({**base, "check": "controls", "n": errors["n_off_topic"] + errors["n_aligned"]
                     + errors["n_conflicting"], "krippendorff_alpha": np.nan, "qwk": np.nan, "exact": np.nan,
                     **{k: v for k, v in errors.items() if k.startswith("error_")}, "notice": None})
    else:
        rows.append({**base, "check": "controls", "n": 0, "krippendorff_alpha": np.nan, "qwk": np.nan,
                     "exact": np.nan, "notice": "control completions not scored (no judge to run)"})
    return rows


def other_judgments(store: Any, study: Study | None, system: ValueSystem,
                    judged: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(judge, judgments) of every other judge of this system version than the counted one."""
    if not len(judged):
        return []
    key = str(judged["judge_key"].iloc[0])
    return [(str(other.judge), jt.conform(store.judgments(system, judge_key=other.judge_key, study=study), system))
            for other in store.judge_keys(system).itertuples()
            if other.judge_key != key and str(other.judge_key).endswith(f"@{system.fingerprint()}")]


def other_judge_rows(study: Study | None, system: ValueSystem, judged: pd.DataFrame,
                     others: list[tuple[str, pd.DataFrame]]) -> list[dict]:
    """`between_judges` rows of the counted judge against every other judge of this system version."""
    from valuelex.quality.two_judges import between_judges, judge_facet_rows, judge_family

    if not len(judged):
        return []
    judge = str(judged["judge"].iloc[0])
    families = {m.name: m.family for m in study.models} if study is not None else {}
    rows: list[dict] = []
    for other, theirs in others:
        rows += between_judges(judged, theirs, system, judge=judge, other_judge=other,
                               family=judge_family(study, judge), other_family=judge_family(study, other),
                               families=families)
        rows += judge_facet_rows(judged, theirs, system, judge=judge, other_judge=other)
    return rows


def judges_mtmm(system: ValueSystem, judged: pd.DataFrame,
                others: list[tuple[str, pd.DataFrame]]) -> tuple[dict[str, Any], pd.DataFrame]:
    """`mtmm_judges` on the completions the counted judge and every other judge scored validly."""
    from valuelex.quality.mtmm import mtmm_judges

    by_judge = {str(judged["judge"].iloc[0]): judged, **dict(others)}
    common = set.intersection(*(set(f.loc[f["valid"].astype(bool), "row_id"]) for f in by_judge.values()))
    values = {j: dimension_values(f[f["row_id"].isin(common)], system) for j, f in by_judge.items()}
    return mtmm_judges(values, [(leaf.key, leaf.name) for leaf in system.leaves()], system=system.name)


DEVSET_METRICS = ("qwk", "alpha", "auc", "balanced_accuracy", "accuracy", "share_high", "share_labelled_high")


def devset_rows(judge: Any, system: ValueSystem) -> list[dict[str, Any]]:
    """The judge's agreement with the development set's test half: one pooled row, one per dimension."""
    from valuelex.evaluate.devset import judge_labels, load_devset, summarize

    base = {"system": system.name, "judge": getattr(judge, "name", str(judge)), "split": "test"}
    labels = load_devset(system.name, "test") if system.source == "package" else pd.DataFrame()
    if labels.empty:
        notice = "no development labels for this system (only the packaged systems have them)"
        if getattr(judge, "calibration", None) and judge.rule_for(system) == "fixed rule":
            notice += ("; the embedding judge has no calibration for it (fitted on those labels), so it scores "
                       "this system with the fixed rule")
        return [{**base, "scope": "overall", "dimension": None, "n": 0, "n_invalid": 0,
                 **dict.fromkeys(DEVSET_METRICS, np.nan), "notice": notice}]
    summary = summarize(judge_labels(judge, system, labels))
    names = {d.key: d.name for d in system.all_dimensions()}
    parts = [("overall", None, summary["overall"])] + [
        ("dimension", names.get(k, k), m) for k, m in summary["per_dimension"].items()]
    return [{**base, "judge_key": judge.key(system), "scope": scope, "dimension": dim, "n": int(m["n"]),
             "n_invalid": summary["n_invalid"] if scope == "overall" else 0,
             **{k: np.nan if m.get(k) is None else float(m[k]) for k in DEVSET_METRICS}, "notice": None}
            for scope, dim, m in parts]


def paraphrases_of(store: Any, study: Study | None) -> dict[str, int]:
    """row_id -> paraphrase index of the completions that count (empty when none was asked)."""
    table = store.current_rows("completion", study)
    if table is None or "paraphrase" not in table.column_names:
        return {}
    found = dict(zip(table.column("row_id").to_pylist(), table.column("paraphrase").to_pylist(), strict=True))
    return {row: int(k) for row, k in found.items() if k}


def _system(store: Any, study: Study | None, name: str) -> ValueSystem | None:
    """A judged system by name: packaged, a taxonomy of the run, or a file the study names."""
    from valuelex.compare.load import resolve_system
    from valuelex.errors import StudyError
    from valuelex.evaluate.systems import load_value_system

    try:
        return resolve_system(store, name)
    except StudyError:
        pass
    for entry in study.evaluation.systems if study is not None else []:
        try:
            loaded = load_value_system(entry)
        except (StudyError, OSError):
            continue
        if loaded.name == name:
            return loaded
    return None


@dataclass(frozen=True)
class ReliabilityStage:
    """The reliability stage; `rejudge` / `score_controls` / `devset_judge` replace the study judge's second
    pass / controls / the judge scored on the development set.

    `build_judges=False` runs no judge at all (only the figures from stored judgments);
    `system_names` limits it to those judged systems (default: every one).
    """

    rejudge: Rejudge | None = None
    score_controls: ScoreTexts | None = None
    devset_judge: Any | None = None
    build_judges: bool = True
    system_names: tuple[str, ...] | None = None  # not `systems`: the runner loads those as files or packages
    name: str = "reliability"

    def uses_engines(self, study: Study) -> bool:
        return self.build_judges and self.rejudge is None and study.evaluation.judge == "llm" \
            and (study.reliability.rejudge > 0 or study.reliability.devset)

    def _judges(self, ctx: RunContext) -> tuple[Rejudge | None, ScoreTexts | None, Any | None, str]:
        study = ctx.study
        kind = study.evaluation.judge if study is not None else "embedding"
        injected = self.rejudge is not None or self.score_controls is not None or self.devset_judge is not None
        if injected or not self.build_judges or study is None:
            return self.rejudge, self.score_controls, self.devset_judge, kind
        from valuelex.evaluate.stage import build_judge

        judge = build_judge(study, ctx.use_gpu, ctx)
        devset_judge = judge if study.reliability.devset else None
        if kind == "llm":
            return llm_second_pass(judge), llm_control_scorer(judge), devset_judge, kind
        return None, judge.score_texts, devset_judge, kind

    def run(self, ctx: RunContext) -> StageResult:
        started = time.time()
        store = ctx.store
        spec = ctx.study.reliability if ctx.study is not None else ReliabilitySpec()
        rejudge, score_controls, devset_judge, kind = self._judges(ctx)
        frames: dict[str, list[pd.DataFrame]] = {}
        values_by_system: dict[str, pd.DataFrame] = {}
        leaves: dict[str, list[tuple[str, str]]] = {}
        scores = store.current_scores()
        notices = []
        judged_names = store.judged_systems()
        unknown = [n for n in self.system_names or () if n not in judged_names]
        if unknown:
            from valuelex.errors import StudyError

            raise StudyError(f"--system: {', '.join(map(repr, unknown))} not judged in {store.uri} "
                             f"(judged: {', '.join(judged_names) or 'none'})")
        paraphrase_of = paraphrases_of(store, ctx.study)
        mtmm_parts: list[tuple[dict[str, Any], pd.DataFrame]] = []
        for name in self.system_names or judged_names:
            system = _system(store, ctx.study, name)
            if system is None:
                notices.append(f"{name}: value system not found in the run: skipped")
                continue
            judged = jt.conform(store.judgments(system), system)
            values = dimension_values(judged, system)
            values_by_system[name] = values
            leaves[name] = [(leaf.key, leaf.name) for leaf in system.leaves()]
            tables = assess(values, system, resamples=spec.resamples, omega_resamples=spec.omega_resamples,
                            seed=spec.seed)
            worded = with_paraphrase(values, judged, paraphrase_of)
            tables["paraphrase"] = spread(worded, system)
            tables["paraphrase_components"] = paraphrase_components(worded, system)
            mine = scores[scores["system"] == name] if scores is not None and "system" in scores else pd.DataFrame()
            tables["verdicts"] = verdicts(mine, tables["coefficients"], tables["consistency"]) if len(mine) else \
                pd.DataFrame()
            others = other_judgments(store, ctx.study, system, judged)
            tables["judge"] = pd.DataFrame(_judge_rows(judged, system, spec, kind, rejudge, score_controls)
                                           + other_judge_rows(ctx.study, system, judged, others))
            if others:
                judge_summary, judge_pairs = judges_mtmm(system, judged, others)
                mtmm_parts.append((judge_summary, judge_pairs))
            if devset_judge is not None:
                tables["devset"] = pd.DataFrame(devset_rows(devset_judge, system))
            for table, frame in tables.items():
                frames.setdefault(table, []).append(frame)
        if values_by_system:
            summary, pairs = mtmm(values_by_system, leaves)
            mtmm_parts.insert(0, ({**summary, "across": "systems", "system": None},
                                  pairs.assign(across="systems", system=None)))
        if mtmm_parts:
            frames["mtmm"] = [p for _, p in mtmm_parts]
            frames["mtmm_summary"] = [pd.DataFrame([{**s, "systems": ", ".join(s["systems"])} for s, _ in mtmm_parts])]
        written = {}
        for table, parts in frames.items():
            parts = [p for p in parts if len(p)]
            if parts:
                written[table] = store.write_quality(table, pd.concat(parts, ignore_index=True))
        verdict_counts: dict[str, int] = {}
        if frames.get("verdicts"):
            all_v = pd.concat(frames["verdicts"], ignore_index=True)
            if len(all_v):
                verdict_counts = {str(k): int(v) for k, v in all_v["verdict"].value_counts().items()}
        return StageResult({"systems": sorted({str(f["system"].iloc[0]) for f in frames.get("coefficients", [])
                                               if len(f)}),
                            "tables": sorted(written), "verdicts": verdict_counts, "notices": notices,
                            "seconds": round(time.time() - started, 3)})
