"""data.bucket: training batches of similar length, every sentence once an epoch, resumable."""

from __future__ import annotations

import random

import pytest
import torch
from conftest import DATA_DIR

from seqmodels.data.buckets import LengthBuckets
from seqmodels.data.conll import ConllDataModule
from seqmodels.data.resumable import ResumableDataLoader


def _lengths(n: int = 1000, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(1, 80) for _ in range(n)]


def _batches(order: list[int], size: int) -> list[list[int]]:
    return [order[i : i + size] for i in range(0, len(order), size)]


def test_every_index_once_in_batches_of_about_one_length() -> None:
    lengths = _lengths()
    order = list(LengthBuckets(lengths, 16, seed=1))
    assert sorted(order) == list(range(1000))
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in _batches(order, 16)]
    assert sum(spread) / len(spread) < 4  # random batches of 16 over 1..80: about 70
    assert len(_batches(order, 16)[-1]) == 1000 % 16  # the one short batch comes last


def test_order_depends_on_seed_and_epoch_only() -> None:
    lengths = _lengths()
    first, again = LengthBuckets(lengths, 16, seed=1), LengthBuckets(lengths, 16, seed=1)
    assert list(first) == list(again)
    again.set_epoch(1)
    assert list(first) != list(again)
    assert list(first) != list(LengthBuckets(lengths, 16, seed=2))
    batches = _batches(list(first), 16)
    # batches are not served shortest first: the order of batch lengths is shuffled
    means = [sum(lengths[i] for i in b) / len(b) for b in batches[:-1]]
    assert means != sorted(means) and means != sorted(means, reverse=True)


def test_a_resumed_loader_yields_the_rest_of_the_same_epoch() -> None:
    lengths = _lengths(200)
    data = list(range(200))

    def loader() -> ResumableDataLoader:
        return ResumableDataLoader(data, sampler=LengthBuckets(lengths, 8, seed=5), batch_size=8)

    whole = [b.tolist() for b in loader()]
    first = loader()
    seen = []
    for batch in first:
        seen.append(batch.tolist())
        if len(seen) == 7:
            break
    state = first.state_dict()
    resumed = loader()
    resumed.load_state_dict(state)
    assert seen + [b.tolist() for b in resumed] == whole


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_batch_size_is_refused(bad: int) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        LengthBuckets([1, 2, 3], bad)


@pytest.mark.skipif(
    not (DATA_DIR / "wikigold" / "train.conll").is_file(), reason=f"wikigold not in {DATA_DIR}"
)
def test_bucketed_ner_batches_pad_far_less() -> None:
    def padding_share(bucket: bool) -> float:
        dm = ConllDataModule(
            path=str(DATA_DIR / "wikigold"),
            files={"train": "train.conll", "valid": "dev.conll", "test": "test.conll"},
            scheme="IOB1",
            batch_size=16,
            unk_singletons=0.5,
            bucket=bucket,
        )
        dm.setup("fit")
        torch.manual_seed(0)
        real = padded = 0
        for batch in dm.train_dataloader():
            mask = batch["words"] != 0
            real, padded = real + int(mask.sum()), padded + mask.numel()
        assert real == sum(len(u.words) for u in dm.splits["train"])  # every word, once
        return 1 - real / padded

    assert padding_share(False) > 0.4 and padding_share(True) < 0.1


def test_ddp_processes_take_whole_batches_and_the_same_number_of_them() -> None:
    lengths = _lengths(1003)
    parts = [list(LengthBuckets(lengths, 16, seed=3, num_replicas=3, rank=r)) for r in range(3)]
    assert set().union(*parts) == set(range(1003))  # every sentence, on some process
    batches = [_batches(p, 16) for p in parts]
    assert len({len(b) for b in batches}) == 1  # the same number of steps everywhere
    for rank, part in enumerate(parts):
        assert len(part) == len(LengthBuckets(lengths, 16, seed=3, num_replicas=3, rank=rank))
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for p in batches for b in p]
    assert sum(spread) / len(spread) < 4


def test_lightning_keeps_the_sampler_under_ddp() -> None:
    """Lightning wraps other samplers in one that deals indices out one by one (two buckets
    in every batch); a DistributedSampler it leaves alone."""
    import lightning as L
    from lightning.pytorch.trainer.states import RunningStage

    loader = ResumableDataLoader(
        list(range(64)), sampler=LengthBuckets(_lengths(64), 8, seed=1), batch_size=8
    )
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)
    prepared = trainer._data_connector._prepare_dataloader(
        loader, shuffle=False, mode=RunningStage.TRAINING
    )
    assert isinstance(prepared.sampler, LengthBuckets)
