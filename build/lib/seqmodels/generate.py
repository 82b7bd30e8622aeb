"""Sample text from a char-LM checkpoint alone: ``python scripts/generate.py ckpt_path=...``.

The checkpoint gives the model and its vocabulary (:func:`seqmodels.evaluate.load_module`);
:class:`seqmodels.sampler.CharSampler` primes the recurrent state with the prompt and then
draws one character at a time, carrying the state. The text streams to stdout as it is drawn.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from typing import TextIO

import hydra
import torch
from omegaconf import DictConfig

from seqmodels.errors import ConfigError, errors_reported
from seqmodels.evaluate import load_module
from seqmodels.sampler import CharSampler, check_options
from seqmodels.train import CONFIG_DIR

log = logging.getLogger(__name__)

SEPARATOR = "\n" + "-" * 40 + "\n"


def generate(cfg: DictConfig, out: TextIO | None = None) -> list[str]:
    """Write ``cfg.num_samples`` samples (each the prompt and its continuation) to ``out``.

    Returns the samples. The sampling rate (characters per second, prompt excluded) goes to
    stderr at the end.
    """
    out = out if out is not None else sys.stdout
    check_options(cfg.temperature, cfg.top_k, cfg.top_p, cfg.length)
    if cfg.num_samples < 1:
        raise ConfigError(f"num_samples must be >= 1, got {cfg.num_samples}")
    if cfg.get("num_threads"):
        torch.set_num_threads(cfg.num_threads)
    module, _ = load_module(cfg.ckpt_path, data_kind="text")
    module.to(cfg.device)
    sampler = CharSampler(module, module.vocab)
    sampler.encode(cfg.prompt)  # unknown characters fail before anything is printed
    seed = cfg.seed if cfg.seed is not None else random.SystemRandom().randrange(2**63)
    generator = torch.Generator().manual_seed(seed)

    samples, drawn, start = [], 0, time.perf_counter()
    for n in range(cfg.num_samples):
        if n:
            out.write(SEPARATOR)
        out.write(cfg.prompt)
        chars = []
        for ch in sampler.sample(
            cfg.prompt, cfg.length, cfg.temperature, cfg.top_k, cfg.top_p, generator
        ):
            out.write(ch)
            out.flush()
            chars.append(ch)
        drawn += len(chars)
        samples.append(cfg.prompt + "".join(chars))
    out.write("\n")
    out.flush()
    seconds = time.perf_counter() - start
    print(
        f"sampled {drawn} characters in {seconds:.2f} s ({drawn / max(seconds, 1e-9):.0f} chars/s)"
        f", seed {seed}",
        file=sys.stderr,
    )
    return samples


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="generate")
def main(cfg: DictConfig) -> None:
    """``python scripts/generate.py ckpt_path=<char-LM checkpoint> [prompt=... length=...]``."""
    with errors_reported(log):
        generate(cfg)
