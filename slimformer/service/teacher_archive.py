"""Unpack an uploaded teacher archive (zip, tar or tar.gz) safely, or refuse it whole.

Nothing in an archive is trusted:
- its format is told by its bytes, not its name;
- member names must be relative and stay inside the folder: an absolute name, a drive letter, a
  backslash, a NUL or a `..` part refuses the archive;
- only regular files and folders are unpacked: a symbolic or hard link, a device, a FIFO, a sparse
  or an encrypted member refuses it;
- the member count, the sizes members declare (the zip central directory, the tar headers, summed
  before any byte is unpacked, so a "4 GB" member is refused at once) and the bytes actually
  written are each held to the limits (`ArchiveLimits`); a compressed stream is never read much
  past them;
- a member that appears twice refuses it.

The caller unpacks into a fresh folder and removes it on any error, so a refused archive leaves
nothing behind. Standard library only (no torch): it runs in the API process.
"""

from __future__ import annotations

import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from slimformer.service.errors import InvalidRequest, PayloadTooLarge

MAX_DEPTH = 8  # folders deep; a model folder has one level, a sentence-transformers one two
_CHUNK = 1024 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class ArchiveLimits:
    """How much one archive may unpack to: bytes (declared and actual) and members."""

    max_bytes: int
    max_files: int


def refuse(msg: str) -> InvalidRequest:
    """The 422 for an archive that cannot be a teacher (at the `file` field of the form)."""
    return InvalidRequest.at(["body", "file"], msg, "invalid_teacher_archive")


def unpack(source: BinaryIO, target: Path, limits: ArchiveLimits, label: str) -> int:
    """Unpack a zip, tar or tar.gz archive into `target` (a folder that must not exist yet).

    Args:
        source: the archive, seekable, at any position.
        target: the folder to create and unpack into.
        limits: the bounds on bytes and members.
        label: the archive's name in messages (the client's file name).

    Returns:
        Bytes written.

    Raises:
        InvalidRequest: not a zip or tar archive, a damaged one, or a member refused (see the module).
        PayloadTooLarge: more members or bytes than `limits` allow.
    """
    source.seek(0)
    head = source.read(265)
    source.seek(0)
    target.mkdir(parents=True)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _unpack_zip(source, target, limits, label)
    if head[:2] == b"\x1f\x8b":
        return _unpack_tar(source, "r|gz", target, limits, label)
    if head[257:262] == b"ustar":
        return _unpack_tar(source, "r|", target, limits, label)
    raise refuse(f"{label}: not a zip, tar or tar.gz archive")


def member_path(name: str, label: str) -> PurePosixPath | None:
    """The safe relative path of an archive member; None for the archive's root itself.

    Raises:
        InvalidRequest: absolute, with a drive letter, a backslash, a NUL or a `..` part, or too deep.
    """
    if "\0" in name or "\\" in name:
        raise refuse(f"{label}: member {name!r} has a backslash or NUL in its name")
    if name.startswith("/") or _DRIVE.match(name):
        raise refuse(f"{label}: member {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise refuse(f"{label}: member {name!r} points outside the archive ('..')")
    if len(parts) > MAX_DEPTH:
        raise refuse(f"{label}: member {name!r} is more than {MAX_DEPTH} folders deep")
    return PurePosixPath(*parts) if parts else None


class _Budget:
    """Counts members and bytes against the limits as the archive is read."""

    def __init__(self, limits: ArchiveLimits, label: str):
        self.limits, self.label = limits, label
        self.files = self.declared = self.written = 0

    def member(self) -> None:
        self.files += 1
        if self.files > self.limits.max_files:
            raise PayloadTooLarge(f"{self.label}: more than {self.limits.max_files} members")

    def declare(self, name: str, size: int) -> None:
        self.declared += size
        if self.declared > self.limits.max_bytes:
            raise PayloadTooLarge(
                f"{self.label}: unpacks to more than the limit of {self.limits.max_bytes} bytes "
                f"(member {name!r} declares {size} bytes)"
            )

    def copy(self, data: BinaryIO, out: BinaryIO, name: str, declared: int) -> None:
        written = 0
        while chunk := data.read(_CHUNK):
            written += len(chunk)
            self.written += len(chunk)
            if written > declared or self.written > self.limits.max_bytes:
                raise PayloadTooLarge(f"{self.label}: member {name!r} unpacks to more than it declares "
                                      f"or past the limit of {self.limits.max_bytes} bytes")
            out.write(chunk)


def _place(target: Path, relative: PurePosixPath, label: str) -> Path:
    """The file's place under `target`, its folders made; refuses a name taken already."""
    path = target.joinpath(*relative.parts)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise refuse(f"{label}: member {relative} is inside a file of the same name") from None
    if path.exists():
        raise refuse(f"{label}: member {relative} appears twice")
    # Only folders and regular files are ever made here, so nothing can lead outside; check anyway.
    if not path.resolve().is_relative_to(target.resolve()):
        raise refuse(f"{label}: member {relative} points outside the archive")
    return path


def _unpack_zip(source: BinaryIO, target: Path, limits: ArchiveLimits, label: str) -> int:
    budget = _Budget(limits, label)
    declared_entries = _zip_entry_count(source)
    if declared_entries is not None and declared_entries > limits.max_files:
        raise PayloadTooLarge(f"{label}: more than {limits.max_files} members")
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise refuse(f"{label}: damaged zip archive ({exc})") from None
    with archive:
        members: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
        for info in archive.infolist():  # every check on the central directory, before any byte
            budget.member()
            relative = member_path(info.filename, label)
            mode = info.external_attr >> 16
            kind = stat.S_IFMT(mode)
            if stat.S_ISLNK(mode):
                raise refuse(f"{label}: member {info.filename!r} is a symbolic link")
            if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
                raise refuse(f"{label}: member {info.filename!r} is not a regular file or folder")
            if info.flag_bits & 0x1:
                raise refuse(f"{label}: member {info.filename!r} is encrypted")
            if relative is None or info.is_dir():
                if info.file_size:
                    raise refuse(f"{label}: folder member {info.filename!r} has contents")
                if relative is not None:
                    target.joinpath(*relative.parts).mkdir(parents=True, exist_ok=True)
                continue
            budget.declare(info.filename, info.file_size)
            members.append((info, relative))
        for info, relative in members:
            path = _place(target, relative, label)
            try:
                with archive.open(info) as data, path.open("xb") as out:
                    budget.copy(data, out, info.filename, info.file_size)
            except (zipfile.BadZipFile, NotImplementedError, EOFError, RuntimeError, ValueError) as exc:
                raise refuse(f"{label}: member {info.filename!r} cannot be read ({exc})") from None
            except OSError as exc:
                raise refuse(f"{label}: member {info.filename!r} cannot be unpacked ({exc.strerror or exc})") from None
    return budget.written


def _zip_entry_count(source: BinaryIO) -> int | None:
    """The member count the end of a zip declares, read before zipfile builds the whole directory."""
    end = getattr(zipfile, "_EndRecData", None)  # private, but read-only and in every CPython 3
    if end is None:
        return None
    try:
        record = end(source)
    except (OSError, ValueError, EOFError):
        return None
    finally:
        source.seek(0)
    return int(record[zipfile._ECD_ENTRIES_TOTAL]) if record else None


def _unpack_tar(source: BinaryIO, mode: str, target: Path, limits: ArchiveLimits, label: str) -> int:
    budget = _Budget(limits, label)
    try:
        with tarfile.open(fileobj=source, mode=mode) as archive:  # type: ignore[call-overload]
            for member in archive:  # a stream: headers in order, each checked before its data
                budget.member()
                relative = member_path(member.name, label)
                if member.issym() or member.islnk():
                    kind = "symbolic" if member.issym() else "hard"
                    raise refuse(f"{label}: member {member.name!r} is a {kind} link")
                if member.isdir():
                    if relative is not None:
                        target.joinpath(*relative.parts).mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isreg() or member.issparse():
                    raise refuse(f"{label}: member {member.name!r} is not a regular file or folder")
                if relative is None:
                    raise refuse(f"{label}: a file member has no name")
                budget.declare(member.name, member.size)
                path = _place(target, relative, label)
                data = archive.extractfile(member)
                assert data is not None  # a regular file always has data
                with path.open("xb") as out:
                    budget.copy(data, out, member.name, member.size)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise refuse(f"{label}: damaged tar archive ({exc})") from None
    except OSError as exc:
        raise refuse(f"{label}: cannot be unpacked ({exc.strerror or exc})") from None
    return budget.written


def remove_tree(path: Path) -> None:
    """Remove a folder an upload made, whatever is in it (a refused upload leaves nothing)."""
    shutil.rmtree(path, ignore_errors=True)
