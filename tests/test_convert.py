"""python -m seqmodels.data.convert: CoNLL, the ATIS layout and annotated JSONL, back and forth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import DATA_DIR, REPO, requires_data

from seqmodels.data.annotated_files import read_annotated
from seqmodels.data.slot_files import read_split

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "conll_ner"


def convert(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "seqmodels.data.convert", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@requires_data
def test_atis_test_split_to_jsonl_and_back_keeps_tokens_and_tags(tmp_path: Path) -> None:
    atis = DATA_DIR / "atis"
    result = convert(str(atis), str(tmp_path / "jsonl"), "--to", "jsonl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "wrote 893 test utterances" in result.stdout
    line = (tmp_path / "jsonl" / "test.jsonl").read_text().splitlines()[0]
    first = json.loads(line)
    assert first["text"] == (atis / "test" / "seq.in").read_text().splitlines()[0].strip()
    for e in first["entities"]:  # character offsets into the space-joined text
        assert first["text"][e["start"] : e["end"]] == e["value"]
    result = convert(str(tmp_path / "jsonl"), str(tmp_path / "atis"), "--to", "atis", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    original, back = read_split(atis, "test"), read_split(tmp_path / "atis", "test")
    assert [(u.words, u.tags, u.intent) for u in back] == [
        (u.words, u.tags, u.intent) for u in original
    ]
    assert (tmp_path / "atis" / "test" / "seq.out").read_text() == (
        atis / "test" / "seq.out"
    ).read_text()


def test_single_files_convert_to_single_files(tmp_path: Path) -> None:
    out = tmp_path / "train.jsonl"
    result = convert(str(FIXTURE / "train.txt"), str(out), "--to", "jsonl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    utterances, _ = read_annotated(out)
    assert utterances[0].words[:3] == ["EU", "rejects", "German"]
    assert utterances[0].tags[:3] == ["B-ORG", "O", "B-MISC"]
    result = convert(str(out), str(tmp_path / "atis"), "--to", "atis", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "atis" / "seq.in").read_text().startswith("EU rejects German call")
    assert (tmp_path / "atis" / "label").read_text().splitlines()[0] == "-"


def test_a_bad_input_is_one_line_and_exit_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fly to Boston"}\n{"text": "x", "entities": [[0, 5, "c"]]}\n')
    result = convert(str(bad), str(tmp_path / "out.txt"), "--to", "conll", cwd=tmp_path)
    assert result.returncode == 1
    assert (
        result.stderr == f"error: {bad}:2: entity [0, 5] c lies outside the text (1 characters)\n"
    )
    assert not (tmp_path / "out.txt").exists()


def test_a_malformed_snips_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    bad = tmp_path / "snips.json"
    bad.write_text('{"intents": {"greet": {"utterances": [\n {"data": []},\n "hi there"\n]}}}')
    result = convert(str(bad), str(tmp_path / "out.txt"), "--to", "conll", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {bad}:3: a Snips utterance must be an object")
    assert "Traceback" not in result.stderr
