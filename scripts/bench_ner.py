"""NER training speed on a CPU: random batches with a for-loop AdamW (as before), the fused
AdamW step (``task.module.optimizer.fused``), and fused with batches bucketed by length
(``data.bucket=true``).

Builds ``experiment=ner`` (or ``--experiment``) on each ``--data`` set and times the same
training steps (forward, backward, optimizer step) over ``--batches`` batches in each variant,
the variants alternating ``--repeats`` times in one process so that the load of a shared machine
falls on all of them. Prints sentences per second (the median over repeats), the share of
padding in the batches, and each variant's speed over the first one's (the median of the
per-repeat ratios).

    python scripts/bench_ner.py --data wikigold,btc,wnut17 --threads 1
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

# (name, fused, bucket)
VARIANTS = (
    ("random, for-loop AdamW", False, False),
    ("random, fused AdamW", None, False),
    ("bucketed, fused AdamW", None, True),
)


def one_pass(
    experiment: str, data: str, fused: bool | None, bucket: bool, batches: int
) -> tuple[float, float]:
    """Sentences per second over ``batches`` training steps, and the padding share."""
    overrides = [
        f"experiment={experiment}",
        f"data={data}",
        f"data.bucket={bucket}",
        f"task.module.optimizer.fused={'null' if fused is None else fused}",
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose("train", overrides=overrides)
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
    parser.add_argument("--threads", type=int, default=None, help="default: torch's")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*self.trainer.*")  # training_step outside a Trainer
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} thread(s), experiment={args.experiment}")
    for data in args.data.split(","):
        speed: dict[str, list[float]] = {name: [] for name, _, _ in VARIANTS}
        padding: dict[str, float] = {}
        for _ in range(args.repeats):
            for name, fused, bucket in VARIANTS:
                torch.manual_seed(0)
                rate, padding[name] = one_pass(args.experiment, data, fused, bucket, args.batches)
                speed[name].append(rate)
        first = VARIANTS[0][0]
        for name, _, _ in VARIANTS:
            ratios = [a / b for a, b in zip(speed[name], speed[first], strict=True)]
            print(
                f"  {data:9s} {name:22s} {statistics.median(speed[name]):7.1f} sentences/s  "
                f"{statistics.median(ratios):4.2f}x  padding {100 * padding[name]:4.1f}%"
            )


if __name__ == "__main__":
    main()
