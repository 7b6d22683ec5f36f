"""Exact cost of an architecture: parameters, FLOPs and memory, without torch.

The counts mirror `slimformer.supernet.subnet.SubNet` term by term (a test checks the parameter
count against `sum(p.numel())` of extracted models). Per slot, with H the hidden size, A = heads *
head_size, I the FFN inner size and k the kernel:

    mha   3(HA + A) + (AH + H) + 2H          q, k, v, output projection, LayerNorm
    ffn   (HI + I) + (IH + H) + 2H           two linears, LayerNorm
    conv  (Hk + H) + (HH + H) + 2H           depthwise conv, pointwise linear, LayerNorm
    id    0
    embeddings  (V + P + T) H + 2H           word, position, token type tables, LayerNorm
                                             (V: the trimmed vocabulary when the space has one)
                factorised (rank r):  V r + r H replaces V H (lookup and projection, no bias)
    head        HC + C                       classifier over the mean-pooled last hidden state

FLOPs count multiply-adds as 2 for every matmul and convolution at batch 1 (LayerNorm, softmax,
activations and lookups are left out: they are <1% here; a factorised embedding's r x H matmul
is in). Memory is weights at a dtype plus peak activations for an input shape (the largest set of
tensors alive at once during one slot; a factorised lookup's [B, L, r] is below the 2 B L H floor).
"""

from __future__ import annotations

from dataclasses import dataclass

from slimformer.search_space.arch import Arch, Op
from slimformer.search_space.space import SearchSpace

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}


def op_params(op: Op, hidden: int, space: SearchSpace) -> int:
    """Parameters of one slot op at hidden size `hidden` (see `SearchSpace.op_params`)."""
    return space.op_params(op, hidden)


def vocab_size(space: SearchSpace) -> int:
    """Rows of a student's word embeddings: the trimmed vocabulary if the space has one."""
    return space.word_rows()


def embedding_params(hidden: int, space: SearchSpace, rank: int | None = None) -> int:
    """Word (plain or rank-`rank` factorised), position and token-type tables plus the LayerNorm."""
    t = space.teacher
    return space.word_params(hidden, rank) + (t.max_position + t.type_vocab_size) * hidden + 2 * hidden


def head_params(hidden: int, space: SearchSpace) -> int:
    c = space.teacher.num_labels
    return hidden * c + c


def count_params(arch: Arch, space: SearchSpace) -> int:
    """Exact parameter count of the standalone sub-network for `arch`."""
    h = arch.hidden
    body = sum(op_params(op, h, space) for op in arch.ops())
    return embedding_params(h, space, arch.embedding_rank) + body + head_params(h, space)


def op_flops(op: Op, hidden: int, seq_len: int, space: SearchSpace) -> int:
    """FLOPs of one slot op on one sequence of `seq_len` tokens."""
    h, n = hidden, seq_len
    if op.kind == "mha":
        a = op.size * space.head_size
        return 2 * n * h * a * 3 + 2 * n * n * a * 2 + 2 * n * a * h
    if op.kind == "ffn":
        return 2 * n * h * op.size * 2
    if op.kind == "conv":
        return 2 * n * h * op.size + 2 * n * h * h
    return 0


def count_flops(arch: Arch, space: SearchSpace, seq_len: int = 128, batch: int = 1) -> int:
    """FLOPs of one forward pass over `batch` sequences of `seq_len` tokens."""
    per_seq = sum(op_flops(op, arch.hidden, seq_len, space) for op in arch.ops())
    per_seq += 2 * arch.hidden * space.teacher.num_labels
    if arch.embedding_rank is not None:  # the factorised lookup's r x H projection, per token
        per_seq += 2 * seq_len * arch.embedding_rank * arch.hidden
    return batch * per_seq


def op_activation_elems(op: Op, hidden: int, batch: int, seq_len: int, space: SearchSpace) -> int:
    """Elements alive at the peak of one slot: its input and output plus the op's intermediates."""
    b, n, h = batch, seq_len, hidden
    io = 2 * b * n * h
    if op.kind == "mha":
        a = op.size * space.head_size
        # q, k, v and context (b n a each), scores and softmax probabilities (b heads n n each)
        return io + 4 * b * n * a + 2 * b * op.size * n * n
    if op.kind == "ffn":
        return io + 2 * b * n * op.size  # pre- and post-activation
    if op.kind == "conv":
        return io + 2 * b * n * h  # depthwise output and its transpose
    return io


@dataclass(frozen=True)
class Memory:
    """Memory of a model at an input shape, in bytes."""

    weights: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.activations

    @property
    def total_mb(self) -> float:
        return self.total / 2**20


def estimate_memory(
    arch: Arch, space: SearchSpace, batch: int = 1, seq_len: int = 128, dtype: str = "float32"
) -> Memory:
    """Weights at `dtype` plus peak activations (float32) for `batch` x `seq_len` inputs."""
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype: {dtype!r} not in {sorted(DTYPE_BYTES)}")
    weights = count_params(arch, space) * DTYPE_BYTES[dtype]
    peak = max(
        [op_activation_elems(op, arch.hidden, batch, seq_len, space) for op in arch.ops()]
        + [2 * batch * seq_len * arch.hidden]
    )
    return Memory(weights=weights, activations=peak * 4)


@dataclass(frozen=True)
class Cost:
    params: int
    flops: int
    memory_mb: float


def arch_cost(arch: Arch, space: SearchSpace, batch: int = 1, seq_len: int = 128, dtype: str = "float32") -> Cost:
    return Cost(
        params=count_params(arch, space),
        flops=count_flops(arch, space, seq_len, batch),
        memory_mb=estimate_memory(arch, space, batch, seq_len, dtype).total_mb,
    )
