"""A small pre-norm Transformer encoder with rotary positions, behind the encoders' interface.

Each block is ``x + attn(LN(x))`` then ``x + mlp(LN(x))`` (GPT-2's pre-norm layout, as nanoGPT
writes it), attention by ``torch.nn.functional.scaled_dot_product_attention``. Positions are
rotary (Su et al. 2021): queries and keys are rotated by their position, so attention sees
only the offset between two steps, which is what lets a causal model slide its context.

Causal (``bidirectional=False``): step ``t`` attends to steps ``t - window + 1 .. t`` (a band;
``window=None``: every earlier step, for whole sequences only). ``run(x, state)`` carries the
last ``window - 1`` inputs as its state and re-reads them with each call: a sliding context of
``window`` steps, so the streaming protocol and generation see at most ``window`` characters
back (the context steps themselves are recomputed from those inputs alone, not from the text
before them).
Bidirectional: every real step attends to every real step of its sequence (padding masked).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from seqmodels.layers.gates import Unrolled

UNBOUNDED_CONTEXT = (
    "model.window=null keeps every earlier step, and a carried context (the char LM's "
    "training streams, its evaluation and generate.py) would grow by every batch without "
    "bound: set model.window=<steps>, e.g. 128"
)


def rotate(x: Tensor, positions: Tensor) -> Tensor:
    """Rotary embedding of ``x [B, heads, T, d]`` (``d`` even) at ``positions [T]``.

    The angles are computed in float32 (float64 for float64 ``x``) whatever ``x``'s dtype, and
    only their cosines and sines are cast to it: in bfloat16 the positions themselves round
    (256..260 become 256, 256, 258, 260, 260), and attention would stop depending on the
    offset between two steps alone.
    """
    half = x.size(-1) // 2
    exact = torch.float64 if x.dtype == torch.float64 else torch.float32
    freqs = 10000.0 ** (-torch.arange(half, device=x.device, dtype=exact) / half)
    angles = positions.to(exact).unsqueeze(-1) * freqs  # [T, half]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Block(nn.Module):
    """Pre-norm self-attention and MLP, each with a residual connection."""

    def __init__(self, size: int, num_heads: int, dropout: float, mlp_ratio: int) -> None:
        super().__init__()
        self.num_heads, self.dropout_p = num_heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(size), nn.LayerNorm(size)
        self.qkv = nn.Linear(size, 3 * size)
        self.proj = nn.Linear(size, size)
        self.mlp = nn.Sequential(
            nn.Linear(size, mlp_ratio * size), nn.GELU(), nn.Linear(mlp_ratio * size, size)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None, positions: Tensor) -> Tensor:
        """``mask``: which keys each query may attend to; ``None``: causal (all earlier steps)."""
        B, T, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, T, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k = rotate(q, positions), rotate(k, positions)
        p = self.dropout_p if self.training else 0.0
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=p, is_causal=mask is None
        )
        x = x + self.dropout(self.proj(attended.transpose(1, 2).reshape(B, T, D)))
        return x + self.dropout(self.mlp(self.norm2(x)))


class TransformerEncoder(nn.Module):
    """``num_layers`` blocks of width ``hidden_size`` over ``[B, T, input_size]`` (a linear map
    in when the sizes differ); the same interface as
    :class:`seqmodels.layers.encoders.RNNEncoder` (``forward(x, lengths)``, ``run(x, state)``,
    ``output_size``, ``bidirectional``)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 2,
        dropout: float = 0.0,
        bidirectional: bool = False,
        num_heads: int = 4,
        window: int | None = 128,
        mlp_ratio: int = 4,
        cell: str = "transformer",
    ) -> None:
        super().__init__()
        for option, value in (
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
            ("num_heads", num_heads),
            ("mlp_ratio", mlp_ratio),
        ):
            if value < 1:
                raise ValueError(f"model.{option} must be >= 1, got {value}")
        if hidden_size % (2 * num_heads):
            raise ValueError(
                f"model.hidden_size={hidden_size} must be a multiple of 2 * model.num_heads "
                f"({2 * num_heads}): each head's width must be even for rotary positions"
            )
        if window is not None and window < 1:
            raise ValueError(f"model.window must be >= 1 or null (no limit), got {window}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {dropout}")
        self.cell, self.num_layers, self.window = cell, num_layers, window
        self.bidirectional, self.hidden_size = bidirectional, hidden_size
        self.output_size = hidden_size
        # a linear map in where the embeddings are narrower or wider than the blocks
        self.input = nn.Identity()
        if input_size != hidden_size:
            self.input = nn.Linear(input_size, hidden_size)
        self.blocks = nn.ModuleList(
            Block(hidden_size, num_heads, dropout, mlp_ratio) for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(hidden_size)
        self.has_gates = False
        self.apply(self._init)
        for block in self.blocks:  # GPT-2: scale the residual projections by depth
            for layer in (block.proj, block.mlp[2]):
                nn.init.normal_(layer.weight, std=0.02 / math.sqrt(2 * num_layers))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def mask(self, T: int, lengths: Tensor | None, device: torch.device) -> Tensor | None:
        """Boolean ``[B or 1, 1, T, T]``: which keys (last axis) each query may attend to;
        ``None`` where that is plain causal (the band reaches the start: SDPA's own causal
        kernel, faster than an explicit mask)."""
        steps = torch.arange(T, device=device)
        if self.bidirectional:
            if lengths is None:
                return torch.ones(1, 1, T, T, dtype=torch.bool, device=device)
            real = steps.unsqueeze(0) < lengths.to(device).unsqueeze(1)
            return real[:, None, None, :]
        if self.window is None or self.window >= T:
            return None
        offset = steps.unsqueeze(1) - steps.unsqueeze(0)  # query - key
        return ((offset >= 0) & (offset < self.window))[None, None]

    def encode(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        positions = torch.arange(x.size(1), device=x.device)
        mask = self.mask(x.size(1), lengths, x.device)
        h = self.input(x)
        for block in self.blocks:
            h = block(h, mask, positions)
        return self.final_norm(h)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``[B, T, input_size]`` -> ``[B, T, hidden_size]`` (zeros past each length)."""
        out = self.encode(x, lengths)
        if lengths is not None:
            steps = torch.arange(x.size(1), device=x.device)
            out = out * (steps.unsqueeze(0) < lengths.to(x.device).unsqueeze(1)).unsqueeze(-1)
        return out

    def run(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``[B, T, input_size]`` and the previous inputs ``[B, S, input_size]`` (``None``: none)
        -> outputs for ``x`` and the new state: the last ``window - 1`` inputs. A model with
        ``window=None`` is refused: its carried context would grow without bound."""
        if self.bidirectional:
            raise ValueError("run() carries a causal context forward; a bidirectional model cannot")
        if self.window is None:
            raise ValueError(UNBOUNDED_CONTEXT)
        context = x if state is None or state.size(1) == 0 else torch.cat([state, x], dim=1)
        out = self.encode(context)[:, -x.size(1) :]
        keep = context.size(1) if self.window is None else self.window - 1
        return out, context[:, context.size(1) - min(keep, context.size(1)) :]

    def unroll(self, x: Tensor, lengths: Tensor | None = None, keep_gates: bool = True):
        """For the gradient-flow callback: the output only (no recurrent state, no gates),
        without dropout, drawing no random numbers, whatever the module's mode."""
        training = self.training
        self.eval()
        try:
            return Unrolled(output=self.encode(x, lengths))
        finally:
            self.train(training)
