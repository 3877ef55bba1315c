"""Study files: valid ones load; malformed ones fail with the file and field named, writing nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.helpers import GEMMA_MODEL, SMOLLM_MODEL, write_study
from valuelex import grid
from valuelex.cli import app
from valuelex.errors import StudyError
from valuelex.spec import load_study

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["local.yaml", "paper.yaml"])
def test_shipped_studies_load(name: str) -> None:
    study = load_study(REPO / "configs" / name)
    assert len(study.models) >= 2 and len(study.decoding) >= 2
    assert {m.training.value for m in study.models} >= {"pretrained", "aligned"}


def test_local_study_is_offline_and_has_both_prompting_styles() -> None:
    study = load_study(REPO / "configs" / "local.yaml")
    assert all(m.source.startswith("gguf-wheel:") for m in study.models)
    assert {m.prompting for m in study.models} == {"chat", "completion"}


BAD_CASES = {
    "unknown field": (dict(temperature=0.5), "temperature: unknown field"),
    "wrong type": (dict(samples="many"), "samples:"),
    "negative M": (dict(samples=-1), "samples:"),
    "missing model source": (
        dict(models=[{k: v for k, v in SMOLLM_MODEL.items() if k != "source"}]), "models[0].source: Field required"
    ),
    "bad temperature": (
        dict(decoding=[{"name": "hot", "temperature": 3.5, "top_p": 0.9}]), "decoding[0].temperature:"
    ),
    "empty prompts": (dict(prompts={"elicitation": []}), "prompts.elicitation:"),
    "empty model list": (dict(models=[]), "models:"),
    "duplicate model names": (dict(models=[SMOLLM_MODEL, {**GEMMA_MODEL, "name": "smollm2"}]), "models[1].name"),
    "unknown training": (dict(models=[{**SMOLLM_MODEL, "training": "rlhf"}]), "models[0].training:"),
    "unknown model option": (dict(models=[{**SMOLLM_MODEL, "options": {"tp": 2}}]), "models[0].options.tp"),
    "openai without url": (dict(models=[{**SMOLLM_MODEL, "engine": "openai"}]), "base_url"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_malformed_study_names_file_and_field_and_writes_nothing(case: str, tmp_path: Path) -> None:
    overrides, expected = BAD_CASES[case]
    path = write_study(tmp_path, **overrides)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["elicit", str(path), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert str(path) in result.output and expected in result.output
    assert not out.exists()


def test_unknown_prompt_id_is_an_error(tmp_path: Path) -> None:
    study = load_study(write_study(tmp_path, prompts={"elicitation": ["q01", "q99"]}))
    with pytest.raises(StudyError, match="q99"):
        grid.count(study, "elicitation")


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match="cannot read"):
        load_study(tmp_path / "missing.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(StudyError, match="expected a mapping"):
        load_study(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed")
    with pytest.raises(StudyError, match="not valid YAML"):
        load_study(broken)


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(StudyError, match="not valid YAML"):
        load_study(path)


def test_validate_prints_grid_size(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["validate", str(write_study(tmp_path))])
    assert result.exit_code == 0, result.output
    assert '"elicitation_rows": 16' in result.output  # 2 prompts x 2 configs x 2 samples x 2 models
