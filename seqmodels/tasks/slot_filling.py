"""Slot filling (BIO tagging) with a joint intent head over any encoder."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics.classification import MulticlassAccuracy

from seqmodels.data.vocab import UNK
from seqmodels.metrics import SentenceAccuracy, SpanF1
from seqmodels.tasks.base import SequenceTask, build_embedding, build_encoder
from seqmodels.tasks.slot_inputs import IntentToSlot, StateAttention, WordInputs, build_decoder


class SlotTagger(SequenceTask):
    """embedding -> encoder -> linear over tags; max-pooled states -> linear over intents.

    Options (see :mod:`seqmodels.tasks.slot_inputs`): ``decoder="crf"`` puts a linear-chain CRF
    on the tag scores (BIO-constrained Viterbi); ``model.char_features`` adds a char CNN/Bi-LSTM
    vector to each word; ``model.word_dropout`` replaces training words by ``<unk>``;
    ``model.intent_to_slot`` feeds the pooled intent representation to the tag head;
    ``model.self_attention=<heads>`` adds self-attention over the encoder states.

    Logs ``<stage>/loss``, span ``f1``/``precision``/``recall`` (conlleval), ``token_acc``,
    ``intent_acc`` and ``sent_acc`` (intent and every tag right). The main metric is ``val/f1``.
    """

    data_kind = "slot_filling"

    def __init__(
        self,
        vocabs: dict[str, list[str]],
        model: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        intent_loss_weight: float = 1.0,
        decoder: str = "softmax",
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.tag_names = list(vocabs["tags"])
        self.embedding = build_embedding(model, len(vocabs["words"]), padding_idx=0)  # <pad>
        self.words_in = WordInputs(model, vocabs, self.embedding.embedding_dim)
        self.encoder = build_encoder(model, self.words_in.output_size)
        self.dropout = nn.Dropout(model.get("dropout", 0.0))
        self.attend = StateAttention(model, self.encoder.output_size)
        self.intent_head = nn.Linear(self.encoder.output_size, len(vocabs["intents"]))
        self.intent_to_slot = IntentToSlot(model, self.encoder.output_size)
        self.tag_head = nn.Linear(self.intent_to_slot.output_size, len(vocabs["tags"]))
        self.crf = build_decoder(decoder, self.tag_names)
        self.intent_loss_weight = intent_loss_weight
        # Never predict padding or UNK (train has neither), so unseen gold labels count as errors.
        blocked = torch.zeros(len(self.tag_names), dtype=torch.bool)
        blocked[[self.tag_names.index(t) for t in ("<pad>", UNK) if t in self.tag_names]] = True
        self.register_buffer("blocked_tags", blocked, persistent=False)
        blocked_intents = torch.tensor([name == UNK for name in vocabs["intents"]])
        self.register_buffer("blocked_intents", blocked_intents, persistent=False)
        num_tags, num_intents = len(vocabs["tags"]), len(vocabs["intents"])
        self.span_f1 = nn.ModuleDict({s: SpanF1() for s in ("val", "test")})
        self.token_acc = nn.ModuleDict(
            {
                s: MulticlassAccuracy(num_tags, average="micro", ignore_index=0)
                for s in ("val", "test")
            }
        )
        self.intent_acc = nn.ModuleDict(
            {s: MulticlassAccuracy(num_intents, average="micro") for s in ("val", "test")}
        )
        self.sent_acc = nn.ModuleDict({s: SentenceAccuracy() for s in ("val", "test")})

    def forward(
        self, words: torch.Tensor, lengths: torch.Tensor, chars: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tag scores ``[B, T, tags]`` and intent logits ``[B, intents]``."""
        inputs = self.words_in(self.embedding(self.words_in.drop_words(words)), chars)
        states = self.encoder(self.dropout(inputs), lengths)
        return self.heads(self.dropout(states), words != 0)

    def heads(self, states: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states ``[B, T, H]`` -> tag scores and intent logits, as :meth:`forward`
        applies them (self-attention, the intent's max-pool over the real tokens ``real
        [B, T]``, intent-to-slot); the gradient-flow measurement goes through this too."""
        states = self.attend(states, real)
        pooled = states.masked_fill(~real.unsqueeze(-1), float("-inf")).amax(dim=1)
        return self.tag_head(self.intent_to_slot(states, pooled)), self.intent_head(pooled)

    def _step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        tag_logits, intent_logits = self(batch["words"], batch["lengths"], batch.get("chars"))
        tags = batch["tags"]
        tag_loss = self.tag_loss(tag_logits, tags)
        intent_loss = F.cross_entropy(intent_logits, batch["intents"])
        loss = tag_loss + self.intent_loss_weight * intent_loss
        self.log_loss(stage, loss, int(batch["lengths"].sum()))
        if stage != "train":
            predicted = self.predict_tags(tag_logits, batch["words"] != 0)
            intents = self.predict_intents(intent_logits)
            self.token_acc[stage].update(predicted, tags)
            self.intent_acc[stage].update(intents, batch["intents"])
            self.sent_acc[stage].update(predicted, tags, intents, batch["intents"])
            self.span_f1[stage].update(self.decode(predicted, batch["lengths"]), batch["gold_tags"])
        return loss

    def tag_loss(self, tag_scores: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        """Mean token cross-entropy, or the CRF's negative log-likelihood per token."""
        if self.crf is None:
            return F.cross_entropy(tag_scores.transpose(1, 2), tags, ignore_index=0)
        mask = tags != 0
        return -self.crf.log_likelihood(tag_scores, tags, mask).sum() / mask.sum()

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

    def predict_intents(self, intent_logits: torch.Tensor) -> torch.Tensor:
        return intent_logits.masked_fill(self.blocked_intents, float("-inf")).argmax(-1)

    def decode(self, tag_ids: torch.Tensor, lengths: torch.Tensor) -> list[list[str]]:
        rows = tag_ids.tolist()
        return [[self.tag_names[i] for i in row[:n]] for row, n in zip(rows, lengths.tolist())]

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, list[str]]]:
        """Per utterance: its ``tokens``, ``gold`` tags and ``predicted`` tags (for conlleval)."""
        tag_logits, _ = self(batch["words"], batch["lengths"], batch.get("chars"))
        predicted = self.decode(
            self.predict_tags(tag_logits, batch["words"] != 0), batch["lengths"]
        )
        return [
            {"tokens": tokens, "gold": gold, "predicted": pred}
            for tokens, gold, pred in zip(batch["tokens"], batch["gold_tags"], predicted)
        ]

    def _log_epoch(self, stage: str) -> None:
        metrics = {f"{stage}/loss": self.epoch_loss(stage)}
        for name, value in self.span_f1[stage].compute().items():
            metrics[f"{stage}/{name}"] = value.float()
        metrics[f"{stage}/token_acc"] = 100 * self.token_acc[stage].compute()
        metrics[f"{stage}/intent_acc"] = 100 * self.intent_acc[stage].compute()
        metrics[f"{stage}/sent_acc"] = self.sent_acc[stage].compute().float()
        for metric in (self.span_f1, self.token_acc, self.intent_acc, self.sent_acc):
            metric[stage].reset()
        for name, value in metrics.items():  # the bar shows train/loss and the main metric only
            self.log(name, value, prog_bar=name == "val/f1")
