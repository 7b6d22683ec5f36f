"""Elastic layers: one full-size weight, sliced to the active size (Once-for-All / HAT style).

An elastic linear keeps W [out_max, in_max] and runs weight[:out, :in]; smaller choices therefore
share (and co-train) the leading rows and columns of the larger ones. Each op below holds the
shared weights for every size of its kind and exposes `active_weights(...)`, which both the
supernet's forward and `extract()` use, so the two can never disagree.
"""

from __future__ import annotations

import torch
from torch import nn

from slimformer.supernet import functional as SF
from slimformer.supernet.factorised_embedding import SvdBasis


class ElasticLinear(nn.Module):
    def __init__(self, in_max: int, out_max: int, bias: bool = True):
        super().__init__()
        self.in_max, self.out_max = in_max, out_max
        self.weight = nn.Parameter(torch.empty(out_max, in_max))
        self.bias = nn.Parameter(torch.zeros(out_max)) if bias else None
        nn.init.normal_(self.weight, std=0.02)

    def sliced(self, in_features: int, out_features: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        w = self.weight[:out_features, :in_features]
        return w, (self.bias[:out_features] if self.bias is not None else None)


class ElasticLayerNorm(nn.Module):
    def __init__(self, max_size: int, eps: float = 1e-12):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(max_size))
        self.bias = nn.Parameter(torch.zeros(max_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.shape[-1]
        return nn.functional.layer_norm(x, (h,), self.weight[:h], self.bias[:h], self.eps)


class ElasticAttention(nn.Module):
    """MHA with up to `max_heads` heads of `head_size`; the first h heads are the active ones."""

    def __init__(self, hidden_max: int, max_heads: int, head_size: int, eps: float):
        super().__init__()
        self.head_size = head_size
        a = max_heads * head_size
        self.query, self.key, self.value = (ElasticLinear(hidden_max, a) for _ in range(3))
        self.output = ElasticLinear(a, hidden_max)
        self.LayerNorm = ElasticLayerNorm(hidden_max, eps)

    def active_weights(self, hidden: int, heads: int) -> dict[str, torch.Tensor]:
        a = heads * self.head_size
        out: dict[str, torch.Tensor] = {}
        for name in ("query", "key", "value"):
            out[f"{name}.weight"], out[f"{name}.bias"] = getattr(self, name).sliced(hidden, a)
        out["output.weight"], out["output.bias"] = self.output.sliced(a, hidden)
        out["LayerNorm.weight"], out["LayerNorm.bias"] = self.LayerNorm.weight[:hidden], self.LayerNorm.bias[:hidden]
        return out

    def forward(self, x: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor, heads: int) -> torch.Tensor:
        w = self.active_weights(x.shape[-1], heads)
        y = SF.self_attention(
            x, bias, w["query.weight"], w["query.bias"], w["key.weight"], w["key.bias"],
            w["value.weight"], w["value.bias"], w["output.weight"], w["output.bias"], heads,
        )
        return self.LayerNorm(x + y)


class ElasticFeedForward(nn.Module):
    def __init__(self, hidden_max: int, inner_max: int, eps: float):
        super().__init__()
        self.intermediate = ElasticLinear(hidden_max, inner_max)
        self.output = ElasticLinear(inner_max, hidden_max)
        self.LayerNorm = ElasticLayerNorm(hidden_max, eps)

    def active_weights(self, hidden: int, inner: int) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        out["intermediate.weight"], out["intermediate.bias"] = self.intermediate.sliced(hidden, inner)
        out["output.weight"], out["output.bias"] = self.output.sliced(inner, hidden)
        out["LayerNorm.weight"], out["LayerNorm.bias"] = self.LayerNorm.weight[:hidden], self.LayerNorm.bias[:hidden]
        return out

    def forward(self, x: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor, inner: int) -> torch.Tensor:
        w = self.active_weights(x.shape[-1], inner)
        y = SF.feed_forward(x, w["intermediate.weight"], w["intermediate.bias"], w["output.weight"], w["output.bias"])
        return self.LayerNorm(x + y)


class ElasticSepConv(nn.Module):
    """Depthwise conv + pointwise linear; a kernel k uses the centre k taps of the largest kernel."""

    def __init__(self, hidden_max: int, kernel_max: int, eps: float):
        super().__init__()
        self.kernel_max = kernel_max
        self.depthwise_weight = nn.Parameter(torch.empty(hidden_max, 1, kernel_max))
        self.depthwise_bias = nn.Parameter(torch.zeros(hidden_max))
        nn.init.normal_(self.depthwise_weight, std=0.02)
        self.pointwise = ElasticLinear(hidden_max, hidden_max)
        self.LayerNorm = ElasticLayerNorm(hidden_max, eps)

    def active_weights(self, hidden: int, kernel: int) -> dict[str, torch.Tensor]:
        start = (self.kernel_max - kernel) // 2
        out: dict[str, torch.Tensor] = {
            "depthwise.weight": self.depthwise_weight[:hidden, :, start : start + kernel],
            "depthwise.bias": self.depthwise_bias[:hidden],
        }
        out["pointwise.weight"], out["pointwise.bias"] = self.pointwise.sliced(hidden, hidden)
        out["LayerNorm.weight"], out["LayerNorm.bias"] = self.LayerNorm.weight[:hidden], self.LayerNorm.bias[:hidden]
        return out

    def forward(self, x: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor, kernel: int) -> torch.Tensor:
        w = self.active_weights(x.shape[-1], kernel)
        y = SF.separable_conv(
            x, mask, w["depthwise.weight"], w["depthwise.bias"], w["pointwise.weight"], w["pointwise.bias"]
        )
        return self.LayerNorm(x + y)


class ElasticEmbeddings(nn.Module):
    """Word, position and token-type tables of width H_max; the first H columns are the active ones.

    A factorised arch (embedding rank r) embeds a token as its row projected onto the top r right
    singular vectors of the active word table (`factorised_embedding`), i.e. the row of A @ B
    that `extract` gives the student; `svd_rows` (teacher ids of a trimmed vocabulary, or None)
    says which rows that SVD is taken over, and `svd_weights` (one per SVD row, or None) how much
    each row's error counts (`occurrence_weights`). Neither is part of the state dict: they belong to the job.
    """

    def __init__(self, vocab: int, max_position: int, type_vocab: int, hidden_max: int, eps: float):
        super().__init__()
        self.word_embeddings = nn.Parameter(torch.randn(vocab, hidden_max) * 0.02)
        self.position_embeddings = nn.Parameter(torch.randn(max_position, hidden_max) * 0.02)
        self.token_type_embeddings = nn.Parameter(torch.randn(type_vocab, hidden_max) * 0.02)
        self.LayerNorm = ElasticLayerNorm(hidden_max, eps)
        self.svd = SvdBasis()
        self.svd_rows: torch.Tensor | None = None
        self.svd_weights: torch.Tensor | None = None

    def active_weights(self, hidden: int, rank: int | None = None) -> dict[str, torch.Tensor]:
        if rank is None:
            word = {"word_embeddings.weight": self.word_embeddings[:, :hidden]}
        else:
            a, b = self.svd.factors(self.word_embeddings, hidden, rank, self.svd_rows, self.svd_weights)
            word = {"word_embeddings.lookup.weight": a, "word_embeddings.projection": b}
        return {
            **word,
            "position_embeddings.weight": self.position_embeddings[:, :hidden],
            "token_type_embeddings.weight": self.token_type_embeddings[:, :hidden],
            "LayerNorm.weight": self.LayerNorm.weight[:hidden],
            "LayerNorm.bias": self.LayerNorm.bias[:hidden],
        }

    def forward(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, hidden: int, rank: int | None = None
    ) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        words = self.word_embeddings[input_ids, :hidden]
        if rank is not None:  # what the factorised student's A[ids] @ B gives, reconstruction error included
            words = self.svd.project(words, self.word_embeddings, hidden, rank, self.svd_rows,
                                     self.svd_weights)
        x = words + self.position_embeddings[positions, :hidden][None]
        x = x + self.token_type_embeddings[token_type_ids, :hidden]
        return self.LayerNorm(x)
