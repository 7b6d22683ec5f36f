"""The whole supernet: elastic embeddings, the block supernets, an elastic classifier.

`set_active(arch)` picks a sub-network; `forward` then computes exactly what `extract(arch)`'s
standalone SubNet computes (tests hold the two within 1e-5).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from slimformer.search_space import Arch, SearchSpace
from slimformer.supernet import functional as SF
from slimformer.supernet.block import LAYER_NORM_EPS, BlockSupernet
from slimformer.supernet.elastic import ElasticEmbeddings, ElasticLinear


class Supernet(nn.Module):
    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space
        t = space.teacher
        self.embeddings = ElasticEmbeddings(
            t.vocab_size, t.max_position, t.type_vocab_size, space.max_hidden, LAYER_NORM_EPS
        )
        self.blocks = nn.ModuleList(BlockSupernet(space, i) for i in range(space.num_blocks))
        self.classifier = ElasticLinear(space.max_hidden, t.num_labels)
        self.active: Arch = space.largest()
        self.set_active(self.active)

    def set_active(self, arch: Arch) -> None:
        self.space.validate(arch)
        self.active = arch
        for block, ops in zip(self.blocks, arch.blocks, strict=True):
            block.set_active(ops, arch.hidden)

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
        h = self.active.hidden
        x = self.embeddings(input_ids, token_type_ids, h, self.active.embedding_rank)
        bias = SF.mask_bias(attention_mask, x.dtype)
        states = [x]
        for block in self.blocks:
            x = block(x, bias, attention_mask)
            states.append(x)
        w, b = self.classifier.sliced(h, self.space.teacher.num_labels)
        logits = nn.functional.linear(SF.mean_pool(x, attention_mask), w, b)
        out: dict[str, Any] = {"logits": logits}
        if output_hidden_states:
            out["hidden_states"] = tuple(states)
        return out
