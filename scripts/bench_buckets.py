"""Training speed of an NER recipe with random batches against batches bucketed by length.

Builds ``experiment=ner`` (or ``--experiment``) on each ``--data`` set, then times the same
training steps (forward, backward, the optimizer's step as training builds it) over
``--batches`` batches with ``data.bucket=false`` and ``data.bucket=true``, alternating the two
``--repeats`` times in one process so that the load of a shared machine falls on both. Prints
sentences per second, the share of padding in the batches, and the ratio bucketed / random
(the median over repeats).

    python scripts/bench_buckets.py --data wikigold,btc,wnut17 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from seqmodels.commands.train import CONFIG_DIR, build_module
from seqmodels.tasks.base import resolve_fused


def one_pass(experiment: str, data: str, bucket: bool, batches: int) -> tuple[float, float]:
    """Sentences per second over ``batches`` training steps, and the padding share."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(
            "train", overrides=[f"experiment={experiment}", f"data={data}", f"data.bucket={bucket}"]
        )
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = build_module(cfg, datamodule).train()
    params = list(module.parameters())
    optimizer_cfg = resolve_fused(dict(module.hparams.optimizer), params)  # as training builds it
    optimizer_cfg.pop("decay_weights_only", None)
    optimizer = instantiate(optimizer_cfg, params=params)
    sentences = real = padded = 0
    start = time.perf_counter()
    for i, batch in enumerate(datamodule.train_dataloader()):
        if i == batches:
            break
        loss = module.training_step(batch, i)
        loss = loss["loss"] if isinstance(loss, dict) else loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        mask = batch["words"] != 0
        sentences, real = sentences + len(mask), real + int(mask.sum())
        padded += mask.numel()
    return sentences / (time.perf_counter() - start), 1 - real / padded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="ner")
    parser.add_argument("--data", default="wikigold,btc,wnut17")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*self.trainer.*")  # training_step outside a Trainer
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), experiment={args.experiment}")
    for data in args.data.split(","):
        speed: dict[bool, list[float]] = {False: [], True: []}
        padding: dict[bool, float] = {}
        for _ in range(args.repeats):
            for bucket in (False, True):
                torch.manual_seed(0)
                rate, padding[bucket] = one_pass(args.experiment, data, bucket, args.batches)
                speed[bucket].append(rate)
        for bucket in (False, True):
            print(
                f"  {data:10s} bucket={str(bucket).lower():5s} "
                f"{statistics.median(speed[bucket]):7.1f} sentences/s, "
                f"padding {100 * padding[bucket]:4.1f}% of word slots"
            )
        ratios = [b / r for b, r in zip(speed[True], speed[False], strict=True)]
        print(f"  {data:10s} bucketed / random: {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
