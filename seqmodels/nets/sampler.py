"""Sample text one character at a time from a char LM, carrying its recurrent state.

The prompt goes through the model in one pass; after that each step feeds only the character
just drawn, with the state the previous step returned, so a step costs the same at character
10 and at character 10,000 (the text is never re-read).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from seqmodels.core.errors import ConfigError
from seqmodels.layers.encoders import State


class UnknownCharactersError(ConfigError):
    """The prompt has characters the model's vocabulary lacks."""


def is_int(value: Any) -> bool:
    """A whole number (a bool is not one, though Python counts it as an int)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool, not a string such as ``temperature=abc``)."""
    return (is_int(value) or isinstance(value, float)) and math.isfinite(value)


# The smallest temperature above 0 the options take: logits / T overflows to inf (softmax: nan)
# for T near the smallest floats, and long before that all the mass is on the top token.
# next_token_probs, called directly, samples greedily below it.
MIN_TEMPERATURE = 1e-6


def is_greedy(temperature: float) -> bool:
    """Whether ``temperature`` samples greedily (0, or below :data:`MIN_TEMPERATURE`)."""
    return temperature < MIN_TEMPERATURE


def check_seed(seed: Any, also: str = "") -> None:
    """A seed ``torch.Generator.manual_seed`` takes: a whole number in [0, 2**64).

    ``also`` names what else the caller takes (``" or null (random)"``)."""
    if not is_int(seed) or not 0 <= seed < 2**64:
        raise ConfigError(f"seed must be a whole number in [0, 2**64){also}, got {seed!r}")


def check_options(temperature: Any, top_k: Any, top_p: Any, length: Any) -> None:
    """Refuse option values that cannot be sampled with, naming the option and what it takes."""
    if not is_number(temperature) or temperature < 0 or 0 < temperature < MIN_TEMPERATURE:
        raise ConfigError(
            f"temperature must be a number >= 0: 0 (greedy) or at least {MIN_TEMPERATURE:g}, "
            f"got {temperature!r}"
        )
    if top_k is not None and (not is_int(top_k) or top_k < 1):
        raise ConfigError(f"top_k must be a whole number >= 1 or null (all), got {top_k!r}")
    if top_p is not None and (not is_number(top_p) or not 0.0 < top_p <= 1.0):
        raise ConfigError(f"top_p must be a number in (0, 1] or null (all), got {top_p!r}")
    if not is_int(length) or length < 0:
        raise ConfigError(f"length must be a whole number >= 0, got {length!r}")


def next_token_probs(
    logits: torch.Tensor, temperature: float, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """The distribution to draw from: ``softmax(logits / T)`` restricted to top-k, then top-p.

    ``top_p`` keeps the most likely tokens until their mass reaches ``p`` (at least one).
    ``temperature=0`` (or any below :data:`MIN_TEMPERATURE`) puts all mass on the most likely
    token (greedy decoding). The probabilities are finite for any finite logits.
    """
    logits = logits.float()
    if is_greedy(temperature):
        probs = torch.zeros_like(logits)
        probs.scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
        return probs
    scaled = logits / temperature
    if not bool(torch.isfinite(scaled.amax(-1)).all()):  # overflow: divide after the shift
        scaled = (logits - logits.amax(-1, keepdim=True)) / temperature
    logits = scaled
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        mass_before = sorted_probs.cumsum(-1) - sorted_probs  # mass of the more likely tokens
        sorted_probs = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


@contextmanager
def one_step_kernels() -> Iterator[None]:
    """ATen's plain RNN kernels for one-character steps on CPU.

    nn.LSTM's oneDNN primitive re-lays out the weights on every call, which dominates a
    one-step call: a 2 x 512 LSTM took 22 ms a character with it and 2.9 ms without (one
    thread). The prompt, a long sequence, still runs through oneDNN.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about TF32 when the flag is set
        with torch.backends.mkldnn.flags(enabled=False):
            yield


class CharSampler:
    """Draws characters from ``model`` (``forward(ids [B, T], state) -> (logits, state)``).

    ``vocab`` lists the characters by id. Sampling runs under ``torch.inference_mode`` and draws
    from the ``generator`` it is given, so it neither records gradients nor moves the global RNG
    (a training run that samples stays reproducible); without one it uses torch's global RNG.
    """

    def __init__(self, model: torch.nn.Module, vocab: list[str]) -> None:
        self.model, self.vocab = model, list(vocab)
        self.stoi = {ch: i for i, ch in enumerate(self.vocab)}

    def encode(self, prompt: str) -> list[int]:
        """Ids of ``prompt``; characters outside the vocabulary are an error naming them."""
        if not prompt:
            raise ConfigError("prompt must have at least one character (e.g. prompt='\\n')")
        unknown = sorted(set(prompt) - set(self.stoi))
        if unknown:
            raise UnknownCharactersError(
                f"prompt has characters the model never saw in training: "
                f"{', '.join(repr(c) for c in unknown)}; its vocabulary has {len(self.vocab)} "
                f"characters: {''.join(self.vocab)!r}"
            )
        return [self.stoi[ch] for ch in prompt]

    def prime(self, prompt: str) -> tuple[torch.Tensor, State]:
        """Run the prompt in one pass: the next-character logits ``[vocab]`` and the state."""
        device = next(self.model.parameters()).device
        ids = torch.tensor([self.encode(prompt)], device=device)
        with torch.inference_mode():
            logits, state = self.model(ids, None)
        return logits[0, -1], state

    def sample(
        self,
        prompt: str,
        length: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
    ) -> Iterator[str]:
        """Yield ``length`` characters following ``prompt``, one at a time."""
        check_options(temperature, top_k, top_p, length)
        was_training = self.model.training
        self.model.eval()  # no dropout while sampling
        try:
            logits, state = self.prime(prompt)
            for i in range(length):
                probs = next_token_probs(logits, temperature, top_k, top_p)
                if is_greedy(temperature):
                    next_id = probs.argmax(-1)
                else:
                    next_id = torch.multinomial(probs.cpu(), 1, generator=generator)[0]
                yield self.vocab[int(next_id)]
                if i + 1 < length:
                    with torch.inference_mode(), one_step_kernels():
                        step_logits, state = self.model(next_id.view(1, 1).to(logits.device), state)
                    logits = step_logits[0, -1]
        finally:
            self.model.train(was_training)
