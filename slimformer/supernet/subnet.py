"""The standalone student: a small BERT-like encoder built from an architecture document.

It owns only its own weights (no supernet behind it), so it can be saved, loaded, exported to
ONNX and served without slimformer's search machinery. Shapes: B batch, L sequence, H hidden.

    input_ids [B, L] -> SubNetEmbeddings -> [B, L, H]
      -> for each block, for each slot: x = LayerNorm(x + op(x))   (identity slots are skipped)
      -> masked mean pool [B, H] -> classifier [B, C]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from slimformer.search_space import Arch, Op, SearchSpace
from slimformer.supernet import functional as SF
from slimformer.supernet.factorised_embedding import word_embedding_module


@dataclass
class SubNetConfig:
    """Everything needed to rebuild a SubNet from its JSON (config.json of an exported folder)."""

    arch: dict[str, Any]
    head_size: int
    vocab_size: int
    max_position: int
    type_vocab_size: int
    labels: list[str] = field(default_factory=lambda: ["0", "1"])
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def parsed_arch(self) -> Arch:
        return Arch.from_dict(self.arch)

    @classmethod
    def for_arch(cls, arch: Arch, space: SearchSpace, labels: list[str] | None = None) -> SubNetConfig:
        t = space.teacher
        labels = labels or [str(i) for i in range(t.num_labels)]
        if len(labels) != t.num_labels:
            raise ValueError(f"labels: {len(labels)} names for a {t.num_labels}-label space")
        return cls(arch.to_dict(), space.head_size, t.vocab_size, t.max_position, t.type_vocab_size, list(labels))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> SubNetConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in doc.items() if k in known})


class SubNetEmbeddings(nn.Module):
    """Word (plain V x H, or factorised V x r @ r x H for an arch with embedding_rank r), position
    and token-type embeddings, summed and normalised."""

    def __init__(self, cfg: SubNetConfig, hidden: int, rank: int | None = None):
        super().__init__()
        self.word_embeddings = word_embedding_module(cfg.vocab_size, hidden, rank)
        self.position_embeddings = nn.Embedding(cfg.max_position, hidden)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=cfg.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)
        return self.LayerNorm(x + self.token_type_embeddings(token_type_ids))


class SubNetAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, head_size: int, eps: float):
        super().__init__()
        self.heads = heads
        a = heads * head_size
        self.query, self.key, self.value = nn.Linear(hidden, a), nn.Linear(hidden, a), nn.Linear(hidden, a)
        self.output = nn.Linear(a, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = SF.self_attention(
            x, bias, self.query.weight, self.query.bias, self.key.weight, self.key.bias,
            self.value.weight, self.value.bias, self.output.weight, self.output.bias, self.heads,
        )
        return self.LayerNorm(x + y)


class SubNetFeedForward(nn.Module):
    def __init__(self, hidden: int, inner: int, eps: float):
        super().__init__()
        self.intermediate = nn.Linear(hidden, inner)
        self.output = nn.Linear(inner, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = SF.feed_forward(x, self.intermediate.weight, self.intermediate.bias, self.output.weight, self.output.bias)
        return self.LayerNorm(x + y)


class SubNetSepConv(nn.Module):
    def __init__(self, hidden: int, kernel: int, eps: float):
        super().__init__()
        self.depthwise = nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2, groups=hidden)
        self.pointwise = nn.Linear(hidden, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = SF.separable_conv(
            x, mask, self.depthwise.weight, self.depthwise.bias, self.pointwise.weight, self.pointwise.bias
        )
        return self.LayerNorm(x + y)


class SubNetIdentity(nn.Module):
    """An empty slot. Kept as a module so slot indices in state dicts match the architecture."""

    def forward(self, x: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x


def build_op(op: Op, hidden: int, head_size: int, eps: float) -> nn.Module:
    """The registry from an op string's kind to its module (OFA style: JSON -> modules)."""
    if op.kind == "mha":
        return SubNetAttention(hidden, op.size, head_size, eps)
    if op.kind == "ffn":
        return SubNetFeedForward(hidden, op.size, eps)
    if op.kind == "conv":
        return SubNetSepConv(hidden, op.size, eps)
    return SubNetIdentity()


class SubNet(nn.Module):
    """A standalone student classifier. `forward` returns {"logits", "hidden_states"?}."""

    def __init__(self, cfg: SubNetConfig):
        super().__init__()
        self.config = cfg
        arch = cfg.parsed_arch
        self.arch = arch
        h = arch.hidden
        self.embeddings = SubNetEmbeddings(cfg, h, arch.embedding_rank)
        self.blocks = nn.ModuleList(
            nn.ModuleList(build_op(op, h, cfg.head_size, cfg.layer_norm_eps) for op in block) for block in arch.blocks
        )
        self.classifier = nn.Linear(h, cfg.num_labels)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> dict[str, Any]:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        bias = SF.mask_bias(attention_mask, x.dtype)
        states = [x]
        for block in self.blocks:
            for op in block:
                x = op(x, bias, attention_mask)
            states.append(x)
        logits = self.classifier(SF.mean_pool(x, attention_mask))
        out: dict[str, Any] = {"logits": logits}
        if output_hidden_states:
            out["hidden_states"] = tuple(states)  # embedding output, then each block's output
        return out

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
