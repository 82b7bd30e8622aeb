"""A short text sample from the char LM after each validation, in TensorBoard's Text tab."""

from __future__ import annotations

import logging

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from seqmodels.core.errors import ConfigError
from seqmodels.data.text_codec import TextCodec
from seqmodels.nets.sampler import CharSampler, UnknownCharactersError, check_options

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
        self.active = False  # set in setup(): a char LM whose vocabulary has the prompt's chars
        self.codec = TextCodec()  # set in setup() from the data: bytes or characters, direction

    def sample(self, pl_module: L.LightningModule) -> str:
        """The prompt and ``length`` characters the model draws after it."""
        sampler = CharSampler(pl_module, pl_module.vocab)
        generator = torch.Generator().manual_seed(self.seed)
        prompt = self.codec.encode(self.prompt)  # bytes for a byte model; reversed if backward
        chars = sampler.sample(
            prompt, self.length, self.temperature, self.top_k, generator=generator
        )
        return self.codec.decode(prompt + "".join(chars))

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Check the prompt once: a character the model cannot read means no samples, not a
        failed run (e.g. the default prompt "\\n" with a text file without line breaks)."""
        self.active = getattr(pl_module, "data_kind", None) == "text"
        if self.active:
            data = getattr(trainer, "datamodule", None)
            self.codec = TextCodec(getattr(data, "unit", "char"), getattr(data, "reverse", False))
            try:
                CharSampler(pl_module, pl_module.vocab).encode(self.codec.encode(self.prompt))
            except UnknownCharactersError as err:
                log.warning("no text samples: callbacks.text_samples.%s", err)
                self.active = False

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or not self.active:
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
