"""experiment=ner on WNUT-17: composes, trains (tiny) with IOBES decoding, writes the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import DATA_DIR

from seqmodels.commands.train import train
from seqmodels.core.errors import ConfigError

requires_wnut = pytest.mark.skipif(
    not (DATA_DIR / "wnut17" / "train.conll").is_file(),
    reason=f"WNUT-17 not found in {DATA_DIR} (set SEQMODELS_DATA_DIR)",
)


@requires_wnut
def test_ner_experiment_trains_iobes_on_wnut17(cfg_factory, tmp_path: Path, one_thread) -> None:
    cfg = cfg_factory("experiment=ner", "logger=none")
    assert cfg.data.files.train == "train.conll" and cfg.task.module.decoder == "crf"
    assert cfg.data.encoding == "IOBES" and cfg.data.min_freq == 2  # the chosen recipe
    assert cfg.data.bucket and cfg.task.module.optimizer.fused is None  # the CPU-cheap defaults
    metrics = train(cfg)
    assert 0 <= metrics["test/f1"] <= 100
    ckpt = next((tmp_path / "checkpoints").glob("epoch_*.ckpt"))
    vocabs = torch.load(ckpt, weights_only=True)["hyper_parameters"]["vocabs"]
    assert {"S-person", "E-person", "B-person", "I-person"} <= set(vocabs["tags"])
    assert vocabs["word_forms"] == ["zero_digits"]  # as written, digits as 0
    assert any(w != w.lower() for w in vocabs["words"]) and "0" in vocabs["words"]
    assert not any(c.isdigit() and c != "0" for w in vocabs["words"] for c in w)
    assert any(c.isupper() for c in vocabs["chars"]) and "7" in vocabs["chars"]
    report = json.loads((tmp_path / "test_span_report.json").read_text())
    # IOBES gold spans are the BIO file's: 2 test batches of 256 sentences hold this many.
    assert report["micro"]["support"] > 100 and report["micro"]["f1"] == pytest.approx(
        metrics["test/f1"], abs=1e-3
    )


def test_unknown_encoding_is_refused(cfg_factory) -> None:
    with pytest.raises(ConfigError, match="data.encoding must be null or IOBES"):
        train(cfg_factory("experiment=ner", "data.encoding=BILOU", "logger=none"))


@pytest.mark.parametrize(
    ("data", "types"), [("wikigold", {"PER", "LOC", "ORG", "MISC"}), ("btc", {"PER", "LOC", "ORG"})]
)
def test_the_other_ner_sets_read_as_bio_and_train(
    data: str, types: set[str], cfg_factory, tmp_path: Path, one_thread
) -> None:
    """data=wikigold (IOB1 files, read as BIO) and data=btc (tab-separated, IOB2) train, and
    every chunk of the checkpoint's tag set opens with B- (no IOB1 I- left unconverted)."""
    if not (DATA_DIR / data / "train.conll").is_file():
        pytest.skip(f"{data} not found in {DATA_DIR}")
    cfg = cfg_factory("experiment=ner", f"data={data}", "logger=none")
    metrics = train(cfg)
    assert 0 <= metrics["test/f1"] <= 100
    ckpt = next((tmp_path / "checkpoints").glob("epoch_*.ckpt"))
    tags = set(torch.load(ckpt, weights_only=True)["hyper_parameters"]["vocabs"]["tags"])
    assert {t[2:] for t in tags if t[:2] in ("B-", "I-")} == types
    assert {f"B-{t}" for t in types} <= tags
