"""Warm-start the supernet from the teacher, in a permuted basis where narrow widths lose least.

Training blocks from scratch on one CPU would need far more steps than we can afford, so every
MHA and FFN in a block starts from the teacher layer it replaces, LayerNorms included. Widths shrink
by slicing, so three things are reordered by importance first (DynaBERT-style rewiring): hidden
dimensions by the energy of the teacher's hidden states, heads by the norm of their output
projection, FFN neurons by the product of their in and out weight norms. The first H dimensions,
first h heads and first I neurons are then the strongest.

Hidden dimensions are *permuted*, never rotated: LayerNorm's mean and variance over all dimensions
do not change under a permutation, but do under a rotation. So at full width every path that
keeps the teacher's ops (the teacher itself, its first-k-layer truncations, every other layer) is
exactly the teacher's function, and `bridge_in = P[:, :H]^T`, `bridge_out = P[:, :H]` are the
matching selections.
"""

from __future__ import annotations

import torch
from torch import nn

from slimformer.supernet.block import BlockSupernet
from slimformer.supernet.elastic import ElasticEmbeddings, ElasticLinear


def hidden_permutation(states: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """[N, L, D] hidden states -> [D, D] permutation matrix; column j is the j-th most energetic dimension.

    Energy is the mean square of a dimension over the (unmasked) tokens. Ties keep index order, so
    the result is deterministic.
    """
    x = states.float().reshape(-1, states.shape[-1])
    if mask is not None:
        x = x[mask.reshape(-1).bool()]
    energy = (x.double() ** 2).mean(dim=0) if x.shape[0] else torch.zeros(x.shape[1], dtype=torch.float64)
    order = torch.argsort(-energy, stable=True)
    return torch.eye(x.shape[1])[:, order]


def _layer(teacher: nn.Module, index: int) -> nn.Module:
    return teacher.encoder.layer[index]


def _copy_(dst: torch.Tensor, src: torch.Tensor) -> None:
    with torch.no_grad():
        dst[tuple(slice(0, n) for n in src.shape)].copy_(src)


def _copy_layer_norm(dst: nn.Module, src: nn.Module, p: torch.Tensor) -> None:
    """LayerNorm gain and bias, permuted like the hidden dimensions (exact: p is a permutation)."""
    _copy_(dst.weight, p.T @ src.weight)
    _copy_(dst.bias, p.T @ src.bias)


def init_bridges(block: BlockSupernet, basis: torch.Tensor) -> None:
    p = basis[:, : block.space.max_hidden]  # [D, Hmax]
    with torch.no_grad():
        block.bridge_in.weight.copy_(p.T)
        block.bridge_in.bias.zero_()
        block.bridge_out.weight.copy_(p)
        block.bridge_out.bias.zero_()


def init_block_from_teacher(block: BlockSupernet, teacher: nn.Module, basis: torch.Tensor) -> None:
    """Bridges from the basis; each slot's MHA and FFN from the teacher layer it stands for.

    With S slots over the block's `layers_per_block` teacher layers, slot s takes layer
    `first + s * layers_per_block // S` (4 slots over 2 layers: slots 0,1 <- layer 0; 2,3 <- layer 1).
    """
    space = block.space
    init_bridges(block, basis)
    p = basis[:, : space.max_hidden]  # [D, Hmax]
    first = block.index * space.layers_per_block
    d_head = space.head_size
    for s, slot in enumerate(block.slots):
        layer = _layer(teacher, first + s * space.layers_per_block // space.slots_per_block)
        if "mha" in slot.ops:
            att, out = layer.attention.self, layer.attention.output.dense
            n_heads = att.query.weight.shape[0] // d_head
            # A head's importance: the norm of its slice of the output projection.
            norms = out.weight.reshape(out.weight.shape[0], n_heads, d_head).norm(dim=(0, 2))
            heads = torch.argsort(norms, descending=True)
            rows = (heads[:, None] * d_head + torch.arange(d_head)[None, :]).reshape(-1)
            mha = slot.ops["mha"]
            for name in ("query", "key", "value"):
                src = getattr(att, name)
                k = getattr(mha, name).weight.shape[0]
                _copy_(getattr(mha, name).weight, (src.weight[rows] @ p)[:k])
                _copy_(getattr(mha, name).bias, src.bias[rows][:k])
            k = mha.output.weight.shape[1]
            _copy_(mha.output.weight, (p.T @ out.weight[:, rows])[:, :k])
            _copy_(mha.output.bias, p.T @ out.bias)
            _copy_layer_norm(mha.LayerNorm, layer.attention.output.LayerNorm, p)
        if "ffn" in slot.ops:
            w1, w2 = layer.intermediate.dense, layer.output.dense
            importance = w1.weight.norm(dim=1) * w2.weight.norm(dim=0)
            order = torch.argsort(importance, descending=True)
            ffn = slot.ops["ffn"]
            k = ffn.intermediate.weight.shape[0]
            _copy_(ffn.intermediate.weight, (w1.weight[order] @ p)[:k])
            _copy_(ffn.intermediate.bias, w1.bias[order][:k])
            _copy_(ffn.output.weight, (p.T @ w2.weight[:, order])[:, :k])
            _copy_(ffn.output.bias, p.T @ w2.bias)
            _copy_layer_norm(ffn.LayerNorm, layer.output.LayerNorm, p)


def init_embeddings_from_teacher(emb: ElasticEmbeddings, teacher: nn.Module, basis: torch.Tensor) -> None:
    src = teacher.embeddings
    p = basis[:, : emb.word_embeddings.shape[1]]
    with torch.no_grad():
        emb.word_embeddings.copy_(src.word_embeddings.weight @ p)
        n_pos = min(emb.position_embeddings.shape[0], src.position_embeddings.weight.shape[0])
        emb.position_embeddings[:n_pos].copy_(src.position_embeddings.weight[:n_pos] @ p)
        emb.token_type_embeddings.copy_(src.token_type_embeddings.weight @ p)
    _copy_layer_norm(emb.LayerNorm, src.LayerNorm, p)


def init_classifier_from_teacher(classifier: ElasticLinear, teacher_head: nn.Linear, bridge_out: ElasticLinear) -> None:
    """Fold the last block's output bridge into the teacher's classifier.

    Mean pooling is linear, so W_t (bridge_out(x)) pooled = (W_t W_bo) x pooled: exact, and
    consistent across widths because slicing W_bo's columns slices the product's columns.
    """
    with torch.no_grad():
        classifier.weight.copy_(teacher_head.weight @ bridge_out.weight)
        classifier.bias.copy_(teacher_head.weight @ bridge_out.bias + teacher_head.bias)
