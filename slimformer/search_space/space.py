"""The search space, derived from a teacher: which hidden sizes and slot ops a student may use.

NAS-BERT style: the teacher's layers are grouped into `num_blocks` blocks; each student block has
`slots_per_block` sub-layer slots; each slot holds MHA(heads), FFN(inner), SepConv(kernel) or
Identity. One hidden size H holds for the whole student. The word embeddings may be factorised
(V x r times r x H) with r from `embedding_ranks`, chosen per architecture (`Arch.embedding_rank`).

The space also carries the few teacher facts needed to count a student's cost exactly
(vocabulary, positions, head size, label count), so cost needs no torch and no teacher on disk.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from slimformer.errors import ArchError, SpaceError
from slimformer.search_space.arch import Arch, Op
from slimformer.search_space.teacher_shapes import TeacherShapes


@dataclass(frozen=True)
class TeacherFacts:
    """What the space needs to know of the teacher to cost a student."""

    hidden_size: int = 384
    num_layers: int = 6
    num_heads: int = 12
    intermediate_size: int = 1536
    vocab_size: int = 30522
    max_position: int = 512
    type_vocab_size: int = 2
    num_labels: int = 2

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def from_hf_config(cls, config: Any, num_labels: int = 2) -> TeacherFacts:
        """From a transformers BertConfig (or anything with the same attribute names)."""
        return cls(
            hidden_size=config.hidden_size,
            num_layers=config.num_hidden_layers,
            num_heads=config.num_attention_heads,
            intermediate_size=config.intermediate_size,
            vocab_size=config.vocab_size,
            max_position=config.max_position_embeddings,
            type_vocab_size=getattr(config, "type_vocab_size", 2),
            num_labels=num_labels,
        )


@dataclass(frozen=True)
class SearchSpace(TeacherShapes):
    """Choices for H and for each slot op, plus the teacher facts.

    Invariants (checked in __post_init__): every hidden size <= the teacher's; heads * head_size
    fits the teacher's attention width; the teacher's layers divide evenly into blocks.
    """

    teacher: TeacherFacts = field(default_factory=TeacherFacts)
    hidden_sizes: tuple[int, ...] = (128, 192, 256, 384)
    num_blocks: int = 3
    slots_per_block: int = 4
    heads: tuple[int, ...] = (2, 4, 6, 8)
    ffn_sizes: tuple[int, ...] = (256, 512, 768, 1024, 1536)
    conv_kernels: tuple[int, ...] = (3, 5, 7)
    allow_identity: bool = True
    # Rows of the student's word embeddings when its vocabulary is trimmed to the task's tokens
    # (supernet/vocab.py); None: the teacher's whole vocabulary. Only costs read it.
    student_vocab: int | None = None
    # Ranks r an arch may factorise its word embeddings with (V x r @ r x H); each arch may also keep
    # the plain V x H table. Empty: no factorisation (what a stored space document without the key means).
    embedding_ranks: tuple[int, ...] = (32, 64, 128)

    def __post_init__(self) -> None:
        t = self.teacher
        if not self.hidden_sizes or any(h <= 0 for h in self.hidden_sizes):
            raise SpaceError("hidden_sizes: need at least one positive size")
        if max(self.hidden_sizes) > t.hidden_size:
            raise SpaceError(f"hidden_sizes: {max(self.hidden_sizes)} exceeds the teacher's {t.hidden_size}")
        if self.num_blocks <= 0 or t.num_layers % self.num_blocks:
            raise SpaceError(f"num_blocks: {self.num_blocks} does not divide the teacher's {t.num_layers} layers")
        if self.slots_per_block <= 0:
            raise SpaceError("slots_per_block: must be positive")
        if any(k % 2 == 0 or k <= 0 for k in self.conv_kernels):
            raise SpaceError(f"conv_kernels: kernels must be odd and positive, got {self.conv_kernels}")
        if any(h <= 0 for h in self.heads) or any(i <= 0 for i in self.ffn_sizes):
            raise SpaceError("heads and ffn_sizes must be positive")
        if not (self.heads or self.ffn_sizes or self.conv_kernels or self.allow_identity):
            raise SpaceError("the space has no ops")
        if self.student_vocab is not None and not 0 < self.student_vocab <= t.vocab_size:
            raise SpaceError(f"student_vocab: {self.student_vocab} not in 1..{t.vocab_size}")
        if any(not isinstance(r, int) or isinstance(r, bool) or r <= 0 for r in self.embedding_ranks):
            raise SpaceError(f"embedding_ranks: ranks must be positive integers, got {self.embedding_ranks}")
        for name in ("hidden_sizes", "heads", "ffn_sizes", "conv_kernels", "embedding_ranks"):
            values = getattr(self, name)
            if tuple(sorted(set(values))) != tuple(values):
                object.__setattr__(self, name, tuple(sorted(set(values))))

    # --- derived facts -------------------------------------------------------------------------

    @property
    def layers_per_block(self) -> int:
        return self.teacher.num_layers // self.num_blocks

    @property
    def head_size(self) -> int:
        return self.teacher.head_size

    @property
    def max_hidden(self) -> int:
        return max(self.hidden_sizes)

    def slot_ops(self) -> list[Op]:
        """Every op a slot may hold, in a fixed order (the encoding depends on it)."""
        ops = [Op("mha", h) for h in self.heads]
        ops += [Op("ffn", i) for i in self.ffn_sizes]
        ops += [Op("conv", k) for k in self.conv_kernels]
        if self.allow_identity:
            ops.append(Op("id", 0))
        return ops

    def ranks_at(self, hidden: int) -> tuple[int | None, ...]:
        """Word-embedding ranks an arch of hidden size `hidden` may use: None (the plain table), then each r < H."""
        return (None,) + tuple(r for r in self.embedding_ranks if r < hidden)

    def fit_rank(self, rank: int | None, hidden: int) -> int | None:
        """`rank` if an arch of hidden size `hidden` may use it, else the largest smaller one it may
        (None, the plain table, when there is none): where a search changes H under a rank."""
        allowed = self.ranks_at(hidden)
        if rank in allowed:
            return rank
        return max((r for r in allowed if r is not None and r < rank), default=None)

    def size(self) -> int:
        """Number of distinct architectures in the space."""
        per_h = len(self.slot_ops()) ** (self.num_blocks * self.slots_per_block)
        return sum(len(self.ranks_at(h)) for h in self.hidden_sizes) * per_h

    # --- validation ----------------------------------------------------------------------------

    def validate(self, arch: Arch) -> Arch:
        """Return `arch` if it belongs to this space, else raise ArchError naming the bad field.

        An embedding rank must be one of `embedding_ranks` and below H: a rank >= H is refused, not
        read as the plain table (it would cost more than V x H and factorise nothing).
        """
        if arch.hidden not in self.hidden_sizes:
            raise ArchError(f"hidden: {arch.hidden} not in {list(self.hidden_sizes)}")
        r = arch.embedding_rank
        if r is not None and r not in self.embedding_ranks:
            allowed = list(self.embedding_ranks) or "none (this space does not factorise embeddings)"
            raise ArchError(f"embedding_rank: {r} not allowed; ranks are {allowed}")
        if r is not None and r >= arch.hidden:
            raise ArchError(f"embedding_rank: {r} must be below hidden {arch.hidden} (a rank >= H saves nothing)")
        if len(arch.blocks) != self.num_blocks:
            raise ArchError(f"blocks: expected {self.num_blocks} blocks, got {len(arch.blocks)}")
        allowed = set(self.slot_ops())
        for b, block in enumerate(arch.blocks):
            if len(block) != self.slots_per_block:
                raise ArchError(f"blocks[{b}]: expected {self.slots_per_block} slots, got {len(block)}")
            for s, op in enumerate(block):
                if op not in allowed:
                    choices = {"mha": self.heads, "ffn": self.ffn_sizes, "conv": self.conv_kernels}
                    if op.kind == "id":
                        raise ArchError(f"blocks[{b}][{s}]: identity is not allowed in this space")
                    raise ArchError(
                        f"blocks[{b}][{s}]: {op} not allowed; {op.kind} sizes are {list(choices[op.kind])}"
                    )
        return arch

    def parse(self, doc: Any) -> Arch:
        """Arch from its JSON document (dict or string), validated against this space."""
        arch = Arch.from_json(doc) if isinstance(doc, str) else Arch.from_dict(doc)
        return self.validate(arch)

    # --- sampling and extremes -----------------------------------------------------------------

    def sample(self, rng: random.Random | int | None = None, hidden: int | None = None) -> Arch:
        """A uniformly random architecture (optionally with a fixed hidden size). Seeded: same rng, same arch."""
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        ops = self.slot_ops()
        h = hidden if hidden is not None else rng.choice(self.hidden_sizes)
        blocks = tuple(tuple(rng.choice(ops) for _ in range(self.slots_per_block)) for _ in range(self.num_blocks))
        # Drawn last, and only where ranks exist, so spaces without them sample what they always did.
        rank = rng.choice(self.ranks_at(h)) if self.embedding_ranks else None
        return self.validate(Arch(h, blocks, rank))

    def sample_block(self, rng: random.Random) -> tuple[Op, ...]:
        ops = self.slot_ops()
        return tuple(rng.choice(ops) for _ in range(self.slots_per_block))

    def largest(self) -> Arch:
        """Widest H, and per slot alternately the largest MHA and FFN (teacher-like)."""
        big = ([Op("mha", max(self.heads))] if self.heads else []) + (
            [Op("ffn", max(self.ffn_sizes))] if self.ffn_sizes else []
        )
        big = big or [Op("conv", max(self.conv_kernels))]
        block = tuple(big[s % len(big)] for s in range(self.slots_per_block))
        return Arch(self.max_hidden, tuple(block for _ in range(self.num_blocks)))

    def op_params(self, op: Op, hidden: int) -> int:
        """Parameters of one slot op at hidden size `hidden` (weights, biases and its LayerNorm).

        Lives with the space because it is a fact of the op definitions; `cost.count_params` adds
        these up with the embeddings and the head.
        """
        h = hidden
        if op.kind == "mha":
            a = op.size * self.head_size
            return 3 * (h * a + a) + (a * h + h) + 2 * h
        if op.kind == "ffn":
            return (h * op.size + op.size) + (op.size * h + h) + 2 * h
        if op.kind == "conv":
            return (h * op.size + h) + (h * h + h) + 2 * h
        return 0

    def word_rows(self) -> int:
        """Rows of a student's word embeddings: the trimmed vocabulary if the space has one."""
        return self.student_vocab or self.teacher.vocab_size

    def word_params(self, hidden: int, rank: int | None) -> int:
        """Parameters of the word embeddings: V H plain, V r + r H factorised (no bias)."""
        v = self.word_rows()
        return v * hidden if rank is None else v * rank + rank * hidden

    def smallest(self) -> Arch:
        """Narrowest H, the cheapest op in every slot and the cheapest word embeddings (usually the
        smallest rank): fewer parameters and less memory than any other arch. Latency may be lower
        elsewhere (a factorised lookup adds a matmul); `search.budgets` finds each axis's minimum."""
        h = min(self.hidden_sizes)
        cheapest = min(self.slot_ops(), key=lambda op: (self.op_params(op, h), op.size))
        block = tuple(cheapest for _ in range(self.slots_per_block))
        rank = min(self.ranks_at(h), key=lambda r: (self.word_params(h, r), r is not None))
        return Arch(h, tuple(block for _ in range(self.num_blocks)), rank)

    # --- encoding for learned models -----------------------------------------------------------

    def _rank_choices(self) -> list[int | None]:
        return [None, *self.embedding_ranks] if self.embedding_ranks else []

    def encoding_size(self) -> int:
        slots = self.num_blocks * self.slots_per_block * len(self.slot_ops())
        return len(self.hidden_sizes) + slots + len(self._rank_choices())

    def encode(self, arch: Arch) -> list[float]:
        """Fixed-length one-hot vector: H, then each slot's op, then the embedding rank (spaces with ranks)."""
        self.validate(arch)
        vec = [1.0 if h == arch.hidden else 0.0 for h in self.hidden_sizes]
        ops = self.slot_ops()
        for block in arch.blocks:
            for op in block:
                vec += [1.0 if op == o else 0.0 for o in ops]
        return vec + [1.0 if arch.embedding_rank == r else 0.0 for r in self._rank_choices()]

    # --- serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        for key in ("hidden_sizes", "heads", "ffn_sizes", "conv_kernels", "embedding_ranks"):
            doc[key] = list(doc[key])
        if doc["student_vocab"] is None:  # untrimmed spaces keep the documents (and hashes) they had
            del doc["student_vocab"]
        if not doc["embedding_ranks"]:  # likewise spaces without factorised embeddings
            del doc["embedding_ranks"]
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> SearchSpace:
        """Inverse of `to_dict`. A document without "embedding_ranks" (every space stored before
        factorised embeddings existed) gets none, so a stored job's space stays what it was."""
        doc = dict(doc)
        teacher = TeacherFacts(**doc.pop("teacher", {}))
        doc.setdefault("embedding_ranks", ())
        for key in ("hidden_sizes", "heads", "ffn_sizes", "conv_kernels", "embedding_ranks"):
            if key in doc:
                doc[key] = tuple(doc[key])
        return cls(teacher=teacher, **doc)

    def with_(self, **changes: Any) -> SearchSpace:
        return replace(self, **changes)


def space_for_teacher(teacher: TeacherFacts, **overrides: Any) -> SearchSpace:
    """Default space derived from a teacher (the issue's defaults for MiniLM-L6).

    Hidden sizes are fractions of the teacher's width (1/3, 1/2, 2/3, 1 for 384 -> 128..384), and so
    are the word-embedding ranks (1/12, 1/6, 1/3 -> 32, 64, 128);
    heads from 2 up to the teacher's own count; FFN up to the teacher's inner size; one block per two
    teacher layers (two MHA/FFN slot pairs). So the teacher itself, its first-k-layer truncations and
    its every-other-layer models are all architectures of the space (`teacher_arch`,
    `truncated_arch`, `every_other_arch`). Anything can be overridden by keyword.
    """
    d = teacher.hidden_size
    hidden = tuple(sorted({max(16, round(d * f / 16) * 16) for f in (1 / 3, 1 / 2, 2 / 3)} | {d}))
    heads = tuple(sorted({h for h in (2, 4, 6, 8) if h < teacher.num_heads} | {teacher.num_heads}))
    inner = teacher.intermediate_size
    ffn = tuple(sorted({i for i in (256, 512, 768, 1024, 1536) if i <= inner} | {inner}))
    num_blocks = teacher.num_layers // 2 if teacher.num_layers % 2 == 0 else teacher.num_layers
    # Word-embedding ranks at 1/12, 1/6 and 1/3 of the teacher's width: 32, 64, 128 for 384.
    ranks = tuple(sorted({max(8, round(d * f / 8) * 8) for f in (1 / 12, 1 / 6, 1 / 3)}))
    defaults: dict[str, Any] = dict(
        teacher=teacher, hidden_sizes=hidden, num_blocks=num_blocks, slots_per_block=4,
        heads=heads, ffn_sizes=ffn, conv_kernels=(3, 5, 7), allow_identity=True, embedding_ranks=ranks,
    )
    defaults.update(overrides)
    return SearchSpace(**defaults)
