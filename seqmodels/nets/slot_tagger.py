"""The slot tagger's network: words in, tag scores and intent logits out (no training stack)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from seqmodels.data.vocab import UNK
from seqmodels.layers.word_embedding import build_word_embedding
from seqmodels.nets.parts import build_encoder
from seqmodels.nets.slot_inputs import IntentToSlot, StateAttention, WordInputs, build_decoder


def has_sentence_labels(intents: list[str]) -> bool:
    """Whether the intent vocabulary holds more than one label besides ``<unk>``: with one
    (``-``, files without sentence labels) there is nothing to predict."""
    return len([name for name in intents if name != UNK]) > 1


def restore_intent_head(module: nn.Module, state_dict: dict, prefix: str, *_: object) -> None:
    """Checkpoints written before intent-less taggers existed hold an intent head even for
    NER data: it is rebuilt from its weights, so such a checkpoint loads and evaluates to the
    loss it was trained with (its intent is still not reported)."""
    weight = state_dict.get(f"{prefix}intent_head.weight")
    if module.intent_head is None and weight is not None:
        like = module.tag_head.weight
        head = nn.Linear(weight.size(1), weight.size(0), device=like.device, dtype=like.dtype)
        module.intent_head = head  # into its registered slot: the parameter order is kept


class SlotTaggerNet(nn.Module):
    """embedding -> encoder -> linear over tags; max-pooled states -> linear over intents.

    Options (see :mod:`seqmodels.nets.slot_inputs`): ``decoder="crf"`` puts a linear-chain CRF
    on the tag scores (BIO-constrained Viterbi); ``model.char_features`` adds a char CNN/Bi-LSTM
    vector to each word; ``model.word_dropout`` replaces training words by ``<unk>``;
    ``model.intent_to_slot`` feeds the pooled intent representation to the tag head;
    ``model.self_attention=<heads>`` adds self-attention over the encoder states.

    Built from the plain hyperparameters a checkpoint stores; :class:`seqmodels.tasks.SlotTagger`
    is this network plus training, so both have the same parameter names.
    """

    data_kind = "slot_filling"  # the data it reads (what scripts check a checkpoint against)

    def __init__(
        self, vocabs: dict[str, list[str]], model: dict[str, Any], decoder: str = "softmax"
    ) -> None:
        # In a task module, super() is its LightningModule: the layers come after its set-up.
        super().__init__()
        self.tag_names = list(vocabs["tags"])
        self.embedding = build_word_embedding(model, vocabs)  # model.word_vectors or random
        self.words_in = WordInputs(model, vocabs, self.embedding.embedding_dim)
        self.encoder = build_encoder(model, self.words_in.output_size)
        self.dropout = nn.Dropout(model.get("dropout", 0.0))
        self.attend = StateAttention(model, self.encoder.output_size)
        # Data without sentence labels (NER files: one label, "-") gets no intent layers.
        self.has_intents = has_sentence_labels(vocabs["intents"])
        # Without intents the slot stays registered (empty): a head an old checkpoint brings
        # back (restore_intent_head) keeps its place in the parameter order, which the
        # checkpoint's optimizer state follows.
        self.register_module(
            "intent_head",
            nn.Linear(self.encoder.output_size, len(vocabs["intents"]))
            if self.has_intents
            else None,
        )
        self.register_load_state_dict_pre_hook(restore_intent_head)
        self.intent_to_slot = IntentToSlot(model, self.encoder.output_size)
        self.tag_head = nn.Linear(self.intent_to_slot.output_size, len(vocabs["tags"]))
        self.crf = build_decoder(decoder, self.tag_names)
        # Never predict padding or UNK (train has neither), so unseen gold labels count as errors.
        blocked = torch.zeros(len(self.tag_names), dtype=torch.bool)
        blocked[[self.tag_names.index(t) for t in ("<pad>", UNK) if t in self.tag_names]] = True
        self.register_buffer("blocked_tags", blocked, persistent=False)
        blocked_intents = torch.tensor([name == UNK for name in vocabs["intents"]])
        self.register_buffer("blocked_intents", blocked_intents, persistent=False)

    def restore_layers(self, state_dict: dict, prefix: str = "") -> None:
        """Rebuild the layers a checkpoint's weights bring back (an old NER checkpoint's
        intent head), as loading it does: what ``check_resumable`` compares after."""
        restore_intent_head(self, state_dict, prefix)

    def forward(
        self,
        words: torch.Tensor,
        lengths: torch.Tensor,
        chars: torch.Tensor | None = None,
        char_lm: dict[str, Any] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Tag scores ``[B, T, tags]`` and intent logits ``[B, intents]`` (``None`` without
        an intent head). ``char_lm``: :meth:`char_lm_inputs` of the words, for a tagger with
        ``model.char_lm_features``."""
        inputs = self.words_in(self.embedding(self.words_in.drop_words(words)), chars, char_lm)
        states = self.encoder(self.dropout(inputs), lengths)
        return self.heads(self.dropout(states), words != 0)

    def char_lm_inputs(
        self, sentences: list[list[str]], device: torch.device | str | None = None
    ) -> dict[str, Any] | None:
        """The char LMs' inputs for ``sentences`` (token lists as written), built on the host;
        ``None`` for a tagger without ``model.char_lm_features``."""
        return self.words_in.char_lm_inputs(sentences, device)

    def heads(
        self, states: torch.Tensor, real: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encoder states ``[B, T, H]`` -> tag scores and intent logits, as :meth:`forward`
        applies them (self-attention, the intent's max-pool over the real tokens ``real
        [B, T]``, intent-to-slot); the gradient-flow measurement goes through this too."""
        states = self.attend(states, real)
        pooled = states.masked_fill(~real.unsqueeze(-1), float("-inf")).amax(dim=1)
        intents = self.intent_head(pooled) if self.intent_head is not None else None
        return self.tag_head(self.intent_to_slot(states, pooled)), intents

    def predict_tags(
        self, tag_scores: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Best tag ids ``[B, T]``: per-token argmax, or the CRF's allowed Viterbi path over
        the real tokens ``mask [B, T]`` (``None``: every position is a real token)."""
        if self.crf is None:
            return tag_scores.masked_fill(self.blocked_tags, float("-inf")).argmax(-1)
        if mask is None:
            mask = torch.ones(tag_scores.shape[:2], dtype=torch.bool, device=tag_scores.device)
        return self.crf.decode(tag_scores, mask, self.blocked_tags)

    def tag_probabilities(self, tag_scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, T, tags]``: the softmax over the allowed tags, or the CRF's marginals."""
        if self.crf is None:
            return tag_scores.masked_fill(self.blocked_tags, float("-inf")).float().softmax(-1)
        return self.crf.marginals(tag_scores, mask, self.blocked_tags)

    def predict_intents(self, intent_logits: torch.Tensor) -> torch.Tensor:
        return intent_logits.masked_fill(self.blocked_intents, float("-inf")).argmax(-1)

    def intent_probabilities(self, intent_logits: torch.Tensor) -> torch.Tensor:
        """``[B, intents]``: the softmax over the allowed intents."""
        return intent_logits.masked_fill(self.blocked_intents, float("-inf")).float().softmax(-1)

    def decode(self, tag_ids: torch.Tensor, lengths: torch.Tensor) -> list[list[str]]:
        rows = tag_ids.tolist()
        return [[self.tag_names[i] for i in row[:n]] for row, n in zip(rows, lengths.tolist())]
