"""Contextual string embeddings (Akbik et al. 2018, Flair) from this framework's own char LMs.

Each sentence is read as text, ``"\\n" + " ".join(words) + "\\n"`` (the layout of a text file
with one sentence per line, which is what the LMs train on), by a forward char LM and by a
backward one (trained with ``data.reverse=true``). For each word, the forward LM's state after
the word's last character and the backward LM's state after reading (right to left) the
word's first character are concatenated: the word as its context predicts it, from both sides.

The text is rebuilt from the tagger's char ids (``chars [B, T, L]``), so no strings travel in
the batch; characters the LM never saw are read as a space. The LMs are frozen by default
(``model.char_lm_features_tune=true`` trains them with the tagger).

The tagger's checkpoint holds each LM's plain hyperparameters (vocabulary, model config,
direction) and its weights, so loading it never needs the LM files again.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqmodels.core.checkpoints import init_kwargs, load_weights, read_checkpoint, task_name
from seqmodels.core.errors import CheckpointError, ConfigError
from seqmodels.nets.char_lm import CharLMNet


def describe_lm(path: str) -> tuple[dict[str, Any], CharLMNet]:
    """A char-LM checkpoint's plain description (``path``, ``vocab``, ``model``, ``reverse``)
    and its network with the trained weights."""
    if not Path(path).expanduser().is_file():
        raise ConfigError(
            f"model.char_lm_features: {path} does not exist (a task=char_lm checkpoint)"
        )
    checkpoint = read_checkpoint(Path(path).expanduser())
    if task_name(checkpoint) != "char_lm":
        raise CheckpointError(
            f"{path} is a task={task_name(checkpoint)} checkpoint; this needs a model trained "
            "on text data"
        )
    net = CharLMNet(**init_kwargs(CharLMNet, checkpoint["hyper_parameters"]))
    load_weights(net, checkpoint, path)
    net.eval()
    hparams = checkpoint["hyper_parameters"]
    reverse = bool((checkpoint.get("config") or {}).get("data", {}).get("reverse", False))
    spec = {
        "path": str(path),
        "vocab": list(hparams["vocab"]),
        "model": dict(hparams["model"]),
        "reverse": reverse,
    }
    return spec, net


def resolve_char_lms(entries: list[Any]) -> tuple[list[dict[str, Any]], list[CharLMNet]]:
    """``model.char_lm_features`` entries -> plain specs and networks.

    A path (as a user writes it) is read now, weights included; a spec (as a checkpoint stores
    it) builds the network only, its weights coming with the tagger's own.
    """
    if not isinstance(entries, (list, tuple)) or not entries:
        raise ConfigError(
            "model.char_lm_features must be a list of char-LM checkpoints, e.g. "
            f"[fwd.ckpt,bwd.ckpt] (null: off), got {entries!r}"
        )
    specs, nets = [], []
    for entry in entries:
        if isinstance(entry, dict):
            spec, net = dict(entry), CharLMNet(entry["vocab"], entry["model"])
        else:
            spec, net = describe_lm(str(entry))
        specs.append(spec)
        nets.append(net)
    return specs, nets


class CharLMFeatures(nn.Module):
    """Tagger char ids ``[B, T, L]`` -> per-word LM states ``[B, T, output_size]``.

    ``specs`` as :func:`resolve_char_lms` gives them (one per LM, each forward or backward);
    ``tagger_chars`` is the tagger's character vocabulary (id -> character).
    """

    def __init__(
        self,
        specs: list[dict[str, Any]],
        nets: list[CharLMNet],
        tagger_chars: list[str],
        tune: bool = False,
    ) -> None:
        super().__init__()
        self.lms = nn.ModuleList(nets)
        self.reverse = [bool(s.get("reverse", False)) for s in specs]
        self.tune = tune
        for index, spec in enumerate(specs):
            vocab = spec["vocab"]
            if " " not in vocab or "\n" not in vocab:
                raise CheckpointError(
                    f"model.char_lm_features: {spec.get('path')} has no space or newline in "
                    "its vocabulary; train it on text with one sentence per line"
                )
            stoi = {c: i for i, c in enumerate(vocab)}
            # Tagger char id -> LM char id; padding, <unk> and unseen characters read as spaces.
            table = torch.tensor([stoi.get(c, stoi[" "]) for c in tagger_chars])
            self.register_buffer(f"to_lm_{index}", table, persistent=False)
            self.register_buffer(
                f"separators_{index}", torch.tensor([stoi[" "], stoi["\n"]]), persistent=False
            )
        if not tune:
            for param in self.lms.parameters():
                param.requires_grad_(False)
            # Lightning warns about modules in eval mode at the start of training: frozen LMs
            # are, on purpose (see train()).
            warnings.filterwarnings(
                "ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training"
            )
        self.output_size = sum(lm.encoder.output_size for lm in self.lms)
        self.cache: dict[bytes, torch.Tensor] = {}

    def train(self, mode: bool = True) -> CharLMFeatures:
        """Frozen LMs stay in eval mode (no dropout) while the tagger trains."""
        super().train(mode)
        if not self.tune:
            self.lms.eval()
        return self

    @staticmethod
    def layout(chars: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Where each word sits in the sentence text: first and last character positions
        ``[B, T]`` and the text length ``[B]`` (``\\n`` + words joined by spaces + ``\\n``)."""
        word_lengths = (chars != 0).sum(-1)  # [B, T]; 0 for padding words
        real = word_lengths > 0
        step = torch.where(real, word_lengths + 1, torch.zeros_like(word_lengths))
        first = 1 + step.cumsum(-1) - step  # after "\n" and the words (and spaces) before
        last = first + (word_lengths - 1).clamp(min=0)
        text_lengths = step.sum(-1) + 1  # the closing "\n" takes the last word's space slot
        return first, last, text_lengths

    def text_ids(
        self, chars: torch.Tensor, index: int, first: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """``[B, S]`` LM char ids of each sentence's text (spaces after its end)."""
        space, newline = getattr(self, f"separators_{index}").tolist()
        batch, words, longest = chars.shape
        size = int(lengths.max()) if lengths.numel() else 1
        text = chars.new_full((batch, max(size, 1)), space)
        text[:, 0] = newline
        text.scatter_(1, (lengths - 1).clamp(min=0).unsqueeze(1), newline)
        positions = first.unsqueeze(-1) + torch.arange(longest, device=chars.device)  # [B,T,L]
        mapped = getattr(self, f"to_lm_{index}")[chars]
        real = chars != 0
        rows = torch.arange(batch, device=chars.device).view(batch, 1, 1).expand_as(chars)
        text[rows[real], positions[real]] = mapped[real]
        return text

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        """Frozen LMs give each sentence the same features every epoch: those are cached
        (per sentence, on the CPU in float16) and only new sentences go through the LMs."""
        if self.tune:
            return self.compute(chars)
        words = (chars != 0).any(-1).sum(-1).tolist()
        keys = [self.cache_key(chars[b, :n]) for b, n in enumerate(words)]
        missing = sorted({b for b, key in enumerate(keys) if key not in self.cache})
        if missing:
            fresh = self.compute(chars[missing])
            for row, b in enumerate(missing):
                self.cache[keys[b]] = fresh[row, : words[b]].to("cpu", torch.float16)
        out = chars.new_zeros(*chars.shape[:2], self.output_size, dtype=torch.float32)
        for b, n in enumerate(words):
            if n:
                out[b, :n] = self.cache[keys[b]].to(out.device, out.dtype)
        return out

    @staticmethod
    def cache_key(sentence: torch.Tensor) -> bytes:
        """The sentence's char ids ``[n, L]`` without padding columns, as bytes."""
        width = int((sentence != 0).sum(-1).max()) if sentence.numel() else 0
        ids = sentence[:, :width].cpu().numpy().tobytes()
        return f"{sentence.size(0)}x{width}:".encode() + ids

    def compute(self, chars: torch.Tensor) -> torch.Tensor:
        """The features of a batch, straight from the LMs."""
        first, last, lengths = self.layout(chars)
        batch = chars.size(0)
        rows = torch.arange(batch, device=chars.device).unsqueeze(1)
        features = []
        for index, (lm, backward) in enumerate(zip(self.lms, self.reverse)):
            text = self.text_ids(chars, index, first, lengths)
            where = last
            if backward:  # read right to left: position j holds character S - 1 - j
                columns = torch.arange(text.size(1), device=chars.device)
                source = (lengths.unsqueeze(1) - 1 - columns).clamp(min=0)
                text = text.gather(1, source)
                where = (lengths.unsqueeze(1) - 1 - first).clamp(min=0)
            with torch.set_grad_enabled(self.tune and torch.is_grad_enabled()):
                states, _ = lm.encoder.run(lm.embedding(text), None)  # [B, S, H]
            features.append(states[rows, where.clamp(max=text.size(1) - 1)])
        out = torch.cat(features, dim=-1)
        return out.masked_fill((chars == 0).all(-1, keepdim=True), 0.0)
