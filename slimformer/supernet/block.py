"""One block of the supernet: S sub-layer slots, each holding every op kind with shared weights.

A block is trained on its own (NAS-BERT block-wise distillation): its input is the teacher's
hidden state entering the block, mapped to H by `bridge_in`; its output, mapped back to the
teacher's width by `bridge_out`, is compared with the teacher's hidden state leaving the block.
The bridges are training aids; an extracted sub-network does not contain them.
"""

from __future__ import annotations

import torch
from torch import nn

from slimformer.search_space import Op, SearchSpace
from slimformer.supernet.elastic import ElasticAttention, ElasticFeedForward, ElasticLinear, ElasticSepConv

LAYER_NORM_EPS = 1e-12


class SupernetSlot(nn.Module):
    """All op kinds a slot may hold; `forward` runs the active one."""

    def __init__(self, space: SearchSpace):
        super().__init__()
        h = space.max_hidden
        self.ops = nn.ModuleDict()
        if space.heads:
            self.ops["mha"] = ElasticAttention(h, max(space.heads), space.head_size, LAYER_NORM_EPS)
        if space.ffn_sizes:
            self.ops["ffn"] = ElasticFeedForward(h, max(space.ffn_sizes), LAYER_NORM_EPS)
        if space.conv_kernels:
            self.ops["conv"] = ElasticSepConv(h, max(space.conv_kernels), LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor, op: Op) -> torch.Tensor:
        if op.kind == "id":
            return x
        return self.ops[op.kind](x, bias, mask, op.size)


class BlockSupernet(nn.Module):
    """Block `index` of the supernet for `space`. Call `set_active(ops, hidden)` before `forward`."""

    def __init__(self, space: SearchSpace, index: int):
        super().__init__()
        if not 0 <= index < space.num_blocks:
            raise ValueError(f"index: block {index} outside 0..{space.num_blocks - 1}")
        self.space, self.index = space, index
        self.slots = nn.ModuleList(SupernetSlot(space) for _ in range(space.slots_per_block))
        d = space.teacher.hidden_size
        self.bridge_in = ElasticLinear(d, space.max_hidden)  # teacher width -> H (rows sliced)
        self.bridge_out = ElasticLinear(space.max_hidden, d)  # H -> teacher width (columns sliced)
        self.active_ops: tuple[Op, ...] = tuple(space.largest().blocks[index])
        self.active_hidden = space.max_hidden

    def set_active(self, ops: tuple[Op, ...], hidden: int) -> None:
        if len(ops) != len(self.slots):
            raise ValueError(f"ops: block {self.index} has {len(self.slots)} slots, got {len(ops)} ops")
        self.active_ops, self.active_hidden = tuple(ops), hidden

    def forward(self, x: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: [B, L, H] in the student's space -> [B, L, H]."""
        for slot, op in zip(self.slots, self.active_ops, strict=True):
            x = slot(x, bias, mask, op)
        return x

    def to_student(self, teacher_state: torch.Tensor) -> torch.Tensor:
        """[B, L, D] teacher hidden state -> [B, L, H] block input."""
        w, b = self.bridge_in.sliced(self.space.teacher.hidden_size, self.active_hidden)
        return nn.functional.linear(teacher_state, w, b)

    def to_teacher(self, student_state: torch.Tensor) -> torch.Tensor:
        """[B, L, H] block output -> [B, L, D] for comparison with the teacher."""
        w, b = self.bridge_out.sliced(self.active_hidden, self.space.teacher.hidden_size)
        return nn.functional.linear(student_state, w, b)

    def distill_forward(self, teacher_in: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The block as trained: teacher state in, teacher-width prediction of the next teacher state out."""
        return self.to_teacher(self.forward(self.to_student(teacher_in), bias, mask))
