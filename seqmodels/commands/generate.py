"""Sample text from a char-LM checkpoint alone: ``python scripts/generate.py ckpt_path=...``.

The checkpoint gives the network and its vocabulary (:func:`seqmodels.nets.load_net`, which
needs no training stack); :class:`seqmodels.nets.sampler.CharSampler` primes the recurrent state
with the prompt and then draws one character at a time, carrying the state. The text streams
to stdout as it is drawn.
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

from seqmodels.core.errors import ConfigError, errors_reported
from seqmodels.data.text_codec import TextCodec
from seqmodels.nets import load_net
from seqmodels.nets.sampler import CharSampler, check_options, check_seed, is_int
from seqmodels.plumbing.cli import (
    CONFIG_DIR,
    check_ckpt_path,
    check_device,
    check_num_threads,
    one_line_errors,
)
from seqmodels.plumbing.quick_start import quick_main

log = logging.getLogger(__name__)

SEPARATOR = "\n" + "-" * 40 + "\n"


def check_generate_options(cfg: DictConfig) -> None:
    """Refuse any option generate.py cannot use before the checkpoint is read, naming it."""
    if not is_int(cfg.length) or cfg.length < 1:  # the sampler takes 0; a script has no use for it
        raise ConfigError(
            f"length must be a whole number >= 1 (characters per sample), got {cfg.length!r}"
        )
    check_options(cfg.temperature, cfg.top_k, cfg.top_p, cfg.length)
    if not is_int(cfg.num_samples) or cfg.num_samples < 1:
        raise ConfigError(f"num_samples must be a whole number >= 1, got {cfg.num_samples!r}")
    if cfg.seed is not None:
        check_seed(cfg.seed, " or null (random)")
    if not isinstance(cfg.prompt, str):  # Hydra reads prompt=42 as a number
        quoted = f"\"prompt='{cfg.prompt}'\""
        raise ConfigError(f"prompt must be text, got {cfg.prompt!r}; quote it for Hydra: {quoted}")
    check_num_threads(cfg.get("num_threads"))
    check_device(cfg.device)


def generate(cfg: DictConfig, out: TextIO | None = None) -> list[str]:
    """Write ``cfg.num_samples`` samples (each the prompt and its continuation) to ``out``.

    Returns the samples. The sampling rate (characters per second, prompt excluded) goes to
    stderr at the end.
    """
    out = out if out is not None else sys.stdout
    check_generate_options(cfg)
    check_ckpt_path(cfg, "a char-LM checkpoint written by scripts/train.py task=char_lm")
    if cfg.get("num_threads"):
        torch.set_num_threads(cfg.num_threads)
    module, checkpoint = load_net(cfg.ckpt_path, data_kind="text")
    module.to(cfg.device)
    sampler = CharSampler(module, module.vocab)
    # data.unit=byte: the prompt as UTF-8 bytes; data.reverse: read backwards (TextCodec)
    codec = TextCodec.of(checkpoint["config"].get("data"))
    prompt = codec.encode(cfg.prompt)
    sampler.encode(prompt)  # unknown characters fail before anything is printed
    seed = cfg.seed if cfg.seed is not None else random.SystemRandom().randrange(2**63)
    generator = torch.Generator().manual_seed(seed)

    samples, drawn, start = [], 0, time.perf_counter()
    for n in range(cfg.num_samples):
        if n:
            out.write(SEPARATOR)
        stream = codec.streaming()  # None for a backward model: its text ends with the prompt
        if stream is not None:
            out.write(cfg.prompt)
        chars = []
        options = (cfg.length, cfg.temperature, cfg.top_k, cfg.top_p, generator)
        for ch in sampler.sample(prompt, *options):
            if stream is not None:
                out.write(stream.feed(ch))
                out.flush()
            chars.append(ch)
        drawn += len(chars)
        sample = codec.decode(prompt + "".join(chars))
        out.write(stream.flush() if stream is not None else sample)
        samples.append(sample)
    out.write("\n")
    out.flush()
    seconds = time.perf_counter() - start
    print(
        f"sampled {drawn} characters in {seconds:.2f} s ({drawn / max(seconds, 1e-9):.0f} chars/s)"
        f", seed {seed}",
        file=sys.stderr,
    )
    return samples


@one_line_errors
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="generate")
def hydra_main(cfg: DictConfig) -> None:
    with errors_reported(log):
        generate(cfg)


def main() -> None:
    """``python scripts/generate.py ckpt_path=<char-LM checkpoint> [prompt=... length=...]``."""
    quick_main("generate", generate, hydra_main)
