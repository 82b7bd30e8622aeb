"""scripts/tag.py: slots and intent of typed sentences, from a slot-filling checkpoint alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import DATA_DIR, REPO, make_cfg, requires_data, run_script
from hydra import compose, initialize_config_dir

from seqmodels.errors import CheckpointError
from seqmodels.tag import slots_of, tag
from seqmodels.train import CONFIG_DIR, train

SENTENCE = "Show me flights from Boston to Denverr on monday"


@pytest.fixture(scope="module")
def atis_ckpt(tmp_path_factory) -> Path:
    """A small Bi-LSTM trained briefly on ATIS (enough to tag cities and days)."""
    out = tmp_path_factory.mktemp("atis")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(make_cfg(out, "model.hidden_size=32", "trainer.limit_train_batches=40", "test=false"))
    finally:
        torch.set_num_threads(threads)
    return out / "checkpoints" / "last.ckpt"


def well_formed(line: str) -> dict:
    result = json.loads(line)
    assert set(result) == {"intent", "slots"}
    assert isinstance(result["slots"], dict)
    for value in result["slots"].values():
        assert isinstance(value, str) or all(isinstance(v, str) for v in value)
    return result


@requires_data
def test_text_prints_tokens_with_tags_then_json(atis_ckpt, tmp_path: Path) -> None:
    result = run_script("tag.py", f"ckpt_path={atis_ckpt}", f"text={SENTENCE}", cwd=tmp_path,
                        timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    *table, last = result.stdout.strip("\n").split("\n")
    tokens = SENTENCE.lower().split()  # lower-cased, as ATIS is
    assert [row.split()[0] for row in table] == tokens
    tags = [row.split()[1] for row in table]
    assert all(t == "O" or t[:2] in ("B-", "I-") for t in tags)
    assert "denverr" in table[6] and "<unk>" in table[6]  # an unknown word is read as <unk>
    summary = well_formed(last)
    assert summary["intent"].startswith("atis_")
    assert summary["slots"] == slots_of(tokens, tags)  # the JSON says what the table shows
    assert list(tmp_path.iterdir()) == []  # nothing written


@requires_data
def test_stdin_gives_one_json_object_per_line(atis_ckpt, tmp_path: Path) -> None:
    lines = ["show me flights from boston to denver", "", "what is the cheapest fare to dallas"]
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "tag.py"), f"ckpt_path={atis_ckpt}"],
        input="\n".join(lines) + "\n",
        cwd=tmp_path,
        env={**os.environ, "SEQMODELS_DATA_DIR": str(DATA_DIR)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = [well_formed(line) for line in result.stdout.splitlines()]
    assert len(outputs) == 3  # one per input line, the blank one included
    assert outputs[1] == {"intent": None, "slots": {}}
    assert outputs[0]["intent"] is not None


@requires_data
def test_a_char_lm_checkpoint_is_refused(cfg_factory, tmp_path: Path, one_thread) -> None:
    train(cfg_factory("task=char_lm", "data.block_size=32", "test=false"))
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("tag", [f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}", "text=hi"])
    with pytest.raises(CheckpointError, match="task=char_lm checkpoint"):
        tag(cfg)


def test_slots_join_chunk_words_and_list_a_repeated_slot() -> None:
    tokens = "from new york to boston and to dallas on monday".split()
    tags = [
        *("O", "B-fromloc", "I-fromloc", "O", "B-toloc", "O", "O", "B-toloc", "O", "B-day"),
    ]
    assert slots_of(tokens, tags) == {
        "fromloc": "new york",
        "toloc": ["boston", "dallas"],
        "day": "monday",
    }
    assert slots_of(["a", "b"], ["O", "I-x"]) == {"x": "b"}  # I- after O opens a chunk
    assert slots_of([], []) == {}


@requires_data
def test_a_crf_tagger_with_char_features_tags_in_process(tmp_path: Path, one_thread) -> None:
    """atis_best's kind of model: the tagger feeds it characters and decodes with its CRF."""
    from seqmodels.evaluate import load_module
    from seqmodels.tag import Tagger

    overrides = ["task.module.decoder=crf", "model.char_features=cnn", "model.hidden_size=16"]
    train(make_cfg(tmp_path, *overrides, "test=false"))
    module, checkpoint = load_module(str(tmp_path / "checkpoints" / "last.ckpt"))
    tagger = Tagger(module, checkpoint["hyper_parameters"]["vocabs"])
    result = tagger(SENTENCE)
    assert result["tokens"] == SENTENCE.lower().split()
    assert len(result["tags"]) == len(result["tokens"])
    assert all(t == "O" or t[:2] in ("B-", "I-") for t in result["tags"])
    assert result["slots"] == slots_of(result["tokens"], result["tags"])
