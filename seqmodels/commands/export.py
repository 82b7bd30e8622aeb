"""A checkpoint as one ``torch.export`` file (``.pt2``) that serves with torch alone.

``python scripts/export.py ckpt_path=<checkpoint>`` writes the network and its decoding as an
``ExportedProgram`` (dynamic batch and length) with the vocabularies inside, as the extra file
``seqmodels.json``. Serving needs neither this package nor Lightning nor Hydra::

    extra = {"seqmodels.json": ""}
    program = torch.export.load("model.pt2", extra_files=extra)
    meta, run = json.loads(extra["seqmodels.json"]), program.module()

A slot tagger's program maps word ids ``[B, T]`` (0 = padding) and char ids ``[B, T, L]`` to
tag ids, each tag's probability, the intent id and its probability: the same numbers
``scripts/tag.py`` prints (the CRF's Viterbi path and marginals included). A char LM's maps
ids ``[B, T]`` and the state ``h, c [layers, B, hidden]`` to next-character logits and the state
after them, so sampling is a loop around it (``docs/export.md``).

Why ``torch.export``: TorchScript (``torch.jit``) is deprecated in this torch, and its
``.pt`` needs the same deprecated loader; ONNX would need the ``onnx`` package, which this
project does not install. Packed sequences do not export (their step sizes are data), so the
program runs each RNN direction on the padded batch and reverses every sequence within its own
length for the backward direction: outputs at real tokens equal the packed run's. The CRF's
recursions are ``scan`` loops, which export with a dynamic length.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig
from torch import nn
from torch._higher_order_ops.scan import scan
from torch.export import Dim
from torch.nn import functional as F

from seqmodels.core.errors import ConfigError, errors_reported
from seqmodels.data.download import current_umask
from seqmodels.layers.char_features import CharLSTM
from seqmodels.layers.encoders import RNNEncoder
from seqmodels.nets import CharLMNet, SlotTaggerNet, load_net
from seqmodels.plumbing.cli import CONFIG_DIR, check_ckpt_path, one_line_errors

log = logging.getLogger(__name__)

FORMATS = ("pt2",)
META_FILE = "seqmodels.json"
# The CRF scans run over at least this many steps (shorter inputs are padded with masked
# steps): torch.export specialises a scan over fewer than two steps.
MIN_STEPS = 3
EXPORTABLE = "the RNN encoders (rnn, lstm, gru, hand_lstm)"


def flip_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``x [B, T, ...]`` with each row's first ``lengths[b]`` steps reversed, padding in place."""
    steps = torch.arange(x.size(1), device=x.device).unsqueeze(0)  # [1, T]
    last = lengths.unsqueeze(1) - 1
    index = torch.where(steps <= last, last - steps, steps)  # [B, T]
    index = index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


def weights(rnn: nn.Module, layer: int, suffix: str = "") -> list[torch.Tensor]:
    """``weight_ih, weight_hh, bias_ih, bias_hh`` of one layer-direction (``suffix``
    ``"_reverse"``), by nn.RNN's names; HandLSTM has the same (a drop-in for nn.LSTM)."""
    kinds = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    return [getattr(rnn, f"{kind}_l{layer}{suffix}") for kind in kinds]


def recur(
    rnn: nn.Module, params: list[torch.Tensor], x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One layer-direction of ``rnn`` over ``x [B, T, I]`` from ``h, c [B, hidden]`` (``c``
    unused but by LSTMs): outputs ``[B, T, hidden]`` and the last ``h, c``.

    The step equations are nn.RNN/GRU/LSTM's, run as a ``scan`` over time: the aten RNN ops
    export only with the length fixed (their decomposition unrolls the steps).
    """
    w_ih, w_hh, b_ih, b_hh = params
    length = x.size(1)
    # Masked steps after the end (they keep the state): a scan over one step would not export.
    inputs = F.pad(x @ w_ih.T + b_ih, (0, 0, 0, MIN_STEPS)).transpose(0, 1)  # [T', B, G]
    real = (torch.arange(inputs.size(0), device=x.device) < length).view(-1, 1, 1)
    real = real.expand(-1, x.size(0), 1).contiguous()  # [T', B, 1]

    if isinstance(rnn, nn.GRU):

        def step(carry, xs):
            (h, c), (gx, on) = carry, xs
            r_x, z_x, n_x = gx.chunk(3, dim=1)
            r_h, z_h, n_h = (h @ w_hh.T + b_hh).chunk(3, dim=1)
            r, z = torch.sigmoid(r_x + r_h), torch.sigmoid(z_x + z_h)
            h = torch.where(on, (1 - z) * torch.tanh(n_x + r * n_h) + z * h, h)
            return (h, c.clone()), h.clone()

    elif isinstance(rnn, nn.RNN):
        act = torch.tanh if rnn.nonlinearity == "tanh" else torch.relu

        def step(carry, xs):
            (h, c), (gx, on) = carry, xs
            h = torch.where(on, act(gx + h @ w_hh.T + b_hh), h)
            return (h, c.clone()), h.clone()

    else:  # nn.LSTM, HandLSTM: gates i, f, g, o

        def step(carry, xs):
            (h, c), (gx, on) = carry, xs
            i, f, g, o = (gx + h @ w_hh.T + b_hh).chunk(4, dim=1)
            new_c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            new_h = torch.sigmoid(o) * torch.tanh(new_c)
            h, c = torch.where(on, new_h, h), torch.where(on, new_c, c)
            return (h, c), h.clone()

    (h, c), out = scan(step, (h.contiguous(), c.contiguous()), (inputs, real))
    return out.transpose(0, 1)[:, :length], h, c


def rnn_direction(rnn: nn.Module, layer: int, suffix: str, x: torch.Tensor) -> torch.Tensor:
    """One direction of one layer of ``rnn`` over ``x [B, T, I]`` from zeros: ``[B, T, H]``."""
    zeros = x.new_zeros(x.size(0), rnn.hidden_size)
    return recur(rnn, weights(rnn, layer, suffix), x, zeros, zeros.clone())[0]


def run_unpacked(
    rnn: nn.Module, x: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``rnn`` over the padded batch ``x [B, T, I]`` as over the packed one: the outputs
    ``[B, T, directions * hidden]`` (zeros past each length) and each direction's final state
    of the last layer (the forward one at each sequence's end, the backward one at its start)."""
    mask = (torch.arange(x.size(1), device=x.device) < lengths.unsqueeze(1)).unsqueeze(2)
    finals: list[torch.Tensor] = []
    for layer in range(rnn.num_layers):
        forward = rnn_direction(rnn, layer, "", x)
        outputs, finals = [forward], [forward]
        if rnn.bidirectional:
            backward = rnn_direction(rnn, layer, "_reverse", flip_within(x, lengths))
            finals.append(backward)  # in reversed order: its step length-1 is the first token
            outputs.append(flip_within(backward, lengths))
        x = torch.cat(outputs, dim=2) * mask
    last = (lengths - 1).clamp(min=0).view(-1, 1, 1)
    return x, [f.gather(1, last.expand(-1, 1, f.size(2))).squeeze(1) for f in finals]


class ExportableTagger(nn.Module):
    """A :class:`~seqmodels.nets.SlotTaggerNet` with its decoding, in ops torch.export takes.

    ``forward(words [B, T], chars [B, T, L])`` -> tag ids ``[B, T]``, their probabilities,
    intent ids ``[B]`` and their probabilities; the lengths are the non-padding (non-zero) ids.
    """

    def __init__(self, net: SlotTaggerNet) -> None:
        super().__init__()
        if not isinstance(net.encoder, RNNEncoder):
            raise ConfigError(
                f"export supports {EXPORTABLE}; this checkpoint's encoder is "
                f"{type(net.encoder).__name__}"
            )
        if getattr(net.words_in, "char_lms", None) is not None:
            raise ConfigError(
                "export does not support taggers with model.char_lm_features (their char LMs "
                "read each sentence as text); serve such a tagger with scripts/tag.py"
            )
        self.net = net.eval()

    def char_vectors(self, chars: torch.Tensor) -> torch.Tensor:
        features = self.net.words_in.chars
        if not isinstance(features, CharLSTM):
            return features(chars)
        batch, words, length = chars.shape
        flat = chars.reshape(batch * words, length)
        lengths = (flat != 0).sum(dim=1)
        _, finals = run_unpacked(features.lstm, features.embedding(flat), lengths)
        out = torch.cat(finals, dim=1) * (lengths > 0).unsqueeze(1)  # an empty word: zeros
        return out.reshape(batch, words, features.output_size)

    def forward(
        self, words: torch.Tensor, chars: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        net = self.net
        real = words != 0
        lengths = real.sum(dim=1)
        inputs = net.embedding(words)
        if net.words_in.chars is not None:
            inputs = torch.cat([inputs, self.char_vectors(chars)], dim=-1)
        states, _ = run_unpacked(net.encoder.rnn, inputs, lengths)
        tag_scores, intent_logits = net.heads(states, real)
        if net.crf is None:
            tag_ids = net.predict_tags(tag_scores, real)
            tag_probs = net.tag_probabilities(tag_scores, real)
        else:
            tag_ids, tag_probs = self.crf_decode(tag_scores, real)
        tag_p = tag_probs.gather(2, tag_ids.unsqueeze(2)).squeeze(2)
        if intent_logits is None:  # no sentence labels: intent id 0 (<unk>) at probability 0
            intent_p = tag_p.new_zeros(tag_p.size(0))
            return tag_ids, tag_p, intent_p.long(), intent_p
        intent_p, intent_ids = net.intent_probabilities(intent_logits).max(-1)
        return tag_ids, tag_p, intent_ids, intent_p

    def crf_decode(
        self, emissions: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`CRF.decode` and :meth:`CRF.marginals` as scans (same recursions, same order)."""
        crf, length = self.net.crf, emissions.size(1)
        neg = float("-inf")
        start = crf.start.masked_fill(~crf.allowed_start, neg)
        end = crf.end.masked_fill(~crf.allowed_end, neg)
        trans = crf.transitions.masked_fill(~crf.allowed_transitions, neg)
        pad = MIN_STEPS  # masked steps after the end change nothing (states stay put)
        emissions = F.pad(emissions.masked_fill(self.net.blocked_tags, neg), (0, 0, 0, pad))
        mask = F.pad(mask, (0, pad))
        steps = (emissions[:, 1:].transpose(0, 1), mask[:, 1:].transpose(0, 1).unsqueeze(2))
        keep = torch.arange(crf.num_tags, device=emissions.device).expand_as(emissions[:, 0])

        def viterbi(delta: torch.Tensor, step: tuple[torch.Tensor, torch.Tensor]):
            emitted, on = step
            best, index = (delta.unsqueeze(2) + trans).max(dim=1)
            return torch.where(on, best + emitted, delta), torch.where(on, index, keep)

        delta, pointers = scan(viterbi, start + emissions[:, 0], steps)
        last = (delta + end).argmax(dim=1)

        def back(current: torch.Tensor, index: torch.Tensor):
            previous = index.gather(1, current.unsqueeze(1)).squeeze(1)
            return previous, previous.clone()

        _, path = scan(back, last, pointers, reverse=True)
        tag_ids = torch.cat([path.transpose(0, 1), last.unsqueeze(1)], dim=1)

        def forward_step(alpha: torch.Tensor, step: tuple[torch.Tensor, torch.Tensor]):
            emitted, on = step
            new = torch.logsumexp(alpha.unsqueeze(2) + trans, dim=1) + emitted
            new = torch.where(on, new, alpha)
            return new, new.clone()

        first = start + emissions[:, 0]
        _, alphas = scan(forward_step, first, steps)
        alphas = torch.cat([first.unsqueeze(0), alphas], dim=0)  # [T, B, K]

        def backward_step(beta: torch.Tensor, step: tuple[torch.Tensor, torch.Tensor]):
            emitted, on = step  # emissions and mask of the step after this one
            new = torch.logsumexp(trans + (emitted + beta).unsqueeze(1), dim=2)
            new = torch.where(on, new, beta)
            return new, new.clone()

        final = end.expand_as(first).contiguous()  # a scan carry needs real strides
        _, betas = scan(backward_step, final, steps, reverse=True)
        betas = torch.cat([betas, final.unsqueeze(0)], dim=0)  # [T, B, K]
        log_z = torch.logsumexp(alphas[-1] + end, dim=1)
        log_p = (alphas + betas).transpose(0, 1) - log_z[:, None, None]
        probs = log_p.exp() * mask.unsqueeze(2)
        return tag_ids[:, :length], probs[:, :length]


class ExportableCharLM(nn.Module):
    """A :class:`~seqmodels.nets.CharLMNet` as ``forward(ids, h, c) -> (logits, h, c)``.

    ``h`` and ``c`` are ``[layers, B, hidden]``; models without a cell state (rnn, gru) take
    and return ``c`` unchanged, so every char LM has the same signature.
    """

    def __init__(self, net: CharLMNet) -> None:
        super().__init__()
        if not isinstance(net.encoder, RNNEncoder):
            raise ConfigError(
                f"export supports {EXPORTABLE}; this checkpoint's encoder is "
                f"{type(net.encoder).__name__}"
            )
        self.net = net.eval()

    def forward(
        self, ids: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rnn = self.net.encoder.rnn
        x, hs, cs = self.net.embedding(ids), [], []
        for layer in range(rnn.num_layers):
            x, h_l, c_l = recur(rnn, weights(rnn, layer), x, h[layer], c[layer])
            hs.append(h_l)
            cs.append(c_l)
        # Without a cell state (rnn, gru) c comes back as it went in (a copy: no aliasing).
        return self.net.head(x), torch.stack(hs), torch.stack(cs)


def example_inputs(net: nn.Module) -> tuple[tuple[torch.Tensor, ...], dict[str, Any]]:
    """Inputs to trace with, and their dynamic dimensions (batch, time, word length)."""
    batch, time = Dim("batch", min=1, max=4096), Dim("time", min=1, max=1 << 16)
    # Example sizes unlike any layer's, so tracing never mistakes one for another.
    if isinstance(net, SlotTaggerNet):
        words = torch.ones(19, 37, dtype=torch.long)
        words[1, 30:] = 0
        chars = torch.ones(19, 37, 23, dtype=torch.long)
        chars_shape = {0: batch, 1: time, 2: Dim("word_length", min=1, max=1024)}
        return (words, chars), {"words": {0: batch, 1: time}, "chars": chars_shape}
    rnn = net.encoder.rnn
    state = torch.zeros(rnn.num_layers, 19, rnn.hidden_size)
    ids = torch.zeros(19, 37, dtype=torch.long)
    dims = {"ids": {0: batch, 1: time}, "h": {1: batch}, "c": {1: batch}}
    return (ids, state, state.clone()), dims


def metadata(net: nn.Module, checkpoint: dict[str, Any]) -> dict[str, Any]:
    """What a server needs beside the program: the task, vocabularies and model options."""
    hparams, config = checkpoint["hyper_parameters"], checkpoint.get("config", {})
    meta: dict[str, Any] = {
        "format": "seqmodels-pt2/1",
        "task": config.get("task", {}).get("name"),
        "model": hparams["model"],
    }
    if isinstance(net, SlotTaggerNet):
        meta["vocabs"] = hparams["vocabs"]
        meta["decoder"] = hparams.get("decoder", "softmax")
        meta["inputs"] = "words [B, T] ids (0 = padding), chars [B, T, L] ids (0 = padding)"
        meta["outputs"] = "tag ids [B, T], tag probabilities [B, T], intent ids [B], intent p [B]"
    else:
        rnn = net.encoder.rnn
        meta["vocab"] = hparams["vocab"]
        meta["state_shape"] = [rnn.num_layers, "B", rnn.hidden_size]
        meta["inputs"] = "ids [B, T], h [layers, B, hidden], c [layers, B, hidden]"
        meta["outputs"] = "logits [B, T, vocab], h, c (the state after the last step)"
    return meta


def export_checkpoint(ckpt_path: str | Path, output: str | Path, fmt: str = "pt2") -> Path:
    """Write the checkpoint's network as ``output`` (``.pt2``), atomically; returns its path."""
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    net, checkpoint = load_net(ckpt_path)
    if isinstance(net, SlotTaggerNet):
        module: nn.Module = ExportableTagger(net)
    elif isinstance(net, CharLMNet):
        module = ExportableCharLM(net)
    else:
        raise ConfigError(
            f"export supports slot-filling and char-LM checkpoints; {ckpt_path} is a "
            f"task={checkpoint['config']['task']['name']} checkpoint"
        )
    module.requires_grad_(False)
    args, dynamic = example_inputs(net)
    with torch.no_grad():
        program = torch.export.export(module, args, dynamic_shapes=dynamic)
    output = Path(output).expanduser()
    output.parent.mkdir(parents=True, exist_ok=True)
    extra = {META_FILE: json.dumps(metadata(net, checkpoint), ensure_ascii=False)}
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.stem}.", suffix=".pt2")
    os.close(fd)
    # The scans' empty operand lists make torch's serializer log a guess that is right.
    serializer = logging.getLogger("torch._export.serde.serialize")
    level = serializer.level
    serializer.setLevel(logging.ERROR)
    try:
        torch.export.save(program, tmp, extra_files=extra)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp's 0600 -> 0644 (umask 022), as a ckpt
        os.replace(tmp, output)  # a reader never sees half a file
    finally:
        serializer.setLevel(level)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return output


@one_line_errors
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    """``python scripts/export.py ckpt_path=<checkpoint> [format=pt2] [output=<file>]``."""
    with errors_reported(log):
        check_ckpt_path(cfg, "a slot-filling or char-LM checkpoint written by scripts/train.py")
        if cfg.format not in FORMATS:  # before the slow part
            raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {cfg.format!r}")
        output = cfg.output or Path(str(cfg.ckpt_path)).expanduser().with_suffix(f".{cfg.format}")
        print(export_checkpoint(cfg.ckpt_path, output, cfg.format))
