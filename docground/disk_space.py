"""Room on the data directory's disk, for the two things a full disk breaks beyond a plain ENOSPC.

- The embedded vector store (qdrant-edge) writes through memory maps: out of space there is no error
  but SIGBUS, which kills the process. Its writes therefore start only with room to spare (`require_room`).
- Recording that a document failed for want of space needs a little space itself. A reserve file kept
  in the home is given up for that record (`SpaceReserve.release`) and taken back before the next
  upload is accepted (`SpaceReserve.restore`), which is refused while it cannot be.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import NoSpace, no_space_as_error

RESERVE_NAME = ".space-reserve"
RESERVE_BYTES = 1 << 20  # several registry transactions (a failure, its webhook events) fit in it


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding `path`."""
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def require_room(path: Path, needed: int) -> None:
    if free_bytes(path) < needed:
        raise NoSpace()


class SpaceReserve:
    def __init__(self, home: Path, size: int = RESERVE_BYTES):
        self.path = home / RESERVE_NAME
        self.size = size

    def restore(self) -> None:
        """Hold the reserve again (NoSpace when the disk cannot spare it); a partial one never takes the name."""
        if self.path.is_file() and self.path.stat().st_size == self.size:
            return
        part = self.path.with_name(f"{RESERVE_NAME}.{os.getpid()}.part")
        try:
            with no_space_as_error():
                _allocate(part, self.size)
                part.replace(self.path)
        finally:
            part.unlink(missing_ok=True)

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


def _allocate(path: Path, size: int) -> None:
    """A file whose blocks are taken (not sparse, and not zeros a compressing filesystem would keep in none)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)
    finally:
        os.close(fd)
