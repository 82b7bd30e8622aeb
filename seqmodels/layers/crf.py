"""A linear-chain CRF over per-token tag scores: exact log-likelihood, constrained Viterbi and
per-token tag marginals (forward-backward).

Written here rather than taken from a library. On PyPI: ``pytorch-crf`` 0.7.2 (last release
2019-02) and ``TorchCRF`` 1.1.0 (2020-08) are unmaintained and have no transition constraints;
``torch-struct`` 0.5 (2021-02) is unmaintained too; AllenNLP's CRF has constraints, but AllenNLP
(2.10.1, 2022-10) is archived and would bring its whole stack. The layer is the recursions
below, tested against brute-force enumeration of every tag sequence (tests/layers/test_crf.py).

Shapes: ``emissions [B, T, K]`` (scores from the tagger), ``mask [B, T]`` true on real tokens,
left-aligned (each row is ``length`` trues then falses), every row at least one token long.

Training uses the *unconstrained* likelihood (a gold sequence that breaks BIO, as a few ATIS
utterances do, must still have a finite loss); decoding forbids the transitions that
:func:`allowed_transitions` rules out, so Viterbi never emits an invalid sequence.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

SCHEMES = ("BIO", "IOBES")


def _split(tag: str) -> tuple[str, str]:
    """``B-city`` -> ``("B", "city")``; ``O`` -> ``("O", "")``; anything else -> ``("", tag)``."""
    if tag == "O":
        return "O", ""
    prefix, sep, kind = tag.partition("-")
    return (prefix, kind) if sep and prefix in ("B", "I", "E", "S") and kind else ("", tag)


def allowed_transitions(
    tags: Sequence[str], scheme: str = "BIO"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boolean ``start [K]``, ``transitions [K, K]`` (from, to) and ``end [K]`` masks.

    BIO (IOB2): ``I-x`` may only follow ``B-x`` or ``I-x`` (so never at the start, after ``O``
    or after another type). IOBES also requires ``I-x``/``E-x`` after ``B-x``/``I-x`` only and
    a chunk to be closed (``E``/``S``) before ``O``, ``B``, ``S`` or the end. Tags that are not
    of the scheme (``<pad>``, ``<unk>``) are never allowed.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    parts = [_split(t) for t in tags]
    valid = [p != "" and (scheme == "IOBES" or p in "BIO") for p, _ in parts]
    k = len(tags)
    start, end = torch.zeros(k, dtype=torch.bool), torch.zeros(k, dtype=torch.bool)
    trans = torch.zeros(k, k, dtype=torch.bool)
    inside = ("B", "I")  # prefixes after which a chunk is open (may continue with I-x / E-x)
    for j, (p, kind) in enumerate(parts):
        if not valid[j]:
            continue
        opens = p in ("B", "S", "O")  # may start after nothing / a closed chunk
        start[j] = opens
        end[j] = p in ("O", "E", "S") if scheme == "IOBES" else True
        for i, (q, prev_kind) in enumerate(parts):
            if not valid[i]:
                continue
            if scheme == "BIO":
                trans[i, j] = p != "I" or (q in inside and prev_kind == kind)
            else:
                open_before = q in inside
                continues = p in ("I", "E")
                trans[i, j] = (continues and open_before and prev_kind == kind) or (
                    opens and not open_before
                )
    return start, trans, end


class CRF(nn.Module):
    """Transition scores ``transitions[i, j]`` (tag i then tag j), plus start and end scores.

    ``allowed`` (``(start, transitions, end)`` boolean masks, see :func:`allowed_transitions`)
    restricts :meth:`decode`; :meth:`log_likelihood` is over all ``K**T`` sequences.
    """

    def __init__(
        self,
        num_tags: int,
        allowed: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"a CRF needs at least one tag, got {num_tags}")
        self.num_tags = num_tags
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))
        if allowed is None:
            ones = torch.ones(num_tags, dtype=torch.bool)
            allowed = (ones, torch.ones(num_tags, num_tags, dtype=torch.bool), ones)
        for name, value in zip(("allowed_start", "allowed_transitions", "allowed_end"), allowed):
            self.register_buffer(name, value.clone(), persistent=False)

    def score(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Unnormalised score ``[B]`` of the tag sequences ``tags [B, T]``."""
        mask = mask.to(emissions.dtype)
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # [B, T]
        steps = self.transitions[tags[:, :-1], tags[:, 1:]] * mask[:, 1:]
        last = tags.gather(1, (mask.sum(1).long() - 1).unsqueeze(1)).squeeze(1)
        return self.start[tags[:, 0]] + (emitted * mask).sum(1) + steps.sum(1) + self.end[last]

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``log Z [B]``: log-sum-exp of the scores of every tag sequence (forward algorithm).

        Each step is ``alpha_j <- logsumexp_i(alpha_i + transitions[i, j]) + emissions_j``,
        computed as one matrix product in exp space, shifted by the row and column maxima so
        nothing overflows (5x faster on CPU than a ``[B, K, K]`` logsumexp per step).
        """
        shift = self.transitions.amax(dim=0, keepdim=True)  # [1, K]
        exp_trans = (self.transitions - shift).exp()  # <= 1, and each column has a 1
        alpha = self.start + emissions[:, 0]  # [B, K]
        tiny = torch.finfo(emissions.dtype).tiny
        for t in range(1, emissions.size(1)):
            top = alpha.amax(dim=1, keepdim=True)
            summed = ((alpha - top).exp() @ exp_trans).clamp_min(tiny).log()
            step = summed + top + shift + emissions[:, t]
            alpha = torch.where(mask[:, t : t + 1], step, alpha)
        return torch.logsumexp(alpha + self.end, dim=1)

    def log_likelihood(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """``log p(tags | emissions)`` per sequence ``[B]``, in float32 at least (under mixed
        precision too: the recursion sums over many steps)."""
        if emissions.dtype in (torch.float16, torch.bfloat16):
            emissions = emissions.float()
        with torch.autocast(emissions.device.type, enabled=False):
            return self.score(emissions, tags, mask) - self.log_partition(emissions, mask)

    def decode(
        self,
        emissions: torch.Tensor,
        mask: torch.Tensor,
        blocked: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Best allowed tag ids ``[B, T]`` (Viterbi); positions past a length repeat the last.

        ``blocked [K]`` (true = never emit this tag) removes tags such as ``<pad>``.
        """
        neg = float("-inf")
        start = self.start.masked_fill(~self.allowed_start, neg)
        end = self.end.masked_fill(~self.allowed_end, neg)
        transitions = self.transitions.masked_fill(~self.allowed_transitions, neg)
        if blocked is not None:
            emissions = emissions.masked_fill(blocked, neg)
        batch, length, k = emissions.shape
        if batch == 0 or length == 0:
            return emissions.new_zeros(batch, length, dtype=torch.long)
        keep = torch.arange(k, device=emissions.device).expand(batch, k)
        delta = start + emissions[:, 0]
        backpointers = []
        for t in range(1, length):
            best, index = (delta.unsqueeze(2) + transitions).max(dim=1)
            on = mask[:, t : t + 1]
            delta = torch.where(on, best + emissions[:, t], delta)
            backpointers.append(torch.where(on, index, keep))  # past the end: stay put
        last = (delta + end).argmax(dim=1)
        path = [last]
        for index in reversed(backpointers):
            last = index.gather(1, last.unsqueeze(1)).squeeze(1)
            path.append(last)
        return torch.stack(path[::-1], dim=1)

    def marginals(
        self,
        emissions: torch.Tensor,
        mask: torch.Tensor,
        blocked: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``p(tag at t = k | emissions)`` ``[B, T, K]`` (forward-backward); 0 past a length.

        Over the sequences :meth:`decode` chooses from (allowed transitions, no ``blocked``
        tag), so every tag of the Viterbi path has a probability above zero. The recursions
        are in log space (a ``[B, K, K]`` logsumexp per step): forbidden scores are ``-inf``.
        """
        neg = float("-inf")
        if emissions.dtype in (torch.float16, torch.bfloat16):
            emissions = emissions.float()
        start = self.start.masked_fill(~self.allowed_start, neg)
        end = self.end.masked_fill(~self.allowed_end, neg)
        transitions = self.transitions.masked_fill(~self.allowed_transitions, neg)
        if blocked is not None:
            emissions = emissions.masked_fill(blocked, neg)
        length = emissions.size(1)
        alphas = [start + emissions[:, 0]]  # alpha_t(k): every prefix ending in k at t
        for t in range(1, length):
            step = torch.logsumexp(alphas[-1].unsqueeze(2) + transitions, dim=1) + emissions[:, t]
            alphas.append(torch.where(mask[:, t : t + 1], step, alphas[-1]))
        betas = [end.expand_as(alphas[-1])]  # beta_t(k): every suffix after k at t
        for t in range(length - 2, -1, -1):
            ahead = (emissions[:, t + 1] + betas[0]).unsqueeze(1)
            step = torch.logsumexp(transitions + ahead, dim=2)
            betas.insert(0, torch.where(mask[:, t + 1 : t + 2], step, betas[0]))
        log_z = torch.logsumexp(alphas[-1] + end, dim=1)
        log_p = torch.stack(alphas, 1) + torch.stack(betas, 1) - log_z[:, None, None]
        return log_p.exp() * mask.unsqueeze(2)
