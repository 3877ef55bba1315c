"""The grid's identities and the store's promises, without an engine."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import write_study
from valuelex import grid
from valuelex.errors import StoreError, StudyError
from valuelex.spec import load_study
from valuelex.store import OutputRoot, latest_per_row


def test_row_ids_are_stable_unique_and_seeded(tmp_path: Path) -> None:
    study = load_study(write_study(tmp_path))
    model = study.models[0]
    first = list(grid.requests(study, "elicitation", model))
    again = list(grid.requests(load_study(write_study(tmp_path, name="copy.yaml")), "elicitation", model))
    assert [r["row_id"] for r in first] == [r["row_id"] for r in again]
    assert len({r["row_id"] for r in first}) == len(first) == grid.count(study, "elicitation", model) == 8
    assert len({r["seed"] for r in first}) == len(first)


def test_raising_m_only_adds_rows(tmp_path: Path) -> None:
    study = load_study(write_study(tmp_path))
    model = study.models[0]
    small = {r["row_id"]: r["seed"] for r in grid.requests(study, "elicitation", model)}
    large = {r["row_id"]: r["seed"] for r in grid.requests(study, "elicitation", model, samples=5)}
    assert small.items() <= large.items() and len(large) == 20


def test_identity_follows_what_determines_the_answer(tmp_path: Path) -> None:
    base = load_study(write_study(tmp_path))
    hotter = load_study(write_study(tmp_path, name="hot.yaml", decoding=[
        {"name": "t0.7", "temperature": 0.8, "top_p": 0.9, "max_tokens": 24},
        {"name": "t1.0", "temperature": 1.0, "top_p": 1.0, "max_tokens": 24},
    ]))
    ids = lambda s: {r["row_id"] for r in grid.requests(s, "elicitation", s.models[0])}  # noqa: E731
    assert len(ids(base) & ids(hotter)) == 4  # only the unchanged config's rows are shared
    reseeded = load_study(write_study(tmp_path, name="seed.yaml", seed=8))
    seeds = lambda s: [r["seed"] for r in grid.requests(s, "elicitation", s.models[0])]  # noqa: E731
    assert not ids(base) & ids(reseeded) and seeds(base) != seeds(reseeded)  # a new seed is a new draw


def test_equal_configs_of_two_names_stay_two_respondents(tmp_path: Path) -> None:
    twin = {"temperature": 0.7, "top_p": 0.9, "max_tokens": 24}
    study = load_study(write_study(tmp_path, decoding=[{"name": "a", **twin}, {"name": "b", **twin}]))
    rows = [r for m in study.models for r in grid.requests(study, "elicitation", m)]
    assert len({r["row_id"] for r in rows}) == len(rows) == grid.count(study, "elicitation") == 16
    assert grid.row_ids(study, "elicitation") == {r["row_id"] for r in rows}


@pytest.mark.parametrize("field", ["elicitation", "stems"])
def test_a_prompt_id_listed_twice_is_refused(tmp_path: Path, field: str) -> None:
    ids = ["q01", "q09", "q01"] if field == "elicitation" else ["s01", "s01"]
    with pytest.raises(StudyError, match=rf"prompts\.{field}.*listed more than once: \['{ids[0]}'\]"):
        load_study(write_study(tmp_path, prompts={"elicitation": ["q01"], "stems": ["s01"], field: ids}))


def test_prompt_framing_follows_the_model(tmp_path: Path) -> None:
    study = load_study(write_study(tmp_path))
    chat, base = study.models
    chat_row = next(grid.requests(study, "completion", chat))
    base_row = next(grid.requests(study, "completion", base))
    assert chat_row["prompt"] == "Complete the sentence: I like" and base_row["prompt"] == "I like"
    base_q = next(grid.requests(study, "elicitation", base))["prompt"]
    assert base_q.endswith(":") and "?" not in base_q


def _rows(ids: list[str], errors: list[str | None]) -> pa.Table:
    return pa.table({"row_id": ids, "response": [f"r{i}" for i in range(len(ids))], "error": errors})


def test_shards_publish_whole_and_dedupe(tmp_path: Path) -> None:
    root = OutputRoot(str(tmp_path / "run"))
    table = root.table("elicitation")
    table.write(_rows(["a", "b"], [None, "HTTP 500"]))
    table.write(_rows(["b", "c"], [None, None]))
    table.write(_rows(["a"], [None]))  # a duplicate success never replaces the first one
    assert table.done_row_ids() == {"a", "b", "c"}
    merged = table.read().to_pydict()
    assert sorted(merged["row_id"]) == ["a", "b", "c"]
    assert dict(zip(merged["row_id"], merged["response"], strict=True))["a"] == "r0"
    assert not list((tmp_path / "run").rglob("*.tmp"))
    for shard in table.shard_paths():
        assert pq.read_table(shard).num_rows > 0


def test_failures_are_kept_until_a_success_arrives() -> None:
    table = _rows(["x", "x", "y"], ["timeout", "HTTP 429", "HTTP 500"])
    latest = latest_per_row(table).to_pydict()
    assert dict(zip(latest["row_id"], latest["error"], strict=True)) == {"x": "HTTP 429", "y": "HTTP 500"}


def test_partial_files_are_never_read(tmp_path: Path) -> None:
    root = OutputRoot(str(tmp_path))
    root.table("t").write(_rows(["a"], [None]))
    (tmp_path / "_incoming").mkdir(exist_ok=True)
    (tmp_path / "_incoming" / "junk.tmp").write_bytes(b"PAR1 half a file")
    (tmp_path / "t" / "part-x.parquet.tmp").write_bytes(b"PAR1 half a file")
    assert root.table("t").read().num_rows == 1


def test_paths_cannot_escape_the_output_root(tmp_path: Path) -> None:
    root = OutputRoot(str(tmp_path / "run"))
    with pytest.raises(StoreError, match="escapes"):
        root.write_json("../outside.json", {})
    with pytest.raises(StoreError, match="escapes"):
        root.table("../../etc").write(_rows(["a"], [None]))
    assert not (tmp_path / "outside.json").exists()


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(StoreError, match="unsupported"):
        OutputRoot("ftp://host/x")


def test_s3_round_trip(s3_endpoint: str) -> None:
    root = OutputRoot("s3://valuelex/unit")
    root.table("elicitation").write(_rows(["a", "b"], [None, None]))
    root.write_json("study.json", {"name": "unit"})
    again = OutputRoot("s3://valuelex/unit")
    assert again.table("elicitation").done_row_ids() == {"a", "b"}
    assert again.read_json("study.json") == {"name": "unit"}
