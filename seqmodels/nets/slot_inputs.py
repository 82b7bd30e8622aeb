"""The slot tagger's optional parts, each switched by one config option.

- :class:`WordInputs`: the word embedding, ``model.word_dropout`` (training words replaced by
  ``<unk>``, so the ``<unk>`` row learns what unseen test words need) and
  ``model.char_features`` (a char CNN / Bi-LSTM vector concatenated to each embedding) and
  ``model.char_lm_features`` (forward/backward char-LM states per word, see
  :mod:`seqmodels.nets.char_lm_features`).
- :class:`IntentToSlot`: ``model.intent_to_slot`` feeds the pooled utterance representation
  (what the intent head reads) to every token's tag scores, as slot-gated and
  Stack-Propagation models let the intent inform the slots.
- :class:`StateAttention`: ``model.self_attention=<heads>`` lets every token's state attend to
  the whole utterance (multi-head self-attention, added back with a residual and layer norm),
  as Stack-Propagation's encoder does beside its Bi-LSTM.
- :func:`build_decoder`: ``task.module.decoder=softmax|crf``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from seqmodels.core.errors import ConfigError
from seqmodels.data.vocab import UNK
from seqmodels.layers.char_features import build_char_features
from seqmodels.layers.crf import CRF, allowed_transitions
from seqmodels.nets.char_lm_features import CACHE_MIB, CharLMFeatures, resolve_char_lms

DECODERS = ("softmax", "crf")


class WordInputs(nn.Module):
    """Word dropout on ids before the embedding; char and char-LM features concatenated
    after it."""

    def __init__(self, model: dict[str, Any], vocabs: dict[str, list[str]], embedding_dim: int):
        super().__init__()
        self.word_dropout = float(model.get("word_dropout") or 0.0)
        if not 0.0 <= self.word_dropout < 1.0:
            raise ConfigError(f"model.word_dropout must be in [0, 1), got {self.word_dropout}")
        self.unk_id = vocabs["words"].index(UNK) if UNK in vocabs["words"] else None
        kind = model.get("char_features")
        self.chars = None
        if kind:
            if "chars" not in vocabs:
                raise ConfigError(
                    f"model.char_features={kind} needs a character vocabulary, and this data "
                    "module gives none"
                )
            try:
                self.chars = build_char_features(
                    kind,
                    len(vocabs["chars"]),
                    model.get("char_dim", 32),
                    model.get("char_size", 64),
                    model.get("char_max_len"),  # absent from checkpoints before it: no limit
                )
            except ValueError as err:
                raise ConfigError(str(err)) from err
        self.char_lms = None
        if entries := model.get("char_lm_features"):
            specs, nets = resolve_char_lms(list(entries))
            # Recorded in place of the paths (these are the checkpoint's hyperparameters), so
            # loading the tagger builds the LMs from plain values and never reads their files.
            model["char_lm_features"] = specs
            tune = bool(model.get("char_lm_features_tune", False))
            cache_mib = model.get("char_lm_features_cache_mib", CACHE_MIB)
            self.char_lms = CharLMFeatures(
                specs, nets, tune, CACHE_MIB if cache_mib is None else cache_mib
            )
        extra = sum(m.output_size for m in (self.chars, self.char_lms) if m is not None)
        self.output_size = embedding_dim + extra

    def drop_words(self, words: torch.Tensor) -> torch.Tensor:
        """In training, each real word id becomes ``<unk>`` with probability ``word_dropout``."""
        if self.training and self.word_dropout > 0 and self.unk_id is not None:
            drop = torch.rand(words.shape, device=words.device) < self.word_dropout
            words = words.masked_fill(drop & (words != 0), self.unk_id)
        return words

    def char_lm_inputs(
        self, sentences: list[list[str]], device: torch.device | str | None = None
    ) -> dict[str, Any] | None:
        """What the char LMs read for ``sentences`` (words as written; built on the host),
        or ``None`` without ``model.char_lm_features``."""
        return None if self.char_lms is None else self.char_lms.inputs(sentences, device)

    def forward(
        self,
        vectors: torch.Tensor,
        chars: torch.Tensor | None = None,
        char_lm: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        """Word vectors ``[B, T, E]`` (+ char ids ``[B, T, L]``, + :meth:`char_lm_inputs`)
        -> ``[B, T, output_size]``."""
        parts = [vectors]
        if self.chars is not None:
            if chars is None:
                raise ValueError("model.char_features is set, but the batch has no 'chars'")
            parts.append(self.chars(chars))
        if self.char_lms is not None:
            if char_lm is None:
                raise ValueError(
                    "model.char_lm_features is set, but the batch has no 'char_lm' inputs "
                    "(SlotTaggerNet.char_lm_inputs builds them from the words)"
                )
            parts.append(self.char_lms(char_lm))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


class IntentToSlot(nn.Module):
    """Token states ``[B, T, H]`` (+ pooled ``[B, H]``) -> what the tag head reads.

    Off: the states unchanged. On: each state concatenated with ``tanh(W pooled)``.
    """

    def __init__(self, model: dict[str, Any], size: int) -> None:
        super().__init__()
        self.project = nn.Linear(size, size) if model.get("intent_to_slot") else None
        self.output_size = 2 * size if self.project is not None else size

    def forward(self, states: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        if self.project is None:
            return states
        context = torch.tanh(self.project(pooled)).unsqueeze(1).expand_as(states)
        return torch.cat([states, context], dim=-1)


class StateAttention(nn.Module):
    """Encoder states ``[B, T, H]`` -> ``LayerNorm(states + SelfAttention(states))``, or unchanged.

    ``model.self_attention`` is the number of heads (``0``/``null``: off); padding is never
    attended to.
    """

    def __init__(self, model: dict[str, Any], size: int) -> None:
        super().__init__()
        heads = model.get("self_attention") or 0
        if not isinstance(heads, int) or heads < 0 or (heads and size % heads):
            raise ConfigError(
                f"model.self_attention must be a number of heads that divides the encoder's "
                f"output size {size} (0 or null: off), got {heads!r}"
            )
        self.attention = nn.MultiheadAttention(size, heads, batch_first=True) if heads else None
        self.norm = nn.LayerNorm(size) if heads else None

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``mask [B, T]`` is True at real tokens."""
        if self.attention is None:
            return states
        ignore = ~mask & mask.any(dim=1, keepdim=True)  # an all-padding row attends to itself
        context, _ = self.attention(
            states, states, states, key_padding_mask=ignore, need_weights=False
        )
        return self.norm(states + context)


def tag_scheme(tags: list[str]) -> str:
    """``IOBES`` when any tag is ``E-x`` or ``S-x``, else ``BIO``."""
    return "IOBES" if any(t.startswith(("E-", "S-")) for t in tags) else "BIO"


def build_decoder(decoder: str, tags: list[str]) -> CRF | None:
    """``None`` for a per-token softmax, or a CRF whose decoding obeys the tags' scheme."""
    if decoder not in DECODERS:
        raise ConfigError(
            f"task.module.decoder must be one of {', '.join(DECODERS)}, got {decoder!r}"
        )
    if decoder == "softmax":
        return None
    return CRF(len(tags), allowed_transitions(tags, tag_scheme(tags)))
