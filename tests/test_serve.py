"""scripts/serve.py as a real server on 127.0.0.1: answers as tag.py and generate.py do."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, make_cfg, single_thread

from seqmodels.commands.train import train

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

FIXTURE = REPO / "tests" / "fixtures" / "conll_ner"
SENTENCES = [
    "Peter Blackburn visits BRUSSELS, EU.",
    "German lamb and British call",
    "EU rejects German call to boycott British lamb .",
    "x",
]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, body: bytes | None = None, method: str = "POST") -> tuple[int, Any]:
    """(status, parsed JSON answer) of one HTTP request; 4xx/5xx answers are returned too."""
    req = urllib.request.Request(url, data=body, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def post(url: str, obj: Any) -> tuple[int, Any]:
    return request(url, json.dumps(obj).encode())


@contextmanager
def server(ckpt: Path, *overrides: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """``python scripts/serve.py`` on a free port, until the block ends."""
    port = free_port()
    args = [sys.executable, str(REPO / "scripts" / "serve.py"), f"ckpt_path={ckpt}"]
    process = subprocess.Popen(
        [*args, f"port={port}", *overrides],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if request(f"{url}/health", method="GET")[0] == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the server did not start: {process.communicate()[1]}")
            time.sleep(0.2)
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def tagger_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tagger")
    overrides = ["data=conll", f"data.path={FIXTURE}", "data.batch_size=2", "logger=none"]
    with single_thread():
        # Trained to tag real entities (3 epochs gave only all-O tags once the NER tagger lost
        # its untrained intent head, whose noise had produced a few): something to compare.
        fit = (
            "trainer.max_epochs=20",
            "task.module.optimizer.lr=0.05",
            "trainer.limit_val_batches=0",
        )
        train(make_cfg(out, *overrides, *fit, "test=false"))
    return out / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def lm_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lm")
    text = out / "text.txt"
    text.write_text("the cat sat on the mat. " * 400, encoding="utf-8")
    overrides = [
        *("task=char_lm", "model=lstm", "data=text_file", f"data.path={text}", "logger=none"),
        *("data.block_size=32", "data.batch_size=8", "data.eval_window=32", "test=false"),
        f"data.cache_dir={out / 'tokens'}",
    ]
    with single_thread():
        train(make_cfg(out, *overrides))
    return out / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def tagger_server(tagger_ckpt: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    with server(tagger_ckpt, "max_text_chars=200") as running:
        yield running


def test_parse_answers_exactly_what_tag_py_prints(tagger_ckpt: Path, tagger_server) -> None:
    url, _ = tagger_server
    tagged = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "tag.py"), f"ckpt_path={tagger_ckpt}"]
        + ["batch_size=1"],  # one sentence a forward pass, as the server runs them
        input="\n".join(SENTENCES) + "\n",
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tagged.returncode == 0, tagged.stderr
    printed = [json.loads(line) for line in tagged.stdout.splitlines()]
    # Rasa's request shape: extra keys (message_id) are fine.
    answers = [post(f"{url}/model/parse", {"text": s, "message_id": "1"}) for s in SENTENCES]
    assert [status for status, _ in answers] == [200] * len(SENTENCES)
    assert [answer for _, answer in answers] == printed
    assert any(line["entities"] for line in printed)  # something to compare
    status, info = request(f"{url}/health", method="GET")
    assert status == 200 and info["task"] == "slot_filling"
    assert info["routes"][0] == "POST /model/parse" and "ORG" in info["entities"]
    assert request(f"{url}/", method="GET")[1] == info == request(f"{url}/status", method="GET")[1]


def test_a_hundred_concurrent_requests_are_all_answered(tagger_server) -> None:
    url, _ = tagger_server
    texts = [f"{SENTENCES[i % 3]} {i}" for i in range(100)]
    with ThreadPoolExecutor(100) as pool:
        answers = list(pool.map(lambda t: post(f"{url}/model/parse", {"text": t}), texts))
    assert [status for status, _ in answers] == [200] * 100
    assert [answer["text"] for _, answer in answers] == texts
    assert answers[5][1]["tags"] == post(f"{url}/model/parse", {"text": texts[5]})[1]["tags"]


@pytest.mark.parametrize(
    ("body", "route", "method", "status", "message"),
    [
        (b'{"text": ""}', "/model/parse", "POST", 400, '"text" is empty'),
        (b'{"text": "   "}', "/model/parse", "POST", 400, '"text" is empty'),
        (b'{"txt": "hi"}', "/model/parse", "POST", 400, '"text" must be a string, got null'),
        (b'{"text": 5}', "/model/parse", "POST", 400, '"text" must be a string, got 5'),
        (b'{"text": "hi"', "/model/parse", "POST", 400, "the body is not JSON"),
        (b"", "/model/parse", "POST", 400, "the body is not JSON"),
        (b'["hi"]', "/model/parse", "POST", 400, "must be a JSON object"),
        (b'{"text": "\\ud800"}', "/model/parse", "POST", 400, "lone surrogate '\\ud800' at"),
        (b'{"text": "a\\udc80b"}', "/model/parse", "POST", 400, "lone surrogate '\\udc80' at"),
        (json.dumps({"text": "a" * 201}).encode(), "/model/parse", "POST", 413, "the limit is 200"),
        (b'{"prompt": "a"}', "/generate", "POST", 400, "needs a char-LM checkpoint"),
        (None, "/model/parse", "GET", 405, "Method Not Allowed"),
        (None, "/nowhere", "GET", 404, "Not Found"),
    ],
)
def test_malformed_requests_get_a_4xx_json_answer(
    tagger_server, body: bytes | None, route: str, method: str, status: int, message: str
) -> None:
    url, _ = tagger_server
    got, answer = request(url + route, body, method)
    assert got == status
    assert answer["status"] == "failure" and answer["code"] == status
    assert message in answer["message"]


@pytest.fixture(scope="module")
def lm_server(lm_ckpt: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    with server(lm_ckpt) as running:
        yield running


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"seed": 2**64}, "seed must be a whole number in [0, 2**64), got 18446744073709551616"),
        ({"seed": -1}, "seed must be a whole number in [0, 2**64)"),
        ({"seed": 1.5}, "seed must be a whole number"),
        ({"temperature": 1e-300}, "temperature must be a number >= 0: 0 (greedy) or at least"),
        ({"temperature": 1e-45}, "temperature must be a number >= 0: 0 (greedy) or at least"),
        ({"prompt": "a\ud800b"}, "\"prompt\" holds a lone surrogate '\\ud800' at character 1"),
    ],
)
def test_malformed_generate_requests_get_a_4xx_json_answer(
    lm_server, body: dict, message: str
) -> None:
    url, process = lm_server
    raw = json.dumps({"prompt": "the ", "length": 5, **body}).encode()
    status, answer = request(f"{url}/generate", raw)
    assert (status, answer["status"], answer["code"]) == (400, "failure", 400), answer
    assert message in answer["message"]
    assert process.poll() is None


def test_generate_draws_what_generate_py_draws(lm_ckpt: Path) -> None:
    options = {"prompt": "the ", "length": 40, "temperature": 0.8, "top_k": 5, "seed": 7}
    printed = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "generate.py"), f"ckpt_path={lm_ckpt}"]
        + [f"{k}={v}" if k != "prompt" else "prompt='the '" for k, v in options.items()],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert printed.returncode == 0, printed.stderr
    with server(lm_ckpt) as (url, _):
        status, answer = post(f"{url}/generate", options)
        assert status == 200
        assert answer["text"] + "\n" == printed.stdout
        assert post(f"{url}/generate", options)[1]["text"] == answer["text"]  # seeded
        refused = [
            post(f"{url}/generate", {**options, "temperature": -1}),
            post(f"{url}/generate", {**options, "length": 10**6}),
            post(f"{url}/generate", {**options, "prompt": "Zebra€"}),
            post(f"{url}/model/parse", {"text": "the cat"}),
        ]
        assert [status for status, _ in refused] == [400] * 4
        assert "temperature must be a number >= 0" in refused[0][1]["message"]
        assert "never saw in training: 'Z', 'b', 'r', '€'" in refused[2][1]["message"]
        assert "POST /model/parse needs a slot-filling checkpoint" in refused[3][1]["message"]
        assert request(f"{url}/health", method="GET")[1]["vocab_size"] > 5


def test_serving_never_imports_lightning_and_bad_options_are_one_line(tmp_path: Path) -> None:
    code = (
        "import sys, seqmodels.commands.serve; "
        "print(any(m.startswith('lightning') for m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "False", result.stderr
    missing = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "serve.py"), f"ckpt_path={tmp_path / 'x.ckpt'}"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.startswith(f"error: ckpt_path={tmp_path / 'x.ckpt'} does not exist")
