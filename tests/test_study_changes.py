"""One output, one study (issue 14 item 4): a changed study is refused or kept apart, every stage
reads the current grid only, and a run of the earlier store format is recognised and migrated."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.fault_server import FaultServer
from tests.helpers import elicit, study_dict, write_study
from valuelex import grid
from valuelex.api import open_run, report, run_study
from valuelex.errors import StudyError
from valuelex.spec import Study, load_study
from valuelex.store import RunStore
from valuelex.store.changes import study_changes
from valuelex.store.migrate import format1_row_id, migrate

REPO = Path(__file__).resolve().parent.parent
FORMAT_1 = REPO / "tests" / "data" / "store-format-1"


def served(base_url: str, name: str = "served", **fields: object) -> dict:
    return {"name": name, "source": f"fake-{name}", "engine": "openai", "training": "aligned", "family": "fake",
            "size_b": 1.0, "prompting": "chat",
            "options": {"base_url": base_url, "max_retries": 0, "request_timeout_s": 5.0}, **fields}


# --- what counts as a change ----------------------------------------------------------------------


def dump(**overrides: object) -> dict:
    fields = {"models": [served("http://127.0.0.1:1")], **overrides}
    return Study.model_validate(study_dict(**fields)).model_dump(mode="json")


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"seed": 8}, "seed: 7 -> 8"),
    ({"name": "other"}, "name: 'tiny' -> 'other'"),
    ({"decoding": [{"name": "t0.7", "temperature": 0.8, "top_p": 0.9, "max_tokens": 24}]},
     "decoding[t0.7].temperature: 0.7 -> 0.8"),
    ({"models": [served("http://127.0.0.1:1", family="other")]}, "models[served].family: 'fake' -> 'other'"),
    ({"models": [served("http://127.0.0.1:1", training="pretrained")]},
     "models[served].training: 'aligned' -> 'pretrained'"),
    ({"models": [served("http://127.0.0.1:1", size_b=2.0)]}, "models[served].size_b: 1.0 -> 2.0"),
    ({"models": [{**served("http://127.0.0.1:1"), "source": "fake-v2"}]},
     "models[served].source: 'fake-served' -> 'fake-v2'"),
])
def test_each_kind_of_change_is_named(overrides: dict, expected: str) -> None:
    assert study_changes(dump(), dump(**overrides)) == [expected]


def test_growing_a_study_is_not_a_change() -> None:
    grown = dump(samples=5, models=[served("http://127.0.0.1:1"), served("http://127.0.0.1:1", "second")],
                 decoding=[*study_dict()["decoding"], {"name": "t0.3", "temperature": 0.3, "top_p": 1.0}],
                 prompts={"elicitation": "all", "stems": "all"}, shard_rows=9, output="elsewhere",
                 evaluation={"systems": ["mft"]})
    moved = dump(models=[served("http://127.0.0.1:2")])  # a server's address is not its model
    assert study_changes(dump(), grown) == [] and study_changes(dump(), moved) == []


# --- a changed study on an existing output ---------------------------------------------------------


def _shards(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*.parquet")}


def test_a_changed_study_is_refused_then_kept_apart_when_allowed(ray_local: None, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with FaultServer() as server:
        study = load_study(write_study(tmp_path, models=[served(server.base_url)]))
        assert elicit(study, str(out))["rows_generated"] == 8
        before, study_json = _shards(out), (out / "study.json").read_text()
        reseeded = load_study(write_study(tmp_path, "seed.yaml", models=[served(server.base_url)], seed=8))
        with pytest.raises(StudyError, match=r"(?s)differs from the one.*seed: 7 -> 8.*--allow-changes"):
            elicit(reseeded, str(out))
        assert _shards(out) == before and (out / "study.json").read_text() == study_json  # nothing written

        result = run_study(reseeded, str(out), ["elicitation"], allow_changes=True).summary()["elicitation"]
        assert result["rows_generated"] == 8 and result["rows_already_stored"] == 0  # a new draw, kept apart
        store = RunStore(str(out))
        assert store.generation("elicitation").read().num_rows == 16  # both draws stored ...
        current = store.current_rows("elicitation", reseeded)
        assert set(current.column("row_id").to_pylist()) == grid.row_ids(reseeded, "elicitation")  # ... one counts
        assert set(current.column("seed").to_pylist()).isdisjoint(
            {r["seed"] for r in grid.requests(study, "elicitation", study.models[0])})


def test_relabelled_models_and_changed_configs_serve_the_current_study(ray_local: None, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    with FaultServer() as server:
        study = load_study(write_study(tmp_path, models=[served(server.base_url)]))
        elicit(study, out)
        relabelled = load_study(write_study(tmp_path, "family.yaml", models=[served(server.base_url, family="new")]))
        with pytest.raises(StudyError, match=r"models\[served\]\.family: 'fake' -> 'new'"):
            elicit(relabelled, out)
        done = run_study(relabelled, out, ["elicitation"], allow_changes=True).summary()["elicitation"]
        assert done["rows_generated"] == 0  # labels are not identity: nothing is paid for twice
        assert set(RunStore(out).current_rows("elicitation", relabelled).column("family").to_pylist()) == {"new"}

        hotter = study_dict(models=[served(server.base_url, family="new")])
        hotter["decoding"][0]["temperature"] = 0.8
        hotter.pop("name")
        hotter = load_study(write_study(tmp_path, "hot.yaml", **hotter))
        done = run_study(hotter, out, ["elicitation"], allow_changes=True).summary()["elicitation"]
        assert done["rows_generated"] == 4  # the changed config's rows only
        current = RunStore(out).current_rows("elicitation", hotter).to_pylist()
        assert len(current) == 8 and {r["temperature"] for r in current if r["config"] == "t0.7"} == {0.8}


# --- the earlier store format ----------------------------------------------------------------------


def test_a_format_1_run_is_refused_with_the_way_out(tmp_path: Path) -> None:
    run = tmp_path / "old"
    shutil.copytree(FORMAT_1, run)
    shards = _shards(run)
    for attempt in (lambda: open_run(str(run)), lambda: report(str(run)),
                    lambda: run_study(RunStore(str(run)).study(), str(run), ["elicitation"])):
        with pytest.raises(StudyError, match=r"store format 1.*valuelex migrate"):
            attempt()
    assert _shards(run) == shards and not (run / "store.json").exists() and not (run / "report").exists()


def test_migrate_converts_ids_keeps_answers_and_judgments(ray_local: None, tmp_path: Path) -> None:
    run = tmp_path / "old"
    shutil.copytree(FORMAT_1, run)
    old_answers = {r["row_id"]: r for r in pq.read_table(run / "completions").to_pylist()}
    done = subprocess.run([sys.executable, "-m", "valuelex.cli", "migrate", str(run)], capture_output=True,
                          text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["migrated"] and summary["tables"]["completions"]["row_ids_converted"] == 16
    store = open_run(str(run))
    study = store.study()
    assert json.loads((run / "store.json").read_text())["format"] == 2
    answers = store.current_rows("completion", study).to_pylist()
    assert {r["row_id"] for r in answers} == grid.row_ids(study, "completion")
    for row in answers:  # the same answer, now under its format-2 id
        old_id = format1_row_id(study, "completion", study.model(row["model"]),
                                next(c for c in study.decoding if c.name == row["config"]), row["item_id"],
                                row["prompt"], row["sample"])
        assert old_answers[old_id]["response"] == row["response"] and old_answers[old_id]["seed"] == row["seed"]
    judged = store.judgments("valuelex")
    assert len(judged) == 16 and set(judged["row_id"]) == grid.row_ids(study, "completion")
    assert migrate(str(run))["migrated"] is False  # a second run changes nothing

    (run / "store.json").unlink()  # as if interrupted before store.json: rerunning finds the ids converted
    again = migrate(str(run))
    assert again["tables"]["completions"]["row_ids_converted"] == 16
    assert set(open_run(str(run)).judgments("valuelex")["row_id"]) == grid.row_ids(study, "completion")

    with FaultServer() as server:  # the stored answers count: rerunning generates nothing
        document = study.model_dump(mode="json")
        for model in document["models"]:
            model["options"]["base_url"] = server.base_url
        result = run_study(Study.model_validate(document), str(run), ["elicitation"]).summary()["elicitation"]
        assert result["rows_generated"] == 0 and result["rows_already_stored"] == 16
