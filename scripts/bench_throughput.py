"""Training and inference throughput of every ``model=`` on both tasks, at the default sizes.

For each (task, model) it builds the real config (``conf/train.yaml`` with ``task=`` and
``model=``), then measures:

* **train**: tokens (characters, words) per second through ``Trainer.fit`` — Lightning's loop
  with the run's optimizer, gradient clipping and the default callbacks off;
* **plain**: the same steps in a plain PyTorch loop (forward, backward, clip, step), so the
  last column, Lightning / plain time, shows what the framework costs;
* **infer**: tokens per second of the forward pass under ``torch.inference_mode``.

Timed steps follow warm-up steps. Tokens are counted from the batches, on the host. With
``--threads 1,2`` every row is measured at each CPU thread count, and the last line gives the
speed-up of the most threads over the fewest.

    python scripts/bench_throughput.py                  # CPU, the config's num_threads
    python scripts/bench_throughput.py --threads 1,2 --models lstm,bilstm
    python scripts/bench_throughput.py --device cuda --steps 100
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.utilities import move_data_to_device
from omegaconf import open_dict

from seqmodels.commands.train import CONFIG_DIR, build_module
from seqmodels.tasks.base import resolve_fused

MODELS = {
    "char_lm": ["rnn", "lstm", "gru", "hand_lstm", "mingru", "minlstm", "transformer"],
    "slot_filling": ["rnn", "lstm", "gru", "hand_lstm", "bilstm", "hand_bilstm"]
    + ["bimingru", "biminlstm", "bitransformer"],
}
warnings.filterwarnings("ignore", message=r".*self\.log.*")  # training_step outside a Trainer
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # one Trainer per row: quiet
THREADS = torch.get_num_threads()  # torch's default (the physical cores), before any change


def tokens_of(batch: Any) -> int:
    if isinstance(batch, dict):  # slot filling
        return int(batch["lengths"].sum())
    return batch[1].numel()  # char LM: (x, y)


def make_config(task: str, model: str, device: str, data_dir: str) -> Any:
    overrides = [
        f"task={task}",
        f"model={model}",
        f"paths.data_dir={data_dir}",
        "paths.output_dir=outputs/bench_throughput",
        "logger=none",
        "callbacks=none",
        f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
        "+trainer.enable_progress_bar=false",
        "+trainer.enable_checkpointing=false",
        "+trainer.enable_model_summary=false",
        "trainer.limit_val_batches=0",
    ]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.data.download = False
    return cfg


def now(device: torch.device) -> float:
    """``time.perf_counter()`` once ``device`` has finished its queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class Clock(L.Callback):
    """Host time from the start of batch ``warmup`` to the end of the last batch."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, 0.0, 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx: int) -> None:
        if batch_idx == self.warmup:
            self.start = now(module.device)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx: int) -> None:
        self.end = now(module.device)


def lightning_seconds(cfg: Any, datamodule: Any, steps: int, warmup: int) -> float:
    L.seed_everything(cfg.seed, verbose=False)
    module = build_module(cfg, datamodule)
    clock = Clock(warmup)
    trainer = instantiate(
        cfg.trainer,
        callbacks=[clock],
        logger=False,
        max_epochs=1,
        limit_train_batches=warmup + steps,
    )
    trainer.fit(module, datamodule=datamodule)
    return clock.end - clock.start


def plain_seconds(cfg: Any, datamodule: Any, batches: list[Any], warmup: int) -> float:
    """The same steps without Lightning: forward, backward, clip, optimizer step."""
    L.seed_everything(cfg.seed, verbose=False)
    device = torch.device("cuda" if cfg.trainer.accelerator == "gpu" else "cpu")
    module = build_module(cfg, datamodule).to(device).train()
    optimizer_cfg = resolve_fused(dict(module.hparams.optimizer), list(module.parameters()))
    optimizer_cfg.pop("decay_weights_only", None)
    optimizer = instantiate(optimizer_cfg, params=module.parameters())
    clip = cfg.trainer.get("gradient_clip_val") or 0.0
    start = 0.0
    for k, batch in enumerate(batches):
        if k == warmup:
            start = now(device)
        batch = move_data_to_device(batch, device)
        loss = module.training_step(batch, k)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
        optimizer.step()
    return now(device) - start


def inference_seconds(cfg: Any, datamodule: Any, batches: list[Any], warmup: int) -> float:
    device = torch.device("cuda" if cfg.trainer.accelerator == "gpu" else "cpu")
    module = build_module(cfg, datamodule).to(device).eval()
    start = 0.0
    with torch.inference_mode():
        for k, batch in enumerate(batches):
            if k == warmup:
                start = now(device)
            batch = move_data_to_device(batch, device)
            if isinstance(batch, dict):
                module(batch["words"], batch["lengths"])
            else:
                module(batch[0])
    return now(device) - start


def bench(task: str, model: str, threads: int, args: argparse.Namespace) -> dict[str, float]:
    cfg = make_config(task, model, args.device, args.data_dir)
    torch.set_num_threads(threads)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    L.seed_everything(cfg.seed, verbose=False)
    loader = iter(datamodule.train_dataloader())
    batches = [next(loader) for _ in range(args.warmup + args.steps)]
    tokens = sum(tokens_of(b) for b in batches[args.warmup :])
    fit_s = lightning_seconds(cfg, datamodule, args.steps, args.warmup)
    plain_s = plain_seconds(cfg, datamodule, batches, args.warmup)
    infer_s = inference_seconds(cfg, datamodule, batches, args.warmup)
    return {
        "train": tokens / fit_s,
        "plain": tokens / plain_s,
        "infer": tokens / infer_s,
        "overhead": fit_s / plain_s,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--tasks", default="char_lm,slot_filling")
    parser.add_argument("--models", default=None, help="comma-separated subset of model=")
    parser.add_argument(
        "--threads",
        default=None,
        help="comma-separated CPU thread counts to measure each row at (default: the config's "
        "num_threads, or torch's default where it is null)",
    )
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("SEQMODELS_DATA_DIR", str(Path("~/.cache/seqmodels").expanduser())),
    )
    args = parser.parse_args(argv)

    default = make_config("slot_filling", "lstm", args.device, args.data_dir).get("num_threads")
    counts = [int(t) for t in args.threads.split(",")] if args.threads else [default or THREADS]
    where = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(
        f"torch {torch.__version__}, {where}, threads {','.join(map(str, counts))} "
        f"(torch's default here: {THREADS}); {args.steps} timed steps after {args.warmup}"
    )
    rows = []
    for task in args.tasks.split(","):
        for model in MODELS[task]:
            if args.models and model not in args.models.split(","):
                continue
            for threads in counts:  # side by side, so load on the machine hits both alike
                result = bench(task, model, threads, args)
                rows.append((task, model, threads, result))
                print(f"  {task} {model} threads={threads}: {result}", flush=True)

    unit = {"char_lm": "chars/s", "slot_filling": "words/s"}
    print()
    print(
        "| task | model | threads | train (Lightning) | train (plain loop) | inference "
        "| Lightning/plain |"
    )
    print("|---|---|---|---|---|---|---|")
    for task, model, threads, r in rows:
        print(
            f"| {task} | {model} | {threads} | {r['train']:,.0f} {unit[task]} | "
            f"{r['plain']:,.0f} | {r['infer']:,.0f} | {r['overhead']:.2f} |"
        )
    if len(counts) > 1:
        few, most = min(counts), max(counts)
        by = {(t, m, n): r for t, m, n, r in rows}
        pairs = [(by[t, m, most], by[t, m, few]) for t, m, n, _ in rows if n == few]
        for key in ("infer", "train"):
            gain = sum(hi[key] / lo[key] for hi, lo in pairs) / len(pairs)
            print(f"\n{key}: {most} threads / {few} thread(s) speed, mean over rows: {gain:.2f}")
    else:
        overheads = [r["overhead"] for *_, r in rows]
        print(f"\nLightning/plain time, mean over rows: {sum(overheads) / len(overheads):.2f}")


if __name__ == "__main__":
    main()
