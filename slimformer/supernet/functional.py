"""The math both the elastic supernet and the standalone SubNet run, so the two agree exactly.

Every function takes already-sliced weights; the supernet slices, the SubNet owns its slices.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# A large negative bias rather than -inf: -inf turns a fully masked row into NaN and exports badly.
MASK_BIAS = -1e9


def mask_bias(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, L] 1/0 mask -> [B, 1, 1, L] additive bias for attention scores."""
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * MASK_BIAS


def self_attention(
    x: torch.Tensor,  # [B, L, H]
    bias: torch.Tensor,  # [B, 1, 1, L]
    wq: torch.Tensor, bq: torch.Tensor,  # [A, H], [A]
    wk: torch.Tensor, bk: torch.Tensor,
    wv: torch.Tensor, bv: torch.Tensor,
    wo: torch.Tensor, bo: torch.Tensor,  # [H, A], [H]
    heads: int,
) -> torch.Tensor:  # [B, L, H]
    b, n, _ = x.shape
    a = wq.shape[0]
    d = a // heads

    def split(t: torch.Tensor) -> torch.Tensor:  # [B, L, A] -> [B, heads, L, d]
        return t.view(b, n, heads, d).transpose(1, 2)

    q = split(F.linear(x, wq, bq))
    k = split(F.linear(x, wk, bk))
    v = split(F.linear(x, wv, bv))
    scores = q @ k.transpose(-1, -2) / math.sqrt(d) + bias  # [B, heads, L, L]
    ctx = scores.softmax(dim=-1) @ v  # [B, heads, L, d]
    ctx = ctx.transpose(1, 2).reshape(b, n, a)
    return F.linear(ctx, wo, bo)


def feed_forward(
    x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor
) -> torch.Tensor:
    return F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2)


def separable_conv(
    x: torch.Tensor,  # [B, L, H]
    attention_mask: torch.Tensor,  # [B, L]
    w_depth: torch.Tensor, b_depth: torch.Tensor,  # [H, 1, k], [H]
    w_point: torch.Tensor, b_point: torch.Tensor,  # [H, H], [H]
) -> torch.Tensor:
    # Zero the padding first so pad positions never leak into real tokens through the kernel.
    x = x * attention_mask[:, :, None].to(x.dtype)
    k = w_depth.shape[-1]
    y = F.conv1d(x.transpose(1, 2), w_depth, b_depth, padding=k // 2, groups=x.shape[-1]).transpose(1, 2)
    return F.linear(F.gelu(y), w_point, b_point)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over the sequence: [B, L, H] -> [B, H]."""
    m = attention_mask[:, :, None].to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
