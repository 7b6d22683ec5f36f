"""Latency lookup tables (HAT / NAS-BERT style): predict a student's latency without running it.

A table holds, for one machine and one input shape, the measured milliseconds of every slot op at
every hidden size, plus the embeddings and the classification head per hidden size and a fixed
per-forward overhead. A prediction is their sum:

    predict = scale * (overhead + embeddings[H] + sum(op[H] for op in arch) + head[H]) + offset

where an arch with factorised word embeddings of rank r (`Arch.embedding_rank`) reads
`factorised[(H, r)]` (lookup of r floats, an r x H matmul, positions, LayerNorm) instead of
`embeddings[H]`: both are measured, in context, by the profiler.

`scale` and `offset` default to 1 and 0; `LatencyTable.calibrate` fits them from a few whole-model
measurements (used to carry a torch-measured table over to another runtime such as onnxruntime).

Tables depend on the hardware, the input shape, the thread count and the torch version, so they
are cached under a file name hashed from exactly those (`table_cache_path`). This module is
torch-free: the profiler (`slimformer.supernet.latency_build`) measures, this module only stores and adds.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slimformer.errors import SlimformerError
from slimformer.search_space.arch import Arch, Op
from slimformer.search_space.space import SearchSpace

RUNTIMES = ("torch", "onnxruntime")
TABLE_FORMAT_VERSION = 1


class LatencyTableError(SlimformerError, LookupError):
    """A latency table cannot answer: an entry is missing, or the file is not a latency table.

    Attributes:
        entry: the missing entry, e.g. "mha:4 at H=256" or "embeddings at H=256" (None for file errors).
    """

    def __init__(self, message: str, entry: str | None = None):
        super().__init__(message)
        self.entry = entry

    def __str__(self) -> str:  # LookupError would repr() the message; keep it readable
        return str(self.args[0])


@dataclass(frozen=True)
class LatencySetting:
    """The conditions a latency is measured under.

    Attributes:
        batch: sequences per forward pass.
        seq_len: tokens per sequence.
        threads: intra-op threads (torch.set_num_threads / onnxruntime intra_op_num_threads).
        runtime: "torch" (eager) or "onnxruntime".
    """

    batch: int = 1
    seq_len: int = 128
    threads: int = 1
    runtime: str = "torch"

    def __post_init__(self) -> None:
        for name in ("batch", "seq_len", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime: {self.runtime!r} not in {list(RUNTIMES)}")

    def key(self) -> str:
        """Short readable tag for file names, e.g. "b1-s128-t1-torch"."""
        return f"b{self.batch}-s{self.seq_len}-t{self.threads}-{self.runtime}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> LatencySetting:
        return cls(**{k: doc[k] for k in ("batch", "seq_len", "threads", "runtime") if k in doc})


def hardware_fingerprint() -> dict[str, Any]:
    """What identifies this machine for latency purposes: CPU model, logical cores, OS and arch.

    Returns:
        {"cpu": "Intel(R) Xeon(R) ...", "cores": 2, "platform": "Linux-x86_64"}.
    """
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:  # not Linux: fall back to what platform knows
        pass
    return {
        "cpu": cpu or platform.processor() or "unknown",
        "cores": os.cpu_count() or 0,
        "platform": f"{platform.system()}-{platform.machine()}",
    }


def space_signature(space: SearchSpace) -> dict[str, Any]:
    """The parts of a space that change what a table must hold or what its entries measure.

    Not the student's vocabulary size: an embedding lookup costs the same in a smaller table.
    """
    doc = space.to_dict()
    doc.pop("student_vocab", None)
    return doc


def space_key(space: SearchSpace) -> str:
    """16 hex digits naming what a table must cover for `space` (the same space, the same key)."""
    return hashlib.sha256(json.dumps(space_signature(space), sort_keys=True).encode()).hexdigest()[:16]


def table_cache_path(
    cache_dir: str | Path,
    fingerprint: Mapping[str, Any],
    setting: LatencySetting,
    torch_version: str,
    space: SearchSpace | None = None,
) -> Path:
    """Where the table for (hardware, setting, torch version[, space]) is cached.

    The file name is the setting's readable key plus 16 hex digits of a SHA-256 over all inputs, so
    a change of machine, shape, threads, runtime, torch version or space gives a different file.

    Args:
        cache_dir: the cache folder (not created here).
        fingerprint: `hardware_fingerprint()`.
        setting: the measurement setting.
        torch_version: `torch.__version__` of the measuring process.
        space: the search space the table covers; its op sizes and teacher facts change the entries.

    Returns:
        cache_dir / "latency-<setting key>-<hash>.json".
    """
    doc = {
        "hardware": dict(fingerprint),
        "setting": setting.to_dict(),
        "torch": torch_version,
        "space": space_signature(space) if space is not None else None,
        "format": TABLE_FORMAT_VERSION,
    }
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"latency-{setting.key()}-{digest}.json"


def _op_key(op: Op | str) -> str:
    return str(op) if isinstance(op, Op) else str(Op.parse(op))


@dataclass
class LatencyTable:
    """Measured milliseconds per part of a sub-network, for one machine and setting.

    Attributes:
        setting: the input shape, threads and runtime the entries were measured under.
        ops: {(op string, hidden size): ms}, e.g. {("mha:4", 256): 0.91}. Identity ("id") may be
            absent, in which case it costs 0.
        embeddings: {hidden size: ms} for the embedding layer (lookups + LayerNorm).
        factorised: {(hidden size, rank): ms} for the embedding layer of archs whose word
            embeddings are factorised at that rank (the r x H matmul included).
        head: {hidden size: ms} for the classification head (the profiler times the classifier;
            the mean pool before it, microseconds, falls into overhead_ms).
        overhead_ms: fixed per-forward cost not in any part (mask building, mean pool, Python
            dispatch between modules). The profiler fits it as a residual of whole forwards, so
            it may be slightly negative.
        scale, offset_ms: linear correction from `calibrate` (1 and 0 when uncalibrated).
        hardware: `hardware_fingerprint()` of the measuring machine.
        torch_version: torch version of the measuring process.
        created: ISO-8601 UTC time of measurement.
        meta: free-form notes from the profiler (clock, repeats, build seconds, calibration set).
    """

    setting: LatencySetting
    ops: dict[tuple[str, int], float] = field(default_factory=dict)
    embeddings: dict[int, float] = field(default_factory=dict)
    factorised: dict[tuple[int, int], float] = field(default_factory=dict)
    head: dict[int, float] = field(default_factory=dict)
    overhead_ms: float = 0.0
    scale: float = 1.0
    offset_ms: float = 0.0
    hardware: dict[str, Any] = field(default_factory=hardware_fingerprint)
    torch_version: str = ""
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    meta: dict[str, Any] = field(default_factory=dict)

    # --- lookups -------------------------------------------------------------------------------

    def op_ms(self, op: Op | str, hidden: int) -> float:
        """Milliseconds of one slot op at hidden size `hidden`.

        Raises:
            LatencyTableError: if the table has no entry for a non-identity op at that size.
        """
        key = _op_key(op)
        if (key, hidden) in self.ops:
            return self.ops[(key, hidden)]
        if key == "id":
            return 0.0
        raise LatencyTableError(
            f"latency table has no entry for {key} at H={hidden} "
            f"(table covers H={sorted({h for _, h in self.ops})}; setting {self.setting.key()})",
            entry=f"{key} at H={hidden}",
        )

    def _part(self, part: dict[int, float], name: str, hidden: int) -> float:
        if hidden not in part:
            raise LatencyTableError(
                f"latency table has no entry for {name} at H={hidden} (has H={sorted(part)})",
                entry=f"{name} at H={hidden}",
            )
        return part[hidden]

    def embeddings_ms(self, hidden: int, rank: int | None = None) -> float:
        """Milliseconds of the embedding layer at `hidden`, plain (rank None) or factorised at `rank`.

        Raises:
            LatencyTableError: if the table has no such entry.
        """
        if rank is None:
            return self._part(self.embeddings, "embeddings", hidden)
        if (hidden, rank) not in self.factorised:
            raise LatencyTableError(
                f"latency table has no entry for embeddings r{rank} at H={hidden} "
                f"(has {sorted(self.factorised)}; setting {self.setting.key()})",
                entry=f"embeddings r{rank} at H={hidden}",
            )
        return self.factorised[(hidden, rank)]

    def raw_predict(self, arch: Arch) -> float:
        """Uncalibrated prediction: overhead + embeddings[H] (or factorised[H, r]) + sum of ops + head[H], in ms.

        Raises:
            LatencyTableError: naming the first missing entry.
        """
        h = arch.hidden
        terms = [self.overhead_ms, self.embeddings_ms(h, arch.embedding_rank), self._part(self.head, "head", h)]
        # fsum is exactly rounded, so two archs with the same ops in another order predict the very same
        # float: a plain sum differs in the last bit, and a calibration's scale could then order them
        # one way in one run and the other way in the next.
        return math.fsum(terms + [self.op_ms(op, h) for op in arch.ops()])

    def predict(self, arch: Arch) -> float:
        """Calibrated prediction in ms: scale * raw_predict + offset_ms."""
        return self.scale * self.raw_predict(arch) + self.offset_ms

    def missing(self, space: SearchSpace) -> list[str]:
        """Entries `space` needs that this table lacks, e.g. ["ffn:768 at H=256", "head at H=256"]."""
        out = []
        for h in space.hidden_sizes:
            ops = [op for op in space.slot_ops() if op.kind != "id"]
            out += [f"{op} at H={h}" for op in ops if (str(op), h) not in self.ops]
            parts = (("embeddings", self.embeddings), ("head", self.head))
            out += [f"{name} at H={h}" for name, part in parts if h not in part]
            ranks = [r for r in space.ranks_at(h) if r is not None]
            out += [f"embeddings r{r} at H={h}" for r in ranks if (h, r) not in self.factorised]
        return out

    # --- correction ----------------------------------------------------------------------------

    def calibrate(self, pairs: Iterable[tuple[Arch, float]], fit_offset: bool = True) -> tuple[float, float]:
        """Fit `scale` and `offset_ms` so predictions match whole-model measurements.

        Least squares of measured on raw predicted ms, weighted by 1 / measured^2 so the fit
        minimises relative error (what MAPE measures) rather than letting the slowest models
        dominate. With one pair, or `fit_offset=False`, only the scale is fitted.

        Args:
            pairs: (arch, measured ms) for models measured under this table's setting.
            fit_offset: also fit an additive offset (needs two or more distinct predictions).

        Returns:
            (scale, offset_ms), also stored on the table.

        Raises:
            ValueError: if `pairs` is empty, a measurement is not positive, or the fit gives a
                non-positive scale.
        """
        pts = [(self.raw_predict(arch), float(ms)) for arch, ms in pairs]
        if not pts:
            raise ValueError("calibrate: need at least one (arch, measured ms) pair")
        if any(not math.isfinite(m) or m <= 0 for _, m in pts):
            raise ValueError("calibrate: measured latencies must be positive and finite")
        w = [1.0 / m**2 for _, m in pts]
        sw = sum(w)
        mx = sum(wi * x for wi, (x, _) in zip(w, pts, strict=True)) / sw
        my = sum(wi * y for wi, (_, y) in zip(w, pts, strict=True)) / sw
        sxx = sum(wi * (x - mx) ** 2 for wi, (x, _) in zip(w, pts, strict=True))
        if fit_offset and len(pts) >= 2 and sxx > 1e-12 * max(1.0, mx * mx):
            sxy = sum(wi * (x - mx) * (y - my) for wi, (x, y) in zip(w, pts, strict=True))
            scale = sxy / sxx
            offset = my - scale * mx
        else:
            scale = sum(wi * x * y for wi, (x, y) in zip(w, pts, strict=True)) / sum(
                wi * x * x for wi, (x, _) in zip(w, pts, strict=True)
            )
            offset = 0.0
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"calibrate: fitted scale {scale!r} is not positive")
        self.scale, self.offset_ms = float(scale), float(offset)
        self.meta["calibration_n"] = len(pts)
        return self.scale, self.offset_ms

    # --- serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        by_h: dict[str, dict[str, float]] = {}
        for (op, h), ms in sorted(self.ops.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            by_h.setdefault(str(h), {})[op] = ms
        return {
            "format": "slimformer-latency-table",
            "format_version": TABLE_FORMAT_VERSION,
            "setting": self.setting.to_dict(),
            "hardware": self.hardware,
            "torch_version": self.torch_version,
            "created": self.created,
            "overhead_ms": self.overhead_ms,
            "calibration": {"scale": self.scale, "offset_ms": self.offset_ms},
            "embeddings": {str(h): ms for h, ms in sorted(self.embeddings.items())},
            **({"factorised_embeddings": self._factorised_doc()} if self.factorised else {}),
            "head": {str(h): ms for h, ms in sorted(self.head.items())},
            "ops": by_h,
            "meta": self.meta,
        }

    def _factorised_doc(self) -> dict[str, dict[str, float]]:
        doc: dict[str, dict[str, float]] = {}
        for (h, r), ms in sorted(self.factorised.items()):
            doc.setdefault(str(h), {})[str(r)] = ms
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> LatencyTable:
        """Inverse of `to_dict`.

        Raises:
            LatencyTableError: if `doc` is not a latency table of a version this code reads.
        """
        if not isinstance(doc, Mapping) or doc.get("format") != "slimformer-latency-table":
            raise LatencyTableError("not a slimformer latency table (missing format tag)")
        if doc.get("format_version") != TABLE_FORMAT_VERSION:
            raise LatencyTableError(
                f"latency table format_version {doc.get('format_version')!r}; "
                f"this code reads {TABLE_FORMAT_VERSION}"
            )
        try:
            ops = {(op, int(h)): float(ms) for h, row in doc["ops"].items() for op, ms in row.items()}
            cal = doc.get("calibration", {})
            return cls(
                setting=LatencySetting.from_dict(doc["setting"]),
                ops=ops,
                embeddings={int(h): float(ms) for h, ms in doc["embeddings"].items()},
                # Absent in tables made before factorised embeddings: `missing` then names the gaps.
                factorised={(int(h), int(r)): float(ms) for h, row in doc.get("factorised_embeddings", {}).items()
                            for r, ms in row.items()},
                head={int(h): float(ms) for h, ms in doc["head"].items()},
                overhead_ms=float(doc["overhead_ms"]),
                scale=float(cal.get("scale", 1.0)),
                offset_ms=float(cal.get("offset_ms", 0.0)),
                hardware=dict(doc.get("hardware", {})),
                torch_version=str(doc.get("torch_version", "")),
                created=str(doc.get("created", "")),
                meta=dict(doc.get("meta", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise LatencyTableError(f"malformed latency table: {exc!r}") from None

    def save(self, path: str | Path) -> Path:
        """Write JSON atomically (temp file + rename), so readers never see half a table."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """Read a table written by `save`.

        Raises:
            LatencyTableError: if the file is not valid JSON or not a latency table.
            FileNotFoundError: if `path` does not exist.
        """
        text = Path(path).read_text(encoding="utf-8")
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LatencyTableError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_dict(doc)


def predict_latency(arch: Arch, table: LatencyTable) -> float:
    """Predicted latency of `arch` in ms under `table.setting` (see `LatencyTable.predict`).

    Raises:
        LatencyTableError: naming the missing entry if the table does not cover `arch`.
    """
    return table.predict(arch)
