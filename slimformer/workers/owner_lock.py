"""One live process per worker name: the lock that lets a restarted worker reclaim its own lease.

A worker's lease names it (`owner`). A worker started under the same stable name after its
predecessor died (the embedded worker of `slimformer serve`, restarted on the same home) may take
that predecessor's job back at once instead of waiting out the lease (`leases.claim_next_job(...,
reclaim=True)`) — but only if no other live process works under that name. An exclusive `flock` on
a file named after the owner proves that: the kernel drops it when its holder dies, however it died
(SIGKILL included), and a second live holder is refused.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

LOCK_DIR = "worker-locks"


def lock_path(home: Path, owner: str) -> Path:
    return Path(home) / LOCK_DIR / f"{hashlib.sha256(owner.encode()).hexdigest()[:16]}.lock"


def acquire_owner_lock(home: Path, owner: str) -> int | None:
    """Hold the lock of `owner` for the rest of this process's life.

    Returns:
        The locked file descriptor (keep it open; it is not inherited by child processes), or None
        when another live process holds the name.
    """
    path = lock_path(home, owner)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {owner}\n".encode())  # for people looking: who holds it
    return fd
