"""What the "why LSTMs" callbacks cost: gate statistics per validation, gradient flow per firing.

Builds the run of the given overrides (the real config, real data), then times, interleaved and
after a warmup: a whole validation pass with and without the gate-statistics callback, and one
training step's forward+backward against one gradient-flow measurement. Prints medians and,
last, the ratio (validation with gate statistics) / (validation without).

    python scripts/bench_callbacks.py                       # ATIS, model=bilstm (the defaults)
    python scripts/bench_callbacks.py task=char_lm model=lstm --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from seqmodels.callbacks import GateStatsLogger, GradFlowLogger
from seqmodels.commands.train import CONFIG_DIR, build_module


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. task=char_lm")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["paths.output_dir=/tmp", *args.overrides])
    torch.set_num_threads(cfg.num_threads or torch.get_num_threads())
    L.seed_everything(0, verbose=False)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    quiet = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}
    plain = L.Trainer(accelerator="cpu", callbacks=[], **quiet)
    gated = L.Trainer(accelerator="cpu", callbacks=[GateStatsLogger()], **quiet)
    # The callback skips sanity checks; a Trainer's validate() is not one.
    times: dict[str, list[float]] = {"without": [], "with": []}
    for n in range(args.repeats + 1):  # the first round is a warmup
        for name, trainer in (("without", plain), ("with", gated)):
            seconds = _seconds(lambda t=trainer: t.validate(module, datamodule, verbose=False))
            if n:
                times[name].append(seconds)

    batch = next(iter(datamodule.train_dataloader()))
    flow = GradFlowLogger()
    module.train()
    module.log_loss = lambda *args, **kwargs: None  # outside a Trainer there is nothing to log to

    def train_step() -> None:
        module.zero_grad()
        module._step(batch, "train").backward()

    step = [_seconds(train_step) for _ in range(args.repeats)]
    firing = [_seconds(lambda: flow.measure(module, batch)) for _ in range(args.repeats)]
    without, with_gates = statistics.median(times["without"]), statistics.median(times["with"])
    print(f"run: {' '.join(args.overrides) or '(defaults)'}; threads {torch.get_num_threads()}")
    print(f"validation pass without gate stats: {without * 1e3:.1f} ms (median)")
    print(f"validation pass with gate stats:    {with_gates * 1e3:.1f} ms (median)")
    print(
        f"training step fwd+bwd: {statistics.median(step) * 1e3:.1f} ms; one gradient-flow "
        f"measurement (max_batch {flow.max_batch}): {statistics.median(firing) * 1e3:.1f} ms"
    )
    print(f"validation with/without gate stats: {with_gates / without:.3f}")


if __name__ == "__main__":
    main()
