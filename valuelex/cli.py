"""The `valuelex` command: one subcommand per stage of the study, plus `run` for all of them."""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from valuelex import console
from valuelex.errors import ValueLexError
from valuelex.redact import Redactor
from valuelex.spec import load_study

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
F = TypeVar("F", bound=Callable[..., Any])

StudyArg = Annotated[Path, typer.Argument(help="study YAML file", show_default=False)]
GpuOpt = Annotated[
    bool, typer.Option("--require-gpu", help="refuse to run vLLM models on CPU (also VALUELEX_REQUIRE_GPU=1)")
]
OutOpt = Annotated[str | None, typer.Option("--out", help="output root (path or s3://); default: the study's")]
ChangesOpt = Annotated[bool, typer.Option(
    "--allow-changes", help="run on an output written with another version of the study (changed seed, name, "
                            "decoding values, model source or labels): changed rows are made anew, "
                            "old ones stop counting",
)]
WaitOpt = Annotated[float, typer.Option(
    "--wait", metavar="SECONDS", min=0,
    help="if another command is writing the output, wait up to this long for it (default: refuse at once)",
)]


@app.callback()
def main_options(
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="show Ray's, vLLM's and other libraries' output "
                                          "on the terminal (default: in RUN/logs/<stage>.log)")] = False,
) -> None:
    """Measure the values LLMs hold: elicit, construct a value system, evaluate, report."""
    from valuelex import console

    if _AS_COMMAND:  # the real command only: an embedding program (or CliRunner) keeps its own output
        console.configure(verbose=verbose)


def user_errors(command: F) -> F:
    """Turn a ValueLexError into a one-paragraph message and exit code 2, with no traceback.

    The message is redacted: it may quote an endpoint's answer, and that may hold the API key.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ValueLexError as exc:
            typer.echo(f"error: {_redactor(kwargs.get('study'))(str(exc))}", err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _redactor(study: Any) -> Redactor:
    """The secrets of the command's study (when it loads) and of the environment."""
    spec = None
    if isinstance(study, Path):
        with contextlib.suppress(ValueLexError):
            spec = load_study(study)
    return Redactor.from_spec(spec)


def _print(summary: dict) -> None:
    typer.echo(json.dumps(summary, indent=2, default=str))


def _stage_summary(study: Path, command: str, stage: str, out: str | None, require_gpu: bool, wait: float,
                   allow_changes: bool,
                   **options: Any) -> dict:
    from valuelex.api import run_study
    from valuelex.api import stage as make_stage

    with console.results_only_on_stdout():
        return run_study(study, out, [make_stage(stage, **options)], require_gpu=require_gpu, wait=wait,
                         command=f"valuelex {command}", allow_changes=allow_changes).summary()[stage]


@app.command()
@user_errors
def elicit(study: StudyArg, out: OutOpt = None, require_gpu: GpuOpt = False, wait: WaitOpt = 0.0,
           allow_changes: ChangesOpt = False) -> None:
    """Ask every respondent the elicitation prompts M times; store the answers as Parquet shards."""
    _print(_stage_summary(study, "elicit", "elicitation", out, require_gpu, wait, allow_changes))


@app.command()
@user_errors
def construct(study: StudyArg, out: OutOpt = None, require_gpu: GpuOpt = False, wait: WaitOpt = 0.0,
              allow_changes: ChangesOpt = False) -> None:
    """Build the respondents' value taxonomy (taxonomy.json) from the stored elicitation answers."""
    _print(_stage_summary(study, "construct", "construction", out, require_gpu, wait, allow_changes))


SystemOpt = Annotated[
    list[str] | None,
    typer.Option("--system", help="value system: valuelex, schwartz, mft, or a YAML / taxonomy.json path (repeat)"),
]


@app.command()
@user_errors
def evaluate(study: StudyArg, system: SystemOpt = None, out: OutOpt = None, require_gpu: GpuOpt = False,
             wait: WaitOpt = 0.0, allow_changes: ChangesOpt = False) -> None:
    """Sentence-completion test: generate completions, judge them, write Eq. 4 scores with CIs."""
    _print(_stage_summary(study, "evaluate", "evaluation", out, require_gpu, wait, allow_changes, systems=system))


JudgeOpt = Annotated[str, typer.Option(
    "--judge", help="with --builtin: embedding (the study's calibration setting, else uncalibrated), "
                    "embedding-calibrated, embedding-stance, embedding-uncalibrated, or study (the judge of --study, "
                    "e.g. an LLM judge)",
)]


@app.command("judge-check")
@user_errors
def judge_check(
    labels: Annotated[Path | None, typer.Argument(help="labels CSV/Parquet: human vs judge scores")] = None,
    builtin: Annotated[bool, typer.Option("--builtin", help="score a judge on the packaged development set")] = False,
    judge: JudgeOpt = "embedding",
    study: Annotated[Path | None, typer.Option("--study", help="study whose judge --judge study means")] = None,
    split: Annotated[str, typer.Option(help="development set half: test, calibration or all")] = "test",
    system: SystemOpt = None,
) -> None:
    """Agreement of a judge with labels: a labels file (QWK, exact and ±1 agreement), or --builtin: the
    packaged development set (QWK, Krippendorff's alpha, AUC, balanced accuracy on its test half)."""
    from valuelex.errors import StudyError

    if builtin == (labels is not None):
        raise StudyError("judge-check: give a LABELS file or --builtin, not both and not neither")
    if labels is not None:
        from valuelex.evaluate.agreement import judge_check as check

        _print(check(labels))
        return
    from valuelex.evaluate.devset import check_judge, devset_systems, named_judge
    from valuelex.evaluate.systems import load_value_system

    chosen = named_judge(judge, load_study(study) if study is not None else None)
    _print(check_judge(chosen, [load_value_system(s) for s in (system or devset_systems())], split))


@app.command("judge-calibrate")
@user_errors
def judge_calibrate(
    model: Annotated[str | None, typer.Option(help="sentence-transformers model path (default: packaged)")] = None,
    out: Annotated[Path | None, typer.Option(help="calibration JSON to write (default: the packaged file)")] = None,
    method: Annotated[str, typer.Option(help="isotonic (per-dimension map of d) or stance (ordinal model of "
                                             "stance features, variant chosen by grouped CV)")] = "isotonic",
    cv_out: Annotated[Path | None, typer.Option(help="with --method stance: write the CV figures here")] = None,
) -> None:
    """Refit the embedding judge's calibration on the development set's calibration half."""
    from valuelex.errors import StudyError
    from valuelex.evaluate.devset import devset_systems
    from valuelex.evaluate.embedding import EmbeddingJudge
    from valuelex.evaluate.refit import refit, refit_stance
    from valuelex.evaluate.systems import load_value_system

    systems = [load_value_system(s) for s in devset_systems()]
    if method == "isotonic":
        _print(refit(EmbeddingJudge(model), systems, out))
    elif method == "stance":
        _print(refit_stance(EmbeddingJudge(model), systems, out, cv_out))
    else:
        raise StudyError(f"judge-calibrate: --method: {method!r} is not one of isotonic, stance")


@app.command()
@user_errors
def report(
    run_uri: Annotated[str, typer.Argument(metavar="RUN", help="a run's output root (path or s3://)")],
    out: Annotated[str | None, typer.Option("--out", help="local folder for index.html (default: RUN/report)")] = None,
    embed: Annotated[str, typer.Option(help="figures in the page as svg or png")] = "svg",
    cases: Annotated[int, typer.Option(help="sentence completions per model in the case table")] = 2,
    wait: WaitOpt = 0.0,
) -> None:
    """One self-contained index.html (opens from disk, no network) plus the figure files."""
    from valuelex.api import report as build

    _print(build(run_uri, out, embed=embed, cases=cases, wait=wait))


@app.command()
@user_errors
def reliability(
    run_uri: Annotated[str, typer.Argument(metavar="RUN", help="a run's output root (path or s3://)")],
    system: Annotated[list[str] | None, typer.Option(
        "--system", help="value system to assess (repeat for several; default: every judged one)")] = None,
    no_judge: Annotated[bool, typer.Option(
        "--no-judge", help="skip the judge's second pass and the control completions (no engine starts)")] = False,
    wait: WaitOpt = 0.0,
) -> None:
    """How far the scores can be trusted: G-study, alpha / omega, split-half, judge agreement -> RUN/quality/."""
    from valuelex.api import reliability as assess

    _print(assess(run_uri, system, wait=wait, build_judges=not no_judge))


@app.command()
@user_errors
def run(study: StudyArg, out: OutOpt = None, require_gpu: GpuOpt = False, wait: WaitOpt = 0.0,
        allow_changes: ChangesOpt = False,
        as_json: Annotated[bool, typer.Option("--json", help="print every stage's summary as JSON")] = False) -> None:
    """Every stage in order: elicit, construct, evaluate (packaged systems + the new taxonomy), report;
    then a summary: scores with CIs and verdicts per model and dimension, time per stage, the report."""
    from valuelex.api import run_study
    from valuelex.summary import format_summary

    with console.results_only_on_stdout():
        result = run_study(study, out, require_gpu=require_gpu, wait=wait, command="valuelex run",
                           allow_changes=allow_changes)
    if as_json:
        _print(result.summary())
    else:
        typer.echo(format_summary(result.run, result.summary()), nl=False)


@app.command()
@user_errors
def status(
    run_uri: Annotated[str, typer.Argument(metavar="RUN", help="a run's output root (path or s3://)")],
    as_json: Annotated[bool, typer.Option("--json", help="print the status as JSON")] = False,
) -> None:
    """Where a run stands, read-only (also while another command writes it): rows stored / grid per stage,
    failures and invalid judgments by reason, what a rerun would do, tokens spent, the report."""
    from valuelex.status import format_status, run_status

    found = run_status(run_uri)
    if as_json:
        _print(found)
    else:
        typer.echo(format_status(found), nl=False)


@app.command()
@user_errors
def annotate(
    run_uri: Annotated[str, typer.Argument(metavar="RUN", help="a run's output root (path or s3://)")],
    out: Annotated[Path, typer.Option("--out", help="folder for index.html (the labelling page) and sample.csv")],
    n: Annotated[int, typer.Option("--n", help="completions to label")] = 200,
    system: Annotated[str | None, typer.Option("--system", help="judged value system (default: valuelex)")] = None,
    seed: Annotated[int, typer.Option(help="seed of the stratified sample")] = 0,
) -> None:
    """A labelling page for human scores of a seeded stratified sample (model, stem, judge score); its
    labels.csv is what `valuelex judge-check` reads."""
    from valuelex.annotate import annotate as make

    _print(make(run_uri, str(out), n=n, system=system, seed=seed))


@app.command()
@user_errors
def migrate(
    run_uri: Annotated[str, typer.Argument(metavar="RUN", help="a run's output root (path or s3://)")],
    wait: WaitOpt = 0.0,
) -> None:
    """Convert a run written by an earlier ValueLex to this version's store format (row ids recomputed
    from the stored rows; nothing is generated or judged again)."""
    from valuelex.store.lock import hold
    from valuelex.store.migrate import migrate as convert

    with hold(run_uri, "valuelex migrate", wait):
        _print(convert(run_uri))


@app.command()
@user_errors
def plan(
    study: StudyArg,
    throughput: Annotated[Path | None, typer.Option(help="YAML overriding the tokens/s figures per model size")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
) -> None:
    """Before anything runs: grid sizes, requests, tokens and GPU-hours of every stage."""
    from valuelex.plan import format_plan
    from valuelex.plan import plan as make_plan

    result = make_plan(load_study(study), throughput)
    if as_json:
        _print(result)
    else:
        typer.echo(format_plan(result))


@app.command()
@user_errors
def validate(study: StudyArg) -> None:
    """Check a study file and print its grid size, without running anything."""
    from valuelex import grid

    spec = load_study(study)
    _print({
        "study": spec.name, "models": len(spec.models), "decoding_configs": len(spec.decoding),
        "respondents": len(spec.models) * len(spec.decoding), "samples": spec.samples,
        "elicitation_rows": grid.count(spec, "elicitation"), "completion_rows": grid.count(spec, "completion"),
    })


@app.command("compare")
@user_errors
def compare(
    run_uri: Annotated[str, typer.Argument(metavar="RUN", help="a run's output root (path or s3://)")],
    a: Annotated[str | None, typer.Option("--a", help="model a, the reference (e.g. the base checkpoint)")] = None,
    b: Annotated[str | None, typer.Option("--b", help="model b, compared with a (e.g. the fine-tuned one)")] = None,
    system: Annotated[str, typer.Option(
        "--system", help="value system: valuelex, schwartz, mft, a YAML / taxonomy.json path, or a taxonomy of the run",
    )] = "valuelex",
    groups: Annotated[str | None, typer.Option(
        "--groups", help="instead of --a/--b: family-training (each base vs its tuned model), "
                         "FIELD:A/B (e.g. training:pretrained/aligned; + joins values) or size-trend",
    )] = None,
    judge: Annotated[str | None, typer.Option(help="the judge whose judgments to use (default: the scores')")] = None,
    correction: Annotated[str, typer.Option(help="across dimensions: holm, bh or none")] = "holm",
    alpha: Annotated[float, typer.Option(help="significance level")] = 0.05,
    delta: Annotated[float, typer.Option(help="difference to detect (0-1 scale of w), for the power part")] = 0.05,
    target_power: Annotated[float, typer.Option("--power", help="power wanted for a difference of --delta")] = 0.8,
    unit: Annotated[str | None, typer.Option(
        help="permutation unit: stem (default for --a/--b), cell, or models (default for FIELD:A/B groups)",
    )] = None,
    permutations: Annotated[int, typer.Option(help="sign flips / relabellings (at least 2000)")] = 10_000,
    resamples: Annotated[int, typer.Option(help="bootstrap resamples of the CI")] = 2000,
    seed: Annotated[int, typer.Option(help="seed of the permutations and the bootstrap")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print the rows as JSON")] = False,
    wait: WaitOpt = 0.0,
) -> None:
    """Did fine-tuning move the values? b − a per dimension with CIs, corrected permutation p-values, effect
    sizes and the M needed; written to RUN/comparisons/ and shown in the report."""
    from valuelex.errors import StudyError
    from valuelex.store import RunStore
    from valuelex.store.lock import hold

    if groups is None and (a is None or b is None):
        raise StudyError("compare: name two models with --a and --b, or groups with --groups")
    if groups is not None and (a is not None or b is not None):
        raise StudyError("compare: give either --a/--b or --groups, not both")
    if not RunStore(run_uri).exists():
        raise StudyError(f"{run_uri}: no such run (the output root does not exist)")
    with hold(run_uri, "valuelex compare", wait):  # it writes RUN/comparisons/
        _compare(run_uri, a, b, system, groups, unit, as_json, settings={
            "judge": judge, "correction": correction, "alpha": alpha, "permutations": permutations,
            "resamples": resamples, "seed": seed, "delta": delta, "target_power": target_power})


def _compare(run_uri: str, a: str | None, b: str | None, system: str, groups: str | None, unit: str | None,
             as_json: bool, settings: dict[str, Any]) -> None:
    from valuelex import compare as comparing
    from valuelex.cli_format import format_comparison, format_trend, summary, written_files

    judge = settings["judge"]
    if groups is not None and groups.strip() == "size-trend":
        frame = comparing.size_trend(run_uri, system, judge=judge)
        text = format_trend(frame)
    elif groups is not None:
        frame = comparing.compare_groups(run_uri, groups, system, unit=unit, **settings)
        text = format_comparison(frame)
        if frame.attrs.get("skipped"):
            text += "not paired: " + "; ".join(frame.attrs["skipped"]) + "\n"
    else:
        frame = comparing.compare(run_uri, a, b, system, unit=unit or "stem", **settings)
        text = format_comparison(frame)
    files = written_files(run_uri, frame)
    if as_json:
        _print({"files": files, "rows": summary(frame)})
    else:
        typer.echo(text + "".join(f"written: {f}\n" for f in files), nl=False)


_AS_COMMAND = False


def main() -> None:
    global _AS_COMMAND
    _AS_COMMAND = True
    app(prog_name="valuelex")


if __name__ == "__main__":
    sys.exit(main())
