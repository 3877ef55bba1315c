"""Human labels for the judge (issue 19, item 5): the seeded stratified sample, and the labelling page
driven in headless Chromium over the DevTools protocol (real clicks, a reload, a real download).

The run's judge is planted: its score of leaf k for a completion is a hash of (row_id, k) mod 7, so
the test knows every judge score; the "human" clicks judge + (0, 0, +1, -1, +2, 0) per dimension,
so the expected agreement is computed from known pairs, and `valuelex judge-check` must report it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import cohen_kappa_score
from typer.testing import CliRunner

from tests.helpers import RuleJudge, evaluate_stored, write_study
from valuelex import grid
from valuelex.annotate import annotate, sample_completions
from valuelex.cli import app
from valuelex.evaluate.systems import load_value_system
from valuelex.generate import conform
from valuelex.spec import load_study
from valuelex.stats import krippendorff
from valuelex.store import RunStore

CHROMIUM = "/usr/bin/chromium"
SCRIPT_TEXT = "<script>window.pwned = 1</script><b>bold?</b> & more"
OFFSETS = (0, 0, 1, -1, 2, 0)


def planted(row_id: str, key: str) -> int:
    return int(hashlib.md5(f"{row_id}|{key}".encode()).hexdigest()[:6], 16) % 7


PlantedJudge = partial(RuleJudge, "test:planted", lambda row, system: {k: planted(row["row_id"], k)
                                                                          for k in system.leaf_keys()})


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("annotate")
    study = load_study(write_study(tmp, evaluation={"systems": ["valuelex"], "bootstrap_resamples": 50}))
    out = str(tmp / "run")
    rows = []
    for model in study.models:
        for i, row in enumerate(grid.requests(study, "completion", model)):
            text = SCRIPT_TEXT if not rows else f"I value being kind and honest ({model.name} {i})."
            rows.append(
                {
                    **row,
                    "response": text,
                    "n_prompt_tokens": 5,
                    "n_completion_tokens": 8,
                    "finish_reason": "stop",
                    "error": None,
                    "engine": "test",
                }
            )
    RunStore(out).table("completions").write(conform(pa.Table.from_pylist(rows)))
    RunStore(out).write_study(study)
    evaluate_stored(study, out, PlantedJudge())
    return out


def test_the_sample_is_seeded_and_covers_the_strata_before_repeating_one(run: str) -> None:
    store, system = RunStore(run), load_value_system("valuelex")
    everything = sample_completions(store, system, 1000)
    assert len(everything) == 16 and everything["row_id"].is_unique  # n above the judged rows: all of them
    strata = everything.groupby(["model", "item_id", "judge_score"]).ngroups
    first = sample_completions(store, system, 6, seed=3)
    assert first["row_id"].tolist() == sample_completions(store, system, 6, seed=3)["row_id"].tolist()
    assert first["row_id"].tolist() != sample_completions(store, system, 6, seed=4)["row_id"].tolist()
    picked = sample_completions(store, system, strata, seed=3)
    assert picked.groupby(["model", "item_id", "judge_score"]).ngroups == strata  # one per stratum


def test_annotate_refuses_an_unjudged_system_with_exit_2(run: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["annotate", run, "--system", "mft", "--out", str(tmp_path / "labels")])
    assert result.exit_code == 2 and "'mft' was not judged" in result.output
    assert not (tmp_path / "labels").exists()


class DevTools:
    """A minimal DevTools-protocol client over one websocket (commands answered by id; events skipped)."""

    def __init__(self, url: str):
        from websockets.sync.client import connect

        self.ws, self.next_id = connect(url, max_size=2**24, open_timeout=30), 0

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=30))
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message.get("result", {})

    def eval(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := self.eval(expression)):
            assert time.monotonic() < deadline, f"timed out waiting for {expression}"
            time.sleep(0.1)
        return value

    def click(self, selector: str) -> None:
        """A real mouse click at the element's centre (scrolled into view first)."""
        x, y = self.eval(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
            "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect(); "
            "return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)


@pytest.fixture
def chromium(tmp_path: Path) -> Any:
    profile = tmp_path / "profile"
    proc = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            assert proc.poll() is None and time.monotonic() < deadline, "chromium did not start"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/version", timeout=10) as reply:
            browser = DevTools(json.load(reply)["webSocketDebuggerUrl"])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
            target = next(t for t in json.load(reply) if t["type"] == "page")
        yield browser, DevTools(target["webSocketDebuggerUrl"])
    finally:
        proc.kill()
        proc.wait(30)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")
def test_label_ten_by_clicking_reload_download_and_judge_check(run: str, tmp_path: Path, chromium: Any) -> None:
    browser, page = chromium
    made = CliRunner().invoke(
        app, ["annotate", run, "--n", "16", "--system", "valuelex", "--out", str(tmp_path / "labels")]
    )
    assert made.exit_code == 0, made.output
    url = json.loads(made.output)["index"]
    keys = load_value_system("valuelex").leaf_keys()
    downloads = tmp_path / "downloads"
    browser.send("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(downloads))
    page.send("Page.navigate", url=url)
    page.wait("document.querySelectorAll('.item').length === 16")  # the script ran: its CSP hash is right
    found = page.eval("[...document.querySelectorAll('.response')].findIndex(e => e.textContent.includes('<script>'))")
    assert found >= 0, "the <script> completion is not on the page as text"
    assert page.eval(f"document.querySelectorAll('#item-{found} .response *').length") == 0
    assert page.eval("window.pwned === undefined")

    items = page.eval("JSON.parse(document.getElementById('data').textContent).items.map(i => i.row_id)")
    expected = set()
    for i in range(10):
        for key, offset in zip(keys, OFFSETS, strict=True):
            judge = planted(items[i], key)
            human = min(6, max(0, judge + offset))
            page.click(f'button[data-item="{i}"][data-dimension="{key}"][data-score="{human}"]')
            expected.add((items[i], key, human, judge))
    assert page.eval("document.getElementById('progress').dataset.done") == "10"
    page.send("Page.reload")
    page.wait("document.querySelectorAll('.item').length === 16")
    assert page.eval("document.getElementById('progress').dataset.done") == "10"  # kept in localStorage
    assert page.eval("document.querySelectorAll('button[aria-pressed=\"true\"]').length") == 60
    page.click("#download")
    deadline = time.monotonic() + 30
    while not (downloads / "labels.csv").exists():
        assert time.monotonic() < deadline, f"no download in {downloads}"
        time.sleep(0.1)

    labels = downloads / "labels.csv"
    lines = labels.read_text().splitlines()
    assert lines[0] == "row_id,dimension,human,judge" and len(lines) == 61
    assert {(r, d, int(h), int(j)) for r, d, h, j in (line.split(",") for line in lines[1:])} == expected
    checked = CliRunner().invoke(app, ["judge-check", str(labels)])
    assert checked.exit_code == 0, checked.output
    overall = json.loads(checked.output)["pairs"]["human~judge"]["overall"]
    human = np.array([e[2] for e in sorted(expected)])
    judge = np.array([e[3] for e in sorted(expected)])
    assert overall["n"] == 60
    assert overall["qwk"] == pytest.approx(cohen_kappa_score(human, judge, labels=list(range(7)), weights="quadratic"))
    assert overall["alpha"] == pytest.approx(krippendorff.alpha(np.vstack([human, judge]).astype(float), "ordinal"))
    assert overall["exact"] == pytest.approx(np.mean(human == judge)) and 0.3 < overall["exact"] < 0.7
    assert np.trace(np.array(overall["confusion"])) == int(np.sum(human == judge))
    assert 0.5 < overall["qwk"] < 1.0  # close to the judge but not equal to it


def test_annotate_writes_sample_csv_with_the_judge_scores(run: str, tmp_path: Path) -> None:
    summary = annotate(run, str(tmp_path / "labels"), n=5, system="valuelex")
    assert summary["n"] == 5 and summary["index"].startswith("file:///")
    sample = (tmp_path / "labels" / "sample.csv").read_text().splitlines()
    assert len(sample) == 6 and "score_" + load_value_system("valuelex").leaf_keys()[0] in sample[0]
