"""Truncated BPTT: contiguous streams, carried state in training and evaluation."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.nn import functional as F

from seqmodels.commands.train import train
from seqmodels.data import CharLMDataModule
from seqmodels.data.streams import IGNORE, Streams
from seqmodels.tasks import CharLM

MODEL = {"cell": "lstm", "embedding_dim": 8, "hidden_size": 12, "num_layers": 2, "dropout": 0.0}
ADAM = {"_target_": "torch.optim.Adam", "lr": 0.01}


def _pairs(streams: Streams) -> list[tuple[int, int]]:
    """Every (input, target) pair the streams hold, in reading order."""
    pairs = []
    for x, y in streams:
        for row_x, row_y in zip(x.tolist(), y.tolist()):
            pairs += [(a, b) for a, b in zip(row_x, row_y) if b != IGNORE]
    return pairs


@pytest.mark.parametrize("length", [50, 57, 64])
def test_exact_streams_predict_every_character_once(length: int) -> None:
    ids = torch.arange(length)
    streams = Streams(ids, num_streams=4, block_size=5, exact=True)
    targets = sorted(b for _, b in _pairs(streams))
    assert targets == list(range(1, length))  # every character after the first, once
    assert all(b == a + 1 for a, b in _pairs(streams))  # each from its predecessor


def test_each_row_continues_the_previous_batch() -> None:
    streams = Streams(torch.arange(1000), num_streams=3, block_size=7)
    batches = list(streams)
    assert len(batches) == len(streams) == (999 // 3) // 7
    for (x0, y0), (x1, _) in zip(batches, batches[1:]):
        assert x0.shape == (3, 7)
        assert torch.equal(x1[:, 0], y0[:, -1])  # row r picks up where it stopped


def test_processes_read_disjoint_streams_that_cover_the_text() -> None:
    ids = torch.arange(301)
    shares = [Streams(ids, 2, 8, exact=True, rank=r, world_size=3) for r in range(3)]
    targets = sorted(b for share in shares for _, b in _pairs(share))
    assert targets == list(range(1, 301))
    assert len({len(share) for share in shares}) == 1  # same number of batches everywhere


def _text(tmp_path: Path) -> Path:
    path = tmp_path / "text.txt"
    torch.manual_seed(0)
    letters = "abcdefgh \n"
    path.write_text("".join(letters[i] for i in torch.randint(0, 10, (3000,))), encoding="utf-8")
    return path


def test_training_carries_the_state_and_resets_it_each_epoch() -> None:
    torch.manual_seed(0)
    module = CharLM(vocab=list("abcdefgh"), model=MODEL, optimizer=ADAM)
    x = torch.randint(0, 8, (4, 6))
    batch = (x, torch.randint(0, 8, (4, 6)))
    first = module.training_step(batch, 0)
    assert module.train_state is not None
    assert not any(part.requires_grad for part in module.train_state)  # detached: truncation
    carried = module.training_step(batch, 1)  # starts from the state batch 0 ended in
    restarted = module.training_step(batch, 0)  # a new epoch starts from zeros
    assert restarted.item() == pytest.approx(first.item())
    assert carried.item() != pytest.approx(first.item())
    module.carry_state = False
    assert module.training_step(batch, 1).item() == pytest.approx(first.item())


def test_streaming_validation_equals_one_pass_over_the_held_out_text(tmp_path: Path) -> None:
    """With one stream, val/loss is the loss of reading the whole held-out text in one call."""
    data = CharLMDataModule(
        path=str(_text(tmp_path)),
        block_size=16,
        eval_streams=1,
        eval_window=32,
        cache_dir=str(tmp_path / "tokens"),
    )
    data.setup()
    torch.manual_seed(0)
    module = CharLM(**data.vocab_kwargs(), model=MODEL, optimizer=ADAM)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    results = {k: v for part in trainer.validate(module, datamodule=data) for k, v in part.items()}
    with torch.no_grad():
        val = data.parts["val"]
        ids = val.read(0, len(val)).unsqueeze(0)
        logits, _ = module.eval()(ids[:, :-1])
        whole = F.cross_entropy(logits[0], ids[0, 1:]).item()
        windows = ids[0, : (ids.size(1) - 1) // 32 * 32 + 1]
        xs = windows[:-1].view(-1, 32)
        ys = windows[1:].view(-1, 32)
        windowed = F.cross_entropy(module(xs)[0].transpose(1, 2), ys).item()
    assert results["val/loss"] == pytest.approx(whole, rel=1e-5)
    assert results["val/loss_windowed"] == pytest.approx(windowed, rel=1e-5)
    assert results["val/bpc"] == pytest.approx(whole / math.log(2), rel=1e-5)


def test_stateful_and_windowed_training_both_run_and_differ(cfg_factory, tmp_path: Path) -> None:
    text = _text(tmp_path)
    common = ["task=char_lm", f"data.path={text}", "data.block_size=16", "data.eval_window=32"]
    carried = train(cfg_factory(*common, f"paths.output_dir={tmp_path}/a"))
    windows = train(cfg_factory(*common, "data.stateful=false", f"paths.output_dir={tmp_path}/b"))
    for metrics in (carried, windows):
        assert {"val/loss", "val/loss_windowed", "test/loss", "test/loss_windowed"} <= set(metrics)
    assert carried["val/loss"] != windows["val/loss"]


def test_shared_streams_are_the_streams_of_one_process() -> None:
    ids = torch.arange(301)
    alone = Streams(ids, 5, 8, exact=True)
    shares = [Streams(ids, 5, 8, exact=True, rank=r, world_size=2, shared=True) for r in (0, 1)]
    assert [len(s.starts) for s in shares] == [2, 3]  # 5 streams in all, not 5 a process
    assert torch.equal(
        torch.cat([torch.from_numpy(s.starts) for s in shares]), torch.from_numpy(alone.starts)
    )
    assert sorted(b for share in shares for _, b in _pairs(share)) == list(range(1, 301))
    with pytest.raises(ValueError, match="2 streams cannot be shared by 3 processes"):
        Streams(ids, 2, 8, exact=True, rank=0, world_size=3, shared=True)
