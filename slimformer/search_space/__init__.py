"""Search space: architectures, the space they live in, and their exact cost. Torch-free."""

from slimformer.search_space.arch import OP_KINDS, Arch, Op
from slimformer.search_space.cost import (
    Cost,
    Memory,
    arch_cost,
    count_flops,
    count_params,
    estimate_memory,
)
from slimformer.search_space.space import SearchSpace, TeacherFacts, space_for_teacher

__all__ = [
    "OP_KINDS", "Arch", "Op", "Cost", "Memory", "arch_cost", "count_flops", "count_params",
    "estimate_memory", "SearchSpace", "TeacherFacts", "space_for_teacher",
]
