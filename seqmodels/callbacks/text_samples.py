"""A short text sample from the char LM after each validation, in TensorBoard's Text tab."""

from __future__ import annotations

import logging

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from seqmodels.errors import ConfigError
from seqmodels.sampler import CharSampler, check_options

log = logging.getLogger(__name__)


class TextSamples(L.Callback):
    """After each validation epoch, sample ``length`` characters after ``prompt``.

    The sample goes to every TensorBoard logger as text under ``samples/text`` at the current
    global step (the Text tab shows one entry per epoch), and to the run's log. The prompt and
    ``seed`` are fixed, so the samples differ only because the model does. Sampling uses a
    generator of its own: the run's random streams (and an exact resume) are untouched. Tasks
    that are not character language models are skipped; ``callbacks.text_samples=null``
    switches it off.
    """

    def __init__(
        self,
        prompt: str = "\n",
        length: int = 200,
        temperature: float = 0.8,
        top_k: int | None = None,
        seed: int = 0,
    ) -> None:
        check_options(temperature, top_k, None, length)
        if not prompt:
            raise ConfigError("callbacks.text_samples.prompt must have at least one character")
        self.prompt, self.length, self.temperature = prompt, length, temperature
        self.top_k, self.seed = top_k, seed

    def sample(self, pl_module: L.LightningModule) -> str:
        """The prompt and ``length`` characters the model draws after it."""
        sampler = CharSampler(pl_module, pl_module.vocab)
        generator = torch.Generator().manual_seed(self.seed)
        chars = sampler.sample(
            self.prompt, self.length, self.temperature, self.top_k, generator=generator
        )
        return self.prompt + "".join(chars)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Refuse a prompt the model cannot read before any training is spent."""
        if getattr(pl_module, "data_kind", None) == "text":
            CharSampler(pl_module, pl_module.vocab).encode(self.prompt)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or getattr(pl_module, "data_kind", None) != "text":
            return
        if not trainer.is_global_zero:
            return
        text = self.sample(pl_module)
        log.info(
            "sample after epoch %d (step %d):\n%s", trainer.current_epoch, trainer.global_step, text
        )
        # TensorBoard renders text as Markdown: four-space indentation keeps it verbatim.
        markdown = "\n".join("    " + line for line in text.split("\n"))
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text("samples/text", markdown, trainer.global_step)
