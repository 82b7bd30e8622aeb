"""Slot filling (BIO tagging) with a joint intent head over any encoder."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from seqmodels.core.errors import ConfigError
from seqmodels.metrics import SentenceAccuracy, SpanF1
from seqmodels.metrics.span_f1 import span_types
from seqmodels.nets.slot_tagger import SlotTaggerNet
from seqmodels.tasks.base import SequenceTask
from seqmodels.tasks.span_logging import log_test_span_report

# The task's on_before_batch_transfer adds the char-LM inputs; any data module's batches are
# fine with that, which Lightning cannot tell and says at every fit.
warnings.filterwarnings("ignore", message=r"You have overridden `on_before_batch_transfer`")
# What a training step differentiates: the loss per token (the logged loss), or summed over the
# batch's sentences as NCRF++ and Lample et al. 2016 do for their SGD learning rates.
LOSS_REDUCTIONS = ("token", "sum")


class SlotTagger(SlotTaggerNet, SequenceTask):
    """embedding -> encoder -> linear over tags; max-pooled states -> linear over intents.

    Options (see :mod:`seqmodels.nets.slot_inputs`): ``decoder="crf"`` puts a linear-chain CRF
    on the tag scores (BIO-constrained Viterbi); ``model.char_features`` adds a char CNN/Bi-LSTM
    vector to each word; ``model.word_dropout`` replaces training words by ``<unk>``;
    ``model.intent_to_slot`` feeds the pooled intent representation to the tag head;
    ``model.self_attention=<heads>`` adds self-attention over the encoder states. The layers,
    forward and decoding live in :class:`seqmodels.nets.SlotTaggerNet`; this adds training.

    Logs ``<stage>/loss``, span ``f1``/``precision``/``recall`` (conlleval), ``token_acc``,
    ``intent_acc`` (left out when the training data has one sentence label or none, as NER files
    do) and ``sent_acc`` (intent and every tag right). The main metric is ``val/f1``.
    ``loss_reduction="sum"`` steps on the batch's summed loss instead of its loss per token
    (the published SGD recipes' learning rates assume it); the logged loss stays per token.
    The epoch loss is the split's tag loss per token plus ``intent_loss_weight`` times its
    intent loss per utterance: the training loss's definition, over the whole split, so it does
    not depend on how the split is cut into batches or shared between processes.
    """

    def __init__(
        self,
        vocabs: dict[str, list[str]],
        model: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        intent_loss_weight: float = 1.0,
        decoder: str = "softmax",
        loss_reduction: str = "token",
    ) -> None:
        super().__init__(vocabs, model, decoder)  # SequenceTask's set-up, then the layers
        if loss_reduction not in LOSS_REDUCTIONS:
            raise ConfigError(
                f"task.module.loss_reduction must be one of {', '.join(LOSS_REDUCTIONS)}, "
                f"not {loss_reduction!r}"
            )
        self.save_hyperparameters(logger=False)
        self.intent_loss_weight, self.loss_reduction = intent_loss_weight, loss_reduction
        num_tags, num_intents = len(vocabs["tags"]), len(vocabs["intents"])
        # Test counts spans per type too, for the per-type report (span_logging).
        types = span_types(self.tag_names)
        self.span_f1 = nn.ModuleDict({"val": SpanF1(), "test": SpanF1(types)})
        self.tested: list[dict[str, list[str]]] = []  # test sentences, for the span errors
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
        # The epoch loss in two parts, each summed over every batch and process: the tag loss
        # per token (in ``self.losses``) and the intent loss per utterance.
        self.intent_losses = nn.ModuleDict({s: MeanMetric() for s in ("val", "test")})

    def _step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        tag_logits, intent_logits = self(
            batch["words"], batch["lengths"], batch.get("chars"), batch.get("char_lm")
        )
        tags = batch["tags"]
        tag_total, counted = self.tag_loss_sum(tag_logits, tags)
        if intent_logits is None:  # no sentence labels: nothing to learn or measure
            intent_total = tag_logits.new_zeros(())
        else:
            intent_total = F.cross_entropy(intent_logits, batch["intents"], reduction="sum")
        utterances = len(batch["intents"])
        tag_loss, intent_loss = tag_total / counted.clamp(min=1), intent_total / utterances
        loss = tag_loss + self.intent_loss_weight * intent_loss
        if stage == "train":
            # The token count from the host's lists: int(counted) would wait for the device.
            self.log_loss(stage, loss, sum(len(t) for t in batch["gold_tags"]))
            if self.loss_reduction == "sum":  # the step follows the batch's summed loss
                return tag_total + self.intent_loss_weight * intent_total
        else:
            self.losses[stage].update(tag_loss.detach(), weight=counted)
            self.intent_losses[stage].update(intent_loss.detach(), weight=utterances)
            predicted = self.predict_tags(tag_logits, batch["words"] != 0)
            intents = batch["intents"]
            if intent_logits is not None:
                intents = self.predict_intents(intent_logits)
                self.intent_acc[stage].update(intents, batch["intents"])
            self.token_acc[stage].update(predicted, tags)
            self.sent_acc[stage].update(predicted, tags, intents, batch["intents"])
            decoded = self.decode(predicted, batch["lengths"])
            self.span_f1[stage].update(decoded, batch["gold_tags"])
            if stage == "test":
                self.tested += [
                    {"tokens": tokens, "gold": gold, "predicted": pred}
                    for tokens, gold, pred in zip(batch["tokens"], batch["gold_tags"], decoded)
                ]
        return loss

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """The char LMs' inputs (``model.char_lm_features``), built from the words on the host
        while the batch is still there: the device never waits for them."""
        if isinstance(batch, dict) and "tokens" in batch and "char_lm" not in batch:
            if (inputs := self.char_lm_inputs(batch["tokens"])) is not None:
                batch = {**batch, "char_lm": inputs}
        return batch

    def tag_loss_sum(
        self, tag_scores: torch.Tensor, tags: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The summed token cross-entropy (or CRF negative log-likelihood) and the token count."""
        mask = tags != 0
        if self.crf is None:
            scores = tag_scores.transpose(1, 2)
            total = F.cross_entropy(scores, tags, ignore_index=0, reduction="sum")
        else:
            total = -self.crf.log_likelihood(tag_scores, tags, mask).sum()
        return total, mask.sum()

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, list[str]]]:
        """Per utterance: its ``tokens``, ``gold`` tags and ``predicted`` tags (for conlleval)."""
        tag_logits, _ = self(
            batch["words"], batch["lengths"], batch.get("chars"), batch.get("char_lm")
        )
        predicted = self.decode(
            self.predict_tags(tag_logits, batch["words"] != 0), batch["lengths"]
        )
        return [
            {"tokens": tokens, "gold": gold, "predicted": pred}
            for tokens, gold, pred in zip(batch["tokens"], batch["gold_tags"], predicted)
        ]

    def _log_epoch(self, stage: str) -> None:
        intent_loss = self.intent_losses[stage].compute()
        self.intent_losses[stage].reset()
        metrics = {f"{stage}/loss": self.epoch_loss(stage) + self.intent_loss_weight * intent_loss}
        for name, value in self.span_f1[stage].compute().items():
            metrics[f"{stage}/{name}"] = value.float()
        metrics[f"{stage}/token_acc"] = 100 * self.token_acc[stage].compute()
        if self.has_intents:
            metrics[f"{stage}/intent_acc"] = 100 * self.intent_acc[stage].compute()
        metrics[f"{stage}/sent_acc"] = self.sent_acc[stage].compute().float()
        if stage == "test":
            log_test_span_report(self, self.span_f1[stage], self.tested)
            self.tested = []
        for metric in (self.span_f1, self.token_acc, self.intent_acc, self.sent_acc):
            metric[stage].reset()
        for name, value in metrics.items():  # the bar shows train/loss and the main metric only
            self.log(name, value, prog_bar=name == "val/f1")
