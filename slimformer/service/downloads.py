"""Download zips of exported models, built once per artifact and cached under the artifact directory.

The zip is reproducible (sorted entries, fixed timestamps and permissions), so its SHA-256 depends
only on the files: two processes that build it at once write the same bytes, and a client can
compare the `X-Content-SHA256` header with what it received.
"""

from __future__ import annotations

import hashlib
import os
import threading
import zipfile
from collections import defaultdict
from pathlib import Path

from slimformer.service.errors import NotFound

DOWNLOADS_DIR = "downloads"
# Weights and ONNX graphs are dense floats: deflate gains little and costs seconds per file.
_STORED_SUFFIXES = (".safetensors", ".bin", ".onnx", ".pt", ".npy")
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_CHUNK = 1024 * 1024

_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
_locks_guard = threading.Lock()


def build_lock(key: str) -> threading.Lock:
    """A lock per artifact, so concurrent first downloads in one process build the zip once."""
    with _locks_guard:
        return _locks[key]


def resolve_under(root: Path, relative: str) -> Path:
    """`root / relative`, refusing anything that would leave `root`.

    Paths in the database are written by the server, never by clients; this is defence in depth.

    Raises:
        NotFound: the path escapes `root` or does not exist.
    """
    root = root.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.exists():
        raise NotFound("the artifact's files are missing from the artifact store")
    return path


def zip_cache_path(artifact_dir: Path, artifact_id: str) -> Path:
    return artifact_dir / DOWNLOADS_DIR / f"{artifact_id}.zip"


def build_zip(source: Path, target: Path, root_name: str) -> tuple[str, int]:
    """Write `source` (a file or a folder, recursively) into a reproducible zip at `target`.

    The zip holds one folder, `root_name`, so unzipping gives a model folder. Symbolic links are
    skipped: only files that really are in the artifact store go out. The zip is written to a
    temporary name and moved into place, so readers never see half a file.

    Args:
        source: the artifact's file or folder.
        target: where the zip goes.
        root_name: the folder name inside the zip.

    Returns:
        (hex sha256, size in bytes) of the zip.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    files = [source] if source.is_file() else sorted(_files_under(source))
    base = source.parent if source.is_file() else source
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w") as zf:
            for file in files:
                info = zipfile.ZipInfo(f"{root_name}/{file.relative_to(base).as_posix()}", date_time=_FIXED_TIME)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_STORED if file.suffix in _STORED_SUFFIXES else zipfile.ZIP_DEFLATED
                with file.open("rb") as src, zf.open(info, "w", force_zip64=True) as dst:
                    while chunk := src.read(_CHUNK):
                        dst.write(chunk)
        digest = sha256_file(tmp)
        size = tmp.stat().st_size
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return digest, size


def _files_under(folder: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]
        found += [Path(dirpath) / name for name in filenames if not (Path(dirpath) / name).is_symlink()]
    return found


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
