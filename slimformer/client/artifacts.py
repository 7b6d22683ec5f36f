"""Turn a streamed artifact zip into a model folder, checked and contained.

Its own module because it is the part that writes to the user's disk: the digest check catches a
truncated or altered download before anything is unpacked, and the path check keeps a hostile zip
from writing outside the folder the user named.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

import httpx

from slimformer.client.errors import ClientError

__all__ = ["CHUNK", "extract_model_zip", "save_model_zip"]

CHUNK = 1024 * 1024


def save_model_zip(response: httpx.Response, out: Path) -> Path:
    """Write the streamed zip beside `out`, check it against X-Content-SHA256, unzip it into `out`.

    Returns:
        `out`, now holding the model files (config.json, weights, tokenizer ...).

    Raises:
        ClientError: digest mismatch, or a zip entry that would land outside `out`.
    """
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".download-") as tmp:
        zip_path = Path(tmp) / "artifact.zip"
        digest = hashlib.sha256()
        expected = response.headers.get("X-Content-SHA256")
        with zip_path.open("wb") as f:
            for chunk in response.iter_bytes(CHUNK):
                digest.update(chunk)
                f.write(chunk)
        if expected and digest.hexdigest() != expected.lower():
            raise ClientError(f"download corrupted: sha256 {digest.hexdigest()} != X-Content-SHA256 {expected}")
        extract_model_zip(zip_path, out)
    return out


def extract_model_zip(zip_path: Path, out: Path) -> None:
    """Unzip the one top folder of an artifact zip into `out` (its files land directly in `out`)."""
    root = out.resolve()
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for info in zf.infolist():
                parts = PurePosixPath(info.filename).parts
                inner = parts[1:] if len(parts) > 1 else parts
                if info.is_dir() or not inner:
                    continue
                target = (root / Path(*inner)).resolve()
                if not target.is_relative_to(root) or PurePosixPath(info.filename).is_absolute():
                    raise ClientError(f"refusing zip entry {info.filename!r}: it would land outside {out}")
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
    except zipfile.BadZipFile as exc:
        raise ClientError(f"the server sent something that is not a zip file: {exc}") from None
