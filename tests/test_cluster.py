"""Cluster scale on real parts: a two-node Ray cluster on this machine takes a `ray job submit` of
jobs/elicit.py, whose Ray Data actors run on both nodes and write to a real S3 API; plus the
cluster configs checked against Ray's own schema and the fields KubeRay needs.

The cluster is ours alone: its own --temp-dir (so no `ray.init()` elsewhere finds it), its own
ports and its own auth token file, and at the end we stop exactly the processes it started (by
pid: those whose command line names our temp dir, and their descendants) -- never `ray stop`,
which would stop every Ray on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port
from tests.fault_server import FaultServer
from tests.helpers import write_study
from valuelex import grid
from valuelex.spec import load_study
from valuelex.store import OutputRoot

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
OUT = "s3://valuelex/cluster-run"
CLUSTER_START_TIMEOUT_S = 120
JOB_TIMEOUT_S = 150


def dashboard_installed() -> bool:
    try:
        import ray.dashboard.optional_deps  # noqa: F401
    except ImportError:
        return False
    return True


# --- a two-node Ray cluster that is ours alone ---------------------------------------------------


@dataclass
class LocalCluster:
    temp_dir: str
    env: dict[str, str]
    gcs_address: str
    dashboard_url: str
    log: list[str] = field(default_factory=list)
    error: BaseException | None = None
    ready: threading.Event = field(default_factory=threading.Event)

    def wait(self) -> None:
        started = self.ready.wait(CLUSTER_START_TIMEOUT_S)
        assert started, "the Ray cluster did not start in time:\n" + "\n".join(self.log)
        if self.error:
            raise AssertionError(f"the Ray cluster failed to start: {self.error}\n" + "\n".join(self.log))

    def ray(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        result = subprocess.run([RAY, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                                cwd=self.temp_dir)
        output = result.stdout[-1500:] + result.stderr[-1500:]
        self.log.append(f"$ ray {' '.join(args)} -> {result.returncode}\n{output}")
        return result

    def query(self, code: str, *args: str) -> dict:
        """Run Python against the cluster's state API in a child process (this one may host another Ray)."""
        result = subprocess.run([sys.executable, "-c", code, self.dashboard_url, *args], env=self.env,
                                capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])


def cluster_env(temp_dir: str) -> dict[str, str]:
    """The nodes' environment: this venv first on PATH, token auth with our own token, and nothing
    the job should get only from its runtime env (S3 endpoint and keys) or that would redirect Ray."""
    drop = ("AWS_", "RAY_", "VALUELEX_S3_ENDPOINT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    token = Path(temp_dir) / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token), RAY_USAGE_STATS_ENABLED="0",
        PYTHONUNBUFFERED="1",
    )
    return env


def start_nodes(cluster: LocalCluster, gcs_port: int, dashboard_port: int) -> None:
    common = ["--disable-usage-stats", f"--temp-dir={cluster.temp_dir}", "--num-cpus=2",
              "--object-store-memory=150000000", "--node-ip-address=127.0.0.1"]
    try:
        head = cluster.ray(
            "start", "--head", f"--port={gcs_port}", "--resources", '{"head": 1}', "--include-dashboard=true",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
            f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}", *common,
            timeout=CLUSTER_START_TIMEOUT_S)
        assert head.returncode == 0, "ray start --head failed"
        worker = cluster.ray(
            "start", f"--address={cluster.gcs_address}", "--resources", '{"worker": 1}',
            f"--dashboard-agent-listen-port={free_port()}", *common, timeout=CLUSTER_START_TIMEOUT_S)
        assert worker.returncode == 0, "ray start (worker) failed"
    except BaseException as exc:  # reported by LocalCluster.wait in the test's thread
        cluster.error = exc
    finally:
        cluster.ready.set()


def our_processes(marker: str) -> list[int]:
    """Pids whose command line names `marker` (our temp dir), and all their descendants."""
    table: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        table[int(entry)] = (ppid, cmdline)
    ours = {pid for pid, (_, cmd) in table.items() if marker in cmd and pid != os.getpid()}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _) in table.items() if ppid in ours} - ours
        ours |= children
        grew = bool(children)
    return sorted(ours)


def stop_processes(marker: str, grace_s: float = 5) -> None:
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5)):
        pids = our_processes(marker)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if Path(f"/proc/{p}").exists() and _not_zombie(p)]
            time.sleep(0.2)
        if not pids:
            return


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[LocalCluster]:
    """Head (`head` resource) + worker (`worker` resource), 2 CPUs each, started in the background so
    that the vLLM server fixture can start meanwhile; the test calls `wait()`."""
    if not dashboard_installed():
        pytest.skip("`ray job submit` needs Ray's dashboard: install ray[default] (pyproject's ray extra)")
    temp_dir = tempfile.mkdtemp(prefix="vlxray-", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    gcs_port, dashboard_port = free_port(), free_port()
    cluster = LocalCluster(temp_dir=temp_dir, env=cluster_env(temp_dir), gcs_address=f"127.0.0.1:{gcs_port}",
                           dashboard_url=f"http://127.0.0.1:{dashboard_port}")
    starter = threading.Thread(target=start_nodes, args=(cluster, gcs_port, dashboard_port), daemon=True)
    starter.start()
    try:
        yield cluster
    finally:
        starter.join(CLUSTER_START_TIMEOUT_S)
        stop_processes(temp_dir)
        left = our_processes(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"processes of the test cluster still running: {left}"


def job_runtime_env(path: Path, scratch: Path) -> Path:
    """runtime_env.yaml as the job gets it here: without `pip` (this venv already has the packages;
    a real cluster's image does too), caches in scratch, and the S3 endpoint and (fake) keys of the
    moto fixture added to env_vars -- the only way the job can learn them (the nodes lack them).
    Written to a temp file: the real runtime_env.yaml never holds credentials."""
    env = yaml.safe_load((ROOT / "runtime_env.yaml").read_text())
    env.pop("pip", None)
    env.pop("working_dir", None)  # given as --working-dir, like the README's command
    env["env_vars"].update(HF_HOME=str(scratch / "hf"), VALUELEX_CACHE=str(scratch / "cache"))
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        env["env_vars"][key] = os.environ[key]
    # Ray Data starts pool actors asynchronously: one on a slower node could find no work left.
    # Waiting for both before the first batch makes "ran on both nodes" deterministic.
    env["env_vars"]["RAY_DATA_DEFAULT_WAIT_FOR_MIN_ACTORS_S"] = "90"
    path.write_text(yaml.safe_dump(env, sort_keys=False))
    return path


STATE_QUERY = """
import json, sys
from ray.job_submission import JobSubmissionClient
from ray.util.state import list_nodes, list_tasks
address, submission = sys.argv[1], sys.argv[2]
info = JobSubmissionClient(address).get_job_info(submission)
nodes = {n.node_id: sorted(k for k in n.resources_total if k in ("head", "worker"))
         for n in list_nodes(address=address, detail=True)}
tasks = [{"name": t.name, "node_id": t.node_id, "state": str(t.state)}
         for t in list_tasks(address=address, filters=[("job_id", "=", info.job_id)], detail=True, limit=10000)]
print(json.dumps({"status": str(info.status), "driver_node_id": info.driver_node_id, "nodes": nodes, "tasks": tasks}))
"""


@pytest.mark.cluster
def test_ray_job_submit_runs_on_both_nodes_and_writes_s3(
    local_cluster: LocalCluster, s3_endpoint: str, tmp_path: Path,
) -> None:
    """`ray job submit` of jobs/elicit.py with the repo as working dir: the grid's rows land in S3,
    and the engine's Ray Data actors (concurrency 2) ran on both nodes, the driver on the head.
    The endpoint is the protocol-faithful fake (tests/fault_server.py): what is under test is where
    the job and its actors run, and a real vLLM server held for the session slowed every later engine."""
    with FaultServer(delay=0.2) as server:
        submit_and_check(local_cluster, server.base_url, tmp_path)


def submit_and_check(local_cluster: LocalCluster, base_url: str, tmp_path: Path) -> None:
    served = {
        "name": "smollm2-served", "source": "smollm2", "engine": "openai", "size_b": 0.135, "training": "aligned",
        "family": "smollm2", "prompting": "chat",
        "options": {"base_url": base_url, "concurrency": 2, "max_concurrency": 2, "batch_size": 2},
    }
    study_path = write_study(tmp_path, name="cluster-study.yaml", models=[served], samples=3,
                             decoding=[{"name": "t0.7", "temperature": 0.7, "top_p": 0.9, "max_tokens": 16},
                                       {"name": "t1.0", "temperature": 1.0, "top_p": 1.0, "max_tokens": 16}])
    runtime_env = job_runtime_env(tmp_path / "runtime_env.job.yaml", tmp_path)
    local_cluster.wait()

    submission = f"valuelex-test-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    submit = subprocess.run(
        [RAY, "job", "submit", "--address", local_cluster.dashboard_url, "--submission-id", submission,
         "--entrypoint-resources", '{"head": 1}', "--runtime-env", str(runtime_env), "--working-dir", ".",
         "--", "python", "jobs/elicit.py", str(study_path), "--out", OUT],
        cwd=ROOT, env=local_cluster.env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S,
    )
    logs = submit.stdout[-6000:] + submit.stderr[-3000:]
    assert submit.returncode == 0, f"ray job submit failed:\n{logs}"
    assert f"Job '{submission}' succeeded" in logs, logs
    summary = json.loads(re.search(r"^\{\n.*?^\}$", submit.stdout, re.S | re.M).group(0))
    assert summary["rows_generated"] == 12 and summary["rows_failed"] == 0, summary
    print(f"job ran in {time.monotonic() - started:.0f} s")

    study = load_study(study_path)
    table = OutputRoot(OUT).table("elicitation").read()
    assert table is not None, f"nothing under {OUT}/elicitation"
    expected = {r["row_id"] for m in study.models for r in grid.requests(study, "elicitation", m)}
    assert len(expected) == 12 and set(table["row_id"].to_pylist()) == expected and table.num_rows == 12
    rows = table.to_pylist()
    assert all(r["error"] is None and r["engine"] == "openai" and r["n_completion_tokens"] > 0 for r in rows)
    assert OutputRoot(OUT).read_json("study.json")["name"] == study.name

    state = local_cluster.query(STATE_QUERY, submission)
    assert state["status"] == "SUCCEEDED"
    by_role = {roles[0]: node for node, roles in state["nodes"].items() if roles}
    assert set(by_role) == {"head", "worker"}, state["nodes"]
    assert state["driver_node_id"] == by_role["head"]
    engine_tasks = [t for t in state["tasks"] if t["name"].endswith("(OpenAIBatchCaller)).submit")]
    assert engine_tasks, [t["name"] for t in state["tasks"]]
    assert {t["node_id"] for t in engine_tasks} == {by_role["head"], by_role["worker"]}, engine_tasks


# --- configs: what `ray up`, KubeRay and `ray job submit` will read -------------------------------


def ray_cluster_schema() -> dict:
    import ray

    return json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())


def test_cluster_launcher_yaml_validates_against_rays_schema() -> None:
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster" / "aws-gpu.yaml").read_text())
    jsonschema.validate(config, ray_cluster_schema())
    validate_config(prepare_config(config))  # what `ray up` runs: schema plus node-type consistency
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"]["GPU"] == 0 and head["resources"]["CPU"] > 0
    assert "--num-gpus=0" in " ".join(config["head_start_ray_commands"])
    workers = {name: t["resources"] for name, t in types.items() if name != config["head_node_type"]}
    assert sorted(r["GPU"] for r in workers.values()) == [1, 8]
    for resources in workers.values():
        assert any(k.startswith("accelerator_type:") for k in resources)  # what accelerator_type asks for


def test_kuberay_rayjob_manifest_has_what_a_rayjob_needs() -> None:
    manifest = yaml.safe_load((ROOT / "cluster" / "kuberay-rayjob.yaml").read_text())
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayJob"
    spec = manifest["spec"]
    assert re.fullmatch(r"python jobs/run\.py configs/paper\.yaml --out s3://\S+", spec["entrypoint"])
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["working_dir"] and "pip" not in runtime_env  # the image holds the dependencies
    assert all(isinstance(v, str) for v in runtime_env["env_vars"].values())
    cluster = spec["rayClusterSpec"]
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    head_limits = head["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in head_limits
    gpus = []
    for group in cluster["workerGroupSpecs"]:
        container = group["template"]["spec"]["containers"][0]
        assert group["groupName"] and group["maxReplicas"] >= group["minReplicas"] >= 0
        gpus.append(int(container["resources"]["limits"]["nvidia.com/gpu"]))
        assert container["image"] == head["template"]["spec"]["containers"][0]["image"]
    assert sorted(gpus) == [1, 8]


def test_runtime_env_yaml_is_valid_for_ray_job_submit() -> None:
    from ray.runtime_env import RuntimeEnv

    env = yaml.safe_load((ROOT / "runtime_env.yaml").read_text())
    RuntimeEnv(**env)  # Ray's own validation of every field (pip list, env_vars types, working_dir)
    assert env["working_dir"] == "." and ".git" in env["excludes"]
    assert env["env_vars"]["HF_HUB_OFFLINE"] == "1"


def test_dockerfile_builds_on_vllm_and_keeps_its_torch() -> None:
    text = (ROOT / "cluster" / "Dockerfile").read_text()
    assert re.search(r"^ARG VLLM_IMAGE=vllm/vllm-openai:v\S+$", text, re.M) and "FROM ${VLLM_IMAGE}" in text
    install = next(line for line in text.splitlines() if "pip install" in line and not line.startswith("#"))
    assert '".[gpu]"' in install and "--constraint /tmp/base-pins.txt" in install
    assert "'^(torch|" in text  # torch is among the pinned base packages
    assert "ray[default,data]==2.60.0" in install


SECRET_PATTERNS = (
    r"AKIA[0-9A-Z]{16}",                                   # AWS access key id
    r"(?i)aws_secret_access_key\s*[:=]\s*\S{20,}",
    r"\bsk-[A-Za-z0-9_-]{20,}",                             # OpenAI-style API key
    r"(?i)(api[_-]?key|token|password)\s*[:=]\s*['\"]?[A-Za-z0-9/+_-]{24,}",
)


def test_no_credentials_in_cluster_files() -> None:
    files = [*sorted((ROOT / "cluster").iterdir()), ROOT / "runtime_env.yaml"]
    assert len(files) >= 4
    for path in files:
        text = path.read_text()
        for pattern in SECRET_PATTERNS:
            assert not re.search(pattern, text), f"{path.name}: looks like a credential ({pattern})"
