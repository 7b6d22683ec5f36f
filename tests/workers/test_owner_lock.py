"""One live process per worker name (slimformer/workers/owner_lock.py), across real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from slimformer.workers.owner_lock import acquire_owner_lock

HOLD = """
import sys, time
from slimformer.workers.owner_lock import acquire_owner_lock
fd = acquire_owner_lock(sys.argv[1], sys.argv[2])
print("held" if fd is not None else "refused", flush=True)
time.sleep(600 if fd is not None else 0)
"""


def _holder(home, owner: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(home), owner], stdout=subprocess.PIPE, text=True)
    return process, process.stdout.readline().strip()


def test_a_name_is_held_by_one_live_process_and_freed_when_it_is_killed(tmp_path):
    holder, said = _holder(tmp_path, "host:embedded:abc")
    try:
        assert said == "held"
        assert acquire_owner_lock(tmp_path, "host:embedded:abc") is None
        other = acquire_owner_lock(tmp_path, "host:embedded:other")  # another name is free
        assert other is not None
        os.close(other)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    fd = acquire_owner_lock(tmp_path, "host:embedded:abc")  # a killed holder leaves the name free
    assert fd is not None
    try:
        second, said = _holder(tmp_path, "host:embedded:abc")
        second.wait(timeout=60)
        assert said == "refused"
    finally:
        os.close(fd)
