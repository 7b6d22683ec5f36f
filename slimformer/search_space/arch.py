"""The architecture document: a hidden size and, per block, the op in each sub-layer slot.

An op is written as a short string so an architecture stays a small readable JSON document:

    "mha:4"    multi-head attention with 4 heads (head size is the teacher's)
    "ffn:512"  feed-forward with inner size 512
    "conv:5"   separable convolution with kernel 5
    "id"       identity (skips the slot; this is how depth varies)

    {"hidden": 256, "blocks": [["mha:4", "ffn:1024", "id", "conv:3"], ...]}

An optional "embedding_rank": r factorises the word embeddings into V x r times r x H (ALBERT
style); absent (None) means the plain V x H table, and the document is then exactly what it was
before the option existed, so stored archs keep their hashes.

`Arch` is immutable and hashable; `Arch.hash` is a canonical content hash of its JSON so the same
architecture always gets the same id, in the database, in caches and in file names.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from slimformer.errors import ArchError

OP_KINDS = ("mha", "ffn", "conv", "id")


@dataclass(frozen=True, order=True)
class Op:
    """One slot's op: its kind and its size (heads, inner size or kernel; 0 for identity)."""

    kind: str
    size: int = 0

    @classmethod
    def parse(cls, text: str, where: str = "op") -> Op:
        """Parse "mha:4" / "ffn:512" / "conv:3" / "id"; errors name `where`."""
        if not isinstance(text, str):
            raise ArchError(f"{where}: expected an op string like 'mha:4', got {text!r}")
        if text == "id":
            return cls("id", 0)
        kind, sep, size = text.partition(":")
        if not sep or kind not in OP_KINDS or kind == "id":
            raise ArchError(f"{where}: unknown op {text!r} (expected mha:N, ffn:N, conv:N or id)")
        try:
            value = int(size)
        except ValueError:
            raise ArchError(f"{where}: op size in {text!r} is not an integer") from None
        if value <= 0:
            raise ArchError(f"{where}: op size in {text!r} must be positive")
        return cls(kind, value)

    def __str__(self) -> str:
        return "id" if self.kind == "id" else f"{self.kind}:{self.size}"


@dataclass(frozen=True)
class Arch:
    """A student architecture: model hidden size and a tuple of blocks, each a tuple of slot ops."""

    hidden: int
    blocks: tuple[tuple[Op, ...], ...]
    # Rank of the factorised word embeddings (V x r @ r x H); None: the plain V x H table.
    embedding_rank: int | None = None

    def __post_init__(self) -> None:
        _check_rank(self.embedding_rank)

    @classmethod
    def from_dict(cls, doc: Any) -> Arch:
        """Build from the JSON document form. Raises ArchError naming the bad field."""
        if not isinstance(doc, dict):
            raise ArchError(f"arch: expected an object with 'hidden' and 'blocks', got {type(doc).__name__}")
        unknown = set(doc) - {"hidden", "blocks", "embedding_rank"}
        if unknown:
            raise ArchError(f"arch: unknown field(s) {sorted(unknown)}")
        hidden = doc.get("hidden")
        if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden <= 0:
            raise ArchError(f"hidden: expected a positive integer, got {hidden!r}")
        blocks = doc.get("blocks")
        if not isinstance(blocks, list | tuple) or not blocks:
            raise ArchError("blocks: expected a non-empty list of blocks")
        parsed = []
        for b, block in enumerate(blocks):
            if not isinstance(block, list | tuple) or not block:
                raise ArchError(f"blocks[{b}]: expected a non-empty list of ops")
            parsed.append(tuple(Op.parse(op, f"blocks[{b}][{s}]") for s, op in enumerate(block)))
        return cls(hidden, tuple(parsed), _check_rank(doc.get("embedding_rank")))

    @classmethod
    def from_json(cls, text: str) -> Arch:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArchError(f"arch: not valid JSON ({exc})") from None
        return cls.from_dict(doc)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"hidden": self.hidden, "blocks": [[str(op) for op in block] for block in self.blocks]}
        if self.embedding_rank is not None:  # unfactorised archs keep the documents (and hashes) they had
            doc["embedding_rank"] = self.embedding_rank
        return doc

    def with_rank(self, rank: int | None) -> Arch:
        """The same blocks and H with word-embedding rank `rank` (None: the plain table)."""
        return Arch(self.hidden, self.blocks, rank)

    def to_json(self) -> str:
        """Canonical JSON: no whitespace, fixed key order. Equal archs give equal strings."""
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @property
    def hash(self) -> str:
        """12 hex digits of the SHA-256 of the canonical JSON."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    def ops(self) -> list[Op]:
        return [op for block in self.blocks for op in block]

    def depth(self) -> int:
        """Number of non-identity sub-layers."""
        return sum(op.kind != "id" for op in self.ops())

    def short(self) -> str:
        """One line for tables: H256 | mha:4 ffn:1024 - conv:3 | ...; "H128 r32 | ..." when factorised."""
        parts = [" ".join("-" if op.kind == "id" else str(op) for op in block) for block in self.blocks]
        rank = f" r{self.embedding_rank}" if self.embedding_rank is not None else ""
        return f"H{self.hidden}{rank} | " + " | ".join(parts)


def _check_rank(rank: Any) -> int | None:
    """`rank` if it is None or a positive integer, else ArchError (whether the space allows it is the space's call)."""
    if rank is not None and (not isinstance(rank, int) or isinstance(rank, bool) or rank <= 0):
        raise ArchError(f"embedding_rank: expected a positive integer or null, got {rank!r}")
    return rank
