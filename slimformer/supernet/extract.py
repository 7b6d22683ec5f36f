"""Extraction: copy an architecture's slices out of the supernet into a standalone SubNet.

The SubNet gets fresh tensors (clones), so it holds only its own weights and training it never
touches the supernet.
"""

from __future__ import annotations

import torch

from slimformer.search_space import Arch
from slimformer.supernet.model import Supernet
from slimformer.supernet.subnet import SubNet, SubNetConfig


def active_state_dict(supernet: Supernet, arch: Arch) -> dict[str, torch.Tensor]:
    """The SubNet state dict for `arch`, as views into the supernet's weights."""
    supernet.space.validate(arch)
    h = arch.hidden
    # A factorised arch's word factors come from the (cached) SVD of the supernet's table (elastic.py).
    state = {f"embeddings.{k}": v for k, v in supernet.embeddings.active_weights(h, arch.embedding_rank).items()}
    for b, (block, ops) in enumerate(zip(supernet.blocks, arch.blocks, strict=True)):
        for s, (slot, op) in enumerate(zip(block.slots, ops, strict=True)):
            if op.kind == "id":
                continue
            for name, tensor in slot.ops[op.kind].active_weights(h, op.size).items():
                state[f"blocks.{b}.{s}.{name}"] = tensor
    w, bias = supernet.classifier.sliced(h, supernet.space.teacher.num_labels)
    state["classifier.weight"], state["classifier.bias"] = w, bias
    return state


def extract(supernet: Supernet, arch: Arch, labels: list[str] | None = None) -> SubNet:
    """A standalone SubNet for `arch` holding copies of its own weights only.

    Raises:
        ArchError: if `arch` is not in the supernet's space.
    """
    subnet = SubNet(SubNetConfig.for_arch(arch, supernet.space, labels))
    state = {k: v.detach().clone().contiguous() for k, v in active_state_dict(supernet, arch).items()}
    subnet.load_state_dict(state, strict=True)
    return subnet.eval()
