"""Contextual string embeddings (Akbik et al. 2018, Flair) from this framework's own char LMs.

Each sentence is read as text, ``"\\n" + " ".join(words) + "\\n"`` (the layout of a text file
with one sentence per line, which is what the LMs train on), by a forward char LM and by a
backward one (trained with ``data.reverse=true``). For each word, the forward LM's state after
the word's last symbol and the backward LM's state after reading (right to left) the word's
first symbol are concatenated: the word as its context predicts it, from both sides.

The text is the sentence's words as written, encoded with each LM's own codec
(:class:`seqmodels.data.text_codec.TextCodec`: ``data.unit`` char or byte, ``data.reverse``),
so a byte LM reads ``é`` as its two UTF-8 bytes and word positions are counted in the LM's
symbols. :meth:`CharLMFeatures.inputs` builds those ids on the host, before the batch goes to
the device (the task's ``on_before_batch_transfer``, or tag.py), so the forward pass never
waits for the device; a symbol an LM never saw is read as a space. The LMs are frozen by
default (``model.char_lm_features_tune=true`` trains them with the tagger); frozen, each
sentence's features are cached (least recently used first out, ``model.char_lm_features_cache_mib``
MiB at most).

The tagger's checkpoint holds each LM's plain hyperparameters (vocabulary, model config,
direction, unit) and its weights, so loading it never needs the LM files again.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqmodels.core.checkpoints import init_kwargs, load_weights, read_checkpoint, task_name
from seqmodels.core.errors import CheckpointError, ConfigError
from seqmodels.data.text_codec import TextCodec
from seqmodels.nets.char_lm import CharLMNet


def describe_lm(path: str) -> tuple[dict[str, Any], CharLMNet]:
    """A char-LM checkpoint's plain description (``path``, ``vocab``, ``model``, ``reverse``,
    ``unit``) and its network with the trained weights."""
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
    codec = TextCodec.of((checkpoint.get("config") or {}).get("data"))
    spec = {
        "path": str(path),
        "vocab": list(hparams["vocab"]),
        "model": dict(hparams["model"]),
        "reverse": codec.reverse,
        "unit": codec.unit,
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


CACHE_MIB = 512  # model.char_lm_features_cache_mib's default


class CharLMFeatures(nn.Module):
    """Sentences -> per-word LM states ``[B, T, output_size]``.

    ``specs`` as :func:`resolve_char_lms` gives them (one per LM, each forward or backward,
    char or byte; a spec without ``unit``, from an older checkpoint, reads characters).
    :meth:`inputs` turns a batch's words into what :meth:`forward` reads; ``cache_mib``
    bounds the cache of frozen LMs' features (0: no cache).
    """

    def __init__(
        self,
        specs: list[dict[str, Any]],
        nets: list[CharLMNet],
        tune: bool = False,
        cache_mib: float = CACHE_MIB,
    ) -> None:
        super().__init__()
        self.lms = nn.ModuleList(nets)
        self.codecs = [TextCodec(s.get("unit") or "char", bool(s.get("reverse"))) for s in specs]
        self.stoi: list[dict[str, int]] = []
        for spec in specs:
            vocab = spec["vocab"]
            if " " not in vocab or "\n" not in vocab:
                raise CheckpointError(
                    f"model.char_lm_features: {spec.get('path')} has no space or newline in "
                    "its vocabulary; train it on text with one sentence per line"
                )
            self.stoi.append({c: i for i, c in enumerate(vocab)})
        self.tune = tune
        if not tune:
            for param in self.lms.parameters():
                param.requires_grad_(False)
            # Lightning warns about modules in eval mode at the start of training: frozen LMs
            # are, on purpose (see train()).
            warnings.filterwarnings(
                "ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training"
            )
        self.output_size = sum(lm.encoder.output_size for lm in self.lms)
        if not 0 <= float(cache_mib):
            raise ConfigError(f"model.char_lm_features_cache_mib must be >= 0, got {cache_mib}")
        self.cache_bytes = int(float(cache_mib) * 2**20)
        self.cache: OrderedDict[str, torch.Tensor] = OrderedDict()  # least recent first
        self.cached_bytes = 0

    def train(self, mode: bool = True) -> CharLMFeatures:
        """Frozen LMs stay in eval mode (no dropout) while the tagger trains."""
        super().train(mode)
        if not self.tune:
            self.lms.eval()
        return self

    def inputs(
        self, sentences: list[list[str]], device: torch.device | str | None = None
    ) -> dict[str, Any]:
        """What :meth:`forward` reads for ``sentences`` (words as written), built on the host:
        ``keys`` (the sentences, for the cache) and ``counts`` (words per sentence), and per
        LM the symbol ids ``[B, S]`` in its reading order and, per word, the position
        ``[B, T]`` whose state is the word's feature."""
        longest = max((len(words) for words in sentences), default=0)
        ids, where = [], []
        for codec, stoi in zip(self.codecs, self.stoi):
            forwards = TextCodec(codec.unit)  # positions are counted in reading order below
            space = stoi[" "]
            rows, positions = [], []
            for words in sentences:
                symbols, at = forwards.encode("\n"), []
                for index, word in enumerate(words):
                    start = len(symbols)
                    symbols += forwards.encode(word) or " "  # an empty word: one space
                    at.append(start if codec.reverse else len(symbols) - 1)
                    symbols += forwards.encode(" " if index + 1 < len(words) else "\n")
                if not words:
                    symbols += forwards.encode("\n")
                if codec.reverse:  # read right to left: symbol j sits at len - 1 - j
                    symbols = symbols[::-1]
                    at = [len(symbols) - 1 - j for j in at]
                rows.append([stoi.get(c, space) for c in symbols])
                positions.append(at + [0] * (longest - len(at)))
            width = max(len(row) for row in rows) if rows else 1
            ids.append(torch.tensor([row + [space] * (width - len(row)) for row in rows]))
            where.append(torch.tensor(positions, dtype=torch.long).reshape(len(rows), longest))
        if device is not None:
            ids = [t.to(device, non_blocking=True) for t in ids]
            where = [t.to(device, non_blocking=True) for t in where]
        return {
            "keys": ["\n".join(words) for words in sentences],
            "counts": [len(words) for words in sentences],
            "ids": ids,
            "where": where,
        }

    def forward(self, inputs: dict[str, Any]) -> torch.Tensor:
        """Features ``[B, T, output_size]`` (zeros at padding words). Frozen LMs give each
        sentence the same features every epoch: those are cached (float16, on the features'
        device, least recently used out first) and only new sentences go through the LMs.
        Only host-side values steer this (keys, counts): nothing waits for the device."""
        if self.tune or not self.cache_bytes:
            return self.compute(inputs["ids"], inputs["where"])
        keys, counts = inputs["keys"], inputs["counts"]
        found = {b: self.cache.get(key) for b, key in enumerate(keys)}
        for key in keys:
            if key in self.cache:
                self.cache.move_to_end(key)
        missing = [b for b, value in found.items() if value is None]
        if missing:
            every = len(missing) == len(keys)

            def pick(t: torch.Tensor) -> torch.Tensor:  # rows by host ints: device copies only
                return t if every else torch.stack([t[b] for b in missing])

            fresh = self.compute(
                [pick(t) for t in inputs["ids"]],
                [pick(t) for t in inputs["where"]],
            )
            for row, b in enumerate(missing):
                found[b] = fresh[row, : counts[b]].to(torch.float16)
                self.remember(keys[b], found[b])
        parts = [found[b] for b in range(len(keys))]
        return self.padded(parts, inputs["where"][0].size(1))

    def remember(self, key: str, value: torch.Tensor) -> None:
        """Cache ``value``, dropping the least recently used entries beyond the bound."""
        size = value.numel() * value.element_size()
        if size > self.cache_bytes:
            return
        replaced = self.cache.pop(key, None)  # the same sentence twice in one batch
        if replaced is not None:
            self.cached_bytes -= replaced.numel() * replaced.element_size()
        self.cache[key] = value
        self.cached_bytes += size
        while self.cached_bytes > self.cache_bytes:
            _, old = self.cache.popitem(last=False)
            self.cached_bytes -= old.numel() * old.element_size()

    def padded(self, parts: list[torch.Tensor], words: int) -> torch.Tensor:
        """Per-sentence features ``[n_b, F]`` -> ``[B, words, F]`` float32, zeros after n_b."""
        out = torch.nn.utils.rnn.pad_sequence([p.float() for p in parts], batch_first=True)
        if out.size(1) < words:
            out = torch.nn.functional.pad(out, (0, 0, 0, words - out.size(1)))
        return out

    def compute(self, ids: list[torch.Tensor], where: list[torch.Tensor]) -> torch.Tensor:
        """The features of a batch, straight from the LMs: each LM's states at ``where``
        (zeros at padding words, whose position is 0: a word's is never the opening
        newline)."""
        features = []
        for lm, text, at in zip(self.lms, ids, where):
            with torch.set_grad_enabled(self.tune and torch.is_grad_enabled()):
                states, _ = lm.encoder.run(lm.embedding(text), None)  # [B, S, H]
            picked = states.gather(1, at.unsqueeze(-1).expand(-1, -1, states.size(-1)))
            features.append(picked * (at > 0).unsqueeze(-1))
        return torch.cat(features, dim=-1)
