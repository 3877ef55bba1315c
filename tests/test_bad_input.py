"""Hostile input (issue 14, items 6 and 7): every bad file gets `file: field: message`, exit 2, nothing written.

Engine-free: study files are loaded in-process (`load_study`), a few through the CLI in a subprocess
(a real exit code and no traceback on stderr), and the checks `runner.prepare` makes before it
writes study.json run with Ray and the cluster stubbed out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from typer.testing import CliRunner

from tests.helpers import SMOLLM_MODEL, study_dict, write_study
from valuelex.cli import app
from valuelex.errors import EngineError, StoreError, StudyError
from valuelex.spec import load_study

CUSTOM_SYSTEM = {"version": 1, "name": "mine", "dimensions": [
    {"name": "Care", "definition": "caring for others", "anchors": ["kind", "gentle"]}]}


def _study(tmp_path: Path, **overrides: Any) -> Path:
    """A tiny study whose output is tmp_path/out (so 'nothing written' is checkable)."""
    return write_study(tmp_path, **({"output": str(tmp_path / "out")} | overrides))


def _raw(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "study.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _valid_yaml(tmp_path: Path) -> str:
    return yaml.safe_dump(study_dict(output=str(tmp_path / "out")), sort_keys=False)


def _system_file(tmp_path: Path, name: str, text: str | bytes) -> str:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def _models(**changes: Any) -> list[dict[str, Any]]:
    return [{**SMOLLM_MODEL, **changes}]


def _options(**changes: Any) -> list[dict[str, Any]]:
    return [{**SMOLLM_MODEL, "options": {**SMOLLM_MODEL["options"], **changes}}]


# each case: tmp_path -> the study file; the text expected in the message after "file: "
CASES: dict[str, tuple[Any, str]] = {
    "non-utf8 study": (lambda t: _raw(t, b"name: caf\xe9\n"), "not UTF-8"),
    "deeply nested yaml": (lambda t: _raw(t, _valid_yaml(t) + "description: " + "[" * 3000 + "]" * 3000),
                           "nested too deeply"),
    "deeply nested block yaml": (lambda t: _raw(t, _valid_yaml(t) + "description:\n  " + "- " * 5000 + "x\n"),
                                 "nested too deeply"),
    "5000-digit integer": (lambda t: _raw(t, _valid_yaml(t).replace("samples: 2", "samples: " + "9" * 5000)),
                           "not valid YAML"),
    "seed 2**64": (lambda t: _study(t, seed=2**64), "seed: must be below 2**63"),
    "output open brace": (lambda t: _study(t, output="runs/{"), "output: bad template"),
    "output positional": (lambda t: _study(t, output="runs/{0}"), "output: bad template"),
    "output unknown key": (lambda t: _study(t, output="runs/{user}"), "output: bad template"),
    "output empty": (lambda t: _study(t, output=""), "output: must not be empty"),
    "output blank": (lambda t: _study(t, output="  "), "output: must not be empty"),
    "duplicate keys": (lambda t: _raw(t, _valid_yaml(t) + "samples: 3\n"), "duplicate key 'samples'"),
    "samples as string": (lambda t: _study(t, samples="3"), "samples: Input should be a valid integer"),
    "samples as bool": (lambda t: _study(t, samples=True), "samples: Input should be a valid integer"),
    "temperature as string": (lambda t: _study(t, decoding=[{"name": "a", "temperature": "0.7", "top_p": 0.9}]),
                              "decoding[0].temperature: Input should be a valid number"),
    "top_p as bool": (lambda t: _study(t, decoding=[{"name": "a", "temperature": 0.7, "top_p": True}]),
                      "decoding[0].top_p: Input should be a valid number"),
    "batch size as float": (lambda t: _study(t, models=_options(batch_size=8.0)),
                            "models[0].options.batch_size: Input should be a valid integer"),
    "version true": (lambda t: _study(t, version=True), "version:"),
    "name as number": (lambda t: _raw(t, _valid_yaml(t).replace("name: tiny", "name: 12", 1)),
                       "name: Input should be a valid string"),
    "blank family": (lambda t: _study(t, models=_models(family="   ")), "models[0].family: must not be blank"),
    "blank source": (lambda t: _study(t, models=_models(source=" \t")), "models[0].source: must not be blank"),
    "base_url not http": (lambda t: _study(t, models=_models(engine="openai", options={"base_url": "ftp://x/v1"})),
                          "models[0].options.base_url: must be an http:// or https:// URL"),
    "base_url no host": (lambda t: _study(t, models=_models(engine="openai", options={"base_url": "http://"})),
                         "models[0].options.base_url:"),
    "unknown value system": (lambda t: _study(t, evaluation={"systems": ["valuelex", "valuelx"]}),
                             "evaluation.systems[1]: valuelx: unknown value system"),
    "system takes packaged name": (
        lambda t: _study(t, evaluation={"systems": [_system_file(
            t, "sys.yaml", yaml.safe_dump({**CUSTOM_SYSTEM, "name": "schwartz"}))]}),
        "evaluation.systems[0]: "),
    "non-utf8 value system": (
        lambda t: _study(t, evaluation={"systems": [_system_file(t, "sys.yaml", b"name: \xff\n")]}),
        "not UTF-8"),
    "value system duplicate keys": (
        lambda t: _study(t, evaluation={"systems": [_system_file(
            t, "sys.yaml", yaml.safe_dump(CUSTOM_SYSTEM) + "name: again\n")]}),
        "duplicate key 'name'"),
    "5000-digit integer in json system": (
        lambda t: _study(t, evaluation={"systems": [_system_file(t, "taxonomy.json",
                                                                 '{"format_version": ' + "7" * 5000 + "}")]}),
        "not valid JSON"),
    "deeply nested json system": (
        lambda t: _study(t, evaluation={"systems": [_system_file(t, "taxonomy.json", "[" * 5000 + "]" * 5000)]}),
        "not valid JSON: nested too deeply"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_study_is_a_study_error_naming_the_file(case: str, tmp_path: Path) -> None:
    make, expected = CASES[case]
    path = make(tmp_path)
    with pytest.raises(StudyError) as info:
        load_study(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert expected in message, message
    assert not (tmp_path / "out").exists()


def test_huge_study_file_is_refused_after_a_bounded_read(tmp_path: Path) -> None:
    zero = tmp_path / "zero.yaml"
    zero.symlink_to("/dev/zero")
    with pytest.raises(StudyError, match=r"larger than 10 MiB") as info:
        load_study(zero)
    assert str(info.value).startswith(f"{zero}: ")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (11 * 2**20))
    with pytest.raises(StudyError, match=r"larger than 10 MiB"):
        load_study(big)


def test_a_packaged_name_is_refused_for_a_custom_system_file(tmp_path: Path) -> None:
    from valuelex.evaluate.systems import load_value_system

    path = _system_file(tmp_path, "sys.yaml", yaml.safe_dump({**CUSTOM_SYSTEM, "name": "valuelex"}))
    with pytest.raises(StudyError, match=rf"^{path}: name: 'valuelex' is the name of a packaged value system"):
        load_value_system(path)


def test_strictness_keeps_enums_literals_and_ints_for_floats(tmp_path: Path) -> None:
    """Strict mode refuses coercion, not the ordinary spellings: `aligned`, `chat`, `temperature: 1`."""
    study = load_study(_study(tmp_path, decoding=[{"name": "a", "temperature": 1, "top_p": 1}],
                              models=_models(size_b=1)))
    assert study.decoding[0].temperature == 1.0 and study.models[0].training.value == "aligned"
    assert study.models[0].prompting == "chat"


@pytest.mark.parametrize("args, expected", [
    (["validate", "{bad_utf8}"], "not UTF-8"),
    (["validate", "{seed}"], "seed: must be below 2**63"),
    (["elicit", "{template}", "--out", "{out}"], "output: bad template"),
    (["validate", "{system}"], "evaluation.systems[0]: valuelx: unknown value system"),
])
def test_cli_exits_2_without_a_traceback(args: list[str], expected: str, tmp_path: Path) -> None:
    files = {
        "bad_utf8": str(_raw(tmp_path, b"name: \xc3\x28\n")),
        "seed": str(write_study(tmp_path, "seed.yaml", seed=2**64, output=str(tmp_path / "out"))),
        "template": str(write_study(tmp_path, "template.yaml", output="runs/{0}")),
        "system": str(write_study(tmp_path, "system.yaml", evaluation={"systems": ["valuelx"]},
                                  output=str(tmp_path / "out"))),
        "out": str(tmp_path / "out"),
    }
    argv = [a.format(**files) for a in args]
    result = subprocess.run([sys.executable, "-m", "valuelex.cli", *argv], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path, env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and expected in result.stderr, result.stderr
    assert result.stderr.startswith(f"error: {argv[1]}: "), result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


# --- checks before study.json is written ------------------------------------------------------


@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray and the cluster stubbed: one node with 1 GPU and 4 CPUs (prepare must fail before using them)."""
    from valuelex import placement, runtime
    from valuelex.placement import Node

    monkeypatch.setattr(runtime, "ensure_ray", lambda *a, **k: None)
    monkeypatch.setattr(placement, "cluster_nodes", lambda *a, **k: [Node("n0", gpus=1, cpus=4)])


@pytest.mark.parametrize("models, expected", [
    (_models(engine="openai", options={"base_url": "http://127.0.0.1:9/v1", "api_key_env": "VALUELEX_NO_SUCH_KEY"}),
     "environment variable VALUELEX_NO_SUCH_KEY (options.api_key_env) is not set"),
    (_models(source="gguf-wheel:valuelex_no_such_package"), "package 'valuelex_no_such_package' is not installed"),
    (_options(tensor_parallel_size=4), "cannot place 1 model(s)"),
])
def test_engine_problems_are_refused_before_study_json(models: list, expected: str, tmp_path: Path,
                                                        no_cluster: None) -> None:
    from valuelex.api import run_study

    out = tmp_path / "out"
    assert "VALUELEX_NO_SUCH_KEY" not in os.environ
    with pytest.raises(EngineError) as info:
        run_study(load_study(_study(tmp_path, models=models)), str(out), ["elicitation"])
    assert expected in str(info.value)
    assert not out.exists()


# --- the report folder (item 6) ------------------------------------------------------------------


def test_report_on_a_missing_run_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    run, out = tmp_path / "no-such-run", tmp_path / "report"
    result = CliRunner().invoke(app, ["report", str(run), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert f"{run}: no such run" in result.output
    assert not out.exists() and not run.exists()


def test_report_embed_must_be_svg_or_png(tmp_path: Path) -> None:
    run, out = tmp_path / "run", tmp_path / "report"
    run.mkdir()
    result = CliRunner().invoke(app, ["report", str(run), "--out", str(out), "--embed", "gif"])
    assert result.exit_code == 2, result.output
    assert "--embed: must be svg or png" in result.output
    assert not out.exists() and list(run.iterdir()) == []


def test_report_deletes_only_what_an_earlier_report_wrote(tmp_path: Path) -> None:
    from valuelex.report.stage import MANIFEST, build_report

    run, out = tmp_path / "run", tmp_path / "report"
    run.mkdir()
    figures = out / "figures"
    figures.mkdir(parents=True)
    (figures / "mine.svg").write_text("<svg/>")        # the user's
    (figures / "fig-old.svg").write_text("<svg/>")     # an earlier report's, stale now
    (tmp_path / "outside.svg").write_text("<svg/>")
    (out / MANIFEST).write_text(json.dumps({"files": ["index.html", "figures/fig-old.svg", "../outside.svg",
                                                      "figures/../../outside.svg"]}))
    build_report(str(run), str(out))
    assert (figures / "mine.svg").exists() and (tmp_path / "outside.svg").exists()
    assert not (figures / "fig-old.svg").exists()
    assert json.loads((out / MANIFEST).read_text())["files"] == ["index.html"]  # an empty run: no figures
    build_report(str(run), str(out))  # a second report over its own folder
    assert (figures / "mine.svg").exists()


# --- other inputs -------------------------------------------------------------------------------


def test_a_shard_of_another_schema_is_a_store_error_naming_the_table(tmp_path: Path) -> None:
    from valuelex.store.shards import OutputRoot

    table = OutputRoot(str(tmp_path / "run")).table("elicitation")
    table.write(pa.table({"row_id": ["a"], "error": [None], "x": [1]}))
    table.write(pa.table({"row_id": ["b"], "error": [None], "x": [[1, 2]]}))
    with pytest.raises(StoreError, match=r"/elicitation: shards do not share one schema"):
        table.read()


def test_labels_with_an_empty_dimension_cell(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("row_id,dimension,human,judge\na,,3,4\nb,Self-Competent,2,2\n")
    result = CliRunner().invoke(app, ["judge-check", str(labels)])
    assert result.exit_code == 2, result.output
    assert f"{labels}: column dimension: 1 rows have no dimension" in result.output


def test_an_unknown_system_option_fails_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["evaluate", str(_study(tmp_path)), "--system", "valuelx", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "valuelx: unknown value system" in result.output
    assert not out.exists()
